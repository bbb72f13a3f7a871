"""`semantic-pairs verify TARGET`: check a release folder or Hub repo as its users will read it.

Every check goes through `load_dataset` (streaming, so nothing is copied into a cache): every
configuration loads, holds exactly the rows of the manifest configs for its subset (so the counts
per class and per tier and the ranks are right), the embedded bytes hash to the recorded SHA-256s,
every image decodes, no image is used twice within a class, and the README is exactly the card
the toolkit renders from this data. With `--manifest` the release is also compared with the pair
manifest it was built from; with `--images` the embedded bytes with the files on disk.
All problems are collected and listed; none stops the others from being checked.
"""
from __future__ import annotations

import difflib
import hashlib
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from builders import layout
from builders.plan import ReleasePlan, image_id, read_release_manifests
from pair_manifest.decisions import TAGS
from pair_manifest.errors import ProblemsFound, UserError
from pair_manifest.file_ids import pair_id

DECODE_SIDE = 64  # JPEG draft mode decodes at 1/8 scale: the whole entropy stream is still read


@dataclass
class VerifyReport:
    target: str
    manifest_only: bool
    rows: dict[str, int] = field(default_factory=dict)  # config -> rows loaded
    images_checked: int = 0
    problems: list[str] = field(default_factory=list)
    decoded: set[str] = field(default_factory=set)  # SHA-256s already decoded (AP reuses SP's photos)


def verify_release(target: str, *, manifest_dir: str | Path | None = None, images_root: str | Path | None = None,
                   workers: int = 2, progress: bool = False) -> VerifyReport:
    from builders.release_source import open_release

    release = open_release(target)
    files = release.files()
    manifest_files = {}
    for kind in layout.KINDS:
        manifest_files[layout.manifest_path(kind)] = release.read(layout.manifest_path(kind))
    plan = read_release_manifests(manifest_files, release.name)
    manifest_only = not any(p.startswith(("sp/", "ap/")) for p in files)
    report = VerifyReport(release.name, manifest_only)
    report.problems += check_layout(plan, files, manifest_only)
    report.problems += check_card(release, plan, files, manifest_only)
    report.problems += check_plan(plan)
    for spec in layout.CONFIGS:
        if spec.manifest or not manifest_only:
            report.problems += check_config(release, plan, spec, report, workers, progress)
    if manifest_dir is not None:
        report.problems += compare_with_manifest(plan, Path(manifest_dir), images_root)
    if images_root is not None:
        from builders.sources import check_sources

        try:
            check_sources(plan, images_root, workers=workers, progress=progress)
        except ProblemsFound as error:
            report.problems += error.problems
        except UserError as error:
            report.problems.append(str(error))
    return report


def check_layout(plan: ReleasePlan, files: dict[str, int], manifest_only: bool) -> list[str]:
    """Only the files a release has: the card, the manifests, shards named after their tier."""
    tiers = {t.name for t in layout.tiers_for(plan.settings.pairs_per_class)}
    problems = []
    for path in sorted(files):
        parts = path.split("/")
        if path in (layout.CARD_FILE, ".gitattributes") or path in {layout.manifest_path(k) for k in layout.KINDS}:
            continue
        if (len(parts) == 3 and parts[0] in layout.KINDS and parts[1] in tiers
                and parts[2].startswith(layout.SPLIT + "-") and parts[2].endswith(".parquet")):
            continue
        problems.append(f"{path}: unexpected file in a release (stale shard or stray file?)")
    if not manifest_only:
        for kind in layout.KINDS:
            for tier in layout.tiers_for(plan.settings.pairs_per_class):
                shards = sorted(p for p in files if p.startswith(f"{kind}/{tier.name}/"))
                count = len(shards)
                expected = [layout.shard_path(kind, tier, i, count) for i in range(count)]
                if shards and shards != expected:
                    problems.append(f"{kind}/{tier.name}/: shards {', '.join(shards)} are not a complete "
                                    f"numbered set ({expected[0]} … {expected[-1]})")
    return problems


def check_card(release, plan: ReleasePlan, files: dict[str, int], manifest_only: bool) -> list[str]:
    from builders.card import parquet_stats, render_card

    stats = {}
    for path in files:
        if path.endswith(".parquet"):
            with release.open(path) as handle:
                stats[path] = parquet_stats(handle)
    try:
        expected = render_card(plan, stats, manifest_only=manifest_only)
    except (KeyError, UserError) as error:
        return [f"README.md: the card cannot be rendered from this data ({error})"]
    actual = release.read(layout.CARD_FILE).decode("utf-8", "replace")
    if actual == expected:
        return []
    want, have = expected.splitlines(), actual.splitlines()
    first = next((i for i, (a, b) in enumerate(zip(want, have)) if a != b), min(len(want), len(have)))
    changed = sum(1 for tag, *_ in difflib.SequenceMatcher(None, want, have, autojunk=False).get_opcodes()
                  if tag != "equal")
    shown = lambda lines: repr(lines[first].strip()[:120]) if first < len(lines) else "end of file"  # noqa: E731
    return [f"README.md: differs from the card rendered from the data ({changed} changed block(s); first at line "
            f"{first + 1}: expected {shown(want)}, found {shown(have)})"]


