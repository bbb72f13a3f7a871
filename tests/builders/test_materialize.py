"""materialize: the manifest release + one's own ImageNet copy -> the maintainer's folder, byte
for byte; a copy with missing or different files is refused with each file named."""
from __future__ import annotations

import shutil

from tests.builders.conftest import cli, tree_bytes


def test_materialize_from_a_release_folder_and_from_its_manifest_folder(built_release, release_inputs, tmp_path):
    for source in (built_release, built_release / "manifest"):
        out = tmp_path / source.name / "semantic_pairs"
        result = cli("materialize", source, "--imagenet", release_inputs.images, "--out", out)
        assert result.returncode == 0, result.stderr
        assert tree_bytes(out) == tree_bytes(built_release)


def test_every_missing_or_different_file_of_the_users_copy_is_listed(built_release, release_inputs, tmp_path):
    imagenet = tmp_path / "imagenet" / "train"
    shutil.copytree(release_inputs.images, imagenet)
    gone = ["n02123045/" + sorted(p.name for p in (imagenet / "n02123045").iterdir())[0],
            "n04557648/" + sorted(p.name for p in (imagenet / "n04557648").iterdir())[0]]
    recompressed = "n01443537/" + sorted(p.name for p in (imagenet / "n01443537").iterdir())[2]
    for file in gone:
        (imagenet / file).unlink()
    (imagenet / recompressed).write_bytes(b"\xff\xd8" + (imagenet / recompressed).read_bytes()[2:-10] + b"\xff\xd9")
    out = tmp_path / "semantic_pairs"
    result = cli("materialize", built_release / "manifest", "--imagenet", imagenet, "--out", out)
    assert result.returncode == 1
    for file in gone:
        assert f"{file}: no such image" in result.stderr
    assert f"{recompressed}: bytes differ from the release" in result.stderr
    assert "3 of " in result.stderr and "nothing was written" in result.stderr
    assert not out.exists()
