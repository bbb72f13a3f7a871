"""Errors a user can act on during evaluation. The CLI prints them as one line.

A `pair_manifest.errors.UserError` (the project's convention: an `exit_code` the CLI turns into
the exit status), named for the package that raises it."""
from __future__ import annotations

from pair_manifest.errors import UserError


class EvalError(UserError):
    """Bad input (a dataset, a run folder, an option): the message names the file or field."""

    exit_code = 2
