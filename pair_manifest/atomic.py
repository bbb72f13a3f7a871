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
    write_files_atomically({Path(path): write}, mode=mode)


def write_files_atomically(writes: dict[Path, Callable[[BinaryIO], None]], *, mode: int | None = None) -> None:
    """Several files that belong together (a manifest's pairs and decisions): every one is
    written and fsynced before the first is renamed into place, so a full disk or a failed write
    leaves all the old files, never a new one beside an old one."""
    temporaries: dict[Path, str] = {}
    try:
        for path, write in writes.items():
            path = Path(path)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, temporaries[path] = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
                os.fchmod(fd, mode if mode is not None else 0o666 & ~current_umask())
                with os.fdopen(fd, "wb") as handle:
                    write(handle)
                    handle.flush()
                    os.fsync(handle.fileno())
            except OSError as error:
                if error.filename is None:  # a write() or fsync() failure: say which file it was for
                    raise type(error)(error.errno, error.strerror, str(path)) from error
                raise
        for path, temporary in list(temporaries.items()):
            os.replace(temporary, path)
            del temporaries[path]
        for folder in {Path(path).parent for path in writes}:
            dir_fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    finally:
        for temporary in temporaries.values():
            if os.path.exists(temporary):
                os.unlink(temporary)


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
