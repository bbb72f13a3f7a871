"""Broken manifests, hand-made and generated: `manifest validate`, `manifest stats`, `manifest merge`
and `build` refuse every one with a message naming the file or column, never a traceback, and
write nothing (the output folders are hashed before and after)."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pair_manifest.classes import load_selection
from pair_manifest.importer import import_pairs
from pair_manifest.manifest import META_CLASSES, META_VERSION
from tests.builders.conftest import cli

WNIDS = ("n03085013", "n01629819")


@pytest.fixture(scope="module")
def good_manifest(tmp_path_factory, sample_images) -> Path:
    """A valid manifest of 6 pairs in two classes, imported from the bundled photos, with a
    decision log that also holds a reject and an undo."""
    root = tmp_path_factory.mktemp("good_manifest")
    rows = []
    for wnid in WNIDS:
        names = sorted(p.name for p in (sample_images / wnid).iterdir())[:6]
        rows += [f"{wnid},{wnid}/{names[i]},{wnid}/{names[i + 1]},background|pattern,ann" for i in (0, 2, 4)]
    csv_path = root / "pairs.csv"
    csv_path.write_text("wnid,file_a,file_b,tags,annotator\n" + "\n".join(rows) + "\n")
    import_pairs(csv_path, sample_images, root / "manifest", load_selection())
    return root / "manifest"


def tree_digest(folder: Path) -> dict[str, str]:
    if not folder.exists():
        return {}
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def broken_copy(good: Path, tmp: Path, file: str, column: str, row: int, value) -> Path:
    """A copy of the manifest with one value of `file`'s `column` replaced (None for a null)."""
    manifest = tmp / "manifest"
    shutil.copytree(good, manifest)
    table = pq.read_table(manifest / file)
    field = table.schema.field(column)
    values = table.column(column).to_pylist()
    values[row] = value
    pq.write_table(table.set_column(table.schema.get_field_index(column), pa.field(column, field.type),
                                    pa.array(values, field.type)), manifest / file)
    return manifest


def refused_everywhere(manifest: Path, images: Path, tmp: Path, named: str) -> None:
    """Each command that reads a manifest exits non-zero, names `named`, and writes nothing."""
    release = tmp / "release"
    release.mkdir(exist_ok=True)
    (release / "keep.txt").write_text("an unrelated file that must survive")
    before_manifest, before_release = tree_digest(manifest), tree_digest(release)
    outcomes = {
        "validate": cli("manifest", "validate", manifest, "--images", images),
        "stats": cli("manifest", "stats", manifest),
        "merge": cli("manifest", "merge", manifest, manifest, "--out", tmp / "merged"),
        "build": cli("build", "--manifest", manifest, "--images", images, "--out", tmp / "built",
                     "--pairs-per-class", "3", "--allow-short"),
    }
    for command, result in outcomes.items():
        assert result.returncode != 0, f"{command} accepted a broken manifest:\n{result.stdout}"
        assert result.stderr.startswith("error: "), (command, result.stderr)
        assert "Traceback" not in result.stderr
        assert named in result.stderr, f"{command} does not name {named!r}:\n{result.stderr}"
    assert tree_digest(manifest) == before_manifest and tree_digest(release) == before_release
    assert not (tmp / "merged").exists() and not (tmp / "built").exists()


@pytest.mark.parametrize("column", ["file_a", "wnid", "label", "sha256_b", "tags", "annotator", "decided_at",
                                    "rank_in_class", "review_status", "pair_id", "source"])
def test_a_null_in_any_pairs_column_is_named(good_manifest, sample_images, tmp_path, column):
    manifest = broken_copy(good_manifest, tmp_path, "pairs.parquet", column, 1, None)
    refused_everywhere(manifest, sample_images, tmp_path, f"column '{column}' has 1 null value(s) (rows 1)")


def test_a_null_tag_inside_the_list_is_named(good_manifest, sample_images, tmp_path):
    manifest = broken_copy(good_manifest, tmp_path, "pairs.parquet", "tags", 2, ["background", None])
    refused_everywhere(manifest, sample_images, tmp_path, "column 'tags' has null items in 1 row(s) (rows 2)")


def test_a_null_in_the_decision_log_is_named(good_manifest, sample_images, tmp_path):
    manifest = broken_copy(good_manifest, tmp_path, "decisions.parquet", "verdict", 0, None)
    refused_everywhere(manifest, sample_images, tmp_path, "column 'verdict' has 1 null value(s)")


def test_a_decision_log_no_store_could_write_is_refused(good_manifest, sample_images, tmp_path):
    manifest = broken_copy(good_manifest, tmp_path, "decisions.parquet", "verdict", -1, "maybe")
    refused_everywhere(manifest, sample_images, tmp_path, "verdict 'maybe' is not one of accept, reject, skip, undo")


# -- generated -------------------------------------------------------------------------------

STRING_COLUMNS = ("pair_id", "wnid", "file_a", "file_b", "review_status")
INT_COLUMNS = ("label", "rank_in_class")


