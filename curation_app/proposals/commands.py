"""The `propose` subcommand (registered by `semantic_pairs_cli.main`)."""
from __future__ import annotations


def register(subparsers) -> None:
    """Add `propose`. Import heavy modules inside the handler only."""
