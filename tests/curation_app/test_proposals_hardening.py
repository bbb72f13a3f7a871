"""`propose` under faults and concurrency, for real: a second `propose` on the same project (two
processes), a read-only project, a disk that fills while the embedding cache is written (a small
tmpfs), a class folder it may not read (run as an unprivileged user), images damaged or removed
after the scan; and how it reports progress and reuses unchanged classes."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from curation_app.proposals import reporting
from curation_app.proposals.cache import CACHE_FILE, EmbeddingCache
from curation_app.proposals.embedding import Embedder
from curation_app.proposals.propose import propose
from pair_manifest.store import DecisionStore, NewDecision
from tests.curation_app.proposals_support import classes_csv, copy_classes, read_rows
from tests.support.faults import require_unprivileged_python, resize, run_as_nobody, tmpfs, world_writable_dir

FEW = ("n04554684", "n04557648")  # 2 x 5 full-resolution photos
MORE = ("n01443537", "n02129165", "n03085013", "n03417042", "n04554684", "n04557648")


def cli(*args, env=None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "semantic_pairs_cli.main", *map(str, args)], capture_output=True,
                          text=True, env=env, **kwargs)


def folder_bytes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def images(tmp_path, sample_images):
    return copy_classes(sample_images, tmp_path / "images", MORE)


def test_a_second_propose_on_the_project_is_refused_at_once(images, tmp_path, repo_root):
    """Two real processes: the first holds the project's lock while it waits to read its class
    list (a FIFO the test writes later), the second is refused with exit 75 naming the first."""
    project = tmp_path / "project"
    fifo = tmp_path / "classes.fifo"
    os.mkfifo(fifo)
    first = subprocess.Popen([sys.executable, "-m", "semantic_pairs_cli.main", "propose", "--images", str(images),
                              "--project", str(project), "--classes", str(fifo), "--workers", "1"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=repo_root)
    try:
        for _ in range(600):  # the lock file appears once the first process holds it
            if (project / ".propose.lock").exists() and (project / ".propose.lock").stat().st_size:
                break
            threading.Event().wait(0.05)
        second = cli("propose", "--images", images, "--project", project, "--classes",
                     classes_csv(tmp_path / "c.csv", FEW), cwd=repo_root)
        assert second.returncode == 75, second.stderr
        assert second.stderr.startswith(f"error: {project}: another process is writing this project's proposals "
                                        f"(pid {first.pid}: semantic-pairs propose --images {images}")
        assert len(second.stderr.splitlines()) == 1 and not (project / "proposals.parquet").exists()
        with open(fifo, "w") as handle:
            handle.write("wnid\n" + "".join(f"{w}\n" for w in FEW))
        out, err = first.communicate(timeout=300)
    finally:
        first.kill()
    assert first.returncode == 0, err
    assert {r["wnid"] for r in read_rows(project)} == set(FEW)
    assert not (project / ".propose.lock").exists()  # released, and no litter


def test_a_read_only_project_is_one_line_and_keeps_what_is_there(images, tmp_path):
    with tmpfs(tmp_path / "disk", "16m") as disk:
        project = disk / "project"
        csv = classes_csv(tmp_path / "c.csv", FEW)
        assert cli("propose", "--images", images, "--project", project, "--classes", csv).returncode == 0
        before = folder_bytes(project)
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        result = cli("propose", "--images", images, "--project", project, "--classes", csv)
        assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
        assert result.stderr == (f"error: {project}: cannot write the project's proposals here "
                                 f"({project / '.propose.lock'}: Read-only file system)\n")
        assert folder_bytes(project) == before


def test_a_full_disk_while_caching_is_one_line_keeps_the_previous_proposals_and_the_rerun_completes(
        images, tmp_path):
    csv_few, csv_more = classes_csv(tmp_path / "few.csv", FEW), classes_csv(tmp_path / "more.csv", MORE)
    reference = tmp_path / "reference"
    assert cli("propose", "--images", images, "--project", reference, "--classes", csv_more).returncode == 0
    full_size = (reference / CACHE_FILE).stat().st_size
    with tmpfs(tmp_path / "disk", f"{full_size // 2048}k") as disk:  # room for about half the cache
        project = disk / "project"
        small = cli("propose", "--images", images, "--project", project, "--classes", csv_few)
        assert small.returncode == 0, small.stderr
        previous = (project / "proposals.parquet").read_bytes()
        full = cli("propose", "--images", images, "--project", project, "--classes", csv_more)
        assert full.returncode == 2 and "Traceback" not in full.stderr
        problem = [line for line in full.stderr.splitlines() if not line.startswith(("scanning ", "embedding: "))]
        assert problem == [f"error: {project / CACHE_FILE}: database or disk is full (the disk is full: free space "
                           "and run again); images embedded before are kept, a re-run carries on"]
        assert (project / "proposals.parquet").read_bytes() == previous  # the previous proposals, whole
        cache = EmbeddingCache.for_project(project, readonly=True)
        kept = cache.count_vectors(Embedder().cache_key)
        cache.close()
        assert kept >= 10  # the first run's vectors, and every batch committed before the disk filled
        resize(disk, "64m")
        rerun = cli("propose", "--images", images, "--project", project, "--classes", csv_more)
        assert rerun.returncode == 0, rerun.stderr
        assert f"{kept} from the cache" in rerun.stdout
        assert read_rows(project) == read_rows(reference)


def test_an_unreadable_class_folder_is_reported_with_its_reason(sample_images):
    home = world_writable_dir()
    try:
        require_unprivileged_python(home)
        images = copy_classes(sample_images, home / "images", FEW)
        for path in [images, *images.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        (images / FEW[0]).chmod(0o000)
        csv = classes_csv(home / "c.csv", FEW)
        result = run_as_nobody(home, "propose", "--images", str(images), "--project", str(home / "project"),
                               "--classes", str(csv), "--workers", "1")
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        assert (f"unreadable class folder {FEW[0]}/: the class folder cannot be read (Permission denied) "
                "(its images are left out)") in result.stdout
        assert {r["wnid"] for r in read_rows(home / "project")} == {FEW[1]}
    finally:
        for path in [home, *home.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
        shutil.rmtree(home)


def test_images_damaged_or_removed_after_the_scan_are_counted_and_named(images, tmp_path, monkeypatch):
    """The scan sees two good files; before they are embedded one is truncated and one deleted."""
    import pair_manifest.scan as scan

    truncated, removed = sorted((images / FEW[0]).iterdir())[:2]
    real_scan = scan.scan_root

    def scan_then_damage(*args, **kwargs):
        report = real_scan(*args, **kwargs)
        truncated.write_bytes(truncated.read_bytes()[:300])
        removed.unlink()
        return report

    monkeypatch.setattr(scan, "scan_root", scan_then_damage)
    summary = propose(images, tmp_path / "project", classes=str(classes_csv(tmp_path / "c.csv", FEW)), workers=1)
    damaged = {f"{FEW[0]}/{truncated.name}", f"{FEW[0]}/{removed.name}"}
    assert len(summary.failed) == 2 and {line.split(":", 1)[0] for line in summary.failed} == damaged
    lines = summary.lines()
    assert lines[0].endswith("2 unreadable")
    assert any(line.startswith(f"skipped {FEW[0]}/{removed.name}: gone since the scan") for line in lines)
    used = {f for r in read_rows(tmp_path / "project") for f in (r["file_a"], r["file_b"])}
    assert not used & damaged


def test_off_a_terminal_progress_is_a_log_line_every_few_seconds(images, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(reporting, "LOG_SECONDS", 0.0)  # a line per step, to see them in a short run
    propose(images, tmp_path / "project", classes=str(classes_csv(tmp_path / "c.csv", MORE)), workers=1,
            progress="lines")
    err = capsys.readouterr().err.splitlines()
    assert "\r" not in "".join(err)  # plain lines, no bar redrawn in place
    embedding = [line for line in err if line.startswith("embedding: ")]
    assert embedding[-1].startswith("embedding: 185/185 img in ")
    assert any("%, " in line and " img/s, about " in line and line.endswith(" left)") for line in embedding)
    assert err[-1].startswith(f"matching: {len(MORE)}/{len(MORE)} class in ")
    # The command itself: stderr is a pipe here, so it logs lines (the final ones at least).
    result = cli("propose", "--images", images, "--project", tmp_path / "project-2", "--classes",
                 classes_csv(tmp_path / "c2.csv", FEW))
    assert result.returncode == 0 and "embedding: 10/10 img in " in result.stderr
    assert f"matching: {len(FEW)}/{len(FEW)} class in " in result.stderr


def test_a_rerun_rematches_only_the_classes_whose_files_or_decisions_changed(images, tmp_path, sample_images):
    project = tmp_path / "project"
    csv = str(classes_csv(tmp_path / "c.csv", MORE))
    first = propose(images, project, classes=csv, workers=1)
    assert (first.matched, first.kept) == (len(MORE), 0)
    before = read_rows(project)
    same = propose(images, project, classes=csv, workers=1)
    assert (same.matched, same.kept) == (0, len(MORE)) and read_rows(project) == before

    # One class gets a new photo, another a decision; the other four keep their proposals.
    shutil.copy(sorted((sample_images / "n02123045").iterdir())[0], images / MORE[0] / "new_photo.JPEG")
    decided = next(r for r in before if r["wnid"] == MORE[1])
    store = DecisionStore.for_project(project, images_root=images)
    store.record(NewDecision("k1", MORE[1], decided["file_a"], decided["file_b"], "reject", "alice"))
    store.close()
    changed = propose(images, project, classes=csv, workers=1)
    assert (changed.matched, changed.kept) == (2, len(MORE) - 2)
    after = read_rows(project)
    for wnid in MORE[2:]:
        assert [r for r in after if r["wnid"] == wnid] == [r for r in before if r["wnid"] == wnid]
    assert any("new_photo.JPEG" in (r["file_a"] + r["file_b"]) for r in after if r["wnid"] == MORE[0])
    assert (decided["file_a"], decided["file_b"]) not in {(r["file_a"], r["file_b"]) for r in after}
    # The same as matching everything from scratch in the same state.
    fresh = tmp_path / "fresh"
    shutil.copytree(project, fresh)
    (fresh / "proposals.parquet").unlink()
    assert propose(images, fresh, classes=csv, workers=1).matched == len(MORE)
    assert read_rows(fresh) == after
