"""Texture and colour-statistics blocks of the pixels object vector, on its square work image.

The layout blocks of `pixels.py` say where in the frame colour and edges are; these say what the
surfaces look like, which is what tells two sibling classes apart when their layout is alike
(fur of a tabby and of an Egyptian cat, a golden's and a Labrador's coat):

- **LBP pyramid**, 59 x (1 + 4): histograms of uniform 8-neighbour local binary patterns over the
  whole image and its four quadrants (Ojala et al., "Multiresolution gray-scale and rotation
  invariant texture classification with local binary patterns", TPAMI 2002; the pyramid of
  Lazebnik et al., CVPR 2006);
- **hue-chroma histograms**, 19 x 4 quadrants: CIELAB hue (8 bins) x chroma (2) for coloured
  pixels, lightness (3) for near-grey ones, so a grey coat and a brown one land in different bins;
- **region covariance**, 45 x (1 + 4): the covariance of (x, y, L, a, b, |dL/dx|, |dL/dy|,
  |d2L/dx2|, |d2L/dy2|) over the image and its quadrants, mapped by the matrix logarithm so that
  Euclidean distance is the log-Euclidean distance between covariances (Tuzel et al., "Region
  covariance", ECCV 2006; Arsigny et al. 2006): how colour, brightness and edges vary together.

Histograms are square-rooted after normalisation (Hellinger: a bin's difference counts by its
share, not its raw size). Measured on merged sibling classes with `benchmarks/proposals_*.py`
(BENCHMARKS.md, Proposals), and by nearest-neighbour class rates on other labelled folders.
"""
from __future__ import annotations

import numpy as np

LBP_GRIDS = (1, 2)
HUE_BINS, CHROMA_BINS, LIGHTNESS_BINS = 8, 2, 3
GREY_CHROMA = 8.0  # CIELAB chroma below which a pixel counts as grey
CHROMA_STEP = 25.0
COVARIANCE_GRIDS = (1, 2)  # the whole image, then its quadrants
_COV_DIM = 9
_COV_UPPER = np.triu_indices(_COV_DIM)

# Uniform patterns (at most two 0/1 transitions around the circle) get a bin each, the rest one.
_TRANSITIONS = np.array([sum(((v >> i) & 1) != ((v >> ((i + 1) % 8)) & 1) for i in range(8)) for v in range(256)])
_UNIFORM = np.flatnonzero(_TRANSITIONS <= 2)
LBP_BINS = len(_UNIFORM) + 1  # 59
_LBP_MAP = np.full(256, len(_UNIFORM))
_LBP_MAP[_UNIFORM] = np.arange(len(_UNIFORM))
_NEIGHBOURS = ((0, 0), (0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (1, 0))

HUE_CHROMA_BINS = HUE_BINS * CHROMA_BINS + LIGHTNESS_BINS  # 19
BLOCKS = (("lbp", LBP_BINS * sum(g * g for g in LBP_GRIDS)), ("hue-chroma", HUE_CHROMA_BINS * 4),
          *((f"covariance {g}x{g}", len(_COV_UPPER[0]) * g * g) for g in COVARIANCE_GRIDS))

_XYZ = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]], dtype=np.float32)
_WHITE = np.array([0.95047, 1.0, 1.08883], dtype=np.float32)


def lab(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) CIELAB (D65) of sRGB values in [0, 1]."""
    linear = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = linear @ _XYZ.T / _WHITE
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def _cell_index(size: int, grid: int) -> np.ndarray:
    """(size, size) index of the grid cell each pixel falls in, row-major."""
    cell = np.minimum(np.arange(size) * grid // size, grid - 1)
    return cell[:, None] * grid + cell[None, :]


def _hellinger(counts: np.ndarray) -> np.ndarray:
    """Square root of each row's histogram normalised to sum 1."""
    return np.sqrt(counts / np.maximum(counts.sum(axis=1, keepdims=True), 1e-12)).ravel()


