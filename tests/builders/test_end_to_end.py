"""Manifest -> build -> verify -> load_dataset, on the bundled sample, through the real CLI and
the real `datasets` loader."""
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pyarrow.parquet as pq
import pytest
import yaml

from tests.builders.conftest import GROWN_CLASS, PAIRS_PER_CLASS, TAGS, cli, tree_bytes

CONFIGS = ("sp", "sp_100", "sp_50", "ap", "ap_100", "ap_50", "sp_manifest", "ap_manifest")


def expected_rows(inputs, config: str) -> int:
    limit = {"sp_50": 50, "ap_50": 50, "sp_100": 100, "ap_100": 100}.get(config)
    return inputs.expected_rows(PAIRS_PER_CLASS, limit)


def test_verify_passes_against_manifest_and_images(built_release, release_inputs):
    result = cli("verify", built_release, "--manifest", release_inputs.manifest, "--images", release_inputs.images)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verified" in result.stdout
    for config in CONFIGS:
        assert f"{config} {expected_rows(release_inputs, config)}" in result.stdout
    pairs = expected_rows(release_inputs, "sp")
    assert f"{3 * pairs} embedded images hashed and decoded" in result.stdout  # sp: 2 per pair; ap: 1


def test_every_config_loads_with_original_bytes_and_right_counts(built_release, release_inputs, tmp_path):
    from datasets import Image, load_dataset

    originals = {}
    for config in CONFIGS:
        dataset = load_dataset(str(built_release), config, split="train", cache_dir=str(tmp_path / "cache"))
        assert dataset.num_rows == expected_rows(release_inputs, config), config
        assert dataset.features["label"].names[:2] == ["n01443537", "n01491361"]  # wnids, ImageNet order
        assert len(dataset.features["label"].names) == 187
        per_class = Counter(dataset["wnid"])
        assert per_class[GROWN_CLASS] == (50 if config.endswith("_50") else PAIRS_PER_CLASS)
        images = [c for c, f in dataset.features.items() if isinstance(f, Image)]
        if config.endswith("manifest"):
            assert images == []
            continue
        assert images == (["image_a", "image_b"] if config.startswith("sp") else ["image"])
        raw = dataset
        for column in images:
            raw = raw.cast_column(column, Image(decode=False))
        files = ["file_a", "file_b"] if config.startswith("sp") else ["file"]
        for row in raw:
            for column, file in zip(images, files):
                data = row[column]["bytes"]
                if row[file] not in originals:
                    originals[row[file]] = (release_inputs.images / row[file]).read_bytes()
                assert data == originals[row[file]], f"{config}: {row[file]} is not the original file"
                assert row[column]["path"] == row[file]
        decoded = dataset[0][images[0]]  # decode=True: a PIL image at the original size
        assert decoded.size[0] > 0 and decoded.mode in ("RGB", "L", "CMYK")
    # SP holds both photos of every pair, AP (pair_a) the first one: 2 x SP files are embedded.
    assert len(originals) == 2 * expected_rows(release_inputs, "sp")


