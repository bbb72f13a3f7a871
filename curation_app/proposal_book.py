"""The proposals the app shows, in the order to show them.

Reads `PROJECT/proposals.parquet` (written by `semantic-pairs propose`; format and reading in
`curation_app.proposals.output`) for verify mode and for ordering pick-mode candidates. The file
is re-read when it changes, so proposals computed while the app runs are picked up.

**The order** of a class's remaining proposals is where learning from decisions happens:
`next_pairs(wnid, evidence)` (or `for_class(wnid)`, which reads the evidence from the project's
decision store) leaves out decided pairs and sorts the rest by their score plus what the class's
accepts and rejects so far say (`curation_app.proposals.learning`). The app's verify mode and
`benchmarks/proposals_precision.py` both take their pairs from here, so the benchmark measures
the order annotators see. A decision taken on a proposal records
`output.decision_source(embedder, rank)` (the proposal's rank in the file).
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from curation_app.proposals.learning import Evidence, LearnedModel, learned_order, load_class_pool
from curation_app.proposals.output import decision_source, proposals_path, read_info, read_table
from pair_manifest.errors import UserError
from pair_manifest.store import STORE_FILE, DecisionStore, canonical_pair, check_file_id

log = logging.getLogger("curation_app")


@dataclass(frozen=True)
class Proposal:
    wnid: str
    file_a: str
    file_b: str
    score: float
    rank: int
    embedder: str

    @property
    def source(self) -> str:
        return decision_source(self.embedder, self.rank)


def proposals_by_class(path: Path) -> dict[str, list[Proposal]]:
    """Proposals per class, best rank first; a file of the wrong shape names the column."""
    by_class: dict[str, list[Proposal]] = {}
    skipped = 0
    for row in read_table(path).to_pylist():
        wnid = row["wnid"] or ""
        files = [f if "/" in (f or "") else f"{wnid}/{f}" for f in (row["file_a"], row["file_b"])]
        try:
            for file in files:
                check_file_id(wnid, file)
        except UserError:
            skipped += 1
            continue
        a, b = canonical_pair(*files)
        by_class.setdefault(wnid, []).append(
            Proposal(wnid, a, b, float(row["score"] or 0.0), int(row["rank"] or 0), row["embedder"] or "?"))
    if skipped:
        log.warning("%s: %d proposal row(s) name files outside their class folder and are ignored", path, skipped)
    for rows in by_class.values():
        rows.sort(key=lambda p: (p.rank, -p.score, p.file_a, p.file_b))
    return by_class


class ProposalBook:
    """`learning=False` shows proposals in rank order whatever was decided (the benchmark's
    reference; the app learns)."""

    def __init__(self, project_dir: str | Path, *, learning: bool = True):
        self.project_dir = Path(project_dir)
        self.path = proposals_path(project_dir)
        self.learning = learning
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._by_class: dict[str, list[Proposal]] = {}
        self._scores: dict[str, dict[tuple[str, str], float]] = {}
        self._info: dict = {}
        self._models: dict[str, LearnedModel | None] = {}
        self._store: DecisionStore | None = None
        self._prepared: set[str] = set()
        self._orders: dict[str, tuple[Evidence, list[Proposal]]] = {}
        self._background: ThreadPoolExecutor | None = None
        self.refresh(strict=True)

    def refresh(self, *, strict: bool = False) -> None:
        """Re-read the file if it changed. At start-up a bad file is an error; later it is logged
        and the previous proposals stay in use."""
        with self._lock:
            try:
                stat = self.path.stat()
            except FileNotFoundError:
                self._stamp, self._by_class, self._scores, self._models = None, {}, {}, {}
                return
            stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)  # files are replaced, never rewritten in place
            if stamp == self._stamp:
                return
            try:
                by_class = proposals_by_class(self.path)
            except UserError as error:
                if strict:
                    raise
                log.error("%s", error)
                return
            self._by_class, self._scores, self._models, self._stamp = by_class, {}, {}, stamp
            self._prepared, self._orders = set(), {}
            self._info = read_info(self.path)
            log.info("read %s: %d proposals in %d classes", self.path, sum(map(len, by_class.values())), len(by_class))

    @property
    def available(self) -> bool:
        self.refresh()
        return bool(self._by_class)

    def all_for_class(self, wnid: str) -> list[Proposal]:
        """Every proposal of a class in rank order, decided or not."""
        self.refresh()
        return self._by_class.get(wnid, [])

    def for_class(self, wnid: str) -> list[Proposal]:
        """The class's proposals still to decide, in the order to show them (the evidence is read
        from the project's decision store)."""
        return self.next_pairs(wnid, self.evidence(wnid))

    def next_pairs(self, wnid: str, evidence: Evidence) -> list[Proposal]:
        """The class's proposals not in `evidence`, in the order to show them: rank order before
        any decision (or with learning off), then re-ranked by the class's learned model."""
        proposals = self.all_for_class(wnid)
        decided = evidence.accepted | evidence.rejected
        remaining = [p for p in proposals if (p.file_a, p.file_b) not in decided]
        if self.learning and not evidence and proposals:
            self._prepare(wnid)  # the class's first decision then finds its model's data ready
        if not self.learning or not evidence or len(remaining) < 2:
            return remaining
        with self._lock:
            cached = self._orders.get(wnid)
        if cached is not None and cached[0] == evidence:  # the prefetch after a keypress asks again
            return list(cached[1])
        model = self.model(wnid, evidence)
        order = learned_order(model, [p.file_a for p in remaining], [p.file_b for p in remaining],
                              np.array([p.score for p in remaining]), np.array([p.score for p in proposals]))
        ordered = [remaining[i] for i in order]
        with self._lock:
            self._orders[wnid] = (evidence, ordered)
        return list(ordered)

    def evidence(self, wnid: str) -> Evidence:
        """A class's accepts and rejects (refuted accepts count as rejects) from the decision store."""
        store = self._decision_store()
        if store is None:
            return Evidence()
        return Evidence.of(store.decided_pairs(wnid, "accepted"),
                           store.decided_pairs(wnid, "rejected") | store.decided_pairs(wnid, "refuted"))

    def model(self, wnid: str, evidence: Evidence) -> LearnedModel | None:
        """The class's model for this evidence, refitted only when the evidence changed."""
        with self._lock:
            cached = self._models.get(wnid)
        if cached is not None and cached.evidence == evidence:
            return cached
        vectors, standardize = self._info.get("vectors"), self._info.get("standardize")
        if not vectors or not standardize:
            return None  # proposals written before learning existed: rank order
        try:
            pool = load_class_pool(self.project_dir, wnid, vectors, standardize)
        except UserError as error:
            log.warning("learning unavailable for %s: %s", wnid, error)
            return None
        if pool is None:
            return None
        model = LearnedModel(pool, evidence)
        with self._lock:
            self._models[wnid] = model
        return model

    def _prepare(self, wnid: str) -> None:
        """Read and index the class's pool in the background (a few hundred ms for 1,300 images),
        once per class, off the keypress that shows its first pair."""
        with self._lock:
            if wnid in self._prepared or not self._info.get("vectors"):
                return
            self._prepared.add(wnid)
            if self._background is None:
                self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="learning")
        self._background.submit(self._load_quietly, wnid, self._info["vectors"], self._info["standardize"])

    def _load_quietly(self, wnid: str, vectors: str, standardize: str) -> None:
        try:
            load_class_pool(self.project_dir, wnid, vectors, standardize)
        except Exception:  # noqa: BLE001 - the keypress that needs it will load it again and log why
            log.debug("preparing the learning data of %s failed", wnid, exc_info=True)

    def _decision_store(self) -> DecisionStore | None:
        if self._store is None and (self.project_dir / STORE_FILE).is_file():
            self._store = DecisionStore.for_project(self.project_dir)
        return self._store

    def scores(self, wnid: str) -> dict[tuple[str, str], float]:
        """Score of every proposed pair of a class (canonical order), for ordering pick candidates."""
        self.refresh()
        scores = self._scores.get(wnid)
        if scores is None:
            scores = {(p.file_a, p.file_b): p.score for p in self._by_class.get(wnid, [])}
            self._scores[wnid] = scores
        return scores
