"""What work assignment reads about one class on every keypress: its decided pairs, its used
images and each annotator's skips, kept in memory and brought up to date from the decisions
appended since (one indexed query), so a keypress costs the same with 1,000 decisions in the log
as with 100,000.

The decision store stays the truth and may be written by other threads and other servers: each
read first fetches the class's decisions with a higher `seq` than the snapshot has seen (SQLite
serialises writers, so sequence numbers are commit order and never appear late). Accepts,
rejects and skips are applied to the snapshot as the store's own rules do
(`pair_manifest.pair_state`); an undo or a review, which can reopen a pair or free images, makes
the class be read again from the store's derived tables.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

from pair_manifest.store import DecisionStore


@dataclass
class ClassSnapshot:
    seq: int = 0  # every decision of the class up to this one is reflected
    decided: set[tuple[str, str]] = field(default_factory=set)  # pairs with a verdict in force
    accepted: set[tuple[str, str]] = field(default_factory=set)  # of those, the accepted ones
    used: set[str] = field(default_factory=set)  # images in accepted pairs
    skipped: dict[str, set[tuple[str, str]]] = field(default_factory=dict)  # annotator -> live skips

    def closed_for(self, annotator: str) -> set[tuple[str, str]]:
        """Pairs this annotator must not be shown: decided by anyone, or skipped by them."""
        return self.decided | self.skipped.get(annotator, set())


class ClassState:
    def __init__(self, store: DecisionStore):
        self.store = store
        self._snapshots: dict[str, ClassSnapshot] = {}
        self._lock = threading.Lock()

    def of(self, wnid: str) -> ClassSnapshot:
        """The class as the log stands now (a copy: callers may change it)."""
        with self._lock:
            snapshot = self._snapshots.get(wnid)
            new = self.store.class_decisions_since(wnid, snapshot.seq if snapshot else 0)
            if snapshot is None or any(d.verdict == "undo" or d.review_of is not None for d in new):
                snapshot = self._read(wnid)
            else:
                for decision in new:
                    self._apply(snapshot, decision)
            self._snapshots[wnid] = snapshot
            return ClassSnapshot(snapshot.seq, set(snapshot.decided), set(snapshot.accepted), set(snapshot.used),
                                 {who: set(pairs) for who, pairs in snapshot.skipped.items()})

    def _read(self, wnid: str) -> ClassSnapshot:
        seq = self.store.last_seq()  # read first: a decision appended meanwhile is fetched again next time
        skipped: dict[str, set[tuple[str, str]]] = {}
        for annotator, pair in self.store.class_skips(wnid):
            skipped.setdefault(annotator, set()).add(pair)
        return ClassSnapshot(seq, self.store.decided_pairs(wnid), self.store.decided_pairs(wnid, "accepted"),
                             self.store.used_images(wnid), skipped)

    @staticmethod
    def _apply(snapshot: ClassSnapshot, decision) -> None:
        pair = (decision.file_a, decision.file_b)
        if decision.verdict == "skip":
            snapshot.skipped.setdefault(decision.annotator, set()).add(pair)
        else:  # accept or reject, not a review (those re-read the class)
            snapshot.decided.add(pair)
            if decision.verdict == "accept":
                snapshot.accepted.add(pair)
                snapshot.used.update(pair)
            else:
                snapshot.accepted.discard(pair)
        snapshot.seq = max(snapshot.seq, decision.seq)
