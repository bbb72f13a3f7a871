"""`DIR/proposals.parquet`: columns `wnid, file_a, file_b, score, rank, embedder` (fixed interface).

One row per proposed pair; `rank` counts from 0 (best) within each class; files are `<wnid>/<name>`
with `file_a < file_b`. Written atomically (`pair_manifest.atomic`), and reproducibly: the same
inputs give the same bytes (no timestamps in the file). The app records a decision taken on a
proposal with source `decision_source(embedder, rank)`, which `manifest stats` parses back
(`pair_manifest.stats.proposal_source`) into acceptance per embedder and per rank bucket.

This module owns the file: its name, schema, writing and reading (the app's `ProposalBook` and
the benchmarks read it through `read_table`).
"""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from curation_app.proposals.embedding import safe_label
from pair_manifest.atomic import write_atomically
from pair_manifest.errors import UserError

PROPOSALS_FILE = "proposals.parquet"
SCHEMA = pa.schema([
    ("wnid", pa.string()), ("file_a", pa.string()), ("file_b", pa.string()),
    ("score", pa.float64()), ("rank", pa.int64()), ("embedder", pa.string()),
])
METADATA_KEY = b"semantic_pairs.proposals"
_KINDS = {"wnid": "string", "file_a": "string", "file_b": "string", "score": "floating", "rank": "integer",
          "embedder": "string"}
_CHECKS = {"string": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t),
           "floating": lambda t: pa.types.is_floating(t) or pa.types.is_integer(t), "integer": pa.types.is_integer}


def decision_source(embedder: str, rank: int) -> str:
    """The `source` of a decision taken on a proposal: `proposal:<embedder>:<rank>`. The embedder
    label loses any ':' or white space (a SPEC such as `timm:vit_small` has one), so the three
    fields always parse back."""
    return f"proposal:{safe_label(embedder)}:{int(rank)}"


def proposals_path(project_dir: str | Path) -> Path:
    return Path(project_dir) / PROPOSALS_FILE


def write_proposals(project_dir: str | Path, rows: list[dict], info: dict) -> Path:
    path = proposals_path(project_dir)
    table = pa.Table.from_pylist(rows, schema=SCHEMA).replace_schema_metadata(
        {METADATA_KEY: json.dumps(info, sort_keys=True).encode()})
    write_atomically(path, lambda handle: pq.write_table(table, handle, compression="zstd"))
    return path


def read_table(path: str | Path) -> pa.Table:
    """The proposals file at `path`, its columns in `SCHEMA` order; a file of the wrong shape
    names every column that is missing or of the wrong type."""
    path = Path(path)
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as error:
        raise UserError(f"{path}: not a readable Parquet file ({error})") from None
    names = table.schema.names
    problems = [f"column '{name}' is missing" if name not in names else
                f"column '{name}' is {table.schema.field(name).type}, expected {kind}"
                for name, kind in _KINDS.items()
                if name not in names or not _CHECKS[kind](table.schema.field(name).type)]
    if problems:
        raise UserError(f"{path}: " + "; ".join(problems))
    return table.select(SCHEMA.names)


def read_info(path: str | Path) -> dict:
    """What `propose` recorded about the run (embedder SPEC, label, vector key, ...); {} if nothing."""
    try:
        metadata = pq.read_schema(path).metadata or {}
        return json.loads(metadata.get(METADATA_KEY, b"{}"))
    except (pa.ArrowInvalid, OSError, ValueError):
        return {}


def read_proposals(project_dir: str | Path) -> pa.Table:
    """The proposals of a project, in (class, rank) order; a clear error if there are none."""
    path = proposals_path(project_dir)
    if not path.is_file():
        raise UserError(f"{path}: no proposals yet (run `semantic-pairs propose --project {project_dir}`)")
    return read_table(path)
