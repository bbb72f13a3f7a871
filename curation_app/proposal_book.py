"""Read `PROJECT/proposals.parquet` (`wnid, file_a, file_b, score, rank, embedder`, ranked per
class; written by `semantic-pairs propose`) for verify mode and for ordering pick-mode candidates.

The file is re-read when it changes, so proposals computed while the app runs are picked up. A
decision taken on a proposal records `source = proposal:<embedder>:<rank>`, which is what
`manifest stats` uses to report acceptance per embedder and per rank.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from pair_manifest.errors import UserError
from pair_manifest.store import canonical_pair, check_file_id

PROPOSALS_FILE = "proposals.parquet"
COLUMNS = {"wnid": "string", "file_a": "string", "file_b": "string", "score": "floating", "rank": "integer",
           "embedder": "string"}

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
        # stats parses "proposal:<embedder>:<rank>", so the embedder name must not contain ':'
        return f"proposal:{self.embedder.replace(':', '-')}:{self.rank}"


def read_proposals(path: Path) -> dict[str, list[Proposal]]:
    """Proposals per class, best rank first; a file of the wrong shape names the column."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import pyarrow.types as types

    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as error:
        raise UserError(f"{path}: not a readable Parquet file ({error})") from None
    checks = {"string": lambda t: types.is_string(t) or types.is_large_string(t),
              "floating": lambda t: types.is_floating(t) or types.is_integer(t), "integer": types.is_integer}
    problems = [f"column '{name}' is missing" if name not in table.schema.names else
                f"column '{name}' is {table.schema.field(name).type}, expected {kind}"
                for name, kind in COLUMNS.items()
                if name not in table.schema.names or not checks[kind](table.schema.field(name).type)]
    if problems:
        raise UserError(f"{path}: " + "; ".join(problems))
    by_class: dict[str, list[Proposal]] = {}
    skipped = 0
    for row in table.select(list(COLUMNS)).to_pylist():
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
    def __init__(self, project_dir: str | Path):
        self.path = Path(project_dir) / PROPOSALS_FILE
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._by_class: dict[str, list[Proposal]] = {}
        self._scores: dict[str, dict[tuple[str, str], float]] = {}
        self.refresh(strict=True)

    def refresh(self, *, strict: bool = False) -> None:
        """Re-read the file if it changed. At start-up a bad file is an error; later it is logged
        and the previous proposals stay in use."""
        with self._lock:
            try:
                stat = self.path.stat()
            except FileNotFoundError:
                self._stamp, self._by_class, self._scores = None, {}, {}
                return
            stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)  # files are replaced, never rewritten in place
            if stamp == self._stamp:
                return
            try:
                by_class = read_proposals(self.path)
            except UserError as error:
                if strict:
                    raise
                log.error("%s", error)
                return
            self._by_class, self._scores, self._stamp = by_class, {}, stamp
            log.info("read %s: %d proposals in %d classes", self.path, sum(map(len, by_class.values())), len(by_class))

    @property
    def available(self) -> bool:
        self.refresh()
        return bool(self._by_class)

    def for_class(self, wnid: str) -> list[Proposal]:
        self.refresh()
        return self._by_class.get(wnid, [])

    def scores(self, wnid: str) -> dict[tuple[str, str], float]:
        """Score of every proposed pair of a class (canonical order), for ordering pick candidates."""
        self.refresh()
        scores = self._scores.get(wnid)
        if scores is None:
            scores = {(p.file_a, p.file_b): p.score for p in self._by_class.get(wnid, [])}
            self._scores[wnid] = scores
        return scores
