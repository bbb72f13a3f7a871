"""Per-image work, run in worker processes: read the file once, hash it, decode it once.

One read gives the SHA-256 and the pixels; one draft-mode decode at 128 px gives the pHash (the
same one the decision store computes), and its 64x64 resize the crop-test windows and the pixels
object and context vectors. A network embedder's preparer decodes again at its own size (cheap next to the model).
Workers import numpy and Pillow only, never torch.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from curation_app.proposals.cache import THUMBNAIL_SIDE, EmbeddingCache, Facts
from curation_app.proposals.duplicates import window_descriptors
from curation_app.proposals.pixels import object_vector, region_features, work_image
from pair_manifest.images import ImageReadError, open_rgb, perceptual_hash, sha256_bytes


@dataclass(frozen=True)
class Task:
    file: str  # <wnid>/<name>
    path: str
    size: int
    mtime_ns: int
    known_sha256: str | None  # from the cache's files table when size and mtime still match


@dataclass
class Outcome:
    task: Task
    sha256: str = ""
    facts: Facts | None = None
    prepared: np.ndarray | None = None  # input of Embedder.embed
    error: str | None = None

    @property
    def cached(self) -> bool:
        return self.error is None and self.facts is None


_STATE: dict = {}


def init_worker(cache_path: str, embedder_key: str, preparer) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _STATE.update(cache_path=cache_path, embedder_key=embedder_key, preparer=preparer, cache=None)


def _already_cached(sha256: str) -> bool:
    """A file seen under another name (renamed, copied): its bytes may already be embedded."""
    if _STATE.get("cache") is None:
        _STATE["cache"] = EmbeddingCache(_STATE["cache_path"], readonly=True)
    return _STATE["cache"].is_complete(_STATE["embedder_key"], sha256)


def describe(data: bytes, name: str, preparer) -> tuple[Facts, np.ndarray]:
    """Facts and embedder input of one image's bytes (raises ImageReadError)."""
    thumbnail = open_rgb(data, name=name, max_side=THUMBNAIL_SIDE)
    phash = perceptual_hash(thumbnail)
    work = work_image(thumbnail)  # 64x64, shared by the features and the crop-test windows
    centre, context = region_features(work)
    facts = Facts(phash.value, phash.mirrored, context, window_descriptors(work))
    return facts, (object_vector(work, centre, context) if preparer is None else preparer(data, thumbnail))


def process(task: Task) -> Outcome:
    try:
        data = Path(task.path).read_bytes()
    except OSError as error:
        return Outcome(task, error=f"{task.file}: unreadable: {error.strerror or error}")
    sha256 = sha256_bytes(data)
    if task.known_sha256 is None and _already_cached(sha256):
        return Outcome(task, sha256)
    try:
        facts, prepared = describe(data, task.file, _STATE["preparer"])
    except ImageReadError as error:
        return Outcome(task, sha256, error=str(error))
    return Outcome(task, sha256, facts, prepared)
