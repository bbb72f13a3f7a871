"""The staging folder that makes a build resumable and its output all-or-nothing.

A build writes into `.<out>.partial` beside the output folder. Each finished shard gets a
completion marker (written after the shard is fsynced and renamed into place), so a build killed
at any point restarts where it stopped; a marker records the plan's fingerprint, so a changed
manifest or setting starts over instead of mixing two builds. When every file is there, the
staging folder replaces the output folder with one rename (an atomic exchange on Linux when an
older build is being replaced): readers see the old build or the new one, never half of one.

The staging folder is the build's private workspace, not part of its output: a build refused
while writing (an image whose bytes differ from the release) deletes it with `discard`, so the
output folder is never touched and nothing is left behind.
"""
from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
from pathlib import Path

from pair_manifest.atomic import write_atomically
from pair_manifest.errors import UserError
from pair_manifest.locks import refuse_a_file_in_the_way

CONTROL = ".build"  # inside the staging folder; removed before the final rename


def looks_like_release(folder: Path) -> bool:
    return (folder / "README.md").is_file() and (folder / "manifest").is_dir()


def check_output_folder(out: Path) -> None:
    """Refuse, before any work, to replace something that is not an earlier build."""
    refuse_a_file_in_the_way(out, "release folder")
    if out.is_dir() and any(out.iterdir()) and not looks_like_release(out):
        raise UserError(f"{out}: folder exists and is not a semantic-pairs release (no README.md and manifest/); "
                        "refusing to replace it")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    if ctypes.get_errno() in (errno.EINVAL, errno.ENOSYS, errno.EPERM):
        return False
    raise OSError(ctypes.get_errno(), f"cannot exchange {a} and {b}")


class Staging:
    def __init__(self, out: Path, fingerprint: str):
        self.out = out
        self.folder = out.parent / f".{out.name}.partial"
        self.fingerprint = fingerprint

    @property
    def control(self) -> Path:
        return self.folder / CONTROL

    def open(self) -> int:
        """Create or resume; return how many shards are already done."""
        self.folder.mkdir(exist_ok=True)
        plan_file = self.control / "plan.json"
        recorded = None
        if plan_file.is_file():
            try:
                recorded = json.loads(plan_file.read_text()).get("fingerprint")
            except (OSError, json.JSONDecodeError):
                recorded = None
        if recorded != self.fingerprint:
            for child in self.folder.iterdir():
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
            (self.control / "done").mkdir(parents=True)
            self._write_json(plan_file, {"fingerprint": self.fingerprint})
            return 0
        return len(list((self.control / "done").glob("*.json")))

    def _marker(self, relative: str) -> Path:
        return self.control / "done" / (relative.replace("/", "__") + ".json")

    def done_size(self, relative: str) -> int | None:
        marker = self._marker(relative)
        path = self.folder / relative
        try:
            size = json.loads(marker.read_text())["size"]
        except (OSError, json.JSONDecodeError, KeyError):
            return None
        return size if path.is_file() and path.stat().st_size == size else None

    def mark_done(self, relative: str, size: int) -> None:
        self._write_json(self._marker(relative), {"path": relative, "size": size})

    @staticmethod
    def _write_json(path: Path, payload: dict) -> None:
        write_atomically(path, lambda handle: handle.write(json.dumps(payload).encode()))

    def write_file(self, relative: str, data: bytes) -> None:
        write_atomically(self.folder / relative, lambda handle: handle.write(data))

    def discard(self) -> None:
        """Throw the staging folder away (a refused build)."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def finish(self) -> None:
        """Drop the control files, then put the staged folder in place of the output."""
        shutil.rmtree(self.control)
        for folder, _, _ in os.walk(self.folder):
            _fsync_dir(Path(folder))
        if self.out.exists():
            if not _exchange(self.folder, self.out):
                old = self.out.parent / f".{self.out.name}.old"
                if old.exists():
                    shutil.rmtree(old)
                os.rename(self.out, old)
                os.rename(self.folder, self.out)
                self.folder = old
            shutil.rmtree(self.folder)  # the previous build, now under the staging name
        else:
            os.rename(self.folder, self.out)
        _fsync_dir(self.out.parent)
