"""The release's README.md, rendered from the project's DATASET_CARD.md with the real figures.

The template's YAML header holds what never changes (licence, gating, task categories); this
module adds `configs` (which folders each config lists), `dataset_info` (features, row counts,
file sizes: `datasets` checks the row counts when it loads, so a card that disagreed with the
data would fail to load) and `size_categories`, and fills every `{{placeholder}}` of the body.
Rendering depends only on the plan and the data files' sizes, so `verify` can re-render a
release's card and compare it with the README it ships.

`file_stats` maps each data file (path in the repo) to `(size on disk, uncompressed data bytes)`,
the second read from the Parquet footer (the sum of its row groups' `total_byte_size`): that is the
`num_bytes` the card claims for a split.
"""
from __future__ import annotations

import re
from collections import Counter
from importlib import resources
from pathlib import Path

import yaml

from builders import layout
from builders.plan import ReleasePlan
from pair_manifest.decisions import TAGS
from pair_manifest.errors import UserError

TEMPLATE_NAME = "DATASET_CARD.md"
PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
GATING_KEYS = ("extra_gated_prompt", "extra_gated_fields")


def card_template() -> str:
    """DATASET_CARD.md of the project (builders/DATASET_CARD.md links to it for installed copies)."""
    candidates = [resources.files("builders").joinpath(TEMPLATE_NAME),
                  Path(__file__).resolve().parents[1] / TEMPLATE_NAME]
    for candidate in candidates:
        try:
            return candidate.read_text(encoding="utf-8")
        except (FileNotFoundError, OSError):
            continue
    raise UserError(f"{TEMPLATE_NAME}: the dataset card template is missing from the installation")


def split_front_matter(text: str) -> tuple[dict, str]:
    match = re.match(r"^---\n(.*?)\n---\n", text, re.S)
    if not match:
        raise UserError(f"{TEMPLATE_NAME}: no YAML header between '---' lines")
    return yaml.safe_load(match.group(1)) or {}, text[match.end():]


def _strip_comments(body: str) -> str:
    return re.sub(r"<!--.*?-->\n?", "", body, flags=re.S)


def size_category(n: int) -> str:
    for bound, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < bound:
            return label
    return "10M<n<100M"


def config_rows(plan: ReleasePlan, spec: layout.ConfigSpec) -> int:
    ranks = plan.table(spec.kind).column("rank_in_class").to_pylist()
    return sum(1 for r in ranks if spec.limit is None or r < spec.limit)


def config_files(spec: layout.ConfigSpec, tiers: list[layout.Tier], file_sizes: dict[str, tuple[int, int]]) -> list[str]:
    if spec.manifest:
        return [layout.manifest_path(spec.kind)]
    folders = spec.folders(tiers)
    return sorted(p for p in file_sizes if any(p.startswith(f + "/") for f in folders))


def present_tiers(plan: ReleasePlan, file_sizes: dict[str, tuple[int, int]]) -> list[layout.Tier]:
    """Tiers that hold at least one file (a tier no class reaches has no folder)."""
    return [t for t in layout.tiers_for(plan.settings.pairs_per_class)
            if any(p.startswith(f"sp/{t.name}/") for p in file_sizes)]


def yaml_header(plan: ReleasePlan, file_sizes: dict[str, tuple[int, int]], static: dict, *, manifest_only: bool) -> dict:
    tiers = present_tiers(plan, file_sizes)
    specs = [s for s in layout.CONFIGS if s.manifest or not manifest_only]
    configs, infos = [], []
    for number, spec in enumerate(specs):
        paths = ([layout.manifest_path(spec.kind).replace("-00000-of-00001", "-*")] if spec.manifest
                 else [f"{folder}/*.parquet" for folder in spec.folders(tiers)])
        entry = {"config_name": spec.name, "data_files": [{"split": layout.SPLIT, "path": paths}]}
        if number == 0:
            entry["default"] = True
        configs.append(entry)
        files = config_files(spec, tiers, file_sizes)
        data_bytes = sum(file_sizes[p][1] for p in files)
        # The layout of datasets.DatasetInfo._to_yaml_dict(), without importing datasets
        # (tests/builders/test_layout.py checks it against datasets' own).
        infos.append({"config_name": spec.name,
                      "features": layout.yaml_features(spec.kind, plan.class_wnids, images=not spec.manifest),
                      "splits": [{"name": layout.SPLIT, "num_bytes": data_bytes,
                                  "num_examples": config_rows(plan, spec)}],
                      "download_size": sum(file_sizes[p][0] for p in files), "dataset_size": data_bytes})
    header = {k: v for k, v in static.items() if not (manifest_only and k in GATING_KEYS)}
    header["size_categories"] = [size_category(plan.sp.num_rows)]
    header["configs"] = configs
    header["dataset_info"] = infos
    return header


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _count(n: int) -> str:
    return f"{n:,}"


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return str(n)


