"""The repo folder of a release: tiers, configs, file names, features and Parquet writer options.

One place for every name the Hub copy, `verify`, `materialize` and the training code rely on.

Tiers make the paper's 50/100/157-pairs-per-class subsets (§3.1, Table 2's dataset-size ablation)
share files: `sp/tier050` holds `rank_in_class < 50`, `sp/tier100` ranks 50..99, `sp/tier157`
ranks 100..156, and config `sp_100` lists the first two folders. The boundaries are fixed (they are
the paper's subset sizes), whatever `--pairs-per-class` says:

- a target below 157 clips the tiers: with 120 pairs per class `tier157` holds ranks 100..119; with
  10, only `tier050` exists (ranks 0..9) and `sp_50`, `sp_100`, `sp` hold the same rows;
- a target above 157 adds one more tier, `tier<target>`, for ranks 157..target-1 (in `sp` only);
- a tier no class reaches has no folder and is left out of the configs.
"""
from __future__ import annotations

from dataclasses import dataclass

from pair_manifest.protocol import SUBSETS

KINDS = ("sp", "ap")
SPLIT = "train"

# `datasets` aims at shards of at most 500 MB and row groups of at most 100 MB
# (datasets.config.MAX_SHARD_SIZE, MAX_ROW_GROUP_SIZE). A shard closes before its image bytes pass
# SHARD_IMAGE_BYTES, leaving room for the other columns and the footer; a row group holds at most
# ROW_GROUP_IMAGE_BYTES of images (about 75 SP rows of ImageNet photos, near the 100 rows `datasets`
# uses for image datasets), which bounds the memory of each writer: a build holds one row group
# per writer and one read ahead, and new memory is slow to fault in (builders.shards.Readers).
MAX_SHARD_BYTES = 500_000_000
SHARD_IMAGE_BYTES = 450_000_000
ROW_GROUP_IMAGE_BYTES = 16 << 20
ROW_GROUP_MAX_ROWS = 1000
IMAGES_PER_PAGE = 16

MANIFEST_FOLDER = "manifest"
CARD_FILE = "README.md"
RELEASE_METADATA_KEY = b"semantic_pairs.release"
RELEASE_SCHEMA_VERSION = "1"

SP_MANIFEST_COLUMNS = ("pair_id", "label", "class_name", "wnid", "file_a", "file_b", "sha256_a", "sha256_b",
                       "tags", "rank_in_class")
AP_MANIFEST_COLUMNS = ("image_id", "label", "class_name", "wnid", "file", "sha256", "rank_in_class")
IMAGE_COLUMNS = {"sp": ("image_a", "image_b"), "ap": ("image",)}
FILE_COLUMNS = {"sp": ("file_a", "file_b"), "ap": ("file",)}
SHA_COLUMNS = {"sp": ("sha256_a", "sha256_b"), "ap": ("sha256",)}
ID_COLUMN = {"sp": "pair_id", "ap": "image_id"}


@dataclass(frozen=True)
class Tier:
    name: str   # folder name, e.g. "tier050"
    bound: int  # nominal upper bound (50, 100, 157 or the target)
    start: int  # first rank in the tier
    stop: int   # one past the last rank, clipped to the target

    def holds(self, rank: int) -> bool:
        return self.start <= rank < self.stop


def tiers_for(pairs_per_class: int) -> list[Tier]:
    """The non-empty tiers of a build with this target (see the module docstring)."""
    if pairs_per_class < 1:
        raise ValueError(f"pairs per class must be at least 1, got {pairs_per_class}")
    bounds = list(SUBSETS) + ([pairs_per_class] if pairs_per_class > SUBSETS[-1] else [])
    tiers, start = [], 0
    for bound in bounds:
        stop = min(bound, pairs_per_class)
        if stop > start:
            tiers.append(Tier(f"tier{bound:03d}", bound, start, stop))
        start = bound
    return tiers


def tier_of(rank: int, tiers: list[Tier]) -> Tier:
    for tier in tiers:
        if tier.holds(rank):
            return tier
    raise ValueError(f"rank {rank} lies outside every tier")


@dataclass(frozen=True)
class ConfigSpec:
    name: str
    kind: str            # "sp" or "ap"
    limit: int | None    # pairs per class the config holds at most (None: all); manifests: None
    manifest: bool = False

    def folders(self, tiers: list[Tier]) -> list[str]:
        if self.manifest:
            return []
        return [f"{self.kind}/{t.name}" for t in tiers if self.limit is None or t.bound <= self.limit]


# Order here is the order in the card. `sp` is the default config.
CONFIGS = (
    ConfigSpec("sp", "sp", None), ConfigSpec("sp_100", "sp", 100), ConfigSpec("sp_50", "sp", 50),
    ConfigSpec("ap", "ap", None), ConfigSpec("ap_100", "ap", 100), ConfigSpec("ap_50", "ap", 50),
    ConfigSpec("sp_manifest", "sp", None, manifest=True), ConfigSpec("ap_manifest", "ap", None, manifest=True),
)
CONFIG_NAMES = tuple(c.name for c in CONFIGS)
MANIFEST_CONFIGS = tuple(c for c in CONFIGS if c.manifest)


