"""Subcommands of this package (registered by `semantic_pairs_cli.main`)."""
from __future__ import annotations


def register(subparsers) -> None:
    """Add this package's subcommands. Import heavy modules inside the handlers only."""
