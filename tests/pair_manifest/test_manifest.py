"""Manifest export, import, validate and merge on real images, through the real CLI."""
from __future__ import annotations

import csv
import os
import stat
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pair_manifest.errors import UserError
from pair_manifest.manifest import PAIRS_FILE, export_store, read_manifest, write_table_atomically
from pair_manifest.store import DecisionStore, NewDecision
from pair_manifest.validate import validate_manifest

WNID = "n03085013"


def cli(*args):
    result = subprocess.run([sys.executable, "-m", "semantic_pairs_cli", *map(str, args)],
                            capture_output=True, text=True)
    assert "Traceback" not in result.stderr, result.stderr
    return result


@pytest.fixture
def files(sample_images):
    return [f"{WNID}/{p.name}" for p in sorted((sample_images / WNID).iterdir())]


def write_csv(path, rows, header=("wnid", "file_a", "file_b", "tags", "annotator")):
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_export_is_reproducible_and_has_the_fixed_columns(tmp_path, sample_images, files):
    store = DecisionStore.for_project(tmp_path / "p", images_root=sample_images)
    for i in range(3):
        store.record(NewDecision(f"k{i}", WNID, files[2 * i], files[2 * i + 1], "accept", "alice",
                                 ("background",)))
    store.record(NewDecision("r", WNID, files[8], files[9], "reject", "alice"))
    export_store(store, tmp_path / "m1")
    export_store(store, tmp_path / "m2")
    for name in ("pairs.parquet", "decisions.parquet"):
        assert (tmp_path / "m1" / name).read_bytes() == (tmp_path / "m2" / name).read_bytes()
    pairs = pq.read_table(tmp_path / "m1" / "pairs.parquet")
    assert pairs.column_names[:12] == ["pair_id", "wnid", "label", "file_a", "file_b", "sha256_a", "sha256_b",
                                       "tags", "annotator", "decided_at", "rank_in_class", "review_status"]
    assert pairs.schema.metadata[b"semantic_pairs.schema_version"] == b"1"
    assert pairs.column("rank_in_class").to_pylist() == [0, 1, 2]
    assert pq.read_table(tmp_path / "m1" / "decisions.parquet").num_rows == 4
    result = cli("manifest", "export", "--project", tmp_path / "p", "--out", tmp_path / "m3")
    assert result.returncode == 0 and "3 pairs" in result.stdout


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "pairs.parquet"
    write_table_atomically(pa.table({"x": [1]}), target)
    before = target.read_bytes()

    class Exploding:
        schema = pa.schema([("x", pa.int64())])

        def __getattr__(self, name):
            raise RuntimeError("disk full")

    with pytest.raises(Exception):
        write_table_atomically(Exploding(), target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["pairs.parquet"]  # no temp file left behind


def test_import_validate_and_stats_through_the_cli(tmp_path, sample_images, files):
    good = write_csv(tmp_path / "pairs.csv", [
        (WNID, files[0], files[1], "background|pattern", "ann"),
        (WNID, files[2], files[3], "", ""),
        ("n04554684", "n04554684/n04554684_16469.JPEG", "n04554684/n04554684_45672.JPEG", "occlusion", "bob"),
    ])
    result = cli("manifest", "import", good, "--images", sample_images, "--out", tmp_path / "m")
    assert result.returncode == 0, result.stderr
    manifest = read_manifest(tmp_path / "m")
    rows = manifest.pairs.to_pylist()
    assert [r["annotator"] for r in rows] == ["ann", "import", "bob"]
    assert rows[0]["tags"] == ["background", "pattern"]
    assert cli("manifest", "validate", tmp_path / "m", "--images", sample_images).returncode == 0
    stats = cli("manifest", "stats", tmp_path / "m", "--json")
    assert '"accepted": 3' in stats.stdout


def test_import_reports_every_bad_row_and_writes_nothing(tmp_path, sample_images, files):
    bad = write_csv(tmp_path / "bad.csv", [
        (WNID, files[0], files[0], "", ""),
        (WNID, files[0], f"{WNID}/missing.JPEG", "", ""),
        (WNID, f"{WNID}/../n04554684/n04554684_16469.JPEG", files[1], "", ""),
        ("n99999999", "a", "b", "", ""),
        (WNID, files[2], files[3], "shiny", ""),
        (WNID, files[4], files[5], "", ""),
        (WNID, files[5], files[4], "", ""),
        (WNID, files[4], files[6], "", ""),
    ])
    result = cli("manifest", "import", bad, "--images", sample_images, "--out", tmp_path / "out")
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("  - ")]
    assert [line.split(":")[0] for line in lines] == [f"  - bad.csv line {n}" for n in (2, 3, 4, 5, 6, 8, 9)]
    assert "repeats the pair of line 7" in lines[5]
    assert "already in an accepted pair" in lines[6]
    assert not (tmp_path / "out").exists()
    missing_column = write_csv(tmp_path / "cols.csv", [(WNID, files[0])], header=("wnid", "file_a"))
    result = cli("manifest", "import", missing_column, "--images", sample_images, "--out", tmp_path / "o")
    assert result.returncode == 2 and "missing column(s) file_b" in result.stderr


