"""Scores for "same object, different context".

    score(a, b) = (cos(o_a, o_b) - CONTEXT_WEIGHT * cos(c_a, c_b)) / (1 + CONTEXT_WEIGHT)

`o` is the object vector of the chosen embedder and `c` the pixels context vector (outer band),
both standardised *within the class*. Why this form:

- every candidate pair is already the same class (pairs never leave a class folder), so what
  the annotator still rejects is pairs whose objects do not look alike enough to be "the same
  kind of thing" (a puppy and a pack of adults, a detail and a whole) and pairs that add nothing
  over an augmentation (same background, same light). The first term rewards the former, the
  second penalises the latter: the paper's definition of a semantic pair (§3) as a formula;
- standardising within the class makes both cosines measure how a pair differs *from the
  class's typical image*: every image of "tench" has the same greenish context on average, and
  raw cosines would be near 1 for all pairs. Hand-made pixels features are z-scored per dimension
  (their dimensions have unrelated units; clipped at `Z_CLIP` so one odd image cannot dominate);
  network features are L2-normalised and centred, the usual treatment of embeddings; in the
  context vector, colour and texture are weighted equally (`pixels.BLOCK_WEIGHTS`);
- a linear trade-off keeps the score a plain number the app can sort and the greedy matching
  can maximise; dividing by `1 + CONTEXT_WEIGHT` keeps scores in [-1, 1].
- `CONTEXT_WEIGHT = 2`: the two cosines are correlated (a shared light or colour cast raises
  both), so equal weights let "alike in everything" pairs lead the ranking. Measured on the
  sample (`benchmarks/proposals_quality.py`, pixels): at 1 the top quarter of the proposals was
  no more context-diverse than random same-class pairs (band colour distance 0.616 vs 0.627);
  at 2 it is 0.659 and all proposals 0.674, while their centres stay more alike than random
  (0.565 vs 0.578; top quarter 0.485); from 4 on, centre similarity falls to the random level.

Statistics come from the class's whole pool (all usable images), not from the images still free,
so a pair's score does not drift as annotators accept pairs, and `rank_candidates` in the app
gives the same number as proposals.parquet.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from curation_app.proposals.pixels import BLOCK_WEIGHTS

CONTEXT_WEIGHT = 2.0
Z_CLIP = 3.0
_EPS = 1e-6


@dataclass(frozen=True)
class ClassStatistics:
    object_mean: np.ndarray
    object_scale: np.ndarray  # 1 for `center`
    context_mean: np.ndarray
    context_scale: np.ndarray
    object_mode: str


def _normalise_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), _EPS)


def _prepare_objects(vectors: np.ndarray, mode: str) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float64)
    return _normalise_rows(vectors) if mode == "center" else vectors


def class_statistics(vectors: np.ndarray, context: np.ndarray, mode: str) -> ClassStatistics:
    """Mean and scale per dimension over the class pool. `mode`: 'zscore' or 'center'."""
    if mode not in ("zscore", "center"):
        raise ValueError(f"standardize: '{mode}' is not 'zscore' or 'center'")
    objects = _prepare_objects(vectors, mode)
    context = np.asarray(context, dtype=np.float64)
    object_scale = objects.std(axis=0) + _EPS if mode == "zscore" else np.ones(objects.shape[1])
    return ClassStatistics(objects.mean(axis=0), object_scale, context.mean(axis=0), context.std(axis=0) + _EPS, mode)


def standardise(vectors: np.ndarray, context: np.ndarray, stats: ClassStatistics) -> tuple[np.ndarray, np.ndarray]:
    """Unit object and context vectors, standardised with the class statistics."""
    objects = (_prepare_objects(vectors, stats.object_mode) - stats.object_mean) / stats.object_scale
    if stats.object_mode == "zscore":
        objects = np.clip(objects, -Z_CLIP, Z_CLIP)
    contexts = np.clip((np.asarray(context, dtype=np.float64) - stats.context_mean) / stats.context_scale, -Z_CLIP, Z_CLIP)
    return _normalise_rows(objects), _normalise_rows(contexts * BLOCK_WEIGHTS)


def pair_scores(objects_a: np.ndarray, contexts_a: np.ndarray, objects_b: np.ndarray,
                contexts_b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) scores between standardised vectors (see the module docstring)."""
    same_object = objects_a @ objects_b.T
    same_context = contexts_a @ contexts_b.T
    return (same_object - CONTEXT_WEIGHT * same_context) / (1.0 + CONTEXT_WEIGHT)
