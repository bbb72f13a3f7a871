"""The release plan: which pairs and which AP images a build holds, before any byte is written.

A pair manifest (the curation's artifact) becomes two small tables, the SP and AP manifest
configs of the release (`manifest/sp-*.parquet`, `manifest/ap-*.parquet`): ids, files, SHA-256s,
tags and ranks, no pixels. Everything else in the repo folder is a function of these two tables,
the build settings recorded beside them, and the image bytes they name. That is what lets
`materialize` rebuild the full release from the manifest release plus a user's own ImageNet copy.
"""
from __future__ import annotations

import hashlib
import io
import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from builders import layout
from pair_manifest.classes import selection_from_rows, selection_from_wnids
from pair_manifest.errors import ProblemsFound, UserError
from pair_manifest.protocol import PAIRS_PER_CLASS

AP_SOURCES = ("pair_a", "random")


@dataclass(frozen=True)
class BuildSettings:
    pairs_per_class: int = PAIRS_PER_CLASS
    ap_source: str = "pair_a"  # AP image of each SP pair's rank: its image_a, or a seeded random class image
    seed: int = 0              # used by ap_source="random" only

    def __post_init__(self):
        if self.pairs_per_class < 1:
            raise UserError(f"--pairs-per-class: must be at least 1, got {self.pairs_per_class}")
        if self.ap_source not in AP_SOURCES:
            raise UserError(f"--ap-source: '{self.ap_source}' is not one of {', '.join(AP_SOURCES)}")


@dataclass(frozen=True)
class ClassEntry:
    wnid: str
    name: str
    group: str
    source: str


@dataclass
class ReleasePlan:
    classes: tuple[ClassEntry, ...]  # label order
    settings: BuildSettings
    sp: pa.Table                     # SP manifest rows, sorted by (label, rank_in_class)
    ap: pa.Table                     # AP manifest rows, same order
    built_with: dict                 # versions recorded in the release (the card shows these)
    shortfalls: list[str] = field(default_factory=list)

    @property
    def class_wnids(self) -> list[str]:
        return [c.wnid for c in self.classes]

    def table(self, kind: str) -> pa.Table:
        return self.sp if kind == "sp" else self.ap

    def metadata(self) -> bytes:
        return json.dumps({
            "schema_version": layout.RELEASE_SCHEMA_VERSION,
            "settings": asdict(self.settings),
            "classes": [asdict(c) for c in self.classes],
            "built_with": self.built_with,
        }, sort_keys=True).encode()

    def manifest_bytes(self, kind: str) -> bytes:
        """The exact bytes of `manifest/<kind>-*.parquet` (reproducible: fixed writer options)."""
        schema = layout.arrow_schema(kind, self.class_wnids, images=False)
        schema = schema.with_metadata({**schema.metadata, layout.RELEASE_METADATA_KEY: self.metadata()})
        buffer = io.BytesIO()
        with pq.ParquetWriter(buffer, schema, **layout.writer_options(kind, images=False)) as writer:
            writer.write_table(self.table(kind).cast(schema), row_group_size=50_000)
        return buffer.getvalue()


