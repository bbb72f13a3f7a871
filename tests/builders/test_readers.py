"""The reader threads (builders.shards.Readers): a writer reads the next row group ahead only while
a slot is free, the bytes handed over are the files' bytes, a file whose bytes differ is reported
and ends the read, and every slot is given back."""
from __future__ import annotations

import hashlib
import random

from builders.shards import Readers, SourceCheck
from builders.sources import Source


def make_sources(tmp_path, count: int, seed: int = 0) -> dict[str, Source]:
    rng = random.Random(seed)
    sources = {}
    for i in range(count):
        data = rng.randbytes(rng.randint(0, 50_000))
        path = tmp_path / f"n01443537_{i}.JPEG"
        path.write_bytes(data)
        sources[f"n01443537/{path.name}"] = Source(str(path), len(data), hashlib.sha256(data).hexdigest())
    return sources


def test_columns_hold_each_files_bytes(tmp_path):
    sources = make_sources(tmp_path, 9)
    names = sorted(sources)
    columns = [names[0::2], names[1::2]]
    with Readers(threads=2, writers=1) as readers:
        pending = readers.read(columns, sources, SourceCheck())
        arrays = pending.result()
        assert [array.to_pylist() for array in arrays] == [
            [open(sources[n].path, "rb").read() for n in column] for column in columns]
        pending.release()


def test_read_ahead_only_while_a_buffer_is_free(tmp_path):
    sources = make_sources(tmp_path, 4)
    columns = [sorted(sources)]
    check = SourceCheck()
    with Readers(threads=2, writers=1) as readers:  # one buffer for the writer, one to read ahead
        first = readers.read(columns, sources, check)
        second = readers.read(columns, sources, check, wait_for_buffer=False)
        assert second is not None
        assert readers.read(columns, sources, check, wait_for_buffer=False) is None
        first.release()
        first.release()  # releasing twice gives the buffer back once
        third = readers.read(columns, sources, check, wait_for_buffer=False)
        assert third is not None
        assert readers.read(columns, sources, check, wait_for_buffer=False) is None
        for pending in (second, third):
            assert pending.result() is not None
            pending.release()
        again = [readers.read(columns, sources, check, wait_for_buffer=False) for _ in range(2)]
        assert all(again)  # both buffers came back
        for pending in again:
            pending.release()


def test_a_file_with_other_bytes_is_reported_and_the_read_fails(tmp_path):
    sources = make_sources(tmp_path, 6, seed=1)
    changed = [name for name in sorted(sources) if sources[name].size][2]
    with open(sources[changed].path, "r+b") as handle:  # same size, one byte flipped
        first = handle.read(1)
        handle.seek(0)
        handle.write(bytes([first[0] ^ 0xFF]))
    check = SourceCheck()
    with Readers(threads=2) as readers:
        pending = readers.read([sorted(sources)], sources, check)
        assert pending.result() is None
        pending.release()
    assert check.failed.is_set() and list(check.problems) == [changed]
    assert changed in check.problems[changed]