def check_plan(plan: ReleasePlan) -> list[str]:
    """What must hold in the manifest configs themselves (the rows every config is compared with)."""
    problems = []
    target = plan.settings.pairs_per_class
    names = {i: c.name for i, c in enumerate(plan.classes)}
    sp = plan.sp.to_pylist()
    ap = plan.ap.to_pylist()
    for kind, rows in (("sp", sp), ("ap", ap)):
        ranks, used, hashes = defaultdict(list), defaultdict(set), defaultdict(set)
        for row in rows:
            where = f"{kind} {row[layout.ID_COLUMN[kind]]}"
            if row["class_name"] != names.get(row["label"]):
                problems.append(f"{where}: class_name '{row['class_name']}' but label {row['label']} is "
                                f"'{names.get(row['label'])}'")
            ranks[row["wnid"]].append(row["rank_in_class"])
            for file_column, sha_column in zip(layout.FILE_COLUMNS[kind], layout.SHA_COLUMNS[kind]):
                if row[file_column] in used[row["wnid"]] or row[sha_column] in hashes[row["wnid"]]:
                    problems.append(f"{where}: image {row[file_column]} is used more than once in class {row['wnid']}")
                used[row["wnid"]].add(row[file_column])
                hashes[row["wnid"]].add(row[sha_column])
            if kind == "sp":
                if row["pair_id"] != pair_id(row["file_a"], row["file_b"]) or row["file_a"] >= row["file_b"]:
                    problems.append(f"{where}: pair_id or file order does not match its files")
                unknown = set(row["tags"]) - set(TAGS)
                if unknown:
                    problems.append(f"{where}: unknown tag(s) {', '.join(sorted(unknown))}")
            elif row["image_id"] != image_id(row["file"]):
                problems.append(f"{where}: image_id does not match its file {row['file']}")
        for wnid, class_ranks in sorted(ranks.items()):
            if sorted(class_ranks) != list(range(len(class_ranks))):
                problems.append(f"{kind} class {wnid}: rank_in_class is not 0..{len(class_ranks) - 1}")
            if len(class_ranks) > target:
                problems.append(f"{kind} class {wnid}: {len(class_ranks)} rows, more than the target {target}")
    sp_counts = defaultdict(int, {w: 0 for w in plan.class_wnids})
    ap_counts = defaultdict(int)
    for row in sp:
        sp_counts[row["wnid"]] += 1
    for row in ap:
        ap_counts[row["wnid"]] += 1
    for wnid in plan.class_wnids:
        if sp_counts[wnid] != ap_counts[wnid]:
            problems.append(f"class {wnid}: {sp_counts[wnid]} SP pairs but {ap_counts[wnid]} AP images")
    if plan.settings.ap_source == "pair_a":
        expected = [(r["wnid"], r["rank_in_class"], r["file_a"], r["sha256_a"]) for r in sp]
        actual = [(r["wnid"], r["rank_in_class"], r["file"], r["sha256"]) for r in ap]
        if expected != actual:
            problems.append("ap: the AP images are not the image_a of each SP pair, although ap_source is pair_a")
    return problems


def expected_config_rows(plan: ReleasePlan, spec: layout.ConfigSpec) -> list[dict]:
    """Rows of a config in the order `datasets` reads them: tier by tier (the folders the config
    lists), then by label and rank within a tier; manifest configs in (label, rank) order."""
    rows = [r for r in plan.table(spec.kind).to_pylist() if spec.limit is None or r["rank_in_class"] < spec.limit]
    if spec.manifest:
        return rows
    tiers = layout.tiers_for(plan.settings.pairs_per_class)
    return sorted(rows, key=lambda r: tiers.index(layout.tier_of(r["rank_in_class"], tiers)))  # stable


def check_config(release, plan: ReleasePlan, spec: layout.ConfigSpec, report: VerifyReport,
                 workers: int, progress: bool) -> list[str]:
    """Load one config and compare it row by row with the manifest rows of its subset."""
    from datasets import Image

    columns = list(plan.table(spec.kind).column_names)
    expected = expected_config_rows(plan, spec)
    with_images = not spec.manifest and spec.limit is None  # subsets share these files: check images once
    try:
        if with_images:
            dataset = release.load(spec.name, streaming=True)
            for column in layout.IMAGE_COLUMNS[spec.kind]:
                dataset = dataset.cast_column(column, Image(decode=False))
        else:
            dataset = release.load(spec.name, streaming=True, columns=columns)
        names = dataset.features["label"].names
    except Exception as error:  # noqa: BLE001 - any failure to load is the finding itself
        return [f"config {spec.name}: does not load ({type(error).__name__}: {str(error).splitlines()[0][:300]})"]
    problems = []
    if names != plan.class_wnids:
        problems.append(f"config {spec.name}: label names are not the release's class list")
    loaded: list[dict] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool, \
            tqdm(total=len(expected), desc=f"verifying {spec.name}", unit="row", disable=not progress, leave=False) as bar:
        try:
            for batch in dataset.iter(batch_size=64):
                count = len(batch[columns[0]])
                loaded += [{c: batch[c][i] for c in columns} for i in range(count)]
                if with_images:
                    problems += _check_images(batch, spec, pool, report)
                bar.update(count)
        except Exception as error:  # noqa: BLE001
            problems.append(f"config {spec.name}: reading failed after {len(loaded)} rows "
                            f"({type(error).__name__}: {str(error).splitlines()[0][:300]})")
    report.rows[spec.name] = len(loaded)
    return problems + compare_rows(spec, loaded, expected)


