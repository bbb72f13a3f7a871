"""Learning from decisions: what this annotator calls "the same object" in this class.

Every accept and reject of a class re-ranks what is still to be shown in it, verify-mode
proposals and pick-mode candidates alike. The model is small, refitted from scratch on the
class's decisions whenever they change (a few milliseconds), and deterministic: the same set of
decisions gives the same order, whoever asks (the app, `benchmarks/proposals_precision.py`).

A pair's order key is its proposal score, standardised over the class's proposals, plus two
learned log-odds terms:

1. **Neighbourhood acceptance** (which images are poor anchors). Each decision counts for both
   its images and their `NEIGHBOURS` nearest images in object space: an image's term is the
   log-odds of the acceptance rate around it, shrunk towards the class's rate by
   `PRIOR_DECISIONS` pseudo-decisions (a Beta prior), minus the class's own log-odds. A photo
   whose pairs keep being rejected (an odd view, a different kind of thing) and photos like it
   sink; regions of the class where pairs are accepted rise. On its own this is the "local
   purity" of a k-nearest-neighbour graph, used in label propagation (Zhu & Ghahramani 2002).
2. **A latent split of the class** (what the annotator separates). Images get a probability
   p = sigmoid(w . z + b) of one side of a split, z being the class pool's first `COMPONENTS`
   principal components (whitened), and a pair is "the same" with probability
   p_a p_b + (1 - p_a)(1 - p_b). w is fitted to the accepts (same side) and rejects (opposite
   sides) by maximum likelihood with an L2 penalty: the pairwise "meta classification likelihood"
   of Hsu et al., "Multi-class classification without multi-class labels" (ICLR 2019), with two
   classes and a linear model. Its starting direction is the top discriminative component of
   the decisions (Hoi et al., "Learning distance metrics with contextual constraints", CVPR 2006):
   the direction along which rejected pairs differ most relative to accepted ones.

Measured with `benchmarks/proposals_precision.py`; what each term buys on merged sibling classes
is in BENCHMARKS.md, Proposals. Designed on merged sibling classes of Tiny-ImageNet, CIFAR-10 and
Imagenette folders, constants fixed before the final measurement.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from curation_app.proposals.cache import CACHE_FILE, EmbeddingCache
from curation_app.proposals.output import proposals_path
from curation_app.proposals.scoring import class_statistics, standardise

NEIGHBOURS = 15  # images a decision also speaks for, besides its own two
COMPONENTS = 16  # principal components the latent split is fitted on
PRIOR_DECISIONS = 2.0  # pseudo-decisions at the class's rate in each neighbourhood estimate
LATENT_L2 = 1.0  # penalty on the latent split's weights (units: whitened components)
LATENT_ITERATIONS = 15  # Gauss-Newton steps
SAME_CLIP = 0.02  # a learned "same" probability never goes below this or above 1 - this
_EPS = 1e-9


@dataclass(frozen=True)
class Evidence:
    """A class's decisions in force: accepted pairs and rejected (or refuted) ones."""

    accepted: frozenset = field(default_factory=frozenset)
    rejected: frozenset = field(default_factory=frozenset)

    @classmethod
    def of(cls, accepted=(), rejected=()) -> "Evidence":
        return cls(frozenset(tuple(p) for p in accepted), frozenset(tuple(p) for p in rejected))

    def __bool__(self) -> bool:
        return bool(self.accepted or self.rejected)


