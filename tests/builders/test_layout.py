"""Tiers for any target, shard and row-group cuts that bound file size and memory, and the
AP random draw."""
from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from builders import layout
from tests.builders.conftest import cli, tree_bytes


@pytest.mark.parametrize("target, expected", [
    (157, [("tier050", 0, 50), ("tier100", 50, 100), ("tier157", 100, 157)]),
    (120, [("tier050", 0, 50), ("tier100", 50, 100), ("tier157", 100, 120)]),
    (10, [("tier050", 0, 10)]),
    (50, [("tier050", 0, 50)]),
    (200, [("tier050", 0, 50), ("tier100", 50, 100), ("tier157", 100, 157), ("tier200", 157, 200)]),
])
def test_tier_boundaries_stay_at_the_papers_subsets(target, expected):
    assert [(t.name, t.start, t.stop) for t in layout.tiers_for(target)] == expected


def test_subset_configs_list_only_their_tiers():
    tiers = layout.tiers_for(200)
    assert layout.config_spec("sp_50").folders(tiers) == ["sp/tier050"]
    assert layout.config_spec("ap_100").folders(tiers) == ["ap/tier050", "ap/tier100"]
    assert layout.config_spec("sp").folders(tiers) == ["sp/tier050", "sp/tier100", "sp/tier157", "sp/tier200"]


@pytest.mark.parametrize("kind", layout.KINDS)
@pytest.mark.parametrize("images", [False, True])
def test_arrow_schema_is_the_one_datasets_makes_from_the_features(kind, images):
    """The build writes `layout.arrow_schema` without importing datasets; load_dataset reads the
    features back from its metadata, so it must be exactly datasets' own serialization."""
    wnids = ["n01443537", "n01629819", "n04557648"]
    ours = layout.arrow_schema(kind, wnids, images=images)
    theirs = layout.features(kind, wnids, images=images).arrow_schema
    assert ours.equals(theirs, check_metadata=True)
    assert ours.metadata == theirs.metadata


@pytest.mark.parametrize("kind", layout.KINDS)
@pytest.mark.parametrize("images", [False, True])
def test_card_features_are_the_ones_datasets_writes(kind, images):
    """The card's dataset_info is written without importing datasets; it must be what
    DatasetInfo._to_yaml_dict() makes of the same features and split."""
    from datasets import DatasetInfo, SplitDict, SplitInfo

    wnids = ["n01443537", "n01629819", "n04557648"]
    splits = SplitDict()
    splits.add(SplitInfo(name=layout.SPLIT, num_bytes=1234, num_examples=56))
    theirs = DatasetInfo(features=layout.features(kind, wnids, images=images), splits=splits,
                         download_size=789, dataset_size=1234)._to_yaml_dict()
    assert layout.yaml_features(kind, wnids, images=images) == theirs["features"]
    assert list(theirs) == ["features", "splits", "download_size", "dataset_size"]
    assert theirs["splits"] == [{"name": layout.SPLIT, "num_bytes": 1234, "num_examples": 56}]


def test_small_limits_cut_many_shards_and_row_groups_that_still_load(release_inputs, tmp_path, monkeypatch):
    """Same code path as the 500 MB / 64 MiB limits of a real build, at a scale the sample reaches."""
    monkeypatch.setattr(layout, "SHARD_IMAGE_BYTES", 400_000)
    monkeypatch.setattr(layout, "ROW_GROUP_IMAGE_BYTES", 60_000)
    out = tmp_path / "semantic_pairs"
    result = cli("build", "--manifest", release_inputs.manifest, "--images", release_inputs.images, "--out", out,
                 "--pairs-per-class", 60, "--allow-short")
    assert result.returncode == 0, result.stderr
    shards = sorted(out.glob("sp/tier050/*.parquet"))
    assert len(shards) > 3
    assert [p.name for p in shards] == [f"train-{i:05d}-of-{len(shards):05d}.parquet" for i in range(len(shards))]
    def image_bytes(table):
        return sum(len(v["bytes"]) for column in ("image_a", "image_b") for v in table.column(column).to_pylist())

    rows = 0
    for shard in shards:
        parquet = pq.ParquetFile(shard)
        rows += parquet.metadata.num_rows
        assert image_bytes(parquet.read()) <= 400_000 or parquet.metadata.num_rows == 1
        assert parquet.metadata.num_row_groups >= 2
        for i in range(parquet.metadata.num_row_groups):
            group = parquet.read_row_group(i)
            assert image_bytes(group) <= 60_000 or group.num_rows == 1
    assert rows == release_inputs.expected_rows(60, 50)
    from datasets import Image, load_dataset

    loaded = load_dataset(str(out), "sp", split="train", cache_dir=str(tmp_path / "cache"))
    assert loaded.num_rows == release_inputs.expected_rows(60)
    raw = loaded.cast_column("image_b", Image(decode=False))
    assert all(r["image_b"]["bytes"] == (release_inputs.images / r["file_b"]).read_bytes() for r in raw)


