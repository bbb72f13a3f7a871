"""Manifest outputs against real faults: a file where the folder goes, a read-only file system, a
full disk. One line naming the path and the cause; the previous manifest stays as it was."""
from __future__ import annotations

import pytest

from pair_manifest.store import DecisionStore, NewDecision
from tests.builders.conftest import cli, tree_bytes
from tests.support.faults import fill, tmpfs

WNID = "n03085013"


@pytest.fixture
def project(tmp_path, sample_images):
    files = [f"{WNID}/{p.name}" for p in sorted((sample_images / WNID).iterdir())]
    store = DecisionStore.for_project(tmp_path / "project", images_root=sample_images)
    for i in range(10):
        store.record(NewDecision(f"k{i}", WNID, files[2 * i], files[2 * i + 1], "accept", "alice"))
    store.close()
    return tmp_path / "project"


@pytest.mark.parametrize("where", ["the output itself", "a folder above it"])
def test_a_file_in_the_way_of_export_and_merge_is_named(project, tmp_path, where):
    blocker = tmp_path / "taken"
    blocker.write_text("precious")
    out = blocker if where == "the output itself" else blocker / "manifest"
    assert cli("manifest", "export", "--project", project, "--out", tmp_path / "m").returncode == 0
    for command in (("manifest", "export", "--project", project, "--out", out),
                    ("manifest", "merge", tmp_path / "m", tmp_path / "m", "--out", out)):
        result = cli(*command)
        assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
        assert result.stderr.startswith(f"error: {out}: ")
    assert blocker.read_text() == "precious"


def test_export_to_a_read_only_file_system_is_one_line(project, tmp_path):
    with tmpfs(tmp_path / "ro", "1m", read_only=True) as disk:
        result = cli("manifest", "export", "--project", project, "--out", disk / "manifest")
    assert result.returncode == 2
    assert result.stderr == (f"error: {disk / 'manifest'}: cannot write the manifest folder here "
                             f"({disk / '.manifest.lock'}: Read-only file system)\n")


def test_a_full_disk_keeps_the_previous_manifest_whole_and_the_rerun_completes(project, tmp_path, sample_images):
    """Room for the new decisions.parquet but not for pairs.parquet: the export fails naming the
    file, and the folder still holds both old files, never a new log beside old pairs."""
    store = DecisionStore.for_project(project, images_root=sample_images)
    files = [f"{WNID}/{p.name}" for p in sorted((sample_images / WNID).iterdir())]
    with tmpfs(tmp_path / "disk", "256k") as disk:
        out = disk / "manifest"
        assert cli("manifest", "export", "--project", project, "--out", out).returncode == 0
        before = tree_bytes(out)
        for i in range(10, 22):
            store.record(NewDecision(f"k{i}", WNID, files[2 * i], files[2 * i + 1], "reject", "bob"))
        assert cli("manifest", "export", "--project", project, "--out", tmp_path / "reference").returncode == 0
        decisions_size = (tmp_path / "reference" / "decisions.parquet").stat().st_size
        fill(disk, -(-decisions_size // 4096) * 4096 + 4096)  # and a page for the lock file
        result = cli("manifest", "export", "--project", project, "--out", out)
        assert result.returncode == 1, result.stderr
        assert result.stderr == f"error: {out / 'pairs.parquet'}: No space left on device " \
                                "(the disk is full: free space and run again)\n"
        assert tree_bytes(out) == before  # never a new decision log beside old pairs
        (disk / "filler").unlink()
        assert cli("manifest", "export", "--project", project, "--out", out).returncode == 0
        assert tree_bytes(out) == tree_bytes(tmp_path / "reference")
