"""Image shards: which rows go in which Parquet files, and writing them.

Rows keep the release order (label, then rank); each tier's rows are cut into shards that stay
under `layout.SHARD_IMAGE_BYTES` of images. The cut depends only on the file sizes, which the
SHA-256 check pins down, so the same release gives the same shards on any machine.

When AP is the image_a of each SP pair (the default), AP shard k of a tier holds exactly the rows
of SP shard k, row group for row group, and one job writes both from the same bytes: each photo
is read and hashed once, not once for SP and again for AP. (AP shards are then about half the
size of SP's.) A random AP draw is cut and written on its own.

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
from concurrent.futures import ThreadPoolExecutor, wait
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
    kinds: tuple[str, ...]  # ("sp",), ("ap",), or ("sp", "ap"): AP written from SP's image_a bytes
    tier: layout.Tier
    index: int
    count: int
    rows: tuple[int, ...]   # positions in the plan's tables (the same in SP and AP when joint)
    image_bytes: int        # embedded by all of the job's files

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(layout.shard_path(kind, self.tier, self.index, self.count) for kind in self.kinds)


# AP columns that must equal SP's for AP to be written from SP's image_a bytes.
_AP_FROM_SP = (("label", "label"), ("wnid", "wnid"), ("rank_in_class", "rank_in_class"),
               ("file", "file_a"), ("sha256", "sha256_a"))


def ap_follows_sp(plan: ReleasePlan) -> bool:
    """AP row i is SP row i's image_a (the pair_a AP source, or a manifest release built so)."""
    return plan.ap.num_rows == plan.sp.num_rows and all(
        plan.ap.column(ap).equals(plan.sp.column(sp)) for ap, sp in _AP_FROM_SP)


def _row_bytes(plan: ReleasePlan, kind: str, sizes: dict[str, int]) -> list[int]:
    table = plan.table(kind)
    files = [table.column(c).to_pylist() for c in layout.FILE_COLUMNS[kind]]
    return [sum(sizes[column[i]] for column in files) for i in range(table.num_rows)]


def plan_shards(plan: ReleasePlan, sizes: dict[str, int]) -> list[ShardJob]:
    tiers = layout.tiers_for(plan.settings.pairs_per_class)
    groups = [("sp", "ap")] if ap_follows_sp(plan) else [("sp",), ("ap",)]
    jobs = []
    for kinds in groups:
        # The cut follows the first kind's bytes; a joint AP shard holds its image_a share.
        ranks = plan.table(kinds[0]).column("rank_in_class").to_pylist()
        row_bytes = _row_bytes(plan, kinds[0], sizes)
        embedded = row_bytes if len(kinds) == 1 else [
            total + image_a for total, image_a in zip(row_bytes, _row_bytes(plan, "ap", sizes))]
        for tier in tiers:
            cut: list[list[int]] = []
            current, current_bytes = [], 0
            for i, rank in enumerate(ranks):
                if not tier.holds(rank):
                    continue
                if current and current_bytes + row_bytes[i] > layout.SHARD_IMAGE_BYTES:
                    cut.append(current)
                    current, current_bytes = [], 0
                current.append(i)
                current_bytes += row_bytes[i]
            if current:
                cut.append(current)
            for index, rows in enumerate(cut):
                jobs.append(ShardJob(kinds, tier, index, len(cut), tuple(rows), sum(embedded[i] for i in rows)))
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


def write_shard(job: ShardJob, plan: ReleasePlan, sources: dict[str, Source], folder: Path, check: SourceCheck,
                on_bytes: Callable[[int], None] = lambda n: None, readers: Readers | None = None) -> dict[str, int] | None:
    """Write the job's files under `folder` (each via `<name>.partial`, fsynced, then renamed);
    return their sizes by relative path, or None, leaving nothing, if a source's bytes did not
    match (`check` names it) or another writer found one."""
    rows = pa.array(job.rows, pa.int64())
    tables = {kind: plan.table(kind).take(rows) for kind in job.kinds}
    read_columns = layout.FILE_COLUMNS[job.kinds[0]]  # SP's file_a, file_b (AP's image is file_a) or AP's file
    files = {c: tables[job.kinds[0]].column(c).to_pylist() for c in read_columns}
    sizes = {c: [sources[name].size for name in names] for c, names in files.items()}
    row_bytes = [sum(row) for row in zip(*sizes.values())]
    embedded = [sum(row) for row in zip(row_bytes, *([sizes["file_a"]] if job.kinds == ("sp", "ap") else []))]
    targets = {path: folder / path for path in job.paths}
    partials = {path: target.with_name(target.name + ".partial") for path, target in targets.items()}
    sinks: dict[str, DirectFile] = {}
    try:
        for path in job.paths:
            targets[path].parent.mkdir(parents=True, exist_ok=True)
            sinks[path] = DirectFile(partials[path])
        writers = [pq.ParquetWriter(sinks[path], layout.arrow_schema(kind, plan.class_wnids, images=True),
                                    **layout.writer_options(kind, images=True)) for kind, path in zip(job.kinds, job.paths)]
        try:
            for start, stop in row_groups(row_bytes):
                images = _read_images([files[c][start:stop] for c in read_columns], sources, check, readers)
                if images is None:
                    break
                data = dict(zip(read_columns, images))
                for kind, writer in zip(job.kinds, writers):
                    writer.write_table(_row_group(tables[kind], kind, start, stop, data), row_group_size=stop - start)
                on_bytes(sum(embedded[start:stop]))
        finally:
            for writer in writers:
                writer.close()
        if check.failed.is_set():
            raise _Stopped
        sizes = {}
        for path, sink in sinks.items():
            sink.finish()
            os.replace(partials[path], targets[path])
            sizes[path] = sink.size
        return sizes
    except BaseException as error:
        for path, sink in sinks.items():
            sink.close()
            partials[path].unlink(missing_ok=True)
        if isinstance(error, _Stopped):
            return None
        raise


