"""The progress panel's figures: `pair_manifest.stats.compute_stats` over the live decision log,
exactly what `semantic-pairs manifest stats PROJECT` prints, so the app and the CLI never
disagree. Recomputed only when the log has grown, and at most every ten times the last
computation took (a 100,000-decision log costs about a second; the panel must not eat the CPU
the annotators' requests need).
"""
from __future__ import annotations

import threading
import time

from pair_manifest.classes import imagenet_classes
from pair_manifest.stats import Stats, compute_stats
from pair_manifest.store import DecisionStore

MIN_INTERVAL_FACTOR = 10


class ProgressBoard:
    def __init__(self, store: DecisionStore, *, target: int):
        self.store = store
        self.target = target
        self.names = {w: c.name for w, c in imagenet_classes().items()}  # the names `manifest stats` uses
        self._lock = threading.Lock()
        self._stats: Stats | None = None
        self._count = -1
        self._computed_at = 0.0
        self._min_interval = 0.0

    def stats(self) -> tuple[Stats, int]:
        """The figures and the number of log records they cover."""
        with self._lock:
            count = self.store.count()
            due = time.monotonic() - self._computed_at >= self._min_interval
            if self._stats is None or (count != self._count and due):
                started = time.monotonic()
                decisions = self.store.decisions()
                self._stats = compute_stats(decisions, target=self.target, class_names=self.names)
                self._count = len(decisions)
                self._computed_at = time.monotonic()
                self._min_interval = MIN_INTERVAL_FACTOR * (self._computed_at - started)
            return self._stats, self._count
