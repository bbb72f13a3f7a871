"""One writer at a time for an output, a project, a run or a proposals folder.

A second process on the same folder is normal use (two terminals, a cron job beside a person), so
every command that writes a folder holds an advisory `flock` on a lock file for as long as it
writes, and a second writer is refused at once with a message naming the process that holds it.
The kernel drops the lock when its holder exits, killed or not, so a crash never leaves a stale
lock behind. The holder deletes the lock file before it lets go; a process that opened the file
just before that notices (the path no longer names the file it locked) and tries again, so two
writers can never hold locks on two different files of one path.

Where the lock file lives: *inside* a folder that is updated in place (a project, a run), and
*beside* an output that is replaced whole by a rename (a release, a manifest folder), since a
lock inside a folder that is renamed away no longer guards the path. Folders the lock had to
create are removed again if the command leaves them empty (a refused build leaves nothing).
"""
from __future__ import annotations

import errno
import fcntl
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from pair_manifest.errors import UserError


class Busy(UserError):
    """Another process is writing the same folder: exit status 75 (EX_TEMPFAIL: try again later)."""

    exit_code = 75


def lock_inside(folder: str | Path, name: str = ".lock") -> Path:
    return Path(folder) / name


def lock_beside(output: str | Path) -> Path:
    output = Path(output)
    return output.parent / f".{output.name}.lock"


@contextmanager
def one_writer(lock_file: str | Path, target: str | Path, what: str) -> Iterator[None]:
    """Hold the lock on `lock_file` for the `with` block; `target` and `what` ("release folder",
    "project", "run folder") name what is being written in the refusal."""
    lock_file = Path(lock_file)
    made = [p for p in [lock_file.parent, *lock_file.parent.parents] if not os.path.lexists(p)]
    try:
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        fd = _locked(lock_file, target, what)
    except OSError as error:
        _remove_empty(made)
        where = f"{error.filename}: " if error.filename and str(error.filename) != str(target) else ""
        raise UserError(f"{target}: cannot write the {what} here ({where}{error.strerror})") from None
    except BaseException:
        _remove_empty(made)
        raise
    try:
        _record_holder(fd)
        yield
    finally:
        try:
            os.unlink(lock_file)
        except OSError:
            pass
        os.close(fd)
        _remove_empty(made)


def refuse_a_file_in_the_way(out: str | Path, what: str) -> None:
    """Refuse at once an output folder that is a file, or that has a file where a folder above it
    should be (before any work, and before the lock would try to create that folder)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: is a file; the {what} needs a folder there")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{out}: cannot write the {what} here ({parent} is a file, not a folder)")
            break


@contextmanager
def writable_output(out: str | Path, what: str) -> Iterator[None]:
    """An output folder a command is about to (re)write: no file in the way, and one writer at a
    time (the lock beside it) for the `with` block."""
    refuse_a_file_in_the_way(out, what)
    with one_writer(lock_beside(out), out, what):
        yield


def _locked(lock_file: Path, target, what: str) -> int:
    """Open and lock `lock_file`, retrying while another holder deletes it under us."""
    while True:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = _holder(fd)
            os.close(fd)
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            raise Busy(f"{target}: another process is writing this {what} ({holder}); "
                       "wait for it to finish, or stop it, then run again") from None
        try:
            same = os.stat(lock_file).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the previous holder deleted it after we opened it: lock the new one


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:  # deepest first
        try:
            folder.rmdir()
        except OSError:
            return


def _record_holder(fd: int) -> None:
    """Write who holds the lock into the lock file, for the message a second writer gets.
    Best effort: a full disk must not stop the command that already holds the lock."""
    command = " ".join(["semantic-pairs", *sys.argv[1:]]) if sys.argv else "python"
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}: {command}\n".encode("utf-8", "replace"), 0)
    except OSError:
        pass


def _holder(fd: int, patience_s: float = 1.0) -> str:
    """Who holds the lock, as its holder recorded it. The holder writes that line just after it
    takes the lock, so a file found empty is read again for up to `patience_s`."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            text = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        except OSError:
            text = ""
        if text or time.monotonic() >= deadline:
            return text.splitlines()[0][:300] if text else "pid unknown"
        time.sleep(0.01)
