"""Image shards: which rows go in which Parquet file, and writing one file.

Rows keep the release order (label, then rank); each tier's rows are cut into shards that stay
under `layout.SHARD_IMAGE_BYTES` of images. The cut depends only on the file sizes, which the
SHA-256 check pins down, so the same release gives the same shards on any machine.

A shard is written by streaming its images into row groups of at most
`layout.ROW_GROUP_IMAGE_BYTES`, so memory stays bounded whatever the size of the dataset. The
original file bytes go in unchanged (`{"bytes", "path"}`, the `datasets` Image storage), and
each is hashed as it is read, the one read of it a build makes: bytes that differ from the
release never reach a finished shard.
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
from builders.direct_file import DirectFile
from builders.plan import ReleasePlan
from builders.sources import Source


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


class SourceCheck:
    """What the writers found while hashing the bytes they read, shared by all of them.

    A file whose bytes differ from the release makes the build fail; once one is found, every
    writer stops at its next file (`failed`), since the staging folder will be thrown away."""

    def __init__(self) -> None:
        self.problems: dict[str, str] = {}
        self.failed = threading.Event()
        self._lock = threading.Lock()

    def report(self, file: str, problem: str) -> None:
        with self._lock:
            self.problems.setdefault(file, problem)
        self.failed.set()


def write_shard(job: ShardJob, plan: ReleasePlan, sources: dict[str, Source], target: Path, check: SourceCheck,
                on_bytes: Callable[[int], None] = lambda n: None) -> int | None:
    """Write `target` (via `target.partial`, fsynced, then renamed); return its size in bytes, or
    None, leaving nothing, if a source's bytes did not match (`check` names it) or another
    writer found one."""
    schema = layout.arrow_schema(job.kind, plan.class_wnids, images=True)
    small = plan.table(job.kind).take(pa.array(job.rows, pa.int64()))
    file_columns = layout.FILE_COLUMNS[job.kind]
    files = {c: small.column(c).to_pylist() for c in file_columns}
    row_bytes = [sum(sources[files[c][i]].size for c in file_columns) for i in range(small.num_rows)]
    partial = target.with_name(target.name + ".partial")
    target.parent.mkdir(parents=True, exist_ok=True)
    sink = DirectFile(partial)
    try:
        with pq.ParquetWriter(sink, schema, **layout.writer_options(job.kind, images=True)) as writer:
            for start, stop in row_groups(row_bytes):
                columns = {name: small.column(name).slice(start, stop - start) for name in small.column_names}
                images = _read_images([files[c][start:stop] for c in file_columns], sources, check)
                if images is None:
                    break
                for image_column, file_column, data in zip(layout.IMAGE_COLUMNS[job.kind], file_columns, images):
                    columns[image_column] = pa.StructArray.from_arrays(
                        [data, pa.array(files[file_column][start:stop], pa.string())], names=["bytes", "path"])
                writer.write_table(pa.table([columns[n] for n in schema.names], schema=schema),
                                   row_group_size=stop - start)
                on_bytes(sum(row_bytes[start:stop]))
        if check.failed.is_set():
            sink.close()
            partial.unlink(missing_ok=True)
            return None
        sink.finish()
        os.replace(partial, target)
    except BaseException:
        sink.close()
        partial.unlink(missing_ok=True)
        raise
    return sink.size


_buffers = threading.local()


def _row_group_buffer(size: int) -> pa.Buffer:
    """This thread's image buffer, reused from one row group to the next (a row group is written
    before the next is read): fresh memory would cost a page fault per 4 KiB, every time."""
    buffer = getattr(_buffers, "buffer", None)
    if buffer is None or buffer.size < size:
        buffer = pa.allocate_buffer(max(size, layout.ROW_GROUP_IMAGE_BYTES))
        _buffers.buffer = buffer
    return buffer


def _read_images(columns: list[list[str]], sources: dict[str, Source], check: SourceCheck) -> list[pa.BinaryArray] | None:
    """The files of each image column as Arrow binary arrays, read straight into one buffer (one
    copy from the page cache, none per image), each hashed on the way: this is the only time a
    build reads an image, so it is where the SHA-256 is checked. None once the build has failed."""
    total = sum(sources[name].size for names in columns for name in names)
    buffer = _row_group_buffer(total)
    view = memoryview(buffer).cast("B")
    arrays, base = [], 0
    try:
        for names in columns:
            lengths = np.array([sources[name].size for name in names], dtype=np.int64)
            offsets = np.zeros(len(names) + 1, dtype=np.int32)
            np.cumsum(lengths, out=offsets[1:])
            for name, start, stop in zip(names, offsets[:-1].tolist(), offsets[1:].tolist()):
                if check.failed.is_set():
                    return None
                problem = _read_into(name, sources[name], view[base + start:base + stop])
                if problem:
                    check.report(name, problem)
                    return None
            data = buffer.slice(base, int(offsets[-1]))
            arrays.append(pa.BinaryArray.from_buffers(pa.binary(), len(names), [None, pa.py_buffer(offsets), data]))
            base += int(offsets[-1])
    finally:
        view.release()
    return arrays


def _read_into(name: str, source: Source, target: memoryview) -> str | None:
    """Fill `target` with the file and check its SHA-256; the problem, if any."""
    try:
        fd = os.open(source.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        try:
            filled = 0
            while filled < len(target):
                count = os.readv(fd, [target[filled:]])
                if not count:
                    break
                filled += count
            grown = os.read(fd, 1)
        finally:
            os.close(fd)
    except OSError as error:
        return f"{name}: cannot be read ({error.strerror or error})"
    if filled != len(target) or grown:
        return f"{name}: changed size during the build ({source.size} bytes when located)"
    actual = hashlib.sha256(target).hexdigest()
    if actual != source.sha256:
        return f"{name}: bytes differ from the release (sha256 {actual[:16]}…, expected {source.sha256[:16]}…)"
    return None