def lbp_pyramid(grey: np.ndarray) -> np.ndarray:
    """Uniform-LBP histograms of the interior pixels over each grid of `LBP_GRIDS`."""
    size = grey.shape[0] - 2
    centre = grey[1:-1, 1:-1] + 0.01  # a neighbour must be brighter by a little to count as brighter
    code = np.zeros(centre.shape, dtype=np.int64)
    for bit, (i, j) in enumerate(_NEIGHBOURS):
        code |= (grey[i:i + size, j:j + size] >= centre).astype(np.int64) << bit
    code = _LBP_MAP[code]
    parts = [np.bincount((_cell_index(size, g) * LBP_BINS + code).ravel(),
                         minlength=g * g * LBP_BINS).reshape(g * g, LBP_BINS) for g in LBP_GRIDS]
    return np.concatenate([_hellinger(p.astype(np.float64)) for p in parts])


def hue_chroma(colour: np.ndarray) -> np.ndarray:
    """Hue x chroma histograms of coloured pixels and lightness bins of grey ones, per quadrant."""
    chroma = np.hypot(colour[..., 1], colour[..., 2])
    hue = ((np.arctan2(colour[..., 2], colour[..., 1]) + np.pi) * (HUE_BINS / (2 * np.pi))).astype(np.int64) % HUE_BINS
    strength = np.minimum((chroma / CHROMA_STEP).astype(np.int64), CHROMA_BINS - 1)
    lightness = np.clip((colour[..., 0] / 34.0).astype(np.int64), 0, LIGHTNESS_BINS - 1)
    code = np.where(chroma < GREY_CHROMA, HUE_BINS * CHROMA_BINS + lightness, hue * CHROMA_BINS + strength)
    counts = np.bincount((_cell_index(colour.shape[0], 2) * HUE_CHROMA_BINS + code).ravel(),
                         minlength=4 * HUE_CHROMA_BINS).reshape(4, HUE_CHROMA_BINS)
    return _hellinger(counts.astype(np.float64))


def _gradient(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(d/dx, d/dy): central differences (unhalved, as in `pixels.py`) inside, one-sided at the border."""
    dx, dy = np.empty_like(image), np.empty_like(image)
    dx[:, 1:-1] = image[:, 2:] - image[:, :-2]
    dy[1:-1] = image[2:] - image[:-2]
    dx[:, 0], dx[:, -1] = image[:, 1] - image[:, 0], image[:, -1] - image[:, -2]
    dy[0], dy[-1] = image[1] - image[0], image[-1] - image[-2]
    return dx, dy


def region_covariances(colour: np.ndarray) -> np.ndarray:
    """Log-Euclidean region covariance descriptors (upper triangles) of the whole image, then of
    its quadrants. Both come from the quadrants' sums and sums of outer products (the whole
    image's are their totals), one matrix product for all four."""
    lightness = colour[..., 0]
    dx, dy = _gradient(lightness)
    dxx, _ = _gradient(dx)
    _, dyy = _gradient(dy)
    side = colour.shape[0]
    y, x = np.mgrid[0:side, 0:side].astype(np.float64) / side  # the position of each pixel
    per_pixel = np.stack([x, y, lightness, colour[..., 1], colour[..., 2],
                          np.abs(dx), np.abs(dy), np.abs(dxx), np.abs(dyy)], axis=-1)
    half = side // 2
    quadrants = per_pixel.reshape(2, half, 2, half, _COV_DIM).transpose(0, 2, 1, 3, 4).reshape(4, half * half, _COV_DIM)
    sums = quadrants.sum(axis=1)  # (4, 9)
    products = quadrants.transpose(0, 2, 1) @ quadrants  # (4, 9, 9)
    sums = np.concatenate([sums.sum(axis=0, keepdims=True), sums])
    products = np.concatenate([products.sum(axis=0, keepdims=True), products])
    count = np.array([side * side] + [half * half] * 4, dtype=np.float64)[:, None, None]
    covariance = (products - sums[:, :, None] * sums[:, None, :] / count) / (count - 1) + 1e-4 * np.eye(_COV_DIM)
    values, vectors = np.linalg.eigh(covariance)
    logarithm = (vectors * np.log(np.maximum(values, 1e-6))[:, None, :]) @ vectors.transpose(0, 2, 1)
    return logarithm[:, _COV_UPPER[0], _COV_UPPER[1]].ravel()


def texture_blocks(rgb: np.ndarray, grey: np.ndarray) -> np.ndarray:
    """The blocks of `BLOCKS`, concatenated: `rgb` in [0, 1] (side, side, 3) with an even side,
    `grey` its intensity."""
    colour = lab(rgb.astype(np.float64))
    return np.concatenate([lbp_pyramid(grey), hue_chroma(colour), region_covariances(colour)]).astype(np.float32)
