"""The pair manifest: the Parquet artifact a curation produces.

A manifest folder holds `pairs.parquet` (one row per accepted pair) and `decisions.parquet` (the
full decision log, for audit and for merging). Both carry an explicit schema and, in the file
metadata, the schema version and the class list that gives `label` its meaning.

Writes are atomic (temp file, fsync, rename, fsync of the folder) and reproducible: the same
decisions give the same bytes, because every field comes from the log (never from the clock) and
the writer options are fixed.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute below
import pyarrow.parquet as pq

from pair_manifest.atomic import write_atomically, write_files_atomically
from pair_manifest.classes import ClassSelection, load_selection, selection_from_wnids
from pair_manifest.decisions import AcceptedPair, Decision
from pair_manifest.errors import UserError
from pair_manifest.file_ids import pair_id
from pair_manifest.locks import writable_output
from pair_manifest.store import DecisionStore

SCHEMA_VERSION = "1"
PAIRS_FILE = "pairs.parquet"
DECISIONS_FILE = "decisions.parquet"
META_VERSION = b"semantic_pairs.schema_version"
META_KIND = b"semantic_pairs.kind"
META_CLASSES = b"semantic_pairs.class_wnids"
REVIEW_STATUSES = ("unreviewed", "confirmed")

_TIME = pa.timestamp("us", tz="UTC")
PAIRS_SCHEMA = pa.schema([
    pa.field("pair_id", pa.string(), nullable=False),
    pa.field("wnid", pa.string(), nullable=False),
    pa.field("label", pa.int32(), nullable=False),
    pa.field("file_a", pa.string(), nullable=False),
    pa.field("file_b", pa.string(), nullable=False),
    pa.field("sha256_a", pa.string(), nullable=False),
    pa.field("sha256_b", pa.string(), nullable=False),
    pa.field("tags", pa.list_(pa.string()), nullable=False),
    pa.field("annotator", pa.string(), nullable=False),
    pa.field("decided_at", _TIME, nullable=False),
    pa.field("rank_in_class", pa.int32(), nullable=False),
    pa.field("review_status", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),  # "manual" or "proposal:<embedder>:<rank>"
])
DECISIONS_SCHEMA = pa.schema([
    pa.field("seq", pa.int64(), nullable=False),
    pa.field("idempotency_key", pa.string(), nullable=False),
    pa.field("wnid", pa.string(), nullable=False),
    pa.field("file_a", pa.string(), nullable=False),
    pa.field("file_b", pa.string(), nullable=False),
    pa.field("sha256_a", pa.string(), nullable=False),
    pa.field("sha256_b", pa.string(), nullable=False),
    pa.field("verdict", pa.string(), nullable=False),
    pa.field("tags", pa.list_(pa.string()), nullable=False),
    pa.field("annotator", pa.string(), nullable=False),
    pa.field("decided_at", _TIME, nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("review_of", pa.int64(), nullable=True),
    pa.field("undo_of", pa.int64(), nullable=True),
])


@dataclass
class Manifest:
    pairs: pa.Table
    decisions: pa.Table | None
    class_wnids: list[str]
    folder: Path | None = None


def _metadata(kind: str, class_wnids: list[str]) -> dict[bytes, bytes]:
    return {META_VERSION: SCHEMA_VERSION.encode(), META_KIND: kind.encode(),
            META_CLASSES: json.dumps(class_wnids).encode()}


def pairs_table(pairs: list[AcceptedPair], selection: ClassSelection) -> pa.Table:
    outside = sorted({p.decision.wnid for p in pairs if p.decision.wnid not in selection})
    if outside:
        raise UserError(f"{selection.origin}: decisions name classes outside the selection: {', '.join(outside)}")
    pairs = sorted(pairs, key=lambda p: (selection.label_of(p.decision.wnid), p.rank_in_class))
    columns = {name: [] for name in PAIRS_SCHEMA.names}
    for pair in pairs:
        d = pair.decision
        for name, value in (
            ("pair_id", pair_id(d.file_a, d.file_b)), ("wnid", d.wnid), ("label", selection.label_of(d.wnid)),
            ("file_a", d.file_a), ("file_b", d.file_b), ("sha256_a", d.sha256_a), ("sha256_b", d.sha256_b),
            ("tags", list(d.tags)), ("annotator", d.annotator), ("decided_at", _timestamp(d.decided_at)),
            ("rank_in_class", pair.rank_in_class), ("review_status", pair.review_status), ("source", d.source),
        ):
            columns[name].append(value)
    table = pa.table(columns, schema=PAIRS_SCHEMA)
    return table.replace_schema_metadata(_metadata("pairs", selection.wnids))


def decisions_table(decisions: list[Decision], class_wnids: list[str]) -> pa.Table:
    columns = {name: [] for name in DECISIONS_SCHEMA.names}
    for d in decisions:
        for name in DECISIONS_SCHEMA.names:
            value = getattr(d, name)
            if name == "tags":
                value = list(value)
            elif name == "decided_at":
                value = _timestamp(value)
            columns[name].append(value)
    table = pa.table(columns, schema=DECISIONS_SCHEMA)
    return table.replace_schema_metadata(_metadata("decisions", class_wnids))


def _timestamp(text: str):
    import pandas as pd

    return pd.Timestamp(text).to_pydatetime()


def _parquet_writer(table: pa.Table):
    """Fixed writer options, so the same table always gives the same bytes."""
    return lambda handle: pq.write_table(table, handle, compression="zstd", write_statistics=True,
                                         use_dictionary=True, store_schema=True)


def write_table_atomically(table: pa.Table, path: Path) -> None:
    write_atomically(path, _parquet_writer(table))


def write_manifest(out_dir: str | Path, pairs: pa.Table, decisions: pa.Table) -> None:
    """Both files or neither (see write_files_atomically), by one process at a time: a second
    export, import or merge into the same folder is refused while this one writes."""
    out = Path(out_dir)
    with writable_output(out, "manifest folder"):
        write_files_atomically({out / DECISIONS_FILE: _parquet_writer(decisions), out / PAIRS_FILE: _parquet_writer(pairs)})


def export_store(store: DecisionStore, out_dir: str | Path, selection: ClassSelection | None = None) -> Manifest:
    """Project store -> manifest folder. The class selection defaults to the project's own."""
    if selection is None:
        wnids = store.class_wnids()
        selection = selection_from_wnids(wnids, f"{store.path} class list") if wnids else load_selection()
    pairs = pairs_table(store.accepted_pairs(), selection)
    decisions = decisions_table(store.decisions(), selection.wnids)
    write_manifest(out_dir, pairs, decisions)
    return Manifest(pairs, decisions, selection.wnids, Path(out_dir))


