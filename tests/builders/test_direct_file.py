"""The page-cache-bypassing file the shards are written through: the bytes on disk are exactly the
bytes written, whatever the sizes of the writes, with or without O_DIRECT."""
from __future__ import annotations

import errno
import os
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from builders import direct_file
from builders.direct_file import ALIGN, DirectFile

CHUNK = 4 * ALIGN  # small, so a few KB cross several buffer swaps


def pieces(total: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out, left = [], total
    while left:
        n = min(left, rng.choice([0, 1, 7, ALIGN - 1, ALIGN, ALIGN + 3, CHUNK, 3 * CHUNK + 5]))
        out.append(rng.randbytes(n))
        left -= n
    return out


@pytest.mark.parametrize("total", [0, 1, ALIGN, CHUNK, 2 * CHUNK, 5 * CHUNK + 123, 40_000])
def test_file_holds_exactly_the_bytes_written(tmp_path, total):
    path = tmp_path / "out.bin"
    parts = pieces(total, seed=total)
    sink = DirectFile(path, chunk=CHUNK)
    for part in parts:
        assert sink.write(part) == len(part)
    assert sink.tell() == total
    sink.finish()
    assert path.read_bytes() == b"".join(parts)  # no block padding left at the end
    assert sink.closed


def test_write_time_refusal_of_o_direct_falls_back_to_buffered_writes(tmp_path, monkeypatch):
    """Some file systems accept O_DIRECT at open and refuse it on write (EINVAL); such a refusal
    cannot be produced on demand here, so os.write is wrapped to refuse the first direct write."""
    real_write, refused = os.write, []

    def write(fd, data):
        if fd == sink.fd and not refused:
            refused.append(fd)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    path = tmp_path / "out.bin"
    sink = DirectFile(path, chunk=CHUNK)
    assert sink.direct, "O_DIRECT refused at open here (no O_DIRECT, or tmpfs): nothing to fall back from"
    monkeypatch.setattr(direct_file.os, "write", write)
    data = random.Random(1).randbytes(3 * CHUNK + 17)
    sink.write(data)
    sink.finish()
    monkeypatch.undo()
    assert refused and not sink.direct
    assert path.read_bytes() == data


def test_abandoned_file_releases_its_descriptor(tmp_path):
    sink = DirectFile(tmp_path / "out.bin", chunk=CHUNK)
    sink.write(b"x" * (2 * CHUNK + 1))
    sink.close()
    with pytest.raises(OSError):
        os.fstat(sink.fd)


def test_parquet_written_through_it_equals_pyarrow_writing_the_path(tmp_path):
    table = pa.table({"bytes": [random.Random(i).randbytes(5000 + i) for i in range(300)],
                      "id": list(range(300))})
    options = dict(compression="none", write_batch_size=16)
    pq.write_table(table, tmp_path / "native.parquet", **options)
    sink = DirectFile(tmp_path / "direct.parquet", chunk=CHUNK)
    with pq.ParquetWriter(sink, table.schema, **options) as writer:
        writer.write_table(table)
    sink.finish()
    assert (tmp_path / "direct.parquet").read_bytes() == (tmp_path / "native.parquet").read_bytes()
