"""One-time decode of a training set into a uint8 array on disk, reused by every later run.

Each photo is stored whole on a square canvas (training/data/decode.py: shorter side 3R, canvas
S = 4R for training resolution R) with its valid size, so the crops of training/crop.py cover the
whole photo. Layout: `<cache root>/<config>-<fingerprint[:20]>-r<R>/` holding `images.npy` (uint8,
(N, S, S, 3) for single images or (N, 2, S, S, 3) for pairs, memory-mapped when read), `sizes.npy`
(int16, (N, 2) or (N, 2, 2): each photo's (w, h) at the canvas's top-left), `labels.npy` (int64,
(N,)) and `meta.json` (what it is, row ids and file names). The folder is written under a
temporary name and renamed when complete, so a killed decode leaves nothing a later run would trust.

Cache root: `--cache-dir`, else $SEMANTIC_PAIRS_CACHE, else ~/.cache/semantic_pairs/decoded.
Size: N x images per row x 3 x (4R)^2 bytes. The full SP release at R = 64 (29,359 pairs, 58,718
photos) is 58,718 x 3 x 256^2 bytes = 11.5 GB (AP: 5.8 GB); see `cache_bytes`.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.data.decode import canvas_side, decode_chunk
from training.data.source import Rows, Source, datasets_progress, fingerprint, open_rows, resolve_source
from training.errors import TrainingError

CACHE_FORMAT = 2  # 1: centre squares at R; 2: whole photos on 4R canvases with their sizes
CHUNK_ROWS = 64  # rows per worker task: large enough to amortize IPC, small for a smooth progress bar
INLINE_BELOW = 256  # rows: fewer are decoded in-process (a pool costs more than it saves)
MAX_REPORTED_ERRORS = 10


@dataclass
class DecodedDataset:
    images: np.ndarray  # uint8 (N, S, S, 3) or (N, 2, S, S, 3) canvases, S = 4R
    sizes: np.ndarray  # int16 (N, 2) or (N, 2, 2): (w, h) of each photo at its canvas's top-left
    labels: np.ndarray  # int64 (N,)
    class_names: list[str]
    row_ids: list[str]  # pair_id / image_id / file path of each row
    files: list[list[str]]  # file name(s) of each row, for messages and checks
    pairs: bool
    resolution: int
    key: str
    path: Path
    source: str
    config: str

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def summary(self) -> dict:
        return {"rows": len(self), "pairs": self.pairs, "resolution": self.resolution, "classes": len(self.class_names),
                "canvas": int(self.images.shape[-2]), "cache_bytes": int(self.images.nbytes),
                "fingerprint": self.key, "cache": str(self.path)}


def default_cache_root() -> Path:
    env = os.environ.get("SEMANTIC_PAIRS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "semantic_pairs" / "decoded"


def _read(folder: Path, key: str) -> DecodedDataset:
    meta = json.loads((folder / "meta.json").read_text())
    if meta.get("format") != CACHE_FORMAT or meta.get("key") != key:
        raise ValueError("stale cache")
    return DecodedDataset(
        images=np.load(folder / "images.npy", mmap_mode="r"), sizes=np.load(folder / "sizes.npy"),
        labels=np.load(folder / "labels.npy"),
        class_names=meta["class_names"], row_ids=meta["row_ids"], files=meta["files"], pairs=meta["pairs"],
        resolution=meta["resolution"], key=key, path=folder, source=meta["source"], config=meta["config"])


def _row_ids(rows: Rows) -> list[str]:
    dataset = rows.dataset
    for column in ("pair_id", "image_id"):
        if column in dataset.column_names:
            return [str(v) for v in dataset[column]]
    return [str(i) for i in range(len(dataset))]


def _tasks(rows: Rows, size: int):
    """(first row, [[(bytes, path) per image column] per row], size) in chunks, read lazily."""
    dataset = rows.dataset.select_columns(list(rows.image_columns))
    start = 0
    for batch in dataset.iter(batch_size=CHUNK_ROWS):
        columns = [batch[c] for c in rows.image_columns]
        chunk = [[(cell.get("bytes"), cell.get("path")) if cell else (None, None) for cell in cells]
                 for cells in zip(*columns)]
        yield start, chunk, size
        start += len(chunk)


def _decode_all(rows: Rows, size: int, out: np.ndarray, sizes: np.ndarray, workers: int,
                progress: bool) -> list[tuple[int, int, str]]:
    """Decode every row into `out` ((N, 2, S, S, 3) or (N, S, S, 3)) and `sizes`; returns the decode
    errors."""
    from training.progress import progress as reporter

    total = len(rows.dataset)
    errors: list[tuple[int, int, str]] = []
    bar = reporter(total, f"decoding at {size} px", "row", enabled=progress)

    def store(result):
        start, array, chunk_sizes, chunk_errors = result
        out[start:start + len(array)] = array if out.ndim == 5 else array[:, 0]
        sizes[start:start + len(array)] = chunk_sizes if sizes.ndim == 3 else chunk_sizes[:, 0]
        errors.extend(chunk_errors)
        bar.update(len(array))

    try:
        if workers <= 1 or total < INLINE_BELOW:
            for task in _tasks(rows, size):
                store(decode_chunk(task))
        else:
            # spawn, not fork: the parent may hold CUDA and thread pools that must not be forked.
            # A process pool rather than multiprocessing.Pool: if a worker dies (out of memory, a
            # crash in a decoder), the run stops with an error instead of waiting forever.
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=context) as pool:
                pending = []
                for task in _tasks(rows, size):
                    pending.append(pool.submit(decode_chunk, task))
                    while len(pending) >= 2 * workers:  # bounded: never all bytes in flight at once
                        store(_result(pending.pop(0)))
                for future in pending:
                    store(_result(future))
    finally:
        bar.close()
    return errors


def _result(future):
    try:
        return future.result()
    except BrokenProcessPool:
        raise TrainingError("decoding: a worker process died (out of memory?); retry with --workers 1 "
                            "or fewer workers") from None


def _describe_errors(rows: Rows, errors: list[tuple[int, int, str]], source: Source) -> str:
    lines = []
    for row, column, message in sorted(errors)[:MAX_REPORTED_ERRORS]:
        record = rows.dataset[row]
        cell = record[rows.image_columns[column]] or {}
        if rows.name_columns:
            name = f"{rows.name_columns[column]}={record[rows.name_columns[column]]}"
        else:
            name = f"{rows.image_columns[column]} ({cell.get('path') or 'no path'})"
        lines.append(f"  - row {row} {name}: {message}")
    more = f"\n  ... and {len(errors) - MAX_REPORTED_ERRORS} more" if len(errors) > MAX_REPORTED_ERRORS else ""
    return (f"--data {source.describe()}: {len(errors)} image(s) cannot be decoded; fix or rebuild the "
            "dataset:\n" + "\n".join(lines) + more)


def load_dataset(repo_or_dir: str, config: str, resolution: int = 64, cache_dir: str | Path | None = None,
                 workers: int | None = None, hf_cache_dir: str | None = None,
                 progress: bool = True) -> DecodedDataset:
    """The decoded training set of `config` at `resolution`, decoding it once if no cache exists."""
    with datasets_progress(progress):
        return _load(repo_or_dir, config, resolution, cache_dir, workers, hf_cache_dir, progress)


def _load(repo_or_dir, config, resolution, cache_dir, workers, hf_cache_dir, progress) -> DecodedDataset:
    if not isinstance(resolution, int) or not 8 <= resolution <= 1024:
        raise TrainingError(f"--resolution {resolution}: must be an integer between 8 and 1024")
    source = resolve_source(repo_or_dir, config)
    key = fingerprint(source, hf_cache_dir)
    root = Path(cache_dir).expanduser() if cache_dir else default_cache_root()
    folder = root / f"{config}-{key[:20]}-r{resolution}"
    if (folder / "meta.json").is_file():
        try:
            return _read(folder, key)
        except (ValueError, OSError, KeyError, json.JSONDecodeError):
            shutil.rmtree(folder, ignore_errors=True)  # unreadable or stale: decode again
    rows = open_rows(source, hf_cache_dir, refresh=True)
    total = len(rows.dataset)
    if total == 0:
        raise TrainingError(f"--data {source.describe()}: the train split is empty")
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".{folder.name}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    per_row = (2,) if source.pairs else ()
    side = canvas_side(resolution)
    out = np.lib.format.open_memmap(staging / "images.npy", mode="w+", dtype=np.uint8,
                                    shape=(total, *per_row, side, side, 3))
    sizes = np.zeros((total, *per_row, 2), dtype=np.int16)
    workers = workers if workers is not None else min(os.cpu_count() or 1, 32)
    started = time.time()
    try:
        errors = _decode_all(rows, resolution, out, sizes, workers, progress)
        if errors:
            raise TrainingError(_describe_errors(rows, errors, source))
        out.flush()
        del out
        labels = np.asarray(rows.dataset["label"], dtype=np.int64)
        np.save(staging / "labels.npy", labels)
        np.save(staging / "sizes.npy", sizes)
        files = [list(names) for names in zip(*(rows.dataset[c] for c in rows.name_columns))] if rows.name_columns else []
        if not files and not source.pairs and source.imagefolder:
            files = [[str(cell["path"])] for cell in rows.dataset[rows.image_columns[0]]]
        meta = {"format": CACHE_FORMAT, "key": key, "source": source.location, "config": config,
                "pairs": source.pairs, "resolution": resolution, "canvas": side, "rows": total,
                "class_names": rows.class_names, "row_ids": _row_ids(rows), "files": files,
                "decode_seconds": round(time.time() - started, 2)}
        (staging / "meta.json").write_text(json.dumps(meta))
        try:
            os.rename(staging, folder)
        except OSError:  # another process finished the same cache first: use theirs
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return _read(folder, key)


def cache_bytes(photos: int, resolution: int) -> int:
    """Bytes of the decoded cache (and of its copy on the device) for `photos` photos at `resolution`."""
    return photos * 3 * canvas_side(resolution) ** 2