class ClassPool:
    """What the model needs to know about a class's images: their principal components and their
    nearest neighbours in object space, computed once per class (rows follow `files`)."""

    def __init__(self, files: list[str], objects: np.ndarray):
        self.files = list(files)
        self.index = {f: i for i, f in enumerate(self.files)}
        objects = np.asarray(objects, dtype=np.float64)
        n = len(self.files)
        centred = objects - objects.mean(axis=0) if n else objects
        if n >= 3:  # principal components from the (dims x dims) scatter: cheaper than an SVD of the data
            values, vectors = np.linalg.eigh(centred.T @ centred)
            values, vectors = values[::-1], vectors[:, ::-1]
            keep = min(COMPONENTS, int((values > max(values[0], _EPS) * 1e-10).sum()))
            self.components = centred @ vectors[:, :keep] / np.sqrt(values[:keep] / n)
        else:
            self.components = np.zeros((n, 0))
        if n >= 2:
            single = centred.astype(np.float32)  # neighbours only need the order of distances
            squared = (single * single).sum(axis=1)
            distance = squared[:, None] + squared[None, :] - 2.0 * single @ single.T
            np.fill_diagonal(distance, np.inf)
            k = min(NEIGHBOURS, n - 1)
            nearest = np.argpartition(distance, k - 1, axis=1)[:, :k]
            self.neighbours = np.concatenate([np.arange(n)[:, None], nearest], axis=1)  # itself first
        else:
            self.neighbours = np.arange(n)[:, None]

    def __len__(self) -> int:
        return len(self.files)

    def rows(self, files) -> np.ndarray:
        """Row of each file, -1 for a file the pool does not know (it gets no learned term)."""
        return np.array([self.index.get(f, -1) for f in files], dtype=np.int64)


class LearnedModel:
    """The model fitted to one class's evidence; `adjustment` scores pairs with it."""

    def __init__(self, pool: ClassPool, evidence: Evidence):
        self.pool = pool
        self.evidence = evidence
        pairs = [(a, b, 1.0) for a, b in evidence.accepted] + [(a, b, 0.0) for a, b in evidence.rejected]
        known = [(self.pool.index[a], self.pool.index[b], t) for a, b, t in pairs
                 if a in self.pool.index and b in self.pool.index]
        first = np.array([k[0] for k in known], dtype=np.int64)
        second = np.array([k[1] for k in known], dtype=np.int64)
        verdicts = np.array([k[2] for k in known], dtype=np.float64)
        self.image_terms = self._neighbourhood_terms(first, second, verdicts)
        self.side = self._latent_split(first, second, verdicts)

    def _neighbourhood_terms(self, first, second, verdicts) -> np.ndarray:
        n = len(self.pool)
        if n == 0 or len(verdicts) == 0:
            return np.zeros(n)
        accepted, total = np.zeros(n), np.zeros(n)
        for ends in (first, second):
            around = self.pool.neighbours[ends]  # (decisions, 1 + NEIGHBOURS)
            np.add.at(total, around.ravel(), 1.0)
            np.add.at(accepted, around.ravel(), np.repeat(verdicts, around.shape[1]))
        rate = (verdicts.sum() + 1.0) / (len(verdicts) + 2.0)  # the class's rate, Laplace-smoothed
        local = (PRIOR_DECISIONS * rate + accepted) / (PRIOR_DECISIONS + total)
        return _logit(local) - _logit(rate)

    def _latent_split(self, first, second, verdicts) -> np.ndarray | None:
        """Each image's probability of one side of the split; None without both verdicts."""
        z = self.pool.components
        if z.shape[1] == 0 or verdicts.min(initial=1.0) == 1.0 or verdicts.max(initial=0.0) == 0.0:
            return None
        x = np.hstack([z, np.ones((len(z), 1))])
        direction = _discriminative_direction(z, first, second, verdicts)
        weights = np.append(direction / max(float(np.std(z @ direction)), _EPS), 0.0)
        penalty = np.full(len(weights), LATENT_L2)
        penalty[-1] = 0.0  # the offset is free
        xa, xb = x[first], x[second]
        for _ in range(LATENT_ITERATIONS):
            pa, pb = _sigmoid(xa @ weights), _sigmoid(xb @ weights)
            same = np.clip(pa * pb + (1 - pa) * (1 - pb), 1e-4, 1 - 1e-4)
            # d same / d weights, then the Bernoulli likelihood's gradient and Gauss-Newton matrix
            jacobian = ((2 * pb - 1) * pa * (1 - pa))[:, None] * xa + ((2 * pa - 1) * pb * (1 - pb))[:, None] * xb
            residual = (same - verdicts) / (same * (1 - same))
            gradient = jacobian.T @ residual + penalty * weights
            curvature = (jacobian * (1.0 / (same * (1 - same)))[:, None]).T @ jacobian + np.diag(penalty + 1e-6)
            step = np.linalg.solve(curvature, gradient)
            weights = weights - step
            if np.abs(step).max() < 1e-4:  # weights are O(1): converged well past what the order can show
                break
        return _sigmoid(x @ weights)

    def adjustment(self, files_a, files_b) -> np.ndarray:
        """Learned log-odds added to the standardised scores of the pairs (files_a[k], files_b[k])."""
        a, b = self.pool.rows(files_a), self.pool.rows(files_b)
        terms = np.zeros(len(a))
        for rows in (a, b):
            known = rows >= 0
            terms[known] += self.image_terms[rows[known]]
        if self.side is not None:
            both = (a >= 0) & (b >= 0)
            pa, pb = self.side[a[both]], self.side[b[both]]
            same = np.clip(pa * pb + (1 - pa) * (1 - pb), SAME_CLIP, 1 - SAME_CLIP)
            terms[both] += _logit(same)
        return terms