def test_random_ap_is_a_seeded_independent_draw(release_inputs, built_release, tmp_path):
    def build(seed, name):
        out = tmp_path / name
        result = cli("build", "--manifest", release_inputs.manifest, "--images", release_inputs.images, "--out", out,
                     "--pairs-per-class", 60, "--allow-short", "--ap-source", "random", "--seed", seed)
        assert result.returncode == 0, result.stderr
        return out

    first, same, other = build(7, "a"), build(7, "b"), build(8, "c")
    assert tree_bytes(first) == tree_bytes(same)
    ap = pq.read_table(first / "manifest" / "ap-00000-of-00001.parquet").to_pylist()
    sp = pq.read_table(first / "manifest" / "sp-00000-of-00001.parquet").to_pylist()
    other_ap = pq.read_table(other / "manifest" / "ap-00000-of-00001.parquet").column("file").to_pylist()
    assert [r["file"] for r in ap] != other_ap
    assert sum(r["file"] != s["file_a"] for r, s in zip(ap, sp)) > len(ap) // 2  # not the pairs' image_a
    per_class = {}
    for row in ap:
        per_class.setdefault(row["wnid"], []).append(row)
    for wnid, rows in per_class.items():
        assert len(rows) == sum(1 for s in sp if s["wnid"] == wnid)  # balanced with SP
        assert len({r["sha256"] for r in rows}) == len(rows)
        assert [r["rank_in_class"] for r in rows] == list(range(len(rows)))
    assert "`random`, seed 7" in (first / "README.md").read_text()
    verify = cli("verify", first, "--manifest", release_inputs.manifest, "--images", release_inputs.images)
    assert verify.returncode == 0, verify.stderr
    # SP is the same whatever the AP draw
    assert (first / "sp" / "tier050" / "train-00000-of-00001.parquet").read_bytes() == \
        (built_release / "sp" / "tier050" / "train-00000-of-00001.parquet").read_bytes()


def test_ap_shards_follow_sp_shards_and_each_photo_is_read_once(release_inputs, tmp_path, monkeypatch):
    """With AP = each pair's image_a, one job writes SP shard k and AP shard k from the same bytes:
    AP shard k holds exactly SP shard k's image_a, row group for row group, and every photo is
    read (and hashed) once in the whole build."""
    from builders import shards

    monkeypatch.setattr(layout, "SHARD_IMAGE_BYTES", 400_000)
    monkeypatch.setattr(layout, "ROW_GROUP_IMAGE_BYTES", 60_000)
    reads: dict[str, int] = {}
    real_read_into = shards._read_into

    def counting_read_into(name, source, target):
        reads[name] = reads.get(name, 0) + 1
        return real_read_into(name, source, target)

    monkeypatch.setattr(shards, "_read_into", counting_read_into)
    out = tmp_path / "semantic_pairs"
    result = cli("build", "--manifest", release_inputs.manifest, "--images", release_inputs.images, "--out", out,
                 "--pairs-per-class", 60, "--allow-short")
    assert result.returncode == 0, result.stderr
    sp_rows = pq.read_table(out / "manifest" / "sp-00000-of-00001.parquet").to_pylist()
    assert set(reads) == {r[c] for r in sp_rows for c in ("file_a", "file_b")}
    assert set(reads.values()) == {1}
    for tier in ("tier050", "tier100"):
        sp_files = sorted(out.glob(f"sp/{tier}/*.parquet"))
        ap_files = sorted(out.glob(f"ap/{tier}/*.parquet"))
        assert sp_files and [p.name for p in ap_files] == [p.name for p in sp_files]
        assert len(sp_files) > 1 or tier == "tier100"  # tier100: one class's ranks 50-59
        for sp_file, ap_file in zip(sp_files, ap_files):
            sp, ap = pq.ParquetFile(sp_file), pq.ParquetFile(ap_file)
            assert ap.metadata.num_row_groups == sp.metadata.num_row_groups >= 1
            for i in range(sp.metadata.num_row_groups):
                sp_group, ap_group = sp.read_row_group(i), ap.read_row_group(i)
                assert ap_group.column("file").to_pylist() == sp_group.column("file_a").to_pylist()
                assert ap_group.column("image").to_pylist() == sp_group.column("image_a").to_pylist()
    verify = cli("verify", out)
    assert verify.returncode == 0, verify.stderr
