"""`manifest import` through the decision store: malformed CSVs named by line and column, a
readable message for 100,000 bad rows, names too long for a file system, outputs that cannot be
written, one transaction with the same policy however many processes hash, and generated bad CSVs
that never end in a traceback or change a previous manifest."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pair_manifest.classes import load_selection, selection_from_wnids
from pair_manifest.errors import ProblemsFound, UserError
from pair_manifest.importer import import_pairs
from tests.support.faults import tmpfs

WNID = "n03085013"
CLI = Path(sys.executable).parent / "semantic-pairs"


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def files(sample_images):
    return [f"{WNID}/{p.name}" for p in sorted((sample_images / WNID).iterdir())]


def tree_digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()} if folder.exists() else {}


def test_a_malformed_header_is_refused_naming_line_and_column(tmp_path, sample_images, files):
    cases = {
        "wnid,file_a,file_b,file_a\n": "line 1, column 4: 'file_a' names column 2 again",
        "wnid,file_a,file_b,colour\n": "line 1, column 4: unknown column 'colour' (allowed: wnid, file_a, file_b, tags, annotator)",
        "wnid,file_a\n": "missing column(s) file_b",
    }
    for header, message in cases.items():
        path = tmp_path / "pairs.csv"
        path.write_text(header + f"{WNID},{files[0]},{files[1]}\n")
        result = cli("manifest", "import", path, "--images", sample_images, "--out", tmp_path / "out")
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_row_with_more_fields_than_the_header_is_a_named_problem(tmp_path, sample_images, files):
    path = tmp_path / "pairs.csv"
    path.write_text("wnid,file_a,file_b\n"
                    f"{WNID},{files[0]},{files[1]}\n"
                    f"{WNID},{files[2]},{files[3]},viewpoint\n"  # one value more than the header names
                    f"{WNID},{files[4]}\n")
    with pytest.raises(ProblemsFound) as refused:
        import_pairs(path, sample_images, tmp_path / "out", load_selection())
    assert refused.value.problems == [
        "pairs.csv line 3, column 4: 4 fields, the header names 3 columns",
        "pairs.csv line 4: file_b is empty",
    ]
    assert not (tmp_path / "out").exists()


def test_100000_bad_rows_make_a_readable_message(tmp_path, sample_images):
    path = tmp_path / "pairs.csv"
    path.write_text("wnid,file_a,file_b\n" + "n99999999,a,b\n" * 100_000)
    result = cli("manifest", "import", path, "--images", sample_images, "--out", tmp_path / "out")
    assert result.returncode == 1 and "100000 problem(s)" in result.stderr
    assert len(result.stderr.splitlines()) < 60 and "and 99950 more problem(s)" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_file_name_longer_than_a_file_system_allows_is_refused_clearly(tmp_path, sample_images, files):
    path = tmp_path / "pairs.csv"
    long_name = f"{WNID}/{'x' * 300}.JPEG"
    path.write_text(f"wnid,file_a,file_b\n{WNID},{files[0]},{long_name}\n")
    result = cli("manifest", "import", path, "--images", sample_images, "--out", tmp_path / "out")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "pairs.csv line 2" in result.stderr and "the file name is 305 bytes, longer than a file system allows" \
        in result.stderr


def test_an_output_that_is_a_file_is_refused_before_any_work(tmp_path, sample_images, files):
    path = tmp_path / "pairs.csv"
    path.write_text(f"wnid,file_a,file_b\n{WNID},{files[0]},{files[1]}\n")
    blocker = tmp_path / "taken"
    blocker.write_text("precious")
    for out in (blocker, blocker / "manifest"):
        result = cli("manifest", "import", path, "--images", sample_images, "--out", out)
        assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
        assert result.stderr.startswith(f"error: {out}: ")
    assert blocker.read_text() == "precious"


def test_an_output_on_a_read_only_file_system_is_one_line(tmp_path, sample_images, files):
    path = tmp_path / "pairs.csv"
    path.write_text(f"wnid,file_a,file_b\n{WNID},{files[0]},{files[1]}\n")
    with tmpfs(tmp_path / "ro", "1m", read_only=True) as disk:
        result = cli("manifest", "import", path, "--images", sample_images, "--out", disk / "manifest")
        assert list(disk.iterdir()) == []
    assert result.returncode == 2
    assert result.stderr == f"error: {disk / 'manifest'}: cannot write the manifest folder here ({disk}: " \
                            "Read-only file system)\n"


def test_one_transaction_on_every_core_gives_the_same_manifest_and_the_same_refusals(tmp_path, sample_images,
                                                                                    monkeypatch):
    """Every pair of the sample (674 photos: hashed by a pool of two processes, or by this one):
    same bytes; and a policy refusal found in the single transaction names its line."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    wnids = sorted(p.name for p in sample_images.iterdir())
    rows = []
    for wnid in wnids:
        names = sorted(p.name for p in (sample_images / wnid).iterdir())
        rows += [f"{wnid},{wnid}/{a},{wnid}/{b}" for a, b in zip(names[0::2], names[1::2])]
    path = tmp_path / "pairs.csv"
    path.write_text("wnid,file_a,file_b\n" + "\n".join(rows) + "\n")
    selection = selection_from_wnids(wnids)
    import_pairs(path, sample_images, tmp_path / "pool", selection, workers=2)
    import_pairs(path, sample_images, tmp_path / "here", selection, workers=1)
    assert tree_digest(tmp_path / "pool") == tree_digest(tmp_path / "here")
    first = rows[0].split(",")
    path.write_text("wnid,file_a,file_b\n" + "\n".join(rows) + f"\n{first[0]},{first[1]},{rows[1].split(',')[1]}\n")
    with pytest.raises(ProblemsFound) as refused:
        import_pairs(path, sample_images, tmp_path / "again", selection, workers=2)
    assert len(refused.value.problems) == 1
    assert refused.value.problems[0].startswith(f"pairs.csv line {len(rows) + 2}: {first[1]}: already in an accepted pair")


