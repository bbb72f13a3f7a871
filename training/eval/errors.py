"""Errors a user can act on during evaluation. The CLI prints them as one line.

The training package reads only Hugging Face datasets and needs nothing else from this project,
so it carries its own error type instead of importing `pair_manifest.errors`; it follows the same
convention (an `exit_code` attribute)."""
from __future__ import annotations


class EvalError(Exception):
    """Bad input (a dataset, a run folder, an option): the message names the file or field."""

    exit_code = 2
