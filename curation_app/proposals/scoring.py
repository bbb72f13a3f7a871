"""Scores for "same object, different context".

    score(a, b) = (CONTEXT_WEIGHT * |c_a - c_b|^2 - |o_a - o_b|^2) / (1 + CONTEXT_WEIGHT)

`o` is the object vector of the chosen embedder and `c` the pixels context vector (outer band),
both standardised *within the class* and scaled so that the mean squared distance between two
images of the class pool is 1. A score of 0 is what a random pair of the class gets on average;
+1 is, for instance, a pair whose objects are as alike as two copies and whose contexts are twice
as far apart as a typical pair's. Why this form:

- every candidate pair is already the same class (pairs never leave a class folder), so what
  the annotator still rejects is pairs whose objects do not look alike enough to be "the same
  kind of thing" (a puppy and a pack of adults, a detail and a whole) and pairs that add nothing
  over an augmentation (same background, same light). The object term rewards the former, the
  context term the latter: the paper's definition of a semantic pair (§3) as a formula;
- standardising within the class makes both distances measure differences *among the class's
  images*: every image of "tench" has the same greenish context on average. Hand-made pixels
  features are z-scored per dimension (their dimensions have unrelated units; clipped at
  `Z_CLIP` so one odd image cannot dominate), colour and texture blocks weighted equally
  (`pixels.BLOCK_WEIGHTS`; the `zscore` mode is the pixels layout). Network features are
  L2-normalised, centred and normalised again, the usual treatment of embeddings: their distance
  is 2 - 2 cos of the centred embeddings (centring removes what all images of the class share;
  for a randomly initialised ResNet-18, whose features all share one large positive offset, the
  same-class nearest-neighbour rate on the sample is 18.5 % with it and 16.0 % without);
- **distances, not cosines of the standardised pixels vectors** (the first version): after
  z-scoring 32 numbers, an image close to the class mean has a short vector whose direction is noise, and a cosine
  throws the length away, so two typical images could look maximally different, and a pair
  near the mean could be ranked first on context diversity it does not have. On the sample,
  per class, the Spearman correlation of the pixels context term with the band colour distance
  of `quality.py` is 0.22 for the cosine and 0.31 for the distance (colour block alone: 0.44 and
  0.58); for the object term against the centre colour distance, 0.28 and 0.44;
- **each distance in units of its class's mean pair distance**: the two terms then have the same
  scale in every class and for every embedder, so neither dominates the top of the ranking by
  having the larger spread, and `CONTEXT_WEIGHT = 1` means "equal say". With 1,300 images and
  157 pairs wanted, annotators only ever see the extreme top of the ranking, and that is where an
  unbalanced trade-off shows: the cosine score with weight 2 put pairs whose *objects* were very
  alike first, and they had alike contexts too (the two regions of a photo share its light and
  colour cast), so its best-ranked quarter was less colour-diverse than its proposals as a whole;
- the linear form keeps the score a plain number the app can sort and the greedy matching can
  maximise, and a pair is judged the same way in pick mode (one anchor) as in proposals.

Measured with `benchmarks/proposals_quality.py` (pixels; distances of histograms the score never
sees, `quality.py`; effect = mean difference from random same-class pairs in their within-class
sd; first version -> this one). Best-ranked quarter of each class of the imagenet sample: context
colour +0.18 -> +0.56 sd (12 -> 17 of 18 classes farther than random), context texture +0.45 ->
+0.76 sd, centre colour still closer than random (-0.52 -> -0.20 sd, 13 of 18 classes), centre
texture from closer than random to the random level (-0.16 -> +0.11 sd, interval -0.13 to +0.35):
the price of the diversity. On the second set (tiny_imagenet, one pair per class in the best
quarter) context colour +0.20 -> +0.46 sd. At the scale of a real class (975 photos, best 157
pairs): context colour +0.24 -> +0.48 sd, texture +0.19 -> +0.61 sd, centre colour -0.62 ->
-0.48 sd, centre texture -0.34 -> -0.05 sd. In a development harness on the same histograms,
CONTEXT_WEIGHT 1.5 bought a little more context diversity (+0.06 sd) but brought the centres to
the random level on tiny_imagenet, so 1 it is. A hard gate (only pairs whose objects are closer
than the class median, ranked by context) did about as well as the linear form but for a
discontinuous score; rank-based forms (min or product of the two percentiles within the class)
put object-alike pairs first again (best quarter's context colour -0.02 to +0.19 sd).

Statistics come from the class's whole pool (all usable images), not from the images still free,
so a pair's score does not drift as annotators accept pairs, and `rank_candidates` in the app
gives the same number as proposals.parquet.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from curation_app.proposals.pixels import BLOCK_WEIGHTS

CONTEXT_WEIGHT = 1.0
Z_CLIP = 3.0
_EPS = 1e-6


@dataclass(frozen=True)
class ClassStatistics:
    object_mean: np.ndarray
    object_scale: np.ndarray  # 1 for `center`
    context_mean: np.ndarray
    context_scale: np.ndarray
    object_mode: str
    object_spread: float = 1.0  # root mean squared distance of two pool images, once standardised
    context_spread: float = 1.0


def _normalise_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), _EPS)


def _prepare_objects(vectors: np.ndarray, mode: str) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float64)
    return _normalise_rows(vectors) if mode == "center" else vectors


def _spread(x: np.ndarray) -> float:
    """Root of the mean squared distance over all pairs of rows, without forming the pairs:
    mean_{i<j} |x_i - x_j|^2 = 2 n / (n - 1) * mean_i |x_i - mean|^2."""
    n = len(x)
    if n < 2:
        return 1.0
    return max(float(np.sqrt(2.0 * n / (n - 1) * ((x - x.mean(axis=0)) ** 2).sum(axis=1).mean())), _EPS)


def _standardise(vectors, context, stats: ClassStatistics) -> tuple[np.ndarray, np.ndarray]:
    objects = (_prepare_objects(vectors, stats.object_mode) - stats.object_mean) / stats.object_scale
    if stats.object_mode == "zscore":
        objects = np.clip(objects, -Z_CLIP, Z_CLIP) * BLOCK_WEIGHTS
    else:
        objects = _normalise_rows(objects)
    contexts = np.clip((np.asarray(context, dtype=np.float64) - stats.context_mean) / stats.context_scale,
                       -Z_CLIP, Z_CLIP) * BLOCK_WEIGHTS
    return objects, contexts


def class_statistics(vectors: np.ndarray, context: np.ndarray, mode: str) -> ClassStatistics:
    """Mean and scale per dimension, and the spreads, over the class pool. `mode`: 'zscore' or 'center'."""
    if mode not in ("zscore", "center"):
        raise ValueError(f"standardize: '{mode}' is not 'zscore' or 'center'")
    objects = _prepare_objects(vectors, mode)
    context = np.asarray(context, dtype=np.float64)
    object_scale = objects.std(axis=0) + _EPS if mode == "zscore" else np.ones(objects.shape[1])
    stats = ClassStatistics(objects.mean(axis=0), object_scale, context.mean(axis=0), context.std(axis=0) + _EPS, mode)
    pool_objects, pool_contexts = _standardise(vectors, context, stats)
    return ClassStatistics(stats.object_mean, stats.object_scale, stats.context_mean, stats.context_scale, mode,
                           _spread(pool_objects), _spread(pool_contexts))


def standardise(vectors: np.ndarray, context: np.ndarray, stats: ClassStatistics) -> tuple[np.ndarray, np.ndarray]:
    """Object and context vectors standardised with the class statistics, scaled so that the mean
    squared distance between two pool images is 1."""
    objects, contexts = _standardise(vectors, context, stats)
    return objects / stats.object_spread, contexts / stats.context_spread


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) squared Euclidean distances between rows."""
    gram = a @ b.T
    return np.maximum((a * a).sum(axis=1)[:, None] + (b * b).sum(axis=1)[None, :] - 2.0 * gram, 0.0)


def pair_scores(objects_a: np.ndarray, contexts_a: np.ndarray, objects_b: np.ndarray,
                contexts_b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) scores between standardised vectors (see the module docstring)."""
    other_context = squared_distances(contexts_a, contexts_b)
    other_object = squared_distances(objects_a, objects_b)
    return (CONTEXT_WEIGHT * other_context - other_object) / (1.0 + CONTEXT_WEIGHT)
