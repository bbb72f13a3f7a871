"""One writer per folder: a second process is refused at once, naming the first; a killed holder
leaves no stale lock; a refused command leaves no lock file or folder behind."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from pair_manifest.errors import UserError
from pair_manifest.locks import Busy, lock_beside, lock_inside, one_writer

HOLDER = textwrap.dedent("""
    import sys, time
    from pair_manifest.locks import one_writer
    with one_writer(sys.argv[1], sys.argv[2], "release folder"):
        print("locked", flush=True)
        time.sleep(60)
""")


def start_holder(lock_file, target):
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock_file), str(target)],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "locked"
    return process


def test_a_second_writer_is_refused_naming_the_first_until_it_is_killed(tmp_path):
    out = tmp_path / "release"
    holder = start_holder(lock_beside(out), out)
    try:
        with pytest.raises(Busy) as refused:
            with one_writer(lock_beside(out), out, "release folder"):
                pass
        message = str(refused.value)
        assert message.startswith(f"{out}: another process is writing this release folder (pid {holder.pid}: ")
        assert refused.value.exit_code == 75
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with one_writer(lock_beside(out), out, "release folder"):  # the kernel dropped the dead holder's lock
        assert lock_beside(out).read_text().startswith(f"pid {os.getpid()}: ")
    assert not lock_beside(out).exists()


SLOW_TO_RECORD = textwrap.dedent("""
    import fcntl, os, sys, time
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    print("locked", flush=True)
    time.sleep(0.3)
    os.pwrite(fd, b"pid 4242: semantic-pairs build --manifest m --out o\\n", 0)
    time.sleep(60)
""")


def test_a_writer_that_has_locked_but_not_yet_said_who_it_is_is_still_named(tmp_path):
    """The holder writes its line just after taking the lock: a second writer arriving in between
    waits for the line instead of reporting an unknown holder."""
    out = tmp_path / "release"
    process = subprocess.Popen([sys.executable, "-c", SLOW_TO_RECORD, str(lock_beside(out))],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "locked"
        with pytest.raises(Busy) as refused:
            with one_writer(lock_beside(out), out, "release folder"):
                pass
        assert "(pid 4242: semantic-pairs build --manifest m --out o)" in str(refused.value)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()


def test_the_lock_file_and_the_folders_made_for_it_go_when_the_writer_is_done(tmp_path):
    out = tmp_path / "a" / "b" / "release"
    with one_writer(lock_beside(out), out, "release folder"):
        assert lock_beside(out).is_file()
    assert list(tmp_path.iterdir()) == []
    project = tmp_path / "project"
    project.mkdir()
    with one_writer(lock_inside(project, ".propose.lock"), project, "project"):
        (project / "kept.txt").write_text("work")
    assert [p.name for p in project.iterdir()] == ["kept.txt"]


def test_a_lock_file_deleted_by_its_holder_after_we_opened_it_is_not_taken_as_ours(tmp_path, monkeypatch):
    """The holder deletes the file between our open and our flock: a lock on the deleted file
    guards nothing (a third writer would create and lock a new file), so the writer must retry
    and end up holding the lock on the file the path names."""
    import fcntl

    from pair_manifest import locks

    out = tmp_path / "release"
    real_flock, calls = fcntl.flock, []

    def flock_after_the_holder_deleted_the_file(fd, operation):
        calls.append(fd)
        if len(calls) == 1:
            os.unlink(lock_beside(out))
        return real_flock(fd, operation)

    monkeypatch.setattr(locks.fcntl, "flock", flock_after_the_holder_deleted_the_file)
    fd = locks._locked(lock_beside(out), out, "release folder")
    try:
        assert len(calls) == 2
        assert os.fstat(fd).st_ino == os.stat(lock_beside(out)).st_ino
    finally:
        os.close(fd)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount a read-only file system")
def test_a_read_only_file_system_is_one_line_naming_the_output(tmp_path):
    mount = tmp_path / "ro"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not permitted in this container)")
    try:
        with pytest.raises(UserError) as refused:
            with one_writer(lock_beside(mount / "release"), mount / "release", "release folder"):
                pass
        assert str(refused.value) == f"{mount / 'release'}: cannot write the release folder here " \
                                     f"({lock_beside(mount / 'release')}: Read-only file system)"
    finally:
        subprocess.run(["umount", str(mount)])
