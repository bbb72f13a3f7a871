"""Choose pairs so each image is used at most once: greedy matching on the sorted scores.

Greedy takes the best remaining pair whose two images are both free. It is the classic
1/2-approximation of a maximum-weight matching (Avis 1983), needs one sort of the N(N-1)/2
scores (0.85 M for a 1,300-image class), and yields pairs already in rank order: pair k is the
k-th taken, so rank 0 is the best. Ties are broken by image index, i.e. by file name, so the
result is deterministic.

Vetoes that are expensive to compute for all N^2 pairs (the crop test) are asked only for pairs
about to be taken; cheap exclusions (pairs already rejected) come as a boolean matrix.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

CHUNK = 4096  # sorted pairs examined per vectorised step


def greedy_matching(scores: np.ndarray, *, forbidden: np.ndarray | None = None,
                    veto: Callable[[int, int], bool] | None = None,
                    limit: int | None = None) -> list[tuple[int, int]]:
    """Pairs (i, j), i < j, in the order taken (descending score). `forbidden[i, j]` pairs are
    never taken; `veto(i, j)` is asked before taking a pair; at most `limit` pairs."""
    n = len(scores)
    most = n // 2 if limit is None else min(limit, n // 2)
    if most <= 0:
        return []
    first, second = np.triu_indices(n, 1)
    order = np.argsort(-scores[first, second], kind="stable")  # ties keep (i, j) order
    used = np.zeros(n, dtype=bool)
    chosen: list[tuple[int, int]] = []
    for start in range(0, len(order), CHUNK):
        block = order[start:start + CHUNK]
        a, b = first[block], second[block]
        keep = ~used[a] & ~used[b]
        if forbidden is not None:
            keep &= ~forbidden[a, b]
        for i, j in zip(a[keep].tolist(), b[keep].tolist()):
            if used[i] or used[j] or (veto is not None and veto(i, j)):
                continue
            used[i] = used[j] = True
            chosen.append((i, j))
            if len(chosen) == most:
                return chosen
    return chosen