def body_context(plan: ReleasePlan, file_sizes: dict[str, tuple[int, int]], *, manifest_only: bool) -> dict[str, str]:
    settings = plan.settings
    target = settings.pairs_per_class
    tiers = present_tiers(plan, file_sizes)
    sp_counts = Counter(plan.sp.column("wnid").to_pylist())
    ap_counts = Counter(plan.ap.column("wnid").to_pylist())
    with_pairs = sum(1 for c in plan.classes if sp_counts[c.wnid])
    at_target = sum(1 for c in plan.classes if sp_counts[c.wnid] >= target)
    image_bytes = sum(s[0] for p, s in file_sizes.items() if not p.startswith(layout.MANIFEST_FOLDER + "/"))

    if manifest_only:
        release_note = (
            "This repository is the **manifest release**: file names, SHA-256s, tags and ranks, no pixels. "
            "Rebuild the full dataset from your own copy of the ImageNet-1K training set with\n"
            "`semantic-pairs materialize <this repo id or folder> --imagenet /path/to/imagenet/train --out semantic_pairs`;\n"
            "the folder it writes is byte-identical to the full release, and the command lists every file of "
            "your copy that is missing or differs.")
    else:
        release_note = (
            "This is the **full release**: every image is embedded as its original file bytes. The manifest "
            "configurations (`sp_manifest`, `ap_manifest`) hold the same rows without pixels.")

    summary = [
        ["classes in the class list", _count(len(plan.classes))],
        ["classes with pairs", _count(with_pairs)],
        [f"classes with the full {target} pairs", _count(at_target)],
        ["SP pairs", _count(plan.sp.num_rows)],
        ["SP images (two per pair)", _count(2 * plan.sp.num_rows)],
        ["AP images", _count(plan.ap.num_rows)],
        ["target pairs per class", _count(target)],
    ]
    if not manifest_only:
        summary.append(["size of the image shards", _size(image_bytes)])

    config_lines = []
    for spec in layout.CONFIGS:
        if manifest_only and not spec.manifest:
            continue
        unit = "pairs" if spec.kind == "sp" else "images"
        if spec.manifest:
            what = f"the `{spec.kind}` rows without pixels"
            where = f"`{layout.manifest_path(spec.kind)}`"
        else:
            what = (f"all {unit}" if spec.limit is None else f"the first {spec.limit} {unit} per class "
                    f"(`rank_in_class < {spec.limit}`)")
            where = ", ".join(f"`{f}/`" for f in spec.folders(tiers))
        default = " (default)" if spec.name == ("sp_manifest" if manifest_only else "sp") else ""
        config_lines.append([f"`{spec.name}`{default}", what, _count(config_rows(plan, spec)), where])

    load = ["```python", "from datasets import load_dataset", "",
            "REPO = \"semantic_pairs\"  # the folder this card is in, or the Hub id ORG/NAME it was published to", ""]
    if not manifest_only:
        load += ["sp = load_dataset(REPO, \"sp\", split=\"train\")          # all pairs: image_a, image_b decode to PIL images",
                 "sp_50 = load_dataset(REPO, \"sp_50\", split=\"train\")    # also sp_100; ap, ap_100, ap_50 for AP",
                 "ap = load_dataset(REPO, \"ap\", split=\"train\")",
                 "",
                 "# the original file bytes instead of decoded images:",
                 "from datasets import Image",
                 "raw = sp.cast_column(\"image_a\", Image(decode=False))",
                 "raw[0][\"image_a\"][\"bytes\"]  # exactly the bytes of ILSVRC train/<file_a>", ""]
    load += ["pairs = load_dataset(REPO, \"sp_manifest\", split=\"train\")  # ids, files, hashes, tags: no pixels",
             "images = load_dataset(REPO, \"ap_manifest\", split=\"train\")", "```"]
    if manifest_only:
        load += ["", "To get the images, run `semantic-pairs materialize` as described above; the folder it writes loads "
                     "with every configuration (`sp`, `sp_100`, `sp_50`, `ap`, `ap_100`, `ap_50`)."]

    tier_rows = []
    sp_ranks = plan.sp.column("rank_in_class").to_pylist()
    ap_ranks = plan.ap.column("rank_in_class").to_pylist()
    for tier in tiers:
        in_configs = [s.name for s in layout.CONFIGS if not s.manifest and f"{s.kind}/{tier.name}" in s.folders(tiers)]
        tier_rows.append([f"`{tier.name}`", f"{tier.start}–{tier.stop - 1}",
                          _count(sum(1 for r in sp_ranks if tier.holds(r))),
                          _count(sum(1 for r in ap_ranks if tier.holds(r))),
                          ", ".join(f"`{n}`" for n in in_configs)])

    class_rows = [[label, f"`{c.wnid}`", c.name, c.group or "–", c.source or "–",
                   _count(sp_counts[c.wnid]), _count(ap_counts[c.wnid])] for label, c in enumerate(plan.classes)]
    short = [c for c in plan.classes if sp_counts[c.wnid] < target]
    class_summary = (f"{_count(len(plan.classes))} classes in ImageNet-1K index order (the order of `label`). "
                     f"{_count(with_pairs)} have pairs; "
                     + (f"all have the full {target}." if not short else
                        f"{_count(len(short))} have fewer than {target} (built with `--allow-short`).")
                     )

    tag_counts = Counter(t for tags in plan.sp.column("tags").to_pylist() for t in tags)
    untagged = sum(1 for tags in plan.sp.column("tags").to_pylist() if not tags)
    total = max(1, plan.sp.num_rows)
    tag_rows = [[f"`{t}`", _count(tag_counts[t]), f"{100 * tag_counts[t] / total:.1f}%"] for t in TAGS]
    tag_rows.append(["(no tag)", _count(untagged), f"{100 * untagged / total:.1f}%"])

    sources = Counter(c.source or "(none)" for c in plan.classes)
    sources_with_pairs = Counter(c.source or "(none)" for c in plan.classes if sp_counts[c.wnid])
    provenance = [[f"`{s}`", _count(n), _count(sources_with_pairs[s])] for s, n in sorted(sources.items())]

    if settings.ap_source == "pair_a":
        ap_rule = ("its `image_a`: AP holds one photo per SP pair, half of SP's photos (no `image_b` is in AP), "
                   "as the paper's AP set holds one image per pair (187 × 157 images, §3.1)")
        ap_setting = "`pair_a` (the `image_a` of each SP pair)"
    else:
        ap_rule = (f"one photo drawn from the class folder by a seeded shuffle (seed {settings.seed}), as many per "
                   "class as the class has SP pairs")
        ap_setting = f"`random`, seed {settings.seed} (an independent sample of each class folder)"
    built = plan.built_with
    build_rows = [["target pairs per class (`--pairs-per-class`)", _count(target)],
                  ["AP images (`--ap-source`)", ap_setting],
                  ["classes short of the target", _count(len(short))],
                  ["built with", ", ".join(f"{k} {built[k]}" for k in sorted(built)) or "–"]]

    return {
        "release_note": release_note,
        "summary_table": _table(["", "count"], summary),
        "config_table": _table(["config", "holds", "rows", "files"], config_lines),
        "how_to_load": "\n".join(load),
        "tier_table": _table(["tier folder", "ranks", "SP pairs", "AP images", "listed by"], tier_rows),
        "class_summary": class_summary,
        "class_table": _table(["label", "wnid", "name", "group", "source", "SP pairs", "AP images"], class_rows),
        "tag_table": _table(["tag", "pairs", "share of pairs"], tag_rows),
        "ap_rule": ap_rule,
        "provenance_table": _table(["source", "classes", "with pairs in this build"], provenance),
        "build_table": _table(["setting", "value"], build_rows),
    }