def test_validate_lists_every_problem(tmp_path, sample_images, files):
    write_csv(tmp_path / "p.csv", [(WNID, files[i], files[i + 1], "", "") for i in range(0, 8, 2)])
    assert cli("manifest", "import", tmp_path / "p.csv", "--images", sample_images, "--out", tmp_path / "m").returncode == 0
    table = pq.read_table(tmp_path / "m" / PAIRS_FILE)
    rows = table.to_pylist()
    rows[0]["label"] = 99
    rows[1]["file_b"] = rows[2]["file_a"]  # image reused (and pair_id now wrong)
    rows[3]["rank_in_class"] = 7
    rows[3]["sha256_a"] = "0" * 64
    broken = pa.Table.from_pylist(rows, schema=table.schema)
    write_table_atomically(broken, tmp_path / "m" / PAIRS_FILE)
    problems = validate_manifest(tmp_path / "m", sample_images)
    text = "\n".join(problems)
    assert "label 99" in text
    assert "pair_id does not match" in text
    assert f"{rows[2]['file_a']}: used in 2 accepted pairs" in text
    assert "rank_in_class must be 0..3" in text
    assert "bytes differ from the manifest's sha256_a" in text
    assert "no live accept decision" in text
    result = cli("manifest", "validate", tmp_path / "m", "--images", sample_images)
    assert result.returncode == 1 and f"{len(problems)} problem(s)" in result.stderr


def test_read_refuses_wrong_schema_naming_file_and_column(tmp_path):
    path = tmp_path / "pairs.parquet"
    pq.write_table(pa.table({"pair_id": ["x"]}), path)
    with pytest.raises(UserError, match="schema version 'missing'"):
        read_manifest(path)
    table = pa.table({"pair_id": [1]}).replace_schema_metadata({b"semantic_pairs.schema_version": b"1"})
    pq.write_table(table, path)
    with pytest.raises(UserError, match="column 'pair_id' is int64, expected string"):
        read_manifest(path)
    path.write_text("garbage")
    with pytest.raises(UserError, match="not a readable Parquet file"):
        read_manifest(path)


def test_merge_keeps_both_sides_and_reports_conflicts(tmp_path, sample_images, files):
    left = DecisionStore.for_project(tmp_path / "left", images_root=sample_images)
    right = DecisionStore.for_project(tmp_path / "right", images_root=sample_images)
    left.record(NewDecision("l1", WNID, files[0], files[1], "accept", "alice"))
    left.record(NewDecision("l2", WNID, files[2], files[3], "accept", "alice"))
    right.record(NewDecision("r1", WNID, files[4], files[5], "accept", "bob"))
    right.record(NewDecision("r2", WNID, files[0], files[6], "accept", "bob"))  # files[0] taken on the left
    right.record(NewDecision("r3", WNID, files[2], files[3], "reject", "bob"))  # left accepted this pair
    export_store(left, tmp_path / "A")
    export_store(right, tmp_path / "B")
    result = cli("manifest", "merge", tmp_path / "A", tmp_path / "B", "--out", tmp_path / "C")
    assert result.returncode == 1
    assert result.stdout.count("conflict:") == 2
    merged = read_manifest(tmp_path / "C")
    assert {(r["file_a"], r["file_b"]) for r in merged.pairs.to_pylist()} == {
        (files[0], files[1]), (files[2], files[3]), (files[4], files[5])}
    conflicts = list(csv.DictReader((tmp_path / "C" / "conflicts.csv").open()))
    assert {c["annotator"] for c in conflicts} == {"bob"}
    assert "already in an accepted pair" in conflicts[0]["reason"]
    # Merging a manifest with itself is a no-op, byte for byte.
    assert cli("manifest", "merge", tmp_path / "A", tmp_path / "A", "--out", tmp_path / "AA").returncode == 0
    assert (tmp_path / "AA" / "pairs.parquet").read_bytes() == (tmp_path / "A" / "pairs.parquet").read_bytes()


