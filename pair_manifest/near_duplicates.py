"""Two files of one photo: the rule every part of the project applies (the decision store's
policy, the app's "distinct photos" check, the proposals' same-photo groups).

A 64-bit perceptual hash within `NEAR_DUPLICATE_BITS` (the closer of the image and its mirror
image) catches re-encodes, resizes, mirror images and slight crops, but on its own it also
matches distinct photos whose coarse light-and-dark layout happens to agree: among 19,440 real
ImageNet-derived photos (the shared development sets), 20 distinct pairs came within 10 bits (a parachute against a bridge at
6 bits, a spaniel against a parachute at 8). So a hash match is only a candidate, confirmed by a
second, finer measure before two files are called one photo:

**aligned thumbnail correlation.** Each photo becomes a 32x32 grey thumbnail. One is compared, as
a whole, with every crop of the other (each side trimmed by 0 to 16 %, independently, found by a
coarse-to-fine search; mirrored or not; either way round), each area-resampled to 16x16 with its
mean removed; the best correlation is the similarity. Copies line up almost exactly: of the
bundled sample's 675 photos, re-encoded at JPEG quality 20, halved, mirrored, cropped, cut on one
side and mirror-cropped at quality 30 (the 2,512 copies the hash catches), full-resolution copies
score >= 0.987 and all >= 0.904 (the lowest: mirrored crops of 64x64 photos at quality 30).
Distinct photos with alike hashes still differ in their details: the 20 distinct pairs among
those 19,000 photos score <= 0.894. `SAME_PHOTO_SIMILARITY` sits between the two; the margin is
thin only for tiny, heavily re-compressed copies. Equal bytes are the same photo whatever the
pixels.

The confirmation decodes both files again; it runs only for hash matches, which are rare (a few
per thousand pairs of a class), so no thumbnail is stored anywhere.
"""
from __future__ import annotations

import itertools
from functools import lru_cache
from pathlib import Path

import numpy as np

from pair_manifest.images import NEAR_DUPLICATE_BITS, ImageFacts, open_grey

THUMBNAIL_SIDE = 32  # grey thumbnail each photo is compared on
COMPARED_SIDE = 16  # every aligned crop is resampled to this side before the correlation
MAX_TRIM = 0.16  # the most a side may lose in a crop that still counts as the same photo
SEARCH_STEPS = (0.04, 0.04 / 3, 0.04 / 9)  # trim grid of the first pass, then two refinements
SAME_PHOTO_SIMILARITY = 0.90  # between distinct hash-alike photos (<= 0.894) and copies (>= 0.904)


def hash_match(a: ImageFacts, b: ImageFacts) -> bool:
    """The cheap first test: equal bytes, or perceptual hashes within NEAR_DUPLICATE_BITS."""
    return a.sha256 == b.sha256 or a.phash.distance(b.phash) < NEAR_DUPLICATE_BITS


def same_photo(a: ImageFacts, b: ImageFacts, thumbnails) -> bool:
    """Whether two files are one photo (the policy's "near-duplicates"). `thumbnails()` returns
    the two grey thumbnails (`grey_thumbnail`); it is called only when the hashes match and the
    bytes differ."""
    if a.sha256 == b.sha256:
        return True
    if a.phash.distance(b.phash) >= NEAR_DUPLICATE_BITS:
        return False
    first, second = thumbnails()
    return aligned_similarity(first, second) >= SAME_PHOTO_SIMILARITY


def same_photo_files(a: ImageFacts, b: ImageFacts, path_a: str | Path, path_b: str | Path,
                     *, names: tuple[str, str] | None = None) -> bool:
    """`same_photo` for two files on disk (the thumbnails are decoded only when needed)."""
    names = names or (str(path_a), str(path_b))
    return same_photo(a, b, lambda: (grey_thumbnail(path_a, name=names[0]), grey_thumbnail(path_b, name=names[1])))


def grey_thumbnail(source: str | Path | bytes, *, name: str | None = None) -> np.ndarray:
    """(THUMBNAIL_SIDE, THUMBNAIL_SIDE) float32 grey levels of a photo, squashed to a square
    (raises ImageReadError)."""
    from PIL import Image

    grey = open_grey(source, name=name, min_side=2 * THUMBNAIL_SIDE)
    side = (THUMBNAIL_SIDE, THUMBNAIL_SIDE)
    return np.asarray(grey.resize(side, Image.Resampling.BOX), dtype=np.float32)


def aligned_similarity(first: np.ndarray, second: np.ndarray) -> float:
    """Best correlation between one thumbnail as a whole and a crop of the other (either way
    round, mirrored or not): 1.0 for one photo, lower the more the two differ in their details."""
    whole = _area(0.0, 1.0)
    best = -1.0
    for reference, other in ((first, second), (second, first)):
        view = _normalised(whole @ reference @ whole.T)
        for oriented in (view, view[:, ::-1]):
            best = max(best, _best_crop(oriented, other))
    return best


def _best_crop(reference: np.ndarray, image: np.ndarray) -> float:
    """Coarse-to-fine search over crops (left, top, right, bottom trims) of `image` for the one
    that correlates best with `reference`."""
    coarse = tuple(np.arange(0.0, MAX_TRIM + 1e-9, SEARCH_STEPS[0]))
    scores, crops = _scores(reference, image, coarse, coarse, coarse, coarse)
    best = int(scores.argmax())
    score, crop = float(scores[best]), crops[best]
    for step in SEARCH_STEPS[1:]:
        around = [tuple(sorted({min(MAX_TRIM, max(0.0, value + k * step)) for k in (-1, 0, 1)})) for value in crop]
        scores, crops = _scores(reference, image, *around)
        best = int(scores.argmax())
        if scores[best] > score:
            score, crop = float(scores[best]), crops[best]
    return score


def _scores(reference, image, lefts, tops, rights, bottoms):
    """Correlation of `reference` with each crop of `image` in the grid of trims given."""
    rows = np.stack([_area(top, 1.0 - bottom) for top, bottom in itertools.product(tops, bottoms)])
    columns = np.stack([_area(left, 1.0 - right) for left, right in itertools.product(lefts, rights)])
    crops = np.matmul((rows @ image)[:, None], columns.transpose(0, 2, 1)[None])  # (rows, columns, S, S)
    scores = (_normalised(crops) * reference).sum(axis=(2, 3))
    order = [(left, top, right, bottom) for (top, bottom), (left, right)
             in itertools.product(itertools.product(tops, bottoms), itertools.product(lefts, rights))]
    return scores.reshape(-1), order


def _normalised(values: np.ndarray) -> np.ndarray:
    centred = values - values.mean(axis=(-2, -1), keepdims=True)
    return centred / np.maximum(np.linalg.norm(centred, axis=(-2, -1), keepdims=True), 1e-6)


@lru_cache(maxsize=4096)
def _area(start: float, end: float) -> np.ndarray:
    """(COMPARED_SIDE, THUMBNAIL_SIDE): each output sample is the mean of the thumbnail pixels
    under its cell of [start, end) (area resampling: no aliasing when shrinking)."""
    edges = (start + (end - start) * np.arange(COMPARED_SIDE + 1) / COMPARED_SIDE) * THUMBNAIL_SIDE
    pixels = np.arange(THUMBNAIL_SIDE)
    low, high = edges[:-1, None], edges[1:, None]
    overlap = np.clip(np.minimum(high, pixels + 1) - np.maximum(low, pixels), 0.0, None)
    return (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float32)