def standardised(scores: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Scores in units of the spread of the class's proposal scores (`reference`)."""
    reference = np.asarray(reference, dtype=np.float64)
    if len(reference) == 0:
        return np.asarray(scores, dtype=np.float64)
    return (np.asarray(scores, dtype=np.float64) - reference.mean()) / max(float(reference.std()), _EPS)


def learned_order(model: LearnedModel | None, files_a, files_b, scores, reference) -> np.ndarray:
    """Indices of the pairs in the order to show them: by standardised score plus the learned
    terms (ties keep the given order, which is rank order)."""
    key = standardised(scores, reference)
    if model is not None and model.evidence:
        key = key + model.adjustment(files_a, files_b)
    return np.argsort(-key, kind="stable")


def _discriminative_direction(z, first, second, verdicts, prior: float = 5.0) -> np.ndarray:
    """The direction maximising the spread of rejected pairs' differences over accepted ones'
    (both covariances shrunk towards the pool's pair-difference covariance, 2 I once whitened)."""
    dims = z.shape[1]

    def covariance(mask):
        differences = z[first[mask]] - z[second[mask]]
        return (prior * 2.0 * np.eye(dims) + differences.T @ differences) / (prior + len(differences))

    same, different = covariance(verdicts > 0.5), covariance(verdicts < 0.5)
    values, vectors = np.linalg.eigh(same)
    inverse_root = vectors @ np.diag(values ** -0.5) @ vectors.T
    _, directions = np.linalg.eigh(inverse_root @ different @ inverse_root)
    return inverse_root @ directions[:, -1]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30.0, 30.0)))


def _logit(p: np.ndarray | float):
    return np.log(p) - np.log1p(-p)


def load_class_pool(project_dir, wnid: str, vectors: str, standardize: str) -> ClassPool | None:
    """The pool of a class as the last `propose` embedded it (its object vectors, standardised
    within the class as scoring does), from the project's embedding cache; None if the cache
    has no vectors for it. Cached per process until `propose` runs again."""
    path = proposals_path(project_dir)
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        stamp = 0
    return _load_class_pool(str(Path(project_dir).resolve()), wnid, vectors, standardize, stamp)


@lru_cache(maxsize=64)
def _load_class_pool(project: str, wnid: str, vectors: str, standardize: str, stamp: int) -> ClassPool | None:
    if not (Path(project) / CACHE_FILE).is_file():
        return None
    cache = EmbeddingCache.for_project(project, readonly=True)
    try:
        data, _ = cache.load(vectors, wnid, cache.class_files(wnid))
    finally:
        cache.close()
    if len(data) < 2:
        return None
    objects, _ = standardise(data.vectors, data.context, class_statistics(data.vectors, data.context, standardize))
    return ClassPool(data.files, objects)
