"""Near-duplicates: two files of one photo must never be proposed as a pair.

Two tests, because one is not enough:

1. **Same photo** (collapsed: only one file of the group stays in the pool): equal SHA-256, or a
   64-bit pHash distance under `NEAR_DUPLICATE_BITS`, exactly the rule the decision store applies
   when a pair is accepted (`pair_manifest.images`; a mirror image is caught by the mirrored
   hash). It catches re-encodes, resizes and mirror images, and on the bundled sample no two
   distinct photos of a class come closer than 14 bits.
2. **Crop of the same photo** (only the pair is forbidden): pHash does not survive a crop (5 % off
   each side moves it by 10 to 20 bits, as far as unrelated photos). So each image also gets a
   *window descriptor*: the low-frequency 2-D DCT (6x6, DC dropped, L2-normalised) of its grey
   image and of 18 windows covering 93 % and 86 % of each side at 3x3 positions, each window
   area-resampled to 16x16 from the 64x64 work image (resampling and DCT are one precomputed
   linear map per window, so all 23 cost two small matrix products). If one image is
   a crop of another, the full view of the crop matches one window of the original (mirrored or
   not): cosine >= `CROP_SIMILARITY`. Four more windows drop 10 % of one side only (top, bottom,
   left, right), the crops the square windows fit worst. On the sample, crops that remove up to
   10 % of each side (any split between the two sides; re-encoded down to JPEG quality 20,
   mirrored) score >= 0.93, while 99.6 % of distinct same-class pairs score below 0.85.
   Distinct photos with the same grey layout can pass too; that costs one forbidden pair, never
   an image, so the threshold errs on the safe side.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from pair_manifest.images import NEAR_DUPLICATE_BITS, ImageFacts, ImageReadError, PerceptualHash, _dct_matrix
from pair_manifest.near_duplicates import same_photo_files

GRID = 64  # side of the grey work image the windows are taken from (pixels.WORK_SIZE)
DESCRIPTOR_SIZE = 16  # samples per window side before the DCT
DESCRIPTOR_FREQUENCIES = 6  # keep the 6x6 lowest frequencies
WINDOW_SCALES = (0.93, 0.86)
WINDOW_POSITIONS = (0.0, 0.5, 1.0)  # where the window sits in the slack, per axis
ONE_SIDE_CROP = 0.9  # windows without 10 % of one side
WINDOWS = 1 + len(WINDOW_SCALES) * len(WINDOW_POSITIONS) ** 2 + 4  # the full image first
DESCRIPTOR_WIDTH = DESCRIPTOR_FREQUENCIES ** 2 - 1
CROP_SIMILARITY = 0.85
_GREY = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601 luma, as Pillow's "L"

_DCT = _dct_matrix(DESCRIPTOR_SIZE)[:DESCRIPTOR_FREQUENCIES]
# Mirroring an image left-right flips the sign of its odd horizontal frequencies.
_MIRROR = np.array([1.0 if u % 2 == 0 else -1.0 for u in range(DESCRIPTOR_FREQUENCIES)], dtype=np.float32)
_MIRROR_FLAT = np.tile(_MIRROR, DESCRIPTOR_FREQUENCIES)[1:]


def _boxes() -> list[tuple[float, float, float, float]]:
    """(left, top, right, bottom) of each window, in fractions of the image."""
    boxes = [(0.0, 0.0, 1.0, 1.0)]
    for scale in WINDOW_SCALES:
        for py in WINDOW_POSITIONS:
            for px in WINDOW_POSITIONS:
                left, top = (1 - scale) * px, (1 - scale) * py
                boxes.append((left, top, left + scale, top + scale))
    cut = 1 - ONE_SIDE_CROP
    boxes += [(0.0, cut, 1.0, 1.0), (0.0, 0.0, 1.0, 1.0 - cut), (cut, 0.0, 1.0, 1.0), (0.0, 0.0, 1.0 - cut, 1.0)]
    return boxes


def _area_matrix(start: float, end: float) -> np.ndarray:
    """(DESCRIPTOR_SIZE, GRID): each output sample is the mean of the pixels under its cell (area
    resampling, which does not alias when shrinking)."""
    edges = (start + (end - start) * np.arange(DESCRIPTOR_SIZE + 1) / DESCRIPTOR_SIZE) * GRID
    pixels = np.arange(GRID)
    low, high = edges[:-1, None], edges[1:, None]
    overlap = np.clip(np.minimum(high, pixels + 1) - np.maximum(low, pixels), 0.0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


_ROWS = np.stack([_DCT @ _area_matrix(top, bottom) for _, top, _, bottom in _boxes()]).astype(np.float32)
_COLUMNS_T = np.stack([(_DCT @ _area_matrix(left, right)).T for left, _, right, _ in _boxes()]).astype(np.float32)
assert len(_ROWS) == WINDOWS


def window_descriptors(image: Image.Image) -> np.ndarray:
    """(WINDOWS, DESCRIPTOR_WIDTH) float16 unit vectors; row 0 describes the whole image."""
    size = (GRID, GRID)
    work = image if image.size == size else image.resize(size, Image.Resampling.BILINEAR)
    grey = np.asarray(work.convert("RGB"), dtype=np.float32) @ _GREY  # (GRID, GRID)
    coefficients = (_ROWS @ grey @ _COLUMNS_T).reshape(WINDOWS, -1)[:, 1:]  # drop DC: brightness only
    norms = np.linalg.norm(coefficients, axis=1, keepdims=True)
    return (coefficients / np.maximum(norms, 1e-6)).astype(np.float16)


def crop_similarity(windows: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Best cosine between the full view of one image and any window of the other, either way
    round, mirrored or not, for the pairs (first[k], second[k]). `windows` is
    (N, WINDOWS, DESCRIPTOR_WIDTH). Pairs are checked when they are about to be proposed, not all
    N^2 of a class: greedy matching looks at a small fraction of them."""
    windows = windows.astype(np.float32, copy=False)
    a, b = windows[first], windows[second]  # (E, W, D)
    best = np.full(len(first), -1.0, dtype=np.float32)
    for view, others in ((a[:, 0], b), (b[:, 0], a)):
        for flip in (np.float32(1.0), _MIRROR_FLAT):
            np.maximum(best, np.einsum("ed,ewd->ew", view * flip, others).max(axis=1), out=best)
    return best


