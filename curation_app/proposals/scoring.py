"""Scores for "same object, different context".

    score(a, b) = (CONTEXT_WEIGHT * (|c_a - c_b|^2 - 1) - (|o_a - o_b|^2 - 1)) / (1 + CONTEXT_WEIGHT)

`o` is the object vector of the chosen embedder and `c` the pixels context vector (outer band),
both standardised *within the class* and scaled so that the mean squared distance between two
images of the class pool is 1: a random pair of the class scores 0 on average, and +1 is, for
instance, a pair whose objects are as alike as two copies and whose contexts are a little farther
apart than a typical pair's. Why this form:

- every candidate pair is already the same class (pairs never leave a class folder), so what
  the annotator still rejects is pairs whose objects are not "the same kind of thing" (a puppy
  and a pack of adults, a detail and a whole, the two sibling classes a folder may hold) and
  pairs that add nothing over an augmentation (same background, same light). The object term
  answers the first, the context term the second: the paper's definition of a semantic pair
  (§3) as a formula;
- **object first** (`CONTEXT_WEIGHT = 0.3`, `propose --context-weight`): measured on folders that
  merge two sibling classes (Tiny-ImageNet siblings, the pixels object vector v3), the share of the
  best 157 pairs per class that are one real class falls as the context term grows: 0.78 at
  weight 0, 0.74 at 0.3, 0.63 at 0.5, 0.55 at 1, while the context distance of the best pairs,
  in units of a random pair's, rises: 0.2, 1.1, 2.8, 3.4. With weights-free features the two
  goals pull apart (a photo's layout is object and background at once); 0.3 is where the best
  pairs' contexts (by the score's own band statistics) are as different as random pairs'. By the
  independent histograms of `quality.py` they stay more alike than random (README, Proposals):
  a curation lead who wants more context diversity raises the weight and pays in precision;
- standardising within the class makes both distances measure differences *among the class's
  images*: every image of "tench" has the same greenish context on average. Hand-made pixels
  features are z-scored per dimension (their dimensions have unrelated units; clipped at
  `Z_CLIP` so one odd image cannot dominate), each block weighted equally
  (`pixels.block_weights`). Network features are L2-normalised, centred and normalised again,
  the usual treatment of embeddings: their distance is 2 - 2 cos of the centred embeddings
  (centring removes what all images of the class share);
- **distances, not cosines of the standardised pixels vectors**: after z-scoring, an image close
  to the class mean has a short vector whose direction is noise, and a cosine throws the length
  away, so two typical images could look maximally different. On the bundled sample, per class,
  the Spearman correlation of the pixels context term with the band colour distance of
  `quality.py` is 0.22 for the cosine and 0.31 for the distance;
- **each distance in units of its class's mean pair distance**: the two terms then have the same
  scale in every class and for every embedder, so `CONTEXT_WEIGHT` means the same everywhere;
- the linear form keeps the score a plain number the app can sort and the greedy matching can
  maximise, and a pair is judged the same way in pick mode (one anchor) as in proposals.

Statistics come from the class's whole pool (all usable images), not from the images still free,
so a pair's score does not drift as annotators accept pairs, and `rank_candidates` in the app
gives the same number as proposals.parquet.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from curation_app.proposals.pixels import BLOCK_WEIGHTS, block_weights

CONTEXT_WEIGHT = 0.3
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
        objects = np.clip(objects, -Z_CLIP, Z_CLIP) * block_weights(objects.shape[1])
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
                contexts_b: np.ndarray, context_weight: float | None = None) -> np.ndarray:
    """(len(a), len(b)) scores between standardised vectors (see the module docstring);
    `context_weight` defaults to `CONTEXT_WEIGHT`."""
    weight = CONTEXT_WEIGHT if context_weight is None else float(context_weight)
    other_context = squared_distances(contexts_a, contexts_b)
    other_object = squared_distances(objects_a, objects_b)
    return (weight * (other_context - 1.0) - (other_object - 1.0)) / (1.0 + weight)