def config_spec(name: str) -> ConfigSpec:
    for spec in CONFIGS:
        if spec.name == name:
            return spec
    raise KeyError(name)


def manifest_path(kind: str) -> str:
    return f"{MANIFEST_FOLDER}/{kind}-00000-of-00001.parquet"


def shard_path(kind: str, tier: Tier, index: int, count: int) -> str:
    return f"{kind}/{tier.name}/{SPLIT}-{index:05d}-of-{count:05d}.parquet"


def arrow_schema(kind: str, class_wnids: list[str], *, images: bool):
    """The Arrow schema of a config's Parquet files: `features(...).arrow_schema`, made without
    importing `datasets` (about a CPU-second, which a 1 GB build would otherwise pay before it
    writes anything). The `huggingface` metadata is what `datasets` stores and reads back as
    the features; tests/builders/test_layout.py checks it equals datasets' own, so a `datasets`
    release that changes the format is noticed. Bytes built from it do not depend on the
    installed `datasets` version."""
    import json

    import pyarrow as pa

    fields, described = [], {}
    for name in SP_MANIFEST_COLUMNS if kind == "sp" else AP_MANIFEST_COLUMNS:
        if name == "label":
            fields.append(pa.field(name, pa.int64()))
            described[name] = {"names": list(class_wnids), "_type": "ClassLabel"}
        elif name == "tags":
            fields.append(pa.field(name, pa.list_(pa.string())))
            described[name] = {"feature": {"dtype": "string", "_type": "Value"}, "_type": "List"}
        elif name == "rank_in_class":
            fields.append(pa.field(name, pa.int32()))
            described[name] = {"dtype": "int32", "_type": "Value"}
        else:
            fields.append(pa.field(name, pa.string()))
            described[name] = {"dtype": "string", "_type": "Value"}
    if images:
        for name in IMAGE_COLUMNS[kind]:
            fields.append(pa.field(name, pa.struct([("bytes", pa.binary()), ("path", pa.string())])))
            described[name] = {"_type": "Image"}
    metadata = json.dumps({"info": {"features": described}})
    return pa.schema(fields, metadata={"huggingface": metadata})


def yaml_features(kind: str, class_wnids: list[str], *, images: bool) -> list[dict]:
    """The `features` of a config as the card's `dataset_info` lists them: what
    `datasets.DatasetInfo._to_yaml_dict()` gives for `features(...)` (checked equal in
    tests/builders/test_layout.py), made without importing `datasets`, for the same reason as
    `arrow_schema`."""
    described = []
    for name in SP_MANIFEST_COLUMNS if kind == "sp" else AP_MANIFEST_COLUMNS:
        if name == "label":
            described.append({"name": name, "dtype": {"class_label": {"names": {
                str(i): wnid for i, wnid in enumerate(class_wnids)}}}})
        elif name == "tags":
            described.append({"name": name, "list": "string"})
        else:
            described.append({"name": name, "dtype": "int32" if name == "rank_in_class" else "string"})
    if images:
        described += [{"name": name, "dtype": "image"} for name in IMAGE_COLUMNS[kind]]
    return described


def features(kind: str, class_wnids: list[str], *, images: bool):
    """`datasets.Features` of a config: `label` is a ClassLabel whose names are the wnids."""
    from datasets import ClassLabel, Features, Image, List, Value

    string = Value("string")
    columns = {}
    for name in SP_MANIFEST_COLUMNS if kind == "sp" else AP_MANIFEST_COLUMNS:
        if name == "label":
            columns[name] = ClassLabel(names=list(class_wnids))
        elif name == "tags":
            columns[name] = List(string)
        elif name == "rank_in_class":
            columns[name] = Value("int32")
        else:
            columns[name] = string
    if images:
        for name in IMAGE_COLUMNS[kind]:
            columns[name] = Image()
    return Features(columns)


def writer_options(kind: str, *, images: bool) -> dict:
    """Fixed `pyarrow.parquet` options (same options + same pyarrow -> same bytes).

    Image bytes are stored as they are: JPEG does not compress further, and no dictionary or
    statistics are kept for them. The small columns get zstd, dictionaries and statistics.
    Image pages hold IMAGES_PER_PAGE images (about 1-2 MB at ImageNet sizes): pyarrow checks
    the page size once per write batch, so a default batch (1024 rows) would make each row
    group's image column one page of up to ROW_GROUP_IMAGE_BYTES, which costs the writer
    (builders.direct_file) a fresh allocation of that size per page.
    """
    small = list(SP_MANIFEST_COLUMNS if kind == "sp" else AP_MANIFEST_COLUMNS)
    small_paths = [f"{c}.list.element" if c == "tags" else c for c in small]
    compression = {path: "zstd" for path in small_paths}
    if images:
        for column in IMAGE_COLUMNS[kind]:
            compression[f"{column}.bytes"] = "none"
            compression[f"{column}.path"] = "zstd"
            small_paths.append(f"{column}.path")
    return dict(compression=compression, use_dictionary=small_paths, write_statistics=small_paths,
                store_schema=True, write_page_index=False, version="2.6", data_page_version="1.0",
                **({"write_batch_size": IMAGES_PER_PAGE} if images else {}))