def hash_distances(values: np.ndarray, mirrored: np.ndarray) -> np.ndarray:
    """(N, N) pHash bit distances, taking the closer of each image and its mirror image."""
    direct = np.bitwise_count(values[:, None] ^ values[None, :])
    flipped = np.bitwise_count(values[:, None] ^ mirrored[None, :])
    distance = np.minimum(direct, flipped)
    return np.minimum(distance, distance.T)


def same_photo_groups(sha256: list[str], values: np.ndarray, mirrored: np.ndarray,
                      paths: list[Path] | None = None) -> list[int]:
    """Group id of each image (the index of the group's first member): equal bytes or pHash
    distance under NEAR_DUPLICATE_BITS, joined transitively. With the images' `paths`, a hash
    match of different bytes counts only once `pair_manifest.near_duplicates` confirms it."""
    n = len(sha256)
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    close = hash_distances(values, mirrored) < NEAR_DUPLICATE_BITS
    first_of: dict[str, int] = {}
    for i, digest in enumerate(sha256):
        j = first_of.setdefault(digest, i)
        if j != i:
            close[i, j] = close[j, i] = True
    for i, j in zip(*np.nonzero(np.triu(close, 1))):
        if paths is not None and not _confirmed(sha256, values, mirrored, paths, int(i), int(j)):
            continue
        a, b = root(int(i)), root(int(j))
        if a != b:
            parent[max(a, b)] = min(a, b)
    return [root(i) for i in range(n)]


def _confirmed(sha256, values, mirrored, paths, i: int, j: int) -> bool:
    facts = [ImageFacts(sha256[k], PerceptualHash(int(values[k]), int(mirrored[k]))) for k in (i, j)]
    try:
        return same_photo_files(facts[0], facts[1], paths[i], paths[j])
    except ImageReadError:  # changed since it was embedded: keep the hash's verdict
        return True
