"""How "same object, different context" proposals are: measures that the score never sees.

A measurement that reused the scoring features would reward the score for agreeing with itself,
so each image gets four histograms of a different kind and from a different decode:

- **colour**: the joint 4x4x4 RGB histogram (Swain & Ballard, "Color indexing", IJCV 1991) of the
  128 px decode (the scoring features are opponent-colour moments and a hue histogram of a 64 px
  image);
- **texture**: the histogram of rotation-invariant uniform local binary patterns, 8 neighbours at
  radius 1 (LBP riu2, 10 codes; Ojala, Pietikäinen & Mäenpää, TPAMI 2002) of the grey 128 px decode
  resized to `TEXTURE_SIDE` (the scoring features are gradient-orientation histograms weighted by
  magnitude: LBP ignores contrast and orientation, they do not);

each over the **context band** (the outer eighth of each side) and the **centre** (the middle half
of each side), the regions the pixels features also use. The distance of two images is
1 - histogram intersection: 0 for equal distributions, 1 for disjoint ones.

A set of proposed pairs is compared, class by class, with *every* pair of the class (the exact
expectation of a random same-class pair): `compare` gives the mean difference in units of the
within-class standard deviation of random pairs (an effect size), a bootstrap interval over
classes (over pairs when there is one class), and the number of classes where the proposals beat
random with a one-sided sign test.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import comb
from pathlib import Path

import numpy as np
from PIL import Image

from pair_manifest.images import open_rgb

DECODE_SIDE = 128
COLOUR_BINS = 4  # per RGB channel: 64 cells
TEXTURE_SIDE = 128
BAND = 0.125  # outer fraction of each side
CENTRE = (0.25, 0.75)  # fraction of each side
MEASURES = ("context colour", "context texture", "object colour", "object texture")
BOOTSTRAP_DRAWS = 2000
BOOTSTRAP_SEED = 0


def _regions(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = (np.arange(height) + 0.5) / height, (np.arange(width) + 0.5) / width
    band = ((ys < BAND) | (ys >= 1 - BAND))[:, None] | ((xs < BAND) | (xs >= 1 - BAND))[None, :]
    inside_y, inside_x = (ys >= CENTRE[0]) & (ys < CENTRE[1]), (xs >= CENTRE[0]) & (xs < CENTRE[1])
    return band, inside_y[:, None] & inside_x[None, :]


def _riu2_table() -> np.ndarray:
    """Code -> class: the number of set bits for the 9 'uniform' codes (at most two 0/1
    transitions around the circle), 9 for every other code."""
    table = np.zeros(256, dtype=np.int64)
    for code in range(256):
        bits = [(code >> k) & 1 for k in range(8)]
        transitions = sum(bits[k] != bits[(k + 1) % 8] for k in range(8))
        table[code] = sum(bits) if transitions <= 2 else 9
    return table


_RIU2 = _riu2_table()
_NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))  # around the circle


def _histogram(values: np.ndarray, mask: np.ndarray, bins: int) -> np.ndarray:
    counts = np.bincount(values[mask], minlength=bins).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def region_histograms(image: Image.Image | str | Path) -> dict[str, np.ndarray]:
    """The four normalised histograms of one image, keyed by `MEASURES`."""
    if not isinstance(image, Image.Image):
        image = open_rgb(image, max_side=DECODE_SIDE)
    elif max(image.size) > DECODE_SIDE:
        image = image.copy()
        image.thumbnail((DECODE_SIDE, DECODE_SIDE), Image.Resampling.BILINEAR)
    rgb = np.asarray(image.convert("RGB"), dtype=np.int64) * COLOUR_BINS // 256
    cells = (rgb[..., 0] * COLOUR_BINS + rgb[..., 1]) * COLOUR_BINS + rgb[..., 2]
    band, centre = _regions(*cells.shape)
    grey = np.asarray(image.convert("L").resize((TEXTURE_SIDE, TEXTURE_SIDE), Image.Resampling.BILINEAR),
                      dtype=np.int16)
    middle = grey[1:-1, 1:-1]
    code = np.zeros(middle.shape, dtype=np.int64)
    for bit, (dy, dx) in enumerate(_NEIGHBOURS):
        code |= (grey[1 + dy:TEXTURE_SIDE - 1 + dy, 1 + dx:TEXTURE_SIDE - 1 + dx] >= middle).astype(np.int64) << bit
    patterns = _RIU2[code]
    texture_band, texture_centre = (m[1:-1, 1:-1] for m in _regions(TEXTURE_SIDE, TEXTURE_SIDE))
    return {"context colour": _histogram(cells, band, COLOUR_BINS ** 3),
            "context texture": _histogram(patterns, texture_band, 10),
            "object colour": _histogram(cells, centre, COLOUR_BINS ** 3),
            "object texture": _histogram(patterns, texture_centre, 10)}


def distances(histograms: np.ndarray) -> np.ndarray:
    """(N, N) 1 - histogram intersection between the rows of an (N, bins) array."""
    return 1.0 - np.minimum(histograms[:, None, :], histograms[None, :, :]).sum(axis=2)


@dataclass(frozen=True)
class Comparison:
    """Proposed pairs against random same-class pairs, for one measure."""

    proposed: float  # mean distance of the proposed pairs
    random: float  # mean over classes' random-pair expectations, weighted like `proposed`
    random_sd: float  # within-class standard deviation of random pairs (pooled)
    effect: float  # (proposed - random) / random_sd
    interval: tuple[float, float]  # 95 % bootstrap interval of `effect`: classes resampled (pairs if one class)
    above: int  # classes whose proposals' mean distance exceeds their random expectation
    classes: int
    pairs: int

    def sign_test(self, larger: bool = True) -> float:
        """One-sided sign-test p-value that proposals are farther (`larger`) or closer than random
        in more classes than chance would give."""
        wins = self.above if larger else self.classes - self.above
        return sum(comb(self.classes, k) for k in range(wins, self.classes + 1)) / 2 ** self.classes


def compare(proposed: dict[str, list[float]], every: dict[str, np.ndarray]) -> Comparison:
    """`proposed[c]`: distances of class c's proposed pairs; `every[c]`: distances of all its pairs.

    Each class contributes the difference between its proposals' mean and its random expectation,
    weighted by its number of proposals; the unit is the pooled within-class standard deviation of
    random pairs, so a class with a greener background does not count as diversity."""
    classes = [c for c in proposed if len(proposed[c]) and len(every[c])]
    if not classes:
        raise ValueError("no class has both proposals and random pairs to compare")
    means = np.array([np.mean(proposed[c]) for c in classes])
    expected = np.array([np.mean(every[c]) for c in classes])
    weights = np.array([len(proposed[c]) for c in classes], dtype=np.float64)
    squares = sum(float(((every[c] - np.mean(every[c])) ** 2).sum()) for c in classes)
    sd = max(np.sqrt(squares / sum(len(every[c]) for c in classes)), 1e-12)

    def effect(index: np.ndarray) -> float:
        return float(np.average(means[index] - expected[index], weights=weights[index]) / sd)

    rng = np.random.default_rng(BOOTSTRAP_SEED)
    if len(classes) > 1:
        draws = [effect(rng.integers(0, len(classes), len(classes))) for _ in range(BOOTSTRAP_DRAWS)]
    else:  # one class: the proposed pairs are what varies
        values = np.asarray(proposed[classes[0]], dtype=np.float64)
        draws = [(values[rng.integers(0, len(values), len(values))].mean() - expected[0]) / sd
                 for _ in range(BOOTSTRAP_DRAWS)]
    low, high = np.percentile(draws, [2.5, 97.5])
    everything = np.arange(len(classes))
    return Comparison(float(np.average(means, weights=weights)), float(np.average(expected, weights=weights)),
                      float(sd), effect(everything), (float(low), float(high)), int((means > expected).sum()),
                      len(classes), int(weights.sum()))
