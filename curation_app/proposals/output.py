"""`DIR/proposals.parquet`: columns `wnid, file_a, file_b, score, rank, embedder` (fixed interface).

One row per proposed pair; `rank` counts from 0 (best) within each class; files are `<wnid>/<name>`
with `file_a < file_b`. Written atomically (temp file, fsync, rename), and reproducibly: the same
inputs give the same bytes (no timestamps in the file). The app records a decision taken on a
proposal with source `proposal:<embedder>:<rank>`, which `manifest stats` turns into acceptance per
embedder and per rank bucket.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pair_manifest.errors import UserError

PROPOSALS_FILE = "proposals.parquet"
SCHEMA = pa.schema([
    ("wnid", pa.string()), ("file_a", pa.string()), ("file_b", pa.string()),
    ("score", pa.float64()), ("rank", pa.int64()), ("embedder", pa.string()),
])
METADATA_KEY = b"semantic_pairs.proposals"


def decision_source(embedder: str, rank: int) -> str:
    """The `source` of a decision taken on a proposal (parsed by pair_manifest.stats)."""
    return f"proposal:{embedder}:{int(rank)}"


def write_proposals(project_dir: str | Path, rows: list[dict], info: dict) -> Path:
    path = Path(project_dir) / PROPOSALS_FILE
    table = pa.Table.from_pylist(rows, schema=SCHEMA).replace_schema_metadata(
        {METADATA_KEY: json.dumps(info, sort_keys=True).encode()})
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, temporary, compression="zstd")
    with open(temporary, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return path


def read_proposals(project_dir: str | Path) -> pa.Table:
    """The proposals of a project, in (class, rank) order; a clear error if there are none."""
    path = Path(project_dir) / PROPOSALS_FILE
    if not path.is_file():
        raise UserError(f"{path}: no proposals yet (run `semantic-pairs propose --project {project_dir}`)")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as error:
        raise UserError(f"{path}: not a readable Parquet file ({error})") from None
    missing = [name for name in SCHEMA.names if name not in table.column_names]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
    return table.select(SCHEMA.names)
