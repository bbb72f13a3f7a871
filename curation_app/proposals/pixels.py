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

The **object vector** (what "same object" is judged on) describes the whole photo, laid out:
the centre's and the band's 32 numbers, the mean opponent colour of each cell of a 4x4 grid (48),
and a 4x4 grid of 9-bin gradient-orientation histograms, each cell L2-normalised (144: HOG,
Dalal & Triggs). The layout blocks are GIST-like (Oliva & Torralba, IJCV 2001): where in the frame
colour and edges are. Then the texture and colour-statistics blocks of `descriptors.py` (an LBP
pyramid, CIELAB hue-chroma histograms per quadrant, region covariances: 596), which say what the
surfaces look like. The object vector is averaged over the photo and its mirror image.
Measured with `benchmarks/proposals_precision.py` on folders that merge two sibling classes (the
share of proposed pairs within one true class, best 157 pairs per class, object-first score):
centre only 0.72, whole photo 0.73, with the two grids 0.78 (Tiny-ImageNet siblings); 0.52 -> 0.70 on merged CIFAR-10 classes and 0.58 -> 0.87 on merged Imagenette classes
against the centre-only vector under a context-first score (context weight 1). The
`descriptors.py` blocks with the mirror average raise what the annotator is shown after 50
decisions, with learning, from 0.74 to 0.77 on merged Tiny-ImageNet siblings and from 0.67 to 0.71
on merged CIFAR-10 classes, and the nearest-neighbour class rate on other labelled folders; without
the mirror average the gain on merged siblings is nil (BENCHMARKS.md, Proposals). The *context
vector* stays the band's 32 numbers.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from curation_app.proposals import descriptors

FEATURE_VERSION = 4  # bump when any number below changes: the cache keys vectors by it
WORK_SIZE = 64
TEXTURE_SCALES = (64, 32, 16)
CENTRE_BOX = (0.25, 0.75)  # fraction of each side
CONTEXT_BAND = 0.125  # outer fraction of each side
HUE_BINS = 8
ORIENTATION_BINS = 6
COLOUR_WIDTH = 6 + HUE_BINS
FEATURE_WIDTH = COLOUR_WIDTH + ORIENTATION_BINS * len(TEXTURE_SCALES)  # per region: 32
# Colour (14 numbers) and texture (18) get the same say once standardised: each dimension is
# weighted by 1/sqrt(its block's width), so neither block wins by having more numbers.
BLOCK_WEIGHTS = np.concatenate([np.full(COLOUR_WIDTH, COLOUR_WIDTH ** -0.5),
                                np.full(FEATURE_WIDTH - COLOUR_WIDTH, (FEATURE_WIDTH - COLOUR_WIDTH) ** -0.5)])

LAYOUT_GRID = 4  # cells per side of the layout blocks
LAYOUT_ORIENTATIONS = 9
LAYOUT_COLOUR_WIDTH = 3 * LAYOUT_GRID ** 2
LAYOUT_GRADIENT_WIDTH = LAYOUT_ORIENTATIONS * LAYOUT_GRID ** 2
# The object vector's blocks, each weighted 1/sqrt(width) once standardised (equal say per block).
OBJECT_BLOCKS = (("centre", FEATURE_WIDTH), ("band", FEATURE_WIDTH), ("layout colour", LAYOUT_COLOUR_WIDTH),
                 ("layout gradients", LAYOUT_GRADIENT_WIDTH), *descriptors.BLOCKS)
OBJECT_WIDTH = sum(width for _, width in OBJECT_BLOCKS)
OBJECT_BLOCK_WEIGHTS = np.concatenate([np.full(width, width ** -0.5) for _, width in OBJECT_BLOCKS])

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