def built_with_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ("semantic-pairs", "pyarrow", "datasets"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "unknown"
    return versions


def image_id(file: str) -> str:
    """Stable id of one image, like `pair_id` for a pair."""
    return hashlib.sha256(file.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Pair manifest -> plan


def plan_from_manifest(manifest_dir: str | Path, images_root: str | Path, settings: BuildSettings, *,
                       allow_short: bool = False) -> ReleasePlan:
    """Select the pairs of the release and the AP images; refuse classes short of the target."""
    from pair_manifest.validate import read_valid_manifest

    manifest = read_valid_manifest(manifest_dir, "nothing built")
    selection = selection_from_wnids(manifest.class_wnids, f"{manifest_dir} class list")
    classes = tuple(ClassEntry(c.wnid, c.name, c.group, c.source) for c in selection.classes)
    target = settings.pairs_per_class
    wnids = [c.wnid for c in classes]
    sp = _sp_table(manifest.pairs, classes, target)
    if sp.num_rows == 0:
        raise UserError(f"{manifest_dir}: the manifest has no accepted pairs, nothing to build")
    counts = {wnid: 0 for wnid in wnids}
    for wnid in sp.column("wnid").to_pylist():
        counts[wnid] += 1
    if settings.ap_source == "pair_a":
        files = sp.column("file_a").to_pylist()
        ap = pa.table({"image_id": [image_id(file) for file in files], "label": sp.column("label"),
                       "class_name": sp.column("class_name"), "wnid": sp.column("wnid"), "file": sp.column("file_a"),
                       "sha256": sp.column("sha256_a"), "rank_in_class": sp.column("rank_in_class")})
        ap = ap.cast(layout.arrow_schema("ap", wnids, images=False)).combine_chunks()
        ap_problems: list[str] = []
    else:
        ap_rows, ap_problems = random_ap_rows(classes, counts, Path(images_root), settings.seed)
        ap = pa.Table.from_pylist(ap_rows, schema=layout.arrow_schema("ap", wnids, images=False))
    if ap_problems:
        raise ProblemsFound(f"{images_root}: cannot draw the AP images, nothing built", ap_problems)
    shortfalls = shortfall_lines(classes, counts, target)
    if shortfalls and not allow_short:
        raise ProblemsFound(
            f"{manifest_dir}: classes short of {target} pairs (pass --allow-short to build anyway), nothing built",
            shortfalls)
    return ReleasePlan(classes, settings, sp, ap, built_with_versions(), shortfalls)


def _sp_table(pairs: pa.Table, classes: tuple[ClassEntry, ...], target: int) -> pa.Table:
    """The SP manifest rows: the pairs ranked below the target, in (label, rank) order, with
    Arrow compute rather than a Python dict per pair (a plan of ImageNet size has 29,359)."""
    import pyarrow.compute as pc

    wnids = [c.wnid for c in classes]
    pairs = pairs.filter(pc.less(pairs.column("rank_in_class"), target))
    labels = pc.index_in(pairs.column("wnid"), value_set=pa.array(wnids, pa.string()))  # validated: all present
    pairs = pairs.append_column("_label", labels).sort_by([("_label", "ascending"), ("rank_in_class", "ascending")])
    labels = pairs.column("_label")
    table = pa.table({
        "pair_id": pairs.column("pair_id"), "label": labels,
        "class_name": pc.take(pa.array([c.name for c in classes], pa.string()), labels),
        **{name: pairs.column(name) for name in ("wnid", "file_a", "file_b", "sha256_a", "sha256_b", "tags",
                                                 "rank_in_class")},
    })
    return table.cast(layout.arrow_schema("sp", wnids, images=False)).combine_chunks()


def shortfall_lines(classes: tuple[ClassEntry, ...], counts: dict[str, int], target: int) -> list[str]:
    """One line per class with some pairs but fewer than the target; one line for all empty classes."""
    lines = [f"{c.wnid} ({c.name}): {counts[c.wnid]} of {target} pairs"
             for c in classes if 0 < counts[c.wnid] < target]
    empty = [c.wnid for c in classes if counts[c.wnid] == 0]
    if empty:
        lines.append(f"{len(empty)} selected class(es) have no pairs: {', '.join(empty)}")
    return lines


def random_ap_rows(classes, counts: dict[str, int], root: Path, seed: int) -> tuple[list[dict], list[str]]:
    """AP as an independent sample: per class, as many images as the class has SP pairs, drawn
    with a seeded shuffle of the class folder (sorted names, so the draw depends only on the seed,
    the wnid and the folder's contents). Unreadable files and repeated bytes are passed over."""
    from pair_manifest.images import ImageReadError, is_image_name, probe, sha256_file

    rows, problems = [], []
    for label, entry in enumerate(classes):
        wanted = counts[entry.wnid]
        if wanted == 0:
            continue
        folder = root / entry.wnid
        if not folder.is_dir():
            problems.append(f"{entry.wnid}: no class folder under {root}")
            continue
        names = sorted(p.name for p in folder.iterdir() if p.is_file() and not p.is_symlink() and is_image_name(p.name))
        random.Random(f"semantic-pairs/ap/{seed}/{entry.wnid}").shuffle(names)
        seen: set[str] = set()
        for name in names:
            if len(seen) == wanted:
                break
            try:
                probe(folder / name)
            except ImageReadError:
                continue
            digest = sha256_file(folder / name)
            if digest in seen:
                continue
            seen.add(digest)
            file = f"{entry.wnid}/{name}"
            rows.append({"image_id": image_id(file), "label": label, "class_name": entry.name, "wnid": entry.wnid,
                         "file": file, "sha256": digest, "rank_in_class": len(seen) - 1})
        if len(seen) < wanted:
            problems.append(f"{entry.wnid}: {len(seen)} usable distinct images, {wanted} needed for AP")
    return rows, problems


# ---------------------------------------------------------------------------------------------
# Manifest release -> plan (materialize)


def read_release_manifests(files: dict[str, bytes], origin: str) -> ReleasePlan:
    """The plan recorded in a release's `manifest/sp-*.parquet` and `manifest/ap-*.parquet`."""
    tables, metadata = {}, {}
    for kind in layout.KINDS:
        data = files.get(layout.manifest_path(kind))
        if data is None:
            raise UserError(f"{origin}: no {layout.manifest_path(kind)} (is it a semantic-pairs release?)")
        try:
            table = pq.read_table(io.BytesIO(data))
        except (pa.ArrowInvalid, OSError) as error:
            raise UserError(f"{origin}/{layout.manifest_path(kind)}: not a readable Parquet file ({error})") from None
        raw = (table.schema.metadata or {}).get(layout.RELEASE_METADATA_KEY)
        if raw is None:
            raise UserError(f"{origin}/{layout.manifest_path(kind)}: no {layout.RELEASE_METADATA_KEY.decode()} metadata")
        tables[kind], metadata[kind] = table, raw
    if metadata["sp"] != metadata["ap"]:
        raise UserError(f"{origin}: the SP and AP manifests come from different builds")
    try:
        meta = json.loads(metadata["sp"])
        settings = BuildSettings(**meta["settings"])
        classes = tuple(ClassEntry(**c) for c in meta["classes"])
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise UserError(f"{origin}: release metadata is malformed ({error})") from None
    if meta.get("schema_version") != layout.RELEASE_SCHEMA_VERSION:
        raise UserError(f"{origin}: release schema version {meta.get('schema_version')!r}, "
                        f"expected {layout.RELEASE_SCHEMA_VERSION!r}")
    # The class list must be real ImageNet-1K classes (raises naming the bad row otherwise).
    selection_from_rows([{"wnid": c.wnid} for c in classes], f"{origin} class list")
    wnids = [c.wnid for c in classes]
    plan_tables = {}
    for kind in layout.KINDS:
        schema = layout.arrow_schema(kind, wnids, images=False)
        table = tables[kind]
        if table.schema.names != schema.names:
            raise UserError(f"{origin}/{layout.manifest_path(kind)}: columns {table.schema.names}, "
                            f"expected {schema.names}")
        try:
            plan_tables[kind] = table.cast(schema.with_metadata(None))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
            raise UserError(f"{origin}/{layout.manifest_path(kind)}: column types differ ({error})") from None
    plan = ReleasePlan(classes, settings, plan_tables["sp"], plan_tables["ap"], meta.get("built_with", {}))
    _check_release_rows(plan, origin)
    return plan


def _check_release_rows(plan: ReleasePlan, origin: str) -> None:
    """Ids and files safe to use as paths, labels within the class list, rows in release order."""
    from pair_manifest.file_ids import check_file_id

    problems = []
    for kind in layout.KINDS:
        rows = plan.table(kind).select(["label", "wnid", "rank_in_class", *layout.FILE_COLUMNS[kind]]).to_pylist()
        keys = [(r["label"], r["rank_in_class"]) for r in rows]
        if keys != sorted(keys):
            problems.append(f"{layout.manifest_path(kind)}: rows are not in (label, rank_in_class) order")
        for n, row in enumerate(rows):
            if not 0 <= row["label"] < len(plan.classes) or plan.classes[row["label"]].wnid != row["wnid"]:
                problems.append(f"{layout.manifest_path(kind)} row {n}: label {row['label']} does not name {row['wnid']}")
            for column in layout.FILE_COLUMNS[kind]:
                try:
                    check_file_id(row["wnid"], row[column])
                except UserError as error:
                    problems.append(f"{layout.manifest_path(kind)} row {n}: {error}")
    if problems:
        raise ProblemsFound(f"{origin}: the manifest release is inconsistent", problems)
