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
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
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


def row_groups(row_bytes: list[int]) -> list[tuple[int, int]]:
    """(start, stop) of each row group: at most ROW_GROUP_IMAGE_BYTES of images (or one row)."""
    groups, start, current = [], 0, 0
    for i, size in enumerate(row_bytes):
        if i > start and (current + size > layout.ROW_GROUP_IMAGE_BYTES or i - start >= layout.ROW_GROUP_MAX_ROWS):
            groups.append((start, i))
            start, current = i, 0
        current += size
    if len(row_bytes) > start:
        groups.append((start, len(row_bytes)))
    return groups


def write_shard(job: ShardJob, plan: ReleasePlan, images_root: Path, target: Path, sizes: dict[str, int],
                on_bytes: Callable[[int], None] = lambda n: None) -> int:
    """Write `target` (via `target.partial`, fsynced, then renamed); return its size in bytes."""
    schema = layout.features(job.kind, plan.class_wnids, images=True).arrow_schema
    small = plan.table(job.kind).take(pa.array(job.rows, pa.int64()))
    file_columns = layout.FILE_COLUMNS[job.kind]
    files = {c: small.column(c).to_pylist() for c in file_columns}
    hashes = {c: small.column(s).to_pylist() for c, s in zip(file_columns, layout.SHA_COLUMNS[job.kind])}
    row_bytes = [sum(sizes[files[c][i]] for c in file_columns) for i in range(small.num_rows)]
    partial = target.with_name(target.name + ".partial")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        # A path, not a Python file object: pyarrow then writes natively, without the GIL.
        with pq.ParquetWriter(str(partial), schema, **layout.writer_options(job.kind, images=True)) as writer:
            for start, stop in row_groups(row_bytes):
                columns = {name: small.column(name).slice(start, stop - start) for name in small.column_names}
                images = _read_images(images_root, [(files[c][start:stop], hashes[c][start:stop])
                                                    for c in file_columns], sizes)
                for image_column, file_column, data in zip(layout.IMAGE_COLUMNS[job.kind], file_columns, images):
                    columns[image_column] = pa.StructArray.from_arrays(
                        [data, pa.array(files[file_column][start:stop], pa.string())], names=["bytes", "path"])
                writer.write_table(pa.table([columns[n] for n in schema.names], schema=schema),
                                   row_group_size=stop - start)
                on_bytes(sum(row_bytes[start:stop]))
        fd = os.open(partial, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return target.stat().st_size


_buffers = threading.local()


def _row_group_buffer(size: int) -> pa.Buffer:
    """This thread's image buffer, reused from one row group to the next (a row group is written
    before the next is read): fresh memory would cost a page fault per 4 KiB, every time."""
    buffer = getattr(_buffers, "buffer", None)
    if buffer is None or buffer.size < size:
        buffer = pa.allocate_buffer(max(size, layout.ROW_GROUP_IMAGE_BYTES))
        _buffers.buffer = buffer
    return buffer


def _read_images(root: Path, columns: list[tuple[list[str], list[str]]], sizes: dict[str, int]) -> list[pa.BinaryArray]:
    """The files of each image column as Arrow binary arrays, read straight into one buffer (one
    copy from the page cache, none per image), each checked against its SHA-256 on the way."""
    total = sum(sizes[name] for names, _ in columns for name in names)
    buffer = _row_group_buffer(total)
    view = memoryview(buffer).cast("B")
    arrays, base = [], 0
    try:
        for names, digests in columns:
            lengths = np.array([sizes[name] for name in names], dtype=np.int64)
            offsets = np.zeros(len(names) + 1, dtype=np.int32)
            np.cumsum(lengths, out=offsets[1:])
            for name, digest, start, stop in zip(names, digests, offsets[:-1].tolist(), offsets[1:].tolist()):
                _read_into(root / name, name, view[base + start:base + stop], digest)
            data = buffer.slice(base, int(offsets[-1]))
            arrays.append(pa.BinaryArray.from_buffers(pa.binary(), len(names), [None, pa.py_buffer(offsets), data]))
            base += int(offsets[-1])
    finally:
        view.release()
    return arrays


def _read_into(path: Path, name: str, target: memoryview, digest: str) -> None:
    try:
        with open(path, "rb", buffering=0) as handle:
            filled = 0
            while filled < len(target):
                count = handle.readinto(target[filled:])
                if not count:
                    break
                filled += count
            grown = handle.read(1)
    except OSError as error:
        raise SourceChanged(f"{name}: became unreadable during the build ({error.strerror or error})") from None
    if filled != len(target) or grown or hashlib.sha256(target).hexdigest() != digest:
        raise SourceChanged(f"{name}: bytes changed during the build (no longer match sha256 {digest[:16]}…)")
