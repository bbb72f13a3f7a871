"""Bad input is refused before anything is written, naming every offender; an output folder is
never left half-written."""
from __future__ import annotations

import shutil

import pyarrow.parquet as pq
import pytest

from tests.builders.conftest import PAIRS_PER_CLASS, cli, tree_bytes


def build_args(inputs, images, out, *extra):
    return ["build", "--manifest", inputs.manifest, "--images", images, "--out", out,
            "--pairs-per-class", PAIRS_PER_CLASS, *extra]


def test_missing_and_changed_files_are_all_named_and_nothing_is_written(release_inputs, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(release_inputs.images, images)
    rows = release_inputs.pairs
    missing_a, missing_b, changed = rows[30]["file_a"], rows[200]["file_b"], rows[100]["file_a"]
    (images / missing_a).unlink()
    (images / missing_b).unlink()
    (images / changed).write_bytes((images / changed).read_bytes() + b"changed")
    out = tmp_path / "release" / "semantic_pairs"
    result = cli(*build_args(release_inputs, images, out, "--allow-short"))
    assert result.returncode == 1
    assert "3 of " in result.stderr and "nothing was written" in result.stderr
    assert f"{missing_a}: no such image" in result.stderr and f"{missing_b}: no such image" in result.stderr
    assert f"{changed}: bytes differ from the release" in result.stderr
    assert not (tmp_path / "release").exists() or list((tmp_path / "release").iterdir()) == []


def test_short_classes_are_listed_and_refused_without_allow_short(release_inputs, tmp_path):
    out = tmp_path / "semantic_pairs"
    result = cli(*build_args(release_inputs, release_inputs.images, out))
    assert result.returncode == 1
    assert "classes short of 60 pairs (pass --allow-short to build anyway)" in result.stderr
    assert "n04554684 (washer): 2 of 60 pairs" in result.stderr
    assert "n01629819 (European_fire_salamander): 20 of 60 pairs" in result.stderr
    assert "169 selected class(es) have no pairs: n01491361, " in result.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_refuses_to_replace_a_folder_that_is_not_a_release(release_inputs, tmp_path):
    out = tmp_path / "my_thesis"
    out.mkdir()
    (out / "chapter1.tex").write_text("precious")
    result = cli(*build_args(release_inputs, release_inputs.images, out, "--allow-short"))
    assert result.returncode == 2
    assert "is not a semantic-pairs release" in result.stderr and "refusing to replace it" in result.stderr
    assert (out / "chapter1.tex").read_text() == "precious" and len(list(tmp_path.iterdir())) == 1


def test_unreadable_manifest_is_named(release_inputs, tmp_path):
    manifest = tmp_path / "manifest"
    shutil.copytree(release_inputs.manifest, manifest)
    (manifest / "pairs.parquet").write_bytes(b"PAR1 this is not parquet")
    result = cli("build", "--manifest", manifest, "--images", release_inputs.images, "--out", tmp_path / "out")
    assert result.returncode == 1 and "invalid manifest, nothing built" in result.stderr
    assert "pairs.parquet: not a readable Parquet file" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("bad_file, message", [
    ("../../../etc/passwd", "expected 'n01443537/<file name>'"),
    ("n01629819/n01629819_1.JPEG", "label 0 does not name"),
])
def test_a_tampered_manifest_release_is_refused_by_materialize(built_release, release_inputs, tmp_path,
                                                               bad_file, message):
    """A manifest release comes from elsewhere: paths in it must not escape the ImageNet root."""
    release = tmp_path / "release"
    shutil.copytree(built_release / "manifest", release)
    table = pq.read_table(release / "sp-00000-of-00001.parquet")
    files = table.column("file_a").to_pylist()
    files[0] = bad_file
    if bad_file.startswith("n01629819"):
        table = table.set_column(table.schema.get_field_index("wnid"), "wnid",
                                 [["n01629819"] + table.column("wnid").to_pylist()[1:]])
    table = table.set_column(table.schema.get_field_index("file_a"), "file_a", [files])
    pq.write_table(table, release / "sp-00000-of-00001.parquet")
    result = cli("materialize", release, "--imagenet", release_inputs.images, "--out", tmp_path / "out")
    assert result.returncode == 1, result.stderr
    assert "the manifest release is inconsistent" in result.stderr and message in result.stderr
    assert not (tmp_path / "out").exists()


def test_publish_without_a_token_stops_before_any_request(built_release, tmp_path, monkeypatch):
    from huggingface_hub import constants

    for variable in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no_token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no_stored_tokens"))
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens: a request would fail
    result = cli("publish", built_release, "--repo-id", "sp-org/semantic-pairs")
    assert result.returncode == 2
    assert "no Hugging Face token found: run `hf auth login` or set HF_TOKEN" in result.stderr


def test_rebuilding_replaces_an_earlier_release_in_one_step(built_release, release_inputs, tmp_path):
    out = tmp_path / "semantic_pairs"
    shutil.copytree(built_release, out)
    result = cli("build", "--manifest", release_inputs.manifest, "--images", release_inputs.images, "--out", out,
                 "--pairs-per-class", 20, "--allow-short")
    assert result.returncode == 0, result.stderr
    assert "| target pairs per class | 20 |" in (out / "README.md").read_text()
    assert not (out / "sp" / "tier100").exists()  # nothing of the old build survives
    assert sorted(p.name for p in tmp_path.iterdir()) == ["semantic_pairs"]  # no staging or old copy left
    assert tree_bytes(out) != tree_bytes(built_release)


def _flip_last_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def test_files_found_changed_while_writing_are_all_named_and_nothing_is_left(release_inputs, tmp_path):
    """No file is missing, so the build starts writing and meets the changed bytes as it reads
    them: it stops, still names every changed file (one sits in a shard no writer reached), and
    deletes its staging folder and the folders it made."""
    images = tmp_path / "images"
    shutil.copytree(release_inputs.images, images)
    rows = release_inputs.pairs
    same_size, grown, late = rows[0]["file_a"], rows[100]["file_b"], rows[-1]["file_b"]
    _flip_last_byte(images / same_size)
    (images / grown).write_bytes((images / grown).read_bytes() + b"changed")
    _flip_last_byte(images / late)
    out = tmp_path / "release" / "semantic_pairs"
    result = cli(*build_args(release_inputs, images, out, "--allow-short", "--workers", "1"))
    assert result.returncode == 1, result.stderr
    assert "3 of " in result.stderr and "nothing was written" in result.stderr
    for file in (same_size, grown, late):
        assert f"{file}: bytes differ from the release" in result.stderr
    assert not (tmp_path / "release").exists()


def test_a_refused_rebuild_leaves_the_earlier_release_untouched(built_release, release_inputs, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(release_inputs.images, images)
    changed = release_inputs.pairs[0]["file_a"]  # rank 0: in every build
    _flip_last_byte(images / changed)
    out = tmp_path / "semantic_pairs"
    shutil.copytree(built_release, out)
    before = tree_bytes(out)
    result = cli(*build_args(release_inputs, images, out, "--allow-short", "--pairs-per-class", 20))
    assert result.returncode == 1 and f"{changed}: bytes differ from the release" in result.stderr
    assert tree_bytes(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "semantic_pairs"]  # no staging left
