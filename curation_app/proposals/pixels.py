"""Weights-free image features that separate the object from its context.

ImageNet photos put their object near the centre (the class was chosen by the photographer, and
the curators cropped nothing), so the middle of the frame describes the *object* and the outer
band describes the *context* (background, surface, lighting). A semantic pair wants the first to
agree and the second to differ (paper §3: same class, object in a different context).

Each region gets the same 32 numbers, computed on a fixed 64x64 working image so that photos of
any resolution are comparable:

- colour, 6: mean and standard deviation of the three opponent channels (O1 = (R-G)/√2,
  O2 = (R+G-2B)/√6, O3 = (R+G+B)/√3), a decorrelated colour space cheap to compute
  (van de Sande et al., "Evaluating color descriptors", TPAMI 2010);
- hue, 8: a hue histogram weighted by chroma (grey pixels vote for nothing), per region pixel;
- texture, 3 scales x 6: gradient-orientation histograms weighted by gradient magnitude
  (the HOG cell histogram of Dalal & Triggs, CVPR 2005, over a whole region), on the 64, 32 and
  16 px images, per region pixel, so edge density and dominant direction both count.

Centre = the middle half of each side (a quarter of the area); context = the outer eighth of each
side (44 % of the area). The ring between them is ambiguous (object or background) and is left
out of both.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

FEATURE_VERSION = 1  # bump when any number below changes: the cache keys vectors by it
WORK_SIZE = 64
TEXTURE_SCALES = (64, 32, 16)
CENTRE_BOX = (0.25, 0.75)  # fraction of each side
CONTEXT_BAND = 0.125  # outer fraction of each side
HUE_BINS = 8
ORIENTATION_BINS = 6
FEATURE_WIDTH = 6 + HUE_BINS + ORIENTATION_BINS * len(TEXTURE_SCALES)  # per region: 32

_OPPONENT = np.array([
    [1 / np.sqrt(2), -1 / np.sqrt(2), 0.0],
    [1 / np.sqrt(6), 1 / np.sqrt(6), -2 / np.sqrt(6)],
    [1 / np.sqrt(3), 1 / np.sqrt(3), 1 / np.sqrt(3)],
], dtype=np.float32)


def _region_masks(size: int, margin: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Centre and context masks of a size x size grid, without `margin` pixels on each side
    (gradients are defined on the interior only)."""
    centres = (np.arange(margin, size - margin, dtype=np.float32) + 0.5) / size
    low, high = CENTRE_BOX
    inside = (centres >= low) & (centres < high)
    centre = inside[:, None] & inside[None, :]
    edge = (centres < CONTEXT_BAND) | (centres >= 1.0 - CONTEXT_BAND)
    context = edge[:, None] | edge[None, :]
    return centre, context


_MASKS = {size: _region_masks(size) for size in TEXTURE_SCALES}
_INTERIOR_MASKS = {size: _region_masks(size, margin=1) for size in TEXTURE_SCALES}


def _histogram(bins: np.ndarray, weights: np.ndarray, mask: np.ndarray, count: int) -> np.ndarray:
    return np.bincount(bins[mask], weights[mask], minlength=count)[:count] / max(1, int(mask.sum()))


def _colour(opponent: np.ndarray, mask: np.ndarray) -> np.ndarray:
    pixels = opponent[mask]  # (P, 3)
    return np.concatenate([pixels.mean(axis=0), pixels.std(axis=0)])


def _hue_bins(opponent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    o1, o2 = opponent[..., 0], opponent[..., 1]
    angle = np.arctan2(o2, o1)  # [-pi, pi]
    bins = ((angle + np.pi) * (HUE_BINS / (2 * np.pi))).astype(np.int64) % HUE_BINS
    return bins, np.hypot(o1, o2)


def _orientation_bins(intensity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gx = intensity[1:-1, 2:] - intensity[1:-1, :-2]
    gy = intensity[2:, 1:-1] - intensity[:-2, 1:-1]
    angle = np.arctan2(gy, gx) % np.pi  # unsigned orientation: an edge and its reverse are one
    bins = (angle * (ORIENTATION_BINS / np.pi)).astype(np.int64) % ORIENTATION_BINS
    return bins, np.hypot(gx, gy)


def _halve(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    return image.reshape(h // 2, 2, w // 2, 2, *image.shape[2:]).mean(axis=(1, 3))


def region_features(image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """(object, context) feature vectors of one RGB image, each `FEATURE_WIDTH` float32."""
    work = image.resize((WORK_SIZE, WORK_SIZE), Image.Resampling.BILINEAR)
    rgb = np.asarray(work, dtype=np.float32) * (1.0 / 255.0)
    opponent = rgb @ _OPPONENT.T
    centre, context = _MASKS[WORK_SIZE]
    hue, chroma = _hue_bins(opponent)
    parts = {"centre": [], "context": []}
    for key, mask in (("centre", centre), ("context", context)):
        parts[key].append(_colour(opponent, mask))
        parts[key].append(_histogram(hue, chroma, mask, HUE_BINS))
    intensity = opponent[..., 2]
    for size in TEXTURE_SCALES:
        while intensity.shape[0] > size:
            intensity = _halve(intensity)
        bins, magnitude = _orientation_bins(intensity)
        inner_centre, inner_context = _INTERIOR_MASKS[size]
        parts["centre"].append(_histogram(bins, magnitude, inner_centre, ORIENTATION_BINS))
        parts["context"].append(_histogram(bins, magnitude, inner_context, ORIENTATION_BINS))
    return (np.concatenate(parts["centre"]).astype(np.float32),
            np.concatenate(parts["context"]).astype(np.float32))