def manifest_paths(path: str | Path) -> tuple[Path, Path | None]:
    """`pairs.parquet` (and `decisions.parquet` when present) of a folder or a pairs file."""
    path = Path(path)
    if path.is_dir():
        pairs = path / PAIRS_FILE
        decisions = path / DECISIONS_FILE
        if not pairs.is_file():
            raise UserError(f"{path}: no {PAIRS_FILE} in this folder (is it a manifest folder?)")
        return pairs, decisions if decisions.is_file() else None
    if not path.is_file():
        raise UserError(f"{path}: no such manifest file or folder")
    return path, None


def read_manifest(path: str | Path) -> Manifest:
    """Read and check the schema; problems name the file and the column."""
    pairs_path, decisions_path = manifest_paths(path)
    pairs = _read_checked(pairs_path, PAIRS_SCHEMA, "pairs")
    decisions = _read_checked(decisions_path, DECISIONS_SCHEMA, "decisions") if decisions_path else None
    raw = (pairs.schema.metadata or {}).get(META_CLASSES)
    try:
        class_wnids = json.loads(raw) if raw else []
    except ValueError:  # not JSON, or not UTF-8
        class_wnids = None
    if not isinstance(class_wnids, list) or not all(isinstance(w, str) for w in class_wnids):
        raise UserError(f"{pairs_path}: metadata {META_CLASSES.decode()} is not a JSON list of wnids")
    folder = Path(path) if Path(path).is_dir() else None
    return Manifest(pairs, decisions, class_wnids, folder)