class _Stopped(Exception):
    """The build failed elsewhere (a source's bytes differ): abandon this job's files."""


def _row_group(table: pa.Table, kind: str, start: int, stop: int, data: dict[str, pa.BinaryArray]) -> pa.Table:
    """Rows start..stop of a config with its image columns. `data` holds the bytes read, by file
    column: SP's image_a/image_b take file_a/file_b; AP's image takes its file's bytes, which
    are file_a's when AP is written with SP (ap_follows_sp)."""
    images = [data["file_a"], data["file_b"]] if kind == "sp" else [data.get("file", data.get("file_a"))]
    columns = [table.column(name).slice(start, stop - start) for name in table.column_names]
    for image_column, file_column, bytes_ in zip(layout.IMAGE_COLUMNS[kind], layout.FILE_COLUMNS[kind], images):
        paths = table.column(file_column).slice(start, stop - start).combine_chunks()
        columns.append(pa.StructArray.from_arrays([bytes_, paths], names=["bytes", "path"]))
    return pa.table(columns, names=table.column_names + list(layout.IMAGE_COLUMNS[kind]))


class Readers:
    """The threads that read and hash image files, shared by all the writers of a build."""

    def __init__(self, size: int):
        self.size = max(1, size)
        self.pool = ThreadPoolExecutor(max_workers=self.size, thread_name_prefix="read")

    def __enter__(self) -> "Readers":
        return self

    def __exit__(self, *exc) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


_buffers = threading.local()


def _row_group_buffer(size: int) -> pa.Buffer:
    """This thread's image buffer, reused from one row group to the next (a row group is written
    before the next is read): fresh memory would cost a page fault per 4 KiB, every time."""
    buffer = getattr(_buffers, "buffer", None)
    if buffer is None or buffer.size < size:
        buffer = pa.allocate_buffer(max(size, layout.ROW_GROUP_IMAGE_BYTES))
        _buffers.buffer = buffer
    return buffer


def _read_images(columns: list[list[str]], sources: dict[str, Source], check: SourceCheck,
                 readers: Readers | None = None) -> list[pa.BinaryArray] | None:
    """The files of each image column as Arrow binary arrays, read straight into one buffer (one
    copy from the page cache, none per image), each hashed on the way: this is the only time a
    build reads an image, so it is where the SHA-256 is checked. None once the build has failed.

    Reading and hashing is most of a build's CPU time, so the files of a row group are split
    between the `readers` threads (read() and hashlib release the GIL): even the last shard
    of a build is read on every core."""
    total = sum(sources[name].size for names in columns for name in names)
    buffer = _row_group_buffer(total)
    view = memoryview(buffer).cast("B")
    arrays, todo, base = [], [], 0
    try:
        for names in columns:
            lengths = np.array([sources[name].size for name in names], dtype=np.int64)
            offsets = np.zeros(len(names) + 1, dtype=np.int32)
            np.cumsum(lengths, out=offsets[1:])
            todo += [(name, base + start, base + stop)
                     for name, start, stop in zip(names, offsets[:-1].tolist(), offsets[1:].tolist())]
            data = buffer.slice(base, int(offsets[-1]))
            arrays.append(pa.BinaryArray.from_buffers(pa.binary(), len(names), [None, pa.py_buffer(offsets), data]))
            base += int(offsets[-1])

        def read(part: list[tuple[str, int, int]]) -> None:
            for name, start, stop in part:
                if check.failed.is_set():
                    return
                problem = _read_into(name, sources[name], view[start:stop])
                if problem:
                    check.report(name, problem)
                    return

        parts = _split_by_bytes(todo, readers.size if readers else 1)
        if readers is None or len(parts) == 1:
            for part in parts:
                read(part)
        else:
            futures = [readers.pool.submit(read, part) for part in parts]
            wait(futures)  # every reader is done with `view` before it is released
            for future in futures:
                future.result()
    finally:
        view.release()
    return None if check.failed.is_set() else arrays


def _split_by_bytes(items: list[tuple[str, int, int]], count: int) -> list[list[tuple[str, int, int]]]:
    """`items` (name, start, stop) cut into at most `count` consecutive runs of similar bytes."""
    total = sum(stop - start for _, start, stop in items)
    parts: list[list[tuple[str, int, int]]] = [[]]
    done = 0
    for item in items:
        if parts[-1] and done >= total * len(parts) / count:
            parts.append([])
        parts[-1].append(item)
        done += item[2] - item[1]
    return parts


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
