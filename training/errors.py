"""Errors a user can act on during training. The CLI prints them as one line.

The training package reads only Hugging Face datasets and needs nothing else from this project, so it
carries its own error types rather than importing `pair_manifest.errors`; they follow the same
convention (an `exit_code` attribute the CLI turns into the process's exit status)."""
from __future__ import annotations


class TrainingError(Exception):
    """Bad input (an option, a dataset, a run folder): the message names the file or field."""

    exit_code = 2


class NonFiniteLoss(TrainingError):
    """The loss became NaN or infinite: the run stops rather than training on garbage (exit 3).

    The last checkpoint written before it is intact: checkpoints are only saved after every loss
    since the previous one has been checked."""

    exit_code = 3