def _averaging(masks: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """(2, P) rows that average a flattened per-pixel quantity over the centre, then the context."""
    rows = np.stack([m.ravel() for m in masks]).astype(np.float32)
    return rows / rows.sum(axis=1, keepdims=True)


_REGIONS = _averaging(_region_masks(WORK_SIZE))
_INTERIOR = {size: _averaging(_region_masks(size, margin=1)) for size in TEXTURE_SCALES}


def _orientation_votes(intensity: np.ndarray) -> np.ndarray:
    """(P, ORIENTATION_BINS): each interior pixel's gradient magnitude in its orientation bin."""
    gx = intensity[1:-1, 2:] - intensity[1:-1, :-2]
    gy = intensity[2:, 1:-1] - intensity[:-2, 1:-1]
    angle = np.arctan2(gy, gx) % np.pi  # unsigned orientation: an edge and its reverse are one
    bins = (angle * (ORIENTATION_BINS / np.pi)).astype(np.int64).ravel() % ORIENTATION_BINS
    votes = np.zeros((bins.size, ORIENTATION_BINS), dtype=np.float32)
    votes[np.arange(bins.size), bins] = np.hypot(gx, gy).ravel()
    return votes


def _halve(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    return image.reshape(h // 2, 2, w // 2, 2, *image.shape[2:]).mean(axis=(1, 3))


def work_image(image: Image.Image) -> Image.Image:
    """The fixed-size RGB image every pixel statistic is computed on."""
    size = (WORK_SIZE, WORK_SIZE)
    return image if image.size == size else image.resize(size, Image.Resampling.BILINEAR)


def region_features(image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """(object, context) feature vectors of one RGB image, each `FEATURE_WIDTH` float32.

    Every statistic is a region average of a per-pixel quantity, so one (2, P) matrix product
    gives both regions at once."""
    rgb = np.asarray(work_image(image), dtype=np.float32) * (1.0 / 255.0)
    opponent = (rgb @ _OPPONENT.T).reshape(-1, 3)
    per_pixel = np.zeros((len(opponent), 6 + HUE_BINS), dtype=np.float32)
    per_pixel[:, :3] = opponent
    per_pixel[:, 3:6] = opponent * opponent
    angle = np.arctan2(opponent[:, 1], opponent[:, 0])  # hue, in [-pi, pi]
    hue = ((angle + np.pi) * (HUE_BINS / (2 * np.pi))).astype(np.int64) % HUE_BINS
    per_pixel[np.arange(len(opponent)), 6 + hue] = np.hypot(opponent[:, 0], opponent[:, 1])  # chroma votes
    means = _REGIONS @ per_pixel  # (2, 14)
    spread = np.sqrt(np.maximum(means[:, 3:6] - means[:, :3] ** 2, 0.0))
    parts = [means[:, :3], spread, means[:, 6:]]
    intensity = opponent[:, 2].reshape(WORK_SIZE, WORK_SIZE)
    for size in TEXTURE_SCALES:
        while intensity.shape[0] > size:
            intensity = _halve(intensity)
        parts.append(_INTERIOR[size] @ _orientation_votes(intensity))
    features = np.concatenate(parts, axis=1).astype(np.float32)
    return features[0], features[1]


def block_weights(width: int) -> np.ndarray:
    """Weights of a standardised pixels vector: the object layout, the region layout (32), or
    equal weights for any other width."""
    if width == OBJECT_WIDTH:
        return OBJECT_BLOCK_WEIGHTS
    if width == FEATURE_WIDTH:
        return BLOCK_WEIGHTS
    return np.full(width, max(width, 1) ** -0.5)


_CELL = WORK_SIZE // LAYOUT_GRID
_CELL_OF = ((np.arange(WORK_SIZE)[:, None] // _CELL) * LAYOUT_GRID + np.arange(WORK_SIZE)[None, :] // _CELL).ravel()


def layout_features(image: Image.Image) -> np.ndarray:
    """(LAYOUT_COLOUR_WIDTH + LAYOUT_GRADIENT_WIDTH,): mean opponent colour per grid cell, then a
    gradient-orientation histogram per cell (magnitude-weighted, unsigned, L2-normalised)."""
    rgb = np.asarray(work_image(image), dtype=np.float32) * (1.0 / 255.0)
    return _layout(rgb @ _OPPONENT.T)


def _layout(opponent: np.ndarray) -> np.ndarray:
    """`layout_features` of the (64, 64, 3) opponent-colour work image."""
    cells = LAYOUT_GRID ** 2
    colour = opponent.reshape(LAYOUT_GRID, _CELL, LAYOUT_GRID, _CELL, 3).mean(axis=(1, 3)).ravel()
    grey = opponent[..., 2]
    gx, gy = np.zeros_like(grey), np.zeros_like(grey)
    gx[:, 1:-1] = grey[:, 2:] - grey[:, :-2]
    gy[1:-1] = grey[2:] - grey[:-2]
    angle = np.arctan2(gy, gx) % np.pi
    bins = (angle * (LAYOUT_ORIENTATIONS / np.pi)).astype(np.int64).ravel() % LAYOUT_ORIENTATIONS
    votes = np.bincount(_CELL_OF * LAYOUT_ORIENTATIONS + bins, weights=np.hypot(gx, gy).ravel(),
                        minlength=cells * LAYOUT_ORIENTATIONS).reshape(cells, LAYOUT_ORIENTATIONS)
    votes /= np.linalg.norm(votes, axis=1, keepdims=True) + 1e-3
    return np.concatenate([colour, votes.ravel()]).astype(np.float32)


def object_vector(image: Image.Image, centre: np.ndarray, context: np.ndarray) -> np.ndarray:
    """The pixels embedder's object vector of a work image whose region features are known
    (`OBJECT_BLOCKS` in order): the mean of the image's and its mirror image's, so that an object
    facing left and the same kind facing right are described alike."""
    mirror = work_image(image).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return (_one_view(image, centre, context) + _one_view(mirror, *region_features(mirror))) / 2


def _one_view(image: Image.Image, centre: np.ndarray, context: np.ndarray) -> np.ndarray:
    rgb = np.asarray(work_image(image), dtype=np.float32) * (1.0 / 255.0)
    opponent = rgb @ _OPPONENT.T
    return np.concatenate([centre, context, _layout(opponent),
                           descriptors.texture_blocks(rgb, opponent[..., 2])]).astype(np.float32)
