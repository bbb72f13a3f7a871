"""Errors a user can act on. The CLI prints them as one line and exits with `exit_code`."""
from __future__ import annotations

import errno


class UserError(Exception):
    """Bad input: a message naming the file or field and what is wrong with it."""

    exit_code = 2


class ProblemsFound(UserError):
    """A check ran and found problems (validate, verify, import): the first `LISTED` are listed and
    the rest counted, so 100,000 bad rows make a readable message, not 11 MB of them. Exit status 1."""

    exit_code = 1
    LISTED = 50

    def __init__(self, what: str, problems: list[str]):
        self.problems = list(problems)
        listing = "\n".join(f"  - {p}" for p in self.problems[:self.LISTED])
        rest = len(self.problems) - self.LISTED
        if rest > 0:
            listing += f"\n  ... and {rest} more problem(s) like these"
        super().__init__(f"{what}: {len(self.problems)} problem(s)\n{listing}")


# Failures of the machine or of a path the user gave, not of the code: reported in one line.
_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EEXIST,
                       errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.ENOENT, errno.EIO, errno.ELOOP}
_HINTS = {errno.ENOSPC: "the disk is full: free space and run again",
          errno.EDQUOT: "the disk quota is used up: free space and run again",
          errno.EROFS: "the file system is read-only: choose another output",
          errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
          errno.EEXIST: "a file is in the way", errno.ENOTDIR: "a file stands where a folder is needed"}


def environment_error_message(error: OSError) -> str | None:
    """One line for an OSError caused by the machine or a path (disk full, read-only, permissions,
    a file in the way), naming the path; None for anything else (a bug keeps its traceback)."""
    if error.errno not in _ENVIRONMENT_ERRNOS:
        return None
    where = error.filename if error.filename is not None else "(unknown path)"
    cause = error.strerror or str(error)
    hint = _HINTS.get(error.errno, "")
    return f"{where}: {cause}" + (f" ({hint})" if hint and hint.lower() != cause.lower() else "")