def test_load_by_folder_name_from_the_parent_directory(built_release, release_inputs, tmp_path):
    script = ("from datasets import load_dataset\n"
              f"ds = load_dataset('semantic_pairs', 'sp', split='train', cache_dir={str(tmp_path / 'c')!r})\n"
              "print(ds.num_rows, ds[0]['image_a'].size)\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=built_release.parent, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == str(expected_rows(release_inputs, "sp"))


def test_tiers_hold_their_ranks_and_subsets_share_files(built_release):
    def ranks(folder):
        return [r for f in sorted((built_release / folder).glob("*.parquet"))
                for r in pq.read_table(f, columns=["rank_in_class"]).column(0).to_pylist()]

    for kind in ("sp", "ap"):
        assert max(ranks(f"{kind}/tier050")) == 49 and min(ranks(f"{kind}/tier050")) == 0
        assert sorted(set(ranks(f"{kind}/tier100"))) == list(range(50, PAIRS_PER_CLASS))
        assert not (built_release / kind / "tier157").exists()  # no class reaches rank 100
    card = yaml.safe_load((built_release / "README.md").read_text().split("---\n")[1])
    paths = {c["config_name"]: c["data_files"][0]["path"] for c in card["configs"]}
    assert paths["sp"] == ["sp/tier050/*.parquet", "sp/tier100/*.parquet"]
    assert paths["sp_100"] == paths["sp"] and paths["sp_50"] == ["sp/tier050/*.parquet"]
    assert paths["ap_50"] == ["ap/tier050/*.parquet"]
    assert paths["sp_manifest"] == ["manifest/sp-*.parquet"]
    for shard in built_release.rglob("*.parquet"):
        assert shard.stat().st_size <= 500_000_000
        schema = pq.read_schema(shard)
        features = json.loads(schema.metadata[b"huggingface"])["info"]["features"]
        assert features["label"]["_type"] == "ClassLabel"
        if "image_a" in features or "image" in features:
            assert features.get("image_a", features.get("image"))["_type"] == "Image"


def test_card_documents_the_build(built_release, release_inputs):
    text = (built_release / "README.md").read_text()
    header = yaml.safe_load(text.split("---\n")[1])
    assert [c["config_name"] for c in header["configs"]] == list(CONFIGS)
    assert header["configs"][0].get("default") is True
    assert header["license"] == "other" and header["license_link"] == "https://image-net.org/download.php"
    assert "ImageNet" in header["extra_gated_prompt"] and header["extra_gated_fields"]
    assert header["task_categories"] and header["source_datasets"] and header["size_categories"] == ["n<1K"]
    infos = {i["config_name"]: i for i in header["dataset_info"]}
    for config in CONFIGS:
        assert infos[config]["splits"][0]["num_examples"] == expected_rows(release_inputs, config)
    body = text.split("---\n", 2)[2]
    assert "{{" not in body and "<!--" not in body
    total = expected_rows(release_inputs, "sp")
    assert f"| SP pairs | {total} |" in body
    # class table with provenance, including classes without pairs and a documented fill
    assert f"| 0 | `{GROWN_CLASS}` | goldfish | Animals | paper_appendix_A5 | {PAIRS_PER_CLASS} | {PAIRS_PER_CLASS} |" in body
    assert "| `n01644373` | tree_frog | Benchmark-aligned fill | fill: frog (CIFAR-10 frog) | 0 | 0 |" in body
    assert "## Departure from the paper's class list" in body and "lemon_shark" in body
    # AP is the image_a of each pair: half of SP's photos, said exactly, never "the same photos"
    assert ("AP takes,\n  per SP pair, its `image_a`: AP holds one photo per SP pair, half of SP's photos "
            "(no `image_b` is in AP), as the paper's AP set holds one image per pair (187 × 157 images, §3.1).") \
        in body
    assert "same photos" not in text
    # per-tag statistics computed independently from the CSV (first PAIRS_PER_CLASS of each class)
    seen, counts = Counter(), Counter()
    for row in release_inputs.pairs:
        seen[row["wnid"]] += 1
        if seen[row["wnid"]] <= PAIRS_PER_CLASS:
            counts.update(t for t in row["tags"].split("|") if t)
    for tag in TAGS:
        assert f"| `{tag}` | {counts[tag]} |" in body


def test_build_is_byte_identical_twice_and_across_worker_counts(built_release, release_inputs, tmp_path):
    """The session's release comes from the `semantic-pairs` command in a fresh process; this one
    is built in pytest's process with one worker."""
    again = tmp_path / "again"
    result = cli("build", "--manifest", release_inputs.manifest, "--images", release_inputs.images, "--out", again,
                 "--pairs-per-class", PAIRS_PER_CLASS, "--allow-short", "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert tree_bytes(again) == tree_bytes(built_release)


@pytest.mark.parametrize("config", ["sp_50", "ap", "sp_manifest"])
def test_rows_come_tier_by_tier_then_by_label_and_rank(built_release, config, tmp_path):
    from datasets import load_dataset

    dataset = load_dataset(str(built_release), config, split="train", cache_dir=str(tmp_path / "cache"),
                           columns=["label", "rank_in_class"])
    tier = (lambda rank: 0) if config.endswith("manifest") else (lambda rank: rank // 50)
    keys = [(tier(rank), label, rank) for label, rank in zip(dataset["label"], dataset["rank_in_class"])]
    assert keys == sorted(keys) and len(keys) == dataset.num_rows