def mutations():
    """One way of breaking a valid manifest, as (description, function(folder) -> None)."""
    texts = st.text(min_size=0, max_size=40)
    return st.one_of(
        st.tuples(st.just("null"), st.sampled_from(("pairs", "decisions")), st.integers(0, 30), st.integers(0, 30)),
        st.tuples(st.just("drop"), st.sampled_from(("pairs", "decisions")), st.integers(0, 30)),
        st.tuples(st.just("retype"), st.sampled_from(("pairs", "decisions")), st.integers(0, 30)),
        st.tuples(st.just("text"), st.sampled_from(STRING_COLUMNS), st.integers(0, 5), texts),
        st.tuples(st.just("number"), st.sampled_from(INT_COLUMNS), st.integers(0, 5),
                  st.integers(-2**31, 2**31 - 1)),
        st.tuples(st.just("tag"), st.integers(0, 5), texts),
        st.tuples(st.just("metadata"), st.sampled_from((META_VERSION, META_CLASSES)),
                  st.binary(max_size=40) | st.sampled_from([b"[]", b'["n99999999"]', b"{}", b"null", b"2"])),
        st.tuples(st.just("bytes"), st.sampled_from(("pairs", "decisions")), st.integers(0, 100_000),
                  st.binary(max_size=8)),
    )


def apply(mutation, folder: Path) -> bool:
    """Break the manifest in `folder`; False when the drawn mutation happens to change nothing."""
    kind = mutation[0]
    if kind in ("null", "drop", "retype", "bytes"):
        path = folder / f"{mutation[1]}.parquet"
    else:
        path = folder / "pairs.parquet"
    if kind == "bytes":  # cut the file short, or add bytes after its end
        data = path.read_bytes()
        cut = mutation[2] % len(data)
        path.write_bytes(data[:cut] if not mutation[3] else data + mutation[3])
        return True
    table = pq.read_table(path)
    metadata = dict(table.schema.metadata)
    if kind == "metadata":
        if metadata.get(mutation[1]) == mutation[2]:
            return False
        metadata[mutation[1]] = mutation[2]
        table = table.replace_schema_metadata(metadata)
    elif kind in ("null", "drop", "retype"):
        name = table.column_names[mutation[2] % table.num_columns]
        field = table.schema.field(name)
        if kind == "drop":
            table = table.drop_columns([name])
        elif kind == "retype":
            new_type = pa.int64() if pa.types.is_string(field.type) else pa.string()
            table = table.set_column(table.schema.get_field_index(name), pa.field(name, new_type),
                                     pa.nulls(table.num_rows, new_type).fill_null(
                                         pa.scalar(7 if new_type == pa.int64() else "7", new_type)))
        else:
            if name in ("review_of", "undo_of"):
                return False  # nullable by design
            values = table.column(name).to_pylist()
            values[mutation[3] % len(values)] = None
            table = table.set_column(table.schema.get_field_index(name), pa.field(name, field.type),
                                     pa.array(values, field.type))
    else:
        column = "tags" if kind == "tag" else mutation[1]
        row = mutation[2 if kind != "tag" else 1] % table.num_rows
        values = table.column(column).to_pylist()
        if kind == "tag":
            new = mutation[2]
            if new in ("background", "occlusion", "pattern", "illumination", "viewpoint", "other"):
                return False
            values[row] = [*values[row], new]
        else:
            new = mutation[3]
            if values[row] == new or (column == "review_status" and new in ("unreviewed", "confirmed")):
                return False
            values[row] = new
        table = table.set_column(table.schema.get_field_index(column), column,
                                 pa.array(values, table.schema.field(column).type))
    table = table.replace_schema_metadata(metadata if kind != "metadata" else table.schema.metadata)
    pq.write_table(table, path)
    return True


@settings(max_examples=120, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(mutation=mutations())
def test_generated_broken_manifests_are_refused_by_every_command(good_manifest, sample_images, tmp_path, mutation):
    case = tmp_path / hashlib.sha256(repr(mutation).encode()).hexdigest()[:12]
    manifest = case / "manifest"
    shutil.copytree(good_manifest, manifest)
    if not apply(mutation, manifest):
        return
    before = tree_digest(manifest)
    validate = cli("manifest", "validate", manifest, "--images", sample_images)
    assert validate.returncode == 1, f"{mutation} accepted:\n{validate.stdout}"
    assert validate.stderr.startswith("error: ") and "Traceback" not in validate.stderr
    assert str(manifest) in validate.stderr
    build = cli("build", "--manifest", manifest, "--images", sample_images, "--out", case / "built",
                "--pairs-per-class", "3", "--allow-short")
    assert build.returncode != 0 and build.stderr.startswith("error: ") and str(manifest) in build.stderr
    for command in (("manifest", "stats", manifest), ("manifest", "merge", manifest, manifest, "--out", case / "m")):
        result = cli(*command)
        assert result.returncode != 0 and result.stderr.startswith("error: "), (command, mutation, result.stderr)
    assert tree_digest(manifest) == before
    assert not (case / "built").exists() and not (case / "m").exists()
    shutil.rmtree(case)


def test_the_good_manifest_passes_every_command(good_manifest, sample_images, tmp_path):
    """The control for the tests above: the same commands accept the unbroken manifest."""
    assert cli("manifest", "validate", good_manifest, "--images", sample_images).returncode == 0
    assert cli("manifest", "stats", good_manifest).returncode == 0
    assert cli("manifest", "merge", good_manifest, good_manifest, "--out", tmp_path / "m").returncode == 0
    build = cli("build", "--manifest", good_manifest, "--images", sample_images, "--out", tmp_path / "built",
                "--pairs-per-class", "3", "--allow-short")
    assert build.returncode == 0, build.stderr
    assert (tmp_path / "built" / "README.md").is_file() and (tmp_path / "built" / "manifest").is_dir()