def test_manifest_files_get_the_mode_the_umask_gives_like_release_files(tmp_path):
    """`mkstemp` alone makes 0600 files: a manifest shared with a team must be readable like the
    release files next to it, and a stricter umask must still be honoured."""
    previous = os.umask(0o022)
    try:
        write_table_atomically(pa.table({"x": [1]}), tmp_path / "shared.parquet")
        os.umask(0o077)
        write_table_atomically(pa.table({"x": [1]}), tmp_path / "private.parquet")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "shared.parquet").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "private.parquet").stat().st_mode) == 0o600


def test_a_failed_write_names_the_file_and_keeps_the_old_one(tmp_path):
    from pair_manifest.atomic import write_atomically

    target = tmp_path / "pairs.parquet"
    target.write_bytes(b"old")

    def full_disk(handle):
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError) as failed:
        write_atomically(target, full_disk)
    assert failed.value.filename == str(target) and failed.value.errno == 28
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["pairs.parquet"]


def test_validate_images_finds_copies_missing_and_changed_files_the_same_on_every_core(tmp_path, images_copy,
                                                                                       files):
    """`validate --images` checks pairs in worker processes: the problems and their order are
    those of one process. A re-encoded copy of a photo paired with it is one photo; a missing
    file and a changed file are named."""
    import io

    from PIL import Image

    from pair_manifest.images import sha256_file
    from pair_manifest.store import pair_id
    from pair_manifest.validate import _check_files

    write_csv(tmp_path / "p.csv", [(WNID, files[i], files[i + 1], "", "") for i in range(0, 12, 2)])
    assert cli("manifest", "import", tmp_path / "p.csv", "--images", images_copy, "--out", tmp_path / "m").returncode == 0
    rows = pq.read_table(tmp_path / "m" / PAIRS_FILE).to_pylist()
    copy = f"{WNID}/zz_reencoded_copy.JPEG"  # sorts after the original
    buffer = io.BytesIO()
    Image.open(images_copy / rows[2]["file_a"]).convert("RGB").save(buffer, "JPEG", quality=70)
    (images_copy / copy).write_bytes(buffer.getvalue())
    rows[2].update(file_b=copy, sha256_b=sha256_file(images_copy / copy), pair_id=pair_id(rows[2]["file_a"], copy))
    (images_copy / rows[4]["file_b"]).unlink()
    with open(images_copy / rows[5]["file_a"], "ab") as handle:
        handle.write(b"appended")
    expected = [f"pair {rows[2]['pair_id']}: {rows[2]['file_a']} and {copy} are near-duplicates (one photo)",
                f"{rows[4]['file_b']}: no such image under {images_copy}",
                f"{rows[5]['file_a']}: bytes differ from the manifest's sha256_a"]
    assert _check_files(rows, images_copy, progress=False, workers=1, pixels=True) == expected
    assert _check_files(rows, images_copy, progress=False, workers=2, pixels=True) == expected
    # Without pixels the copy's bytes match its own SHA-256: only the missing and changed files
    assert _check_files(rows, images_copy, progress=False, workers=2) == expected[1:]
    truncated = images_copy / rows[0]["file_b"]
    truncated.write_bytes(truncated.read_bytes()[:-300])  # a cut JPEG: structure, and bytes, are wrong
    assert f"{rows[0]['file_b']}: truncated: JPEG data ends without its end marker" in \
        _check_files(rows, images_copy, progress=False, workers=2)[0]
