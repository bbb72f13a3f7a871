"""Real faults for tests: a small or read-only file system (tmpfs mounts), and commands run as an
unprivileged user (CI runs as root, for whom permission bits mean nothing).

Each helper skips the calling test with the reason where the machine does not allow it (not
root, no `mount`, no `setpriv`), so the suite stays green on a developer's laptop and the fault
is still exercised in CI.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

NOBODY = 65534  # uid and gid of `nobody` on Debian


@contextmanager
def tmpfs(where: Path, size: str, *, read_only: bool = False) -> Iterator[Path]:
    """A fresh tmpfs of `size` (e.g. "4m") mounted at `where` for the block."""
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small file system needs root and mount(8); CI runs as root")
    options = f"size={size},mode=0777" + (",ro" if read_only else "")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(disk: Path, leave: int) -> None:
    """Fill the file system at `disk` with a file `filler`, then free `leave` bytes (tmpfs counts
    whole 4 KiB pages); deleting `filler` gives the space back."""
    filler = disk / "filler"
    with open(filler, "ab", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError:
            pass
    with open(filler, "r+b") as handle:
        handle.truncate(max(0, filler.stat().st_size - leave))


def resize(where: Path, size: str) -> None:
    """Grow (or shrink) a mounted tmpfs: space freed, for the rerun that must complete."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(where)], check=True)


def world_writable_dir() -> Path:
    """A folder outside pytest's root-only tmp folder that an unprivileged user can use."""
    folder = Path(tempfile.mkdtemp(prefix="semantic-pairs-nobody-"))
    folder.chmod(0o777)
    return folder


def nobody_command(*args: str) -> list[str]:
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--", *args]


def nobody_env(home: Path) -> dict:
    return dict(os.environ, HOME=str(home), MPLCONFIGDIR=str(home / "mpl"), HF_HOME=str(home / "hf"),
                XDG_CACHE_HOME=str(home / "cache"), PYTHONDONTWRITEBYTECODE="1")


def require_unprivileged_python(home: Path) -> None:
    """Skip unless this test can run the project's Python as `nobody` (root with setpriv, and a
    checkout and venv readable by others)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("running a command as an unprivileged user needs root and setpriv; CI runs as root")
    probe = subprocess.run(nobody_command(sys.executable, "-c", "import semantic_pairs_cli.main"),
                           capture_output=True, text=True, env=nobody_env(home), cwd=home)
    if probe.returncode != 0:
        pytest.skip(f"the project cannot be imported as an unprivileged user here: {probe.stderr.strip()[-200:]}")


def run_as_nobody(home: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`semantic-pairs ARGS` as `nobody` (so permission bits apply), from `home`."""
    return subprocess.run(nobody_command(sys.executable, "-m", "semantic_pairs_cli", *args),
                          capture_output=True, text=True, env=nobody_env(home), cwd=home, timeout=timeout)