def parquet_stats(source) -> tuple[int, int]:
    """(size, uncompressed data bytes) of a Parquet file: a path, or an open binary file object."""
    import pyarrow.parquet as pq

    with pq.ParquetFile(source) as parquet:
        meta = parquet.metadata
        data_bytes = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if hasattr(source, "seek"):
        size = source.seek(0, 2)
    else:
        size = Path(source).stat().st_size
    return size, data_bytes


def render_card(plan: ReleasePlan, file_sizes: dict[str, tuple[int, int]], *, manifest_only: bool = False) -> str:
    """README.md of a release: `file_sizes` maps every data file to `parquet_stats` of it."""
    static, body = split_front_matter(card_template())
    header = yaml_header(plan, file_sizes, static, manifest_only=manifest_only)
    context = body_context(plan, file_sizes, manifest_only=manifest_only)
    body = _strip_comments(body)
    missing = sorted(set(PLACEHOLDER.findall(body)) - set(context))
    if missing:
        raise UserError(f"{TEMPLATE_NAME}: unknown placeholder(s) {', '.join(missing)}")
    text = PLACEHOLDER.sub(lambda m: context[m.group(1)], body)
    front = yaml.safe_dump(header, sort_keys=False, allow_unicode=True, width=100_000, default_flow_style=False)
    return f"---\n{front}---\n{text}"
