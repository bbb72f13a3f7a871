"""A build against real faults: a second build of the same output, a full disk, a read-only file
system, an output path that is a file, an unreadable class folder. Each ends in one line naming
the path and the cause; the previous release stays whole; a rerun completes."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.builders.conftest import PAIRS_PER_CLASS, cli, tree_bytes
from tests.support.faults import (require_unprivileged_python, resize, run_as_nobody, tmpfs,
                                  world_writable_dir)


def build_args(inputs, out, *extra, images=None):
    return ["build", "--manifest", inputs.manifest, "--images", images or inputs.images, "--out", out,
            "--pairs-per-class", PAIRS_PER_CLASS, "--allow-short", *extra]


def start_build(inputs, out) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "semantic_pairs_cli", *map(str, build_args(inputs, out))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_second_build_of_the_same_output_is_refused_naming_the_first(release_inputs, built_release, tmp_path):
    from pair_manifest.locks import lock_beside, one_writer

    out = tmp_path / "semantic_pairs"
    shutil.copytree(built_release, out)
    before = tree_bytes(out)
    with one_writer(lock_beside(out), out, "release folder"):  # what a running build holds
        result = cli(*build_args(release_inputs, out))
    assert result.returncode == 75
    assert result.stderr.startswith(f"error: {out}: another process is writing this release folder (pid ")
    assert tree_bytes(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["semantic_pairs"]


def test_racing_builds_leave_the_old_or_the_new_complete_release(release_inputs, built_release, tmp_path):
    """Two builds started together, four rounds over an existing release: each either builds or
    is refused (exit 75) naming the other; after each round the output verifies, and nothing
    else is left beside it."""
    out = tmp_path / "semantic_pairs"
    shutil.copytree(built_release, out)
    expected = tree_bytes(built_release)
    refusals = 0
    for _ in range(4):
        builds = [start_build(release_inputs, out) for _ in range(2)]
        results = [(b.wait(timeout=300), b.stdout.read(), b.stderr.read()) for b in builds]
        for code, stdout, stderr in results:
            assert "Traceback" not in stderr
            assert code in (0, 75), stderr
            if code == 75:
                refusals += 1
                assert "another process is writing this release folder (pid " in stderr
                assert "semantic-pairs build --manifest" in stderr
        assert any(code == 0 for code, _, _ in results)
        assert tree_bytes(out) == expected  # deterministic build: old and new are the same bytes
        assert sorted(p.name for p in tmp_path.iterdir()) == ["semantic_pairs"]
    verify = cli("verify", out)
    assert verify.returncode == 0, verify.stderr
    print(f"{refusals} of 4 rounds overlapped")  # depends on the machine; every round is checked above


def test_a_full_disk_leaves_the_previous_release_and_the_rerun_completes(release_inputs, built_release, tmp_path):
    size = sum(p.stat().st_size for p in built_release.rglob("*") if p.is_file())
    with tmpfs(tmp_path / "disk", f"{size // 1024 + 64}k") as disk:
        out = disk / "semantic_pairs"
        small = cli(*build_args(release_inputs, out)[:-3], "--pairs-per-class", "2", "--allow-short")
        assert small.returncode == 0, small.stderr
        previous = tree_bytes(out)
        full = cli(*build_args(release_inputs, out))
        assert full.returncode == 2, full.stderr
        assert full.stderr.startswith(f"error: {out}: the build could not be written: No space left on device")
        assert "the previous release there is unchanged" in full.stderr and "rerun resumes" in full.stderr
        assert len(full.stderr.strip().splitlines()) == 1
        assert tree_bytes(out) == previous
        resize(disk, f"{3 * size // 1024 + 1024}k")
        rerun = cli(*build_args(release_inputs, out))
        assert rerun.returncode == 0, rerun.stderr
        assert tree_bytes(out) == tree_bytes(built_release)
        assert sorted(p.name for p in disk.iterdir()) == ["semantic_pairs"]


def test_a_read_only_file_system_is_one_line(release_inputs, tmp_path):
    with tmpfs(tmp_path / "ro", "1m", read_only=True) as disk:
        result = cli(*build_args(release_inputs, disk / "semantic_pairs"))
    assert result.returncode == 2
    assert result.stderr == (f"error: {disk / 'semantic_pairs'}: cannot write the release folder here "
                             f"({disk / '.semantic_pairs.lock'}: Read-only file system)\n")


@pytest.mark.parametrize("where", ["the output itself", "a folder above it"])
def test_a_file_where_the_output_goes_is_named(release_inputs, tmp_path, where):
    blocker = tmp_path / "taken"
    blocker.write_text("precious")
    out = blocker if where == "the output itself" else blocker / "semantic_pairs"
    for command in (build_args(release_inputs, out),
                    ["materialize", tmp_path / "nowhere", "--imagenet", release_inputs.images, "--out", out]):
        result = cli(*command)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.startswith(f"error: {out}: ") and len(result.stderr.splitlines()) == 1
    assert blocker.read_text() == "precious" and [p.name for p in tmp_path.iterdir()] == ["taken"]


def test_an_unreadable_class_folder_is_named_and_nothing_is_written(release_inputs):
    home = world_writable_dir()
    try:
        require_unprivileged_python(home)
        images = home / "images"
        shutil.copytree(release_inputs.images, images)
        for path in [images, *images.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        manifest = home / "manifest"
        shutil.copytree(release_inputs.manifest, manifest)
        (images / "n04554684").chmod(0o000)
        result = run_as_nobody(home, "build", "--manifest", str(manifest), "--images", str(images),
                               "--out", str(home / "out" / "semantic_pairs"), "--pairs-per-class", "60",
                               "--allow-short")
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert "n04554684/n04554684_16469.JPEG: cannot be read: class folder n04554684/ (Permission denied)" \
            in result.stderr
        assert "nothing was written" in result.stderr and not (home / "out").exists()
    finally:
        for path in [home, *home.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
        shutil.rmtree(home)
