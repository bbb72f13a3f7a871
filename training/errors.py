"""Errors a user can act on during training. The CLI prints them as one line.

They follow the project's convention (an `exit_code` attribute the CLI turns into the process's
exit status); `training` imports only the torch-free `pair_manifest` modules it shares (errors,
locks, atomic writes, the protocol), never the rest of the project."""
from __future__ import annotations

import errno

from pair_manifest.errors import UserError

HINTS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
         errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied"}


class TrainingError(UserError):
    """Bad input (an option, a dataset, a run folder): the message names the file or field."""

    exit_code = 2


class NonFiniteLoss(TrainingError):
    """The loss became NaN or infinite: the run stops rather than training on garbage (exit 3).

    The last checkpoint written before it is intact: checkpoints are only saved after every loss
    since the previous one has been checked."""

    exit_code = 3


class WriteFailed(TrainingError):
    """The machine refused a write (a full disk, a read-only file system): exit 1, like the CLI's
    other environment failures. What was written before stays whole (every file is replaced
    atomically), so a rerun after the cause is fixed continues."""

    exit_code = 1


def write_failed(path, error: OSError, what: str, after: str) -> WriteFailed:
    """One line: where, why, what is still intact and what to do."""
    cause = error.strerror or str(error)
    hint = HINTS.get(error.errno)
    if hint and hint.lower() != cause.lower():
        cause = f"{cause}: {hint}"
    return WriteFailed(f"{path}: {what} could not be written ({cause}); {after}")