def _read_checked(path: Path, schema: pa.Schema, kind: str) -> pa.Table:
    try:
        # ParquetFile, not read_table: read_table imports pyarrow.dataset (and with it pandas),
        # a third of a second a build or a validation would spend before its first check.
        table = pq.ParquetFile(path).read()
    except (pa.ArrowInvalid, OSError) as error:
        raise UserError(f"{path}: not a readable Parquet file ({error})") from None
    metadata = table.schema.metadata or {}
    version = metadata.get(META_VERSION, b"").decode("utf-8", "replace")
    if version != SCHEMA_VERSION:
        raise UserError(f"{path}: manifest schema version '{version or 'missing'}', expected '{SCHEMA_VERSION}'")
    problems = []
    for field in schema:
        if field.name not in table.schema.names:
            problems.append(f"column '{field.name}' is missing")
        elif not table.schema.field(field.name).type.equals(field.type):
            problems.append(f"column '{field.name}' is {table.schema.field(field.name).type}, expected {field.type}")
        else:
            problems += _null_problems(table.column(field.name), field)
    if problems:
        raise UserError(f"{path} ({kind}): " + "; ".join(problems))
    return table.select(schema.names)


def _null_problems(column: pa.ChunkedArray, field: pa.Field) -> list[str]:
    """Nulls where the schema allows none: in the column itself, or inside a list column (a null
    tag). Parquet files written by other tools mark every column nullable, so the type check
    alone lets them through."""
    problems = []
    if not field.nullable and column.null_count:
        problems.append(f"column '{field.name}' has {column.null_count} null value(s) "
                        f"(rows {_first_rows(column.is_null())}); every row needs one")
    if pa.types.is_list(field.type):
        lists = column.combine_chunks()
        items = lists.flatten()
        if items.null_count:
            rows = pa.compute.filter(pa.compute.list_parent_indices(lists), items.is_null()).unique()
            problems.append(f"column '{field.name}' has null items in {len(rows)} row(s) "
                            f"(rows {_first_rows(rows)})")
    return problems


def _first_rows(rows: pa.Array | pa.ChunkedArray, shown: int = 5) -> str:
    """'3, 7, 9, ...' from a boolean mask (rows where it is true) or an array of row numbers."""
    if pa.types.is_boolean(rows.type):
        rows = pa.compute.indices_nonzero(rows)
    rows = rows.to_pylist()
    return ", ".join(map(str, rows[:shown])) + (", ..." if len(rows) > shown else "")


def manifest_decisions(manifest: Manifest) -> list[Decision]:
    """The decision log of a manifest; a pairs file alone stands for one accept per row."""
    if manifest.decisions is not None:
        rows = manifest.decisions.to_pylist()
    else:
        rows = [dict(seq=i + 1, idempotency_key=f"pair:{r['pair_id']}:{r['annotator']}", verdict="accept",
                     review_of=None, undo_of=None, **{k: r[k] for k in (
                         "wnid", "file_a", "file_b", "sha256_a", "sha256_b", "tags", "annotator", "decided_at",
                         "source")})
                for i, r in enumerate(manifest.pairs.to_pylist())]
    return [
        Decision(seq=r["seq"], idempotency_key=r["idempotency_key"], wnid=r["wnid"], file_a=r["file_a"],
                 file_b=r["file_b"], sha256_a=r["sha256_a"], sha256_b=r["sha256_b"], verdict=r["verdict"],
                 tags=tuple(r["tags"]), annotator=r["annotator"],
                 decided_at=r["decided_at"].isoformat(timespec="microseconds").replace("+00:00", "Z"),
                 source=r["source"], review_of=r["review_of"], undo_of=r["undo_of"])
        for r in rows
    ]