# -- generated bad input ----------------------------------------------------------------------

FIELD = st.one_of(
    st.sampled_from(["", " ", WNID, "n99999999", "not a wnid", "n01443537", f"{WNID}/", f"{WNID}/../x.JPEG",
                     "/etc/passwd", f"{WNID}/sub/x.JPEG", f"{WNID}/{'y' * 300}.JPEG", f"{WNID}/missing.JPEG",
                     "background|shiny", "viewpoint|viewpoint", '"quoted, comma"', "a\nb", "\x00", "é|ü"]),
    st.text(max_size=12),
)
HEADER = st.lists(st.sampled_from(["wnid", "file_a", "file_b", "tags", "annotator", "extra", "wnid "]),
                  min_size=0, max_size=6)


@st.composite
def bad_csvs(draw, files):
    header = draw(st.one_of(st.just(["wnid", "file_a", "file_b", "tags", "annotator"]), HEADER))
    real = st.sampled_from(files[:8])
    rows = draw(st.lists(st.lists(st.one_of(FIELD, real), min_size=0, max_size=7), min_size=0, max_size=5))
    text = ",".join(header) + "\n" + "\n".join(",".join(row) for row in rows)
    return draw(st.sampled_from([text, text.replace(",", ";"), text.encode("utf-8", "surrogatepass")[:-3].decode(
        "utf-8", "ignore")]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_generated_bad_csvs_are_refused_by_name_and_never_touch_the_previous_manifest(tmp_path, sample_images,
                                                                                     files, data):
    out = tmp_path / "manifest"
    if not out.exists():
        good = tmp_path / "good.csv"
        good.write_text(f"wnid,file_a,file_b\n{WNID},{files[10]},{files[11]}\n")
        import_pairs(good, sample_images, out, load_selection())
    before = tree_digest(out)
    path = tmp_path / "generated.csv"
    text = data.draw(bad_csvs(files))
    path.write_bytes(text.encode("utf-8", "surrogatepass") if data.draw(st.booleans()) else
                     text.encode("utf-8", "surrogatepass") + b"\xff\xfe")
    try:
        import_pairs(path, sample_images, out, load_selection())
    except UserError as error:
        assert "generated.csv" in str(error)
        assert tree_digest(out) == before
    # A CSV that happens to be valid is imported: the output is a manifest again.
