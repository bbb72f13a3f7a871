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
                on_bytes: Callable[[int], None], readers: Readers) -> dict[str, int] | None:
    """Write the job's files under `folder` (each via `<name>.partial`, fsynced, then renamed);
    return their sizes by relative path, or None, leaving nothing, if a source's bytes did not
    match (`check` names it) or another writer found one.

    The next row group is read and hashed (by the reader threads) while this one is encoded and
    written, when a buffer is free: a shard written alone, like the last one of a build, still
    keeps every core busy."""
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
    groups = row_groups(row_bytes)

    def read(group: int, *, wait_for_buffer: bool = True) -> PendingRead | None:
        start, stop = groups[group]
        return readers.read([files[c][start:stop] for c in read_columns], sources, check,
                            wait_for_buffer=wait_for_buffer)

    reading: list[PendingRead] = []  # in flight, oldest first; each holds one of the readers' slots
    try:
        for path in job.paths:
            targets[path].parent.mkdir(parents=True, exist_ok=True)
            sinks[path] = DirectFile(partials[path])
        writers = [pq.ParquetWriter(sinks[path], layout.arrow_schema(kind, plan.class_wnids, images=True),
                                    **layout.writer_options(kind, images=True)) for kind, path in zip(job.kinds, job.paths)]
        try:
            for group, (start, stop) in enumerate(groups):
                if not reading:
                    reading.append(read(group))
                images = reading[0].result()
                if images is None:
                    break
                if group + 1 < len(groups):
                    ahead = read(group + 1, wait_for_buffer=False)  # None when every buffer is in use
                    if ahead:
                        reading.append(ahead)
                data = dict(zip(read_columns, images))
                for kind, writer in zip(job.kinds, writers):
                    writer.write_table(_row_group(tables[kind], kind, start, stop, data), row_group_size=stop - start)
                reading.pop(0).release()
                on_bytes(sum(embedded[start:stop]))
        finally:
            for pending in reading:
                pending.release()
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
    """The threads that read and hash image files, shared by all the writers of a build.

    Reading and hashing is most of a build's CPU time, so the files of a row group are split
    between the threads (read() and hashlib release the GIL). At most one row group per writer,
    and one more, is in memory at a time: one writer at a time may read ahead."""

    def __init__(self, threads: int, writers: int | None = None):
        self.threads = max(1, threads)
        self.pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="read")
        self._slots = threading.Semaphore((writers or self.threads) + 1)

    def __enter__(self) -> "Readers":
        return self

    def __exit__(self, *exc) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def _take(self, size: int, wait_for_buffer: bool) -> pa.Buffer | None:
        if not self._slots.acquire(blocking=wait_for_buffer):
            return None
        return pa.allocate_buffer(max(size, 1))

    def _give(self, buffer: pa.Buffer) -> None:
        self._slots.release()

    def read(self, columns: list[list[str]], sources: dict[str, Source], check: SourceCheck, *,
             wait_for_buffer: bool = True) -> PendingRead | None:
        """Start reading the files of each image column into one buffer (one copy from the page
        cache, none per image), each hashed on the way: this is the only time a build reads an
        image, so it is where the SHA-256 is checked. None if no buffer is free and
        `wait_for_buffer` is False."""
        total = sum(sources[name].size for names in columns for name in names)
        buffer = self._take(total, wait_for_buffer)
        if buffer is None:
            return None
        arrays, todo, base = [], [], 0
        for names in columns:
            lengths = np.array([sources[name].size for name in names], dtype=np.int64)
            offsets = np.zeros(len(names) + 1, dtype=np.int32)
            np.cumsum(lengths, out=offsets[1:])
            todo += [(name, base + start, base + stop)
                     for name, start, stop in zip(names, offsets[:-1].tolist(), offsets[1:].tolist())]
            data = buffer.slice(base, int(offsets[-1]))
            arrays.append(pa.BinaryArray.from_buffers(pa.binary(), len(names), [None, pa.py_buffer(offsets), data]))
            base += int(offsets[-1])
        view = memoryview(buffer).cast("B")

        def read_part(part: list[tuple[str, int, int]]) -> None:
            for name, start, stop in part:
                if check.failed.is_set():
                    return
                problem = _read_into(name, sources[name], view[start:stop])
                if problem:
                    check.report(name, problem)
                    return

        futures = [self.pool.submit(read_part, part) for part in _split_by_bytes(todo, self.threads)]
        return PendingRead(self, buffer, view, arrays, futures, check)


class PendingRead:
    """One row group's files being read into a buffer (one of the readers' slots)."""

    def __init__(self, readers: Readers, buffer: pa.Buffer, view: memoryview, arrays: list[pa.BinaryArray],
                 futures: list, check: SourceCheck):
        self._readers, self._buffer, self._view = readers, buffer, view
        self.arrays, self.futures, self.check = arrays, futures, check

    def result(self) -> list[pa.BinaryArray] | None:
        """The image columns as Arrow binary arrays over the buffer; None once the build has failed."""
        wait(self.futures)
        for future in self.futures:
            future.result()
        return None if self.check.failed.is_set() else self.arrays

    def release(self) -> None:
        """Give the buffer back, once no reader writes into it and its rows are written."""
        if self._buffer is None:
            return
        wait(self.futures)
        self._view.release()
        self._readers._give(self._buffer)
        self._buffer = None


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