def compare_rows(spec: layout.ConfigSpec, loaded: list[dict], expected: list[dict]) -> list[str]:
    if loaded == expected:
        return []
    key = layout.ID_COLUMN[spec.kind]
    want = {r[key]: r for r in expected}
    have: dict[str, dict] = {}
    problems = []
    for row in loaded:
        if row[key] in have:
            problems.append(f"config {spec.name}: {key} {row[key]} appears more than once")
        have[row[key]] = row
    for missing in [k for k in want if k not in have]:
        r = want[missing]
        problems.append(f"config {spec.name}: {key} {missing} ({r['wnid']} rank {r['rank_in_class']}) is missing")
    for extra in [k for k in have if k not in want]:
        r = have[extra]
        problems.append(f"config {spec.name}: {key} {extra} ({r.get('wnid')} rank {r.get('rank_in_class')}) "
                        "does not belong in this config")
    for common in [k for k in want if k in have and want[k] != have[k]]:
        differing = [c for c in want[common] if want[common][c] != have[common].get(c)]
        problems.append(f"config {spec.name}: {key} {common} differs from the manifest config in {', '.join(differing)}")
    if not problems:
        problems.append(f"config {spec.name}: rows are not in the release order (tier, label, rank_in_class)")
    problems.append(f"config {spec.name}: {len(loaded)} rows loaded, {len(expected)} expected")
    return problems


def _check_images(batch: dict, spec: layout.ConfigSpec, pool, report: VerifyReport) -> list[str]:
    from pair_manifest.images import ImageReadError, open_rgb

    jobs = []
    for image_column, file_column, sha_column in zip(layout.IMAGE_COLUMNS[spec.kind], layout.FILE_COLUMNS[spec.kind],
                                                     layout.SHA_COLUMNS[spec.kind]):
        for value, file, digest in zip(batch[image_column], batch[file_column], batch[sha_column]):
            jobs.append((value, file, digest))

    def check(job) -> str | None:
        value, file, digest = job
        data = (value or {}).get("bytes")
        if not data:
            return f"config {spec.name}: {file}: no embedded bytes"
        if hashlib.sha256(data).hexdigest() != digest:
            return f"config {spec.name}: {file}: embedded bytes do not match sha256 {digest[:16]}…"
        if digest in report.decoded:
            return None
        try:
            open_rgb(data, name=f"config {spec.name}: {file}", max_side=DECODE_SIDE)
        except ImageReadError as error:
            return str(error)
        report.decoded.add(digest)
        return None

    found = [p for p in pool.map(check, jobs) if p]
    report.images_checked += len(jobs)
    return found


def compare_with_manifest(plan: ReleasePlan, manifest_dir: Path, images_root) -> list[str]:
    """The release holds exactly the manifest's pairs with rank below the target (and its AP)."""
    from builders.plan import plan_from_manifest

    settings = plan.settings
    if settings.ap_source == "random" and images_root is None:
        from dataclasses import replace

        settings = replace(settings, ap_source="pair_a")  # the random draw needs the images: SP only
        compare_ap = False
    else:
        compare_ap = True
    try:
        expected = plan_from_manifest(manifest_dir, images_root, settings, allow_short=True)
    except UserError as error:
        return [f"{manifest_dir}: {error}"]
    problems = []
    if expected.class_wnids != plan.class_wnids:
        problems.append(f"{manifest_dir}: the manifest's class list differs from the release's")
    kinds = ("sp", "ap") if compare_ap else ("sp",)
    for kind in kinds:
        key = layout.ID_COLUMN[kind]
        want = {r[key]: r for r in expected.table(kind).to_pylist()}
        have = {r[key]: r for r in plan.table(kind).to_pylist()}
        for missing in sorted(set(want) - set(have)):
            problems.append(f"{kind} {missing}: in the manifest (rank {want[missing]['rank_in_class']}) but not in the release")
        for extra in sorted(set(have) - set(want)):
            problems.append(f"{kind} {extra}: in the release but not among the manifest's first "
                            f"{settings.pairs_per_class} per class")
        for common in sorted(set(want) & set(have)):
            if want[common] != have[common]:
                differing = [c for c in want[common] if want[common][c] != have[common].get(c)]
                problems.append(f"{kind} {common}: differs from the manifest in {', '.join(differing)}")
    return problems
