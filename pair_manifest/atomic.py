"""Atomic file replacement: readers see the old file or the new one, never half of one, even
across a power cut (temp file in the same folder, fsync, rename, fsync of the folder).

Every file the project writes whole goes through `write_atomically` (manifests, proposals,
checkpoints, results, previews), so they share one behaviour: the mode a new file would get
from the user's umask (`mkstemp` alone would leave 0600), and an error that names the file.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def write_atomically(path: str | Path, write: Callable[[BinaryIO], None], *, mode: int | None = None) -> None:
    """Replace `path` with what `write(handle)` writes. `mode` (e.g. 0o600 for a secret) is set
    before any byte; by default the file gets 0o666 less the umask, as `open()` would give it.
    An OSError (a full disk, a read-only folder) names `path` and leaves the old file as it was."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, mode if mode is not None else 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        tmp = None
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as error:
        if error.filename is None:  # a write() or fsync() failure: say which file it was for
            raise type(error)(error.errno, error.strerror, str(path)) from error
        raise
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def current_umask() -> int:
    """The process umask, read without changing it (os.umask can only set it, and setting it
    briefly would race with other threads creating files)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
