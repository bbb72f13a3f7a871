"""Image shards: which rows go in which Parquet file, and writing one file.

Rows keep the release order (label, then rank); each tier's rows are cut into shards that stay
under `layout.SHARD_IMAGE_BYTES` of images. The cut depends only on the file sizes, which the
SHA-256 check pins down, so the same release gives the same shards on any machine.

A shard is written by streaming its images into row groups of at most
`layout.ROW_GROUP_IMAGE_BYTES`, so memory stays bounded whatever the size of the dataset. The
original file bytes go in unchanged (`{"bytes", "path"}`, the `datasets` Image storage); each is
hashed again on the way in, so a file changed after the check cannot slip into a release.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq

from builders import layout
from builders.plan import ReleasePlan
from pair_manifest.errors import UserError


class SourceChanged(UserError):
    """An image's bytes changed between the check and the write."""


@dataclass(frozen=True)
class ShardJob:
    kind: str
    tier: layout.Tier
    index: int
    count: int
    rows: tuple[int, ...]  # positions in the plan's table
    image_bytes: int

    @property
    def path(self) -> str:
        return layout.shard_path(self.kind, self.tier, self.index, self.count)


def plan_shards(plan: ReleasePlan, sizes: dict[str, int]) -> list[ShardJob]:
    tiers = layout.tiers_for(plan.settings.pairs_per_class)
    jobs = []
    for kind in layout.KINDS:
        table = plan.table(kind)
        ranks = table.column("rank_in_class").to_pylist()
        files = [table.column(c).to_pylist() for c in layout.FILE_COLUMNS[kind]]
        row_bytes = [sum(sizes[column[i]] for column in files) for i in range(table.num_rows)]
        for tier in tiers:
            groups: list[list[int]] = []
            current, current_bytes = [], 0
            for i, rank in enumerate(ranks):
                if not tier.holds(rank):
                    continue
                if current and current_bytes + row_bytes[i] > layout.SHARD_IMAGE_BYTES:
                    groups.append(current)
                    current, current_bytes = [], 0
                current.append(i)
                current_bytes += row_bytes[i]
            if current:
                groups.append(current)
            for index, rows in enumerate(groups):
                jobs.append(ShardJob(kind, tier, index, len(groups), tuple(rows), sum(row_bytes[i] for i in rows)))
    return jobs


def write_shard(job: ShardJob, plan: ReleasePlan, images_root: Path, target: Path,
                on_bytes: Callable[[int], None] = lambda n: None) -> int:
    """Write `target` (via `target.partial`, fsynced, then renamed); return its size in bytes."""
    schema = layout.features(job.kind, plan.class_wnids, images=True).arrow_schema
    small = plan.table(job.kind).take(pa.array(job.rows, pa.int64()))
    file_columns = layout.FILE_COLUMNS[job.kind]
    sha_columns = layout.SHA_COLUMNS[job.kind]
    files = {c: small.column(c).to_pylist() for c in file_columns}
    hashes = {c: small.column(c).to_pylist() for c in sha_columns}
    partial = target.with_name(target.name + ".partial")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(partial, "wb") as handle:
            with pq.ParquetWriter(handle, schema, **layout.writer_options(job.kind, images=True)) as writer:
                start, batch_bytes, images = 0, 0, {c: [] for c in file_columns}
                for i in range(small.num_rows):
                    row = {c: _read_checked(images_root, files[c][i], hashes[s][i])
                           for c, s in zip(file_columns, sha_columns)}
                    size = sum(len(b) for b in row.values())
                    if i > start and (batch_bytes + size > layout.ROW_GROUP_IMAGE_BYTES
                                      or i - start >= layout.ROW_GROUP_MAX_ROWS):
                        _write_group(writer, schema, small.slice(start, i - start), images, files, start, job.kind)
                        on_bytes(batch_bytes)
                        start, batch_bytes, images = i, 0, {c: [] for c in file_columns}
                    for c in file_columns:
                        images[c].append(row[c])
                    batch_bytes += size
                if small.num_rows > start:
                    _write_group(writer, schema, small.slice(start), images, files, start, job.kind)
                    on_bytes(batch_bytes)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return target.stat().st_size


def _read_checked(root: Path, file: str, digest: str) -> bytes:
    path = root / file  # resolved and checked by sources.check_sources before any write
    try:
        data = path.read_bytes()
    except OSError as error:
        raise SourceChanged(f"{file}: became unreadable during the build ({error.strerror or error})") from None
    if hashlib.sha256(data).hexdigest() != digest:
        raise SourceChanged(f"{file}: bytes changed during the build (no longer match sha256 {digest[:16]}…)")
    return data


def _write_group(writer, schema: pa.Schema, small: pa.Table, images: dict[str, list[bytes]],
                 files: dict[str, list[str]], offset: int, kind: str) -> None:
    columns = {name: small.column(name) for name in small.column_names}
    for image_column, file_column in zip(layout.IMAGE_COLUMNS[kind], layout.FILE_COLUMNS[kind]):
        data = images[file_column]
        paths = files[file_column][offset:offset + len(data)]
        columns[image_column] = pa.StructArray.from_arrays(
            [pa.array(data, pa.binary()), pa.array(paths, pa.string())], names=["bytes", "path"])
    table = pa.table([columns[name] for name in schema.names], schema=schema)
    writer.write_table(table, row_group_size=table.num_rows)
