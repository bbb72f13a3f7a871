"""The live decision store: SQLite in WAL mode with `synchronous=FULL`, one file per project.

Decisions are append-only (triggers refuse UPDATE and DELETE); the state of every pair is derived
from them in the same transaction (`pair_manifest.pair_state`, which also states the rules), so
the policy holds with many writer processes. A call to `record` returns only after its
transaction has committed: that is what "acknowledged" means in the app. Every decision carries
an idempotency key, so a retried request never records twice.

The policy checked here: two different files of the decision's class (`pair_manifest.file_ids`),
different bytes, not one photo twice (`pair_manifest.near_duplicates`), each image in at most one
accepted pair of its class, a review by someone else of a decision in force.

Over 400 lines because the schema, the transaction that appends a decision and the queries that
read the log belong together: each query relies on the indexes and triggers defined here.
"""
from __future__ import annotations

import json
import logging
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from pair_manifest import pair_state, policy
from pair_manifest.decisions import (TAGS, VERDICTS, AcceptedPair, Decision, IdempotencyConflict, NewDecision,
                                     PolicyViolation, Recorded, canonical_tags, decision_from_row, get_decision,
                                     utc_now)
from pair_manifest.errors import UserError
from pair_manifest.file_ids import canonical_pair, check_file_id, pair_id, resolve_image
from pair_manifest.sqlite_db import StorageError, ThreadConnections, from_sqlite_int, to_sqlite_int

if TYPE_CHECKING:
    # pair_manifest.images (and Pillow) is imported where an image is opened: the manifest and
    # the builders use this module's types without decoding anything.
    from pair_manifest.images import ImageFacts

__all__ = ["TAGS", "VERDICTS", "STORE_FILE", "AcceptedPair", "BulkRecorder", "Decision", "DecisionStore",
           "IdempotencyConflict", "NewDecision", "PolicyViolation", "Recorded", "canonical_pair", "canonical_tags",
           "check_file_id", "pair_id", "resolve_image", "utc_now"]

log = logging.getLogger("pair_manifest.store")

STORE_FILE = "decisions.sqlite"
SCHEMA_VERSION = 1

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}');
CREATE TABLE IF NOT EXISTS decisions (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL UNIQUE,
    wnid            TEXT NOT NULL,
    file_a          TEXT NOT NULL,
    file_b          TEXT NOT NULL,
    sha256_a        TEXT NOT NULL,
    sha256_b        TEXT NOT NULL,
    verdict         TEXT NOT NULL CHECK (verdict IN ('accept', 'reject', 'skip', 'undo')),
    tags            TEXT NOT NULL DEFAULT '',
    annotator       TEXT NOT NULL,
    decided_at      TEXT NOT NULL,
    source          TEXT NOT NULL DEFAULT 'manual',
    review_of       INTEGER REFERENCES decisions(seq),
    undo_of         INTEGER REFERENCES decisions(seq) UNIQUE
);
CREATE INDEX IF NOT EXISTS decisions_pair ON decisions (file_a, file_b);
CREATE INDEX IF NOT EXISTS decisions_annotator ON decisions (annotator, seq);
CREATE INDEX IF NOT EXISTS decisions_review ON decisions (review_of);  -- the app's review queue
CREATE INDEX IF NOT EXISTS decisions_class ON decisions (wnid, seq);  -- the app's per-class snapshots
CREATE TRIGGER IF NOT EXISTS decisions_append_only_update BEFORE UPDATE ON decisions
    BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END;
CREATE TRIGGER IF NOT EXISTS decisions_append_only_delete BEFORE DELETE ON decisions
    BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END;
CREATE TABLE IF NOT EXISTS images (
    file TEXT PRIMARY KEY, sha256 TEXT NOT NULL, phash INTEGER NOT NULL, phash_mirrored INTEGER NOT NULL
);
"""


class DecisionStore:
    """One project's decisions. Safe to share between threads (one connection per thread) and
    between processes (SQLite locking; writers serialize on `BEGIN IMMEDIATE`)."""

    def __init__(self, path: str | Path, *, images_root: str | Path | None = None, timeout: float = 60.0):
        self.path = Path(path)
        self.images_root = Path(images_root) if images_root else None
        self._db = ThreadConnections(self.path, synchronous="FULL", what="decision store", timeout=timeout,
                                     foreign_keys=True)
        connection = self._connection()
        try:
            connection.executescript(_SCHEMA + pair_state.SCHEMA)
        except sqlite3.OperationalError as error:
            raise self._db._refused(error) from None
        version = int(self.get_meta("schema_version") or 0)
        if version != SCHEMA_VERSION:
            raise UserError(f"{self.path}: decision store schema {version}, this version reads {SCHEMA_VERSION}")
        if self.get_meta("counters") != pair_state.COUNTERS_VERSION:  # a store made before the counters
            with self._transaction() as connection:
                if connection.execute("SELECT value FROM meta WHERE key = 'counters'").fetchone() is None:
                    pair_state.count_from_scratch(connection)
                    connection.execute("INSERT INTO meta VALUES ('counters', ?)", (pair_state.COUNTERS_VERSION,))

    @classmethod
    def for_project(cls, project_dir: str | Path, **kwargs) -> "DecisionStore":
        return cls(Path(project_dir) / STORE_FILE, **kwargs)

    # -- connections -------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        return self._db.connection()

    def _transaction(self):
        return self._db.transaction()

    def close(self) -> None:
        self._db.close()

    # -- metadata ----------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self._connection().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row["value"] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._transaction() as connection:
            connection.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def class_wnids(self) -> list[str] | None:
        """The class selection this project was created with (label order), if recorded."""
        value = self.get_meta("class_wnids")
        return json.loads(value) if value else None

    # -- image facts -------------------------------------------------------------------------

    def image_facts(self, file: str) -> ImageFacts:
        """SHA-256 and perceptual hash of one image, computed once and cached in the store."""
        from pair_manifest.images import ImageFacts, PerceptualHash, image_facts

        row = self._connection().execute(
            "SELECT sha256, phash, phash_mirrored FROM images WHERE file = ?", (file,)).fetchone()
        if row:
            return ImageFacts(row["sha256"], PerceptualHash(from_sqlite_int(row["phash"]),
                                                               from_sqlite_int(row["phash_mirrored"])))
        facts = image_facts(self.resolve(file), name=file)
        self.remember_facts({file: facts})
        return facts

    def remember_facts(self, facts: dict[str, ImageFacts]) -> None:
        """Cache facts computed elsewhere (an import hashes on every core)."""
        with self._transaction() as connection:
            connection.executemany(
                "INSERT OR IGNORE INTO images VALUES (?, ?, ?, ?)",
                [(file, f.sha256, to_sqlite_int(f.phash.value), to_sqlite_int(f.phash.mirrored))
                 for file, f in facts.items()])

    def resolve(self, file: str) -> Path:
        """Path of `<wnid>/<name>` under the images root; refuses anything that leaves it."""
        if self.images_root is None:
            raise UserError(f"{file}: this store was opened without an images root")
        return resolve_image(self.images_root, file)

    # -- recording ---------------------------------------------------------------------------

    def record(self, new: NewDecision) -> Recorded:
        """Append one decision after checking the policy; returns once it has committed."""
        file_a, file_b, tags = policy.well_formed(new)
        existing = self._by_key(new.idempotency_key)
        if existing:
            return policy.same_request(existing, new, file_a, file_b, tags)
        facts_a, facts_b = self.image_facts(file_a), self.image_facts(file_b)
        if new.verdict == "accept" and new.review_of is None:
            policy.distinct_photos(file_a, file_b, facts_a, facts_b, self.resolve)
        return self._commit(new, file_a, file_b, tags, facts_a.sha256, facts_b.sha256)

    @contextmanager
    def bulk(self) -> Iterator["BulkRecorder"]:
        """Many decisions in one transaction (an import): each `record` is checked exactly like
        `DecisionStore.record`, a refused one changes nothing, and all of them commit together
        when the block ends (or none, if it raises)."""
        with self._transaction() as connection:
            yield BulkRecorder(self, connection)

    def replay(self, decision: Decision, *, review_of: int | None, undo_of: int | None) -> Recorded:
        """Append a decision taken from another log (merge, validation), keeping its key, time and
        hashes. The policy is checked again, except the perceptual-hash test, which needs pixels
        and was made when the decision was first taken. `review_of`/`undo_of` are seqs in *this*
        store."""
        if decision.verdict == "undo":
            if undo_of is None:
                raise PolicyViolation(f"decision {decision.seq}: undoes a decision that is not in this log")
            return self.undo(undo_of, decision.annotator, decision.idempotency_key, decided_at=decision.decided_at)
        new = NewDecision(decision.idempotency_key, decision.wnid, decision.file_a, decision.file_b,
                          decision.verdict, decision.annotator, decision.tags, decision.source, review_of,
                          decision.decided_at)
        check_file_id(new.wnid, new.file_a)
        check_file_id(new.wnid, new.file_b)
        file_a, file_b = canonical_pair(new.file_a, new.file_b)
        existing = self._by_key(new.idempotency_key)
        if existing:
            return policy.same_request(existing, new, file_a, file_b, canonical_tags(new.tags))
        return self._commit(new, file_a, file_b, canonical_tags(new.tags), decision.sha256_a, decision.sha256_b)

    def _commit(self, new: NewDecision, file_a: str, file_b: str, tags: str, sha_a: str, sha_b: str) -> Recorded:
        try:
            with self._transaction() as connection:
                return self._append(connection, new, file_a, file_b, tags, sha_a, sha_b)
        except StorageError:
            done = self._committed_anyway(new.idempotency_key)
            if done is None:
                raise
            return done

    def _committed_anyway(self, key: str) -> Recorded | None:
        """After a refused write: the decision if its COMMIT took effect all the same (SQLite
        reports a failed automatic checkpoint, which runs just after a commit, as its error)."""
        done = self._by_key(key)
        if done is not None:
            log.warning("decision %d (%s) was committed although the disk refused a write right after it",
                        done.seq, key)
            return Recorded(done)
        return None

    def _append(self, connection, new: NewDecision, file_a: str, file_b: str, tags: str, sha_a: str,
                sha_b: str) -> Recorded:
        """Check the policy against the store's state and append (inside a write transaction)."""
        policy.same_bytes(new, file_a, file_b, sha_a, sha_b)
        existing = self._by_key(new.idempotency_key)  # a concurrent retry may have won the race
        if existing:
            return policy.same_request(existing, new, file_a, file_b, tags)
        if new.review_of is not None:
            policy.review_allowed(connection, new, file_a, file_b)
        else:
            policy.annotation_allowed(connection, new.verdict, new.wnid, file_a, file_b)
        decided_at = new.decided_at or utc_now()
        cursor = connection.execute(
            "INSERT INTO decisions (idempotency_key, wnid, file_a, file_b, sha256_a, sha256_b, verdict,"
            " tags, annotator, decided_at, source, review_of, undo_of) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,NULL)",
            (new.idempotency_key, new.wnid, file_a, file_b, sha_a, sha_b, new.verdict,
             tags, new.annotator, decided_at, new.source, new.review_of),
        )
        decision = Decision(cursor.lastrowid, new.idempotency_key, new.wnid, file_a, file_b, sha_a, sha_b,
                            new.verdict, tuple(t for t in tags.split("|") if t), new.annotator, decided_at,
                            new.source, new.review_of, None)
        pair_state.apply(connection, decision)
        return Recorded(decision)

    def undo_last(self, annotator: str, idempotency_key: str, *, decided_at: str | None = None) -> Recorded | None:
        """Undo the annotator's most recent decision that is still in effect (None if there is none)."""
        existing = self._by_key(idempotency_key)
        if existing:
            if existing.verdict != "undo" or existing.annotator != annotator:
                raise IdempotencyConflict(f"idempotency key {idempotency_key} was used for another decision")
            return Recorded(existing, duplicate=True)
        try:
            with self._transaction() as connection:
                target = connection.execute(
                    "SELECT seq FROM decisions_in_effect WHERE annotator = ? AND verdict != 'undo'"
                    " ORDER BY seq DESC LIMIT 1", (annotator,)).fetchone()
                if target is None:
                    return None
                undone = get_decision(connection, target["seq"])
                return Recorded(self._insert_undo(connection, undone, idempotency_key, decided_at))
        except StorageError:
            done = self._committed_anyway(idempotency_key)
            if done is None:
                raise
            return done

    def undo(self, seq: int, annotator: str, idempotency_key: str, *, decided_at: str | None = None) -> Recorded:
        """Undo one given decision of this annotator (used when replaying logs)."""
        existing = self._by_key(idempotency_key)
        if existing:
            return Recorded(existing, duplicate=True)
        with self._transaction() as connection:
            undone = get_decision(connection, seq)
            if undone is None or undone.verdict == "undo":
                raise PolicyViolation(f"decision {seq}: nothing to undo")
            if undone.annotator != annotator:
                raise PolicyViolation(f"decision {seq}: only {undone.annotator} can undo it")
            if connection.execute("SELECT 1 FROM decisions WHERE undo_of = ?", (seq,)).fetchone():
                raise PolicyViolation(f"decision {seq}: already undone")
            return Recorded(self._insert_undo(connection, undone, idempotency_key, decided_at))

    def _insert_undo(self, connection, undone: Decision, key: str, decided_at: str | None) -> Decision:
        cursor = connection.execute(
            "INSERT INTO decisions (idempotency_key, wnid, file_a, file_b, sha256_a, sha256_b, verdict, tags,"
            " annotator, decided_at, source, review_of, undo_of) VALUES (?,?,?,?,?,?,'undo','',?,?,?,NULL,?)",
            (key, undone.wnid, undone.file_a, undone.file_b, undone.sha256_a, undone.sha256_b,
             undone.annotator, decided_at or utc_now(), undone.source, undone.seq),
        )
        decision = get_decision(connection, cursor.lastrowid)
        pair_state.apply(connection, decision)
        return decision

    # -- reading -----------------------------------------------------------------------------

    def _by_key(self, key: str) -> Decision | None:
        row = self._connection().execute("SELECT * FROM decisions WHERE idempotency_key = ?", (key,)).fetchone()
        return decision_from_row(row) if row else None

    def get(self, seq: int) -> Decision | None:
        return get_decision(self._connection(), seq)

    def decisions(self, *, since: int = 0) -> list[Decision]:
        rows = self._connection().execute("SELECT * FROM decisions WHERE seq > ? ORDER BY seq", (since,))
        return [decision_from_row(row) for row in rows]

    def last_seq(self) -> int:
        return self._connection().execute("SELECT COALESCE(MAX(seq), 0) FROM decisions").fetchone()[0]

    def class_decisions_since(self, wnid: str, seq: int) -> list[Decision]:
        """The decisions of one class appended after `seq`, in order (the app's per-class cache)."""
        rows = self._connection().execute("SELECT * FROM decisions WHERE wnid = ? AND seq > ? ORDER BY seq",
                                          (wnid, seq))
        return [decision_from_row(row) for row in rows]

    def class_skips(self, wnid: str) -> list[tuple[str, tuple[str, str]]]:
        """(annotator, pair) of every live skip of a class."""
        rows = self._connection().execute(
            "SELECT annotator, file_a, file_b FROM decisions_in_effect WHERE wnid = ? AND verdict = 'skip'"
            " AND review_of IS NULL", (wnid,))
        return [(row["annotator"], (row["file_a"], row["file_b"])) for row in rows]

    def count(self) -> int:
        return self._connection().execute("SELECT COUNT(*) FROM decisions").fetchone()[0]

    def used_images(self, wnid: str | None = None) -> set[str]:
        query, args = ("SELECT file FROM image_use", ()) if wnid is None else (
            "SELECT file FROM image_use WHERE wnid = ?", (wnid,))
        return {row["file"] for row in self._connection().execute(query, args)}

    def decided_pairs(self, wnid: str | None = None, state: str | None = None) -> set[tuple[str, str]]:
        """Pairs with a live verdict (accepted, rejected or refuted), optionally filtered."""
        query = "SELECT file_a, file_b FROM pair_state WHERE 1=1"
        args: list = []
        if wnid is not None:
            query += " AND wnid = ?"
            args.append(wnid)
        if state is not None:
            query += " AND state = ?"
            args.append(state)
        return {(row["file_a"], row["file_b"]) for row in self._connection().execute(query, args)}

    def accepted_counts(self) -> dict[str, int]:
        """Accepted pairs per class: a counter kept with the log (`pair_state`)."""
        rows = self._connection().execute("SELECT wnid, accepted FROM accepted_per_class WHERE accepted > 0")
        return {row["wnid"]: row["accepted"] for row in rows}

    # Queries of the curation app (work assignment and review queue).

    def decision_for_key(self, idempotency_key: str) -> Decision | None:
        """The decision recorded under this idempotency key, if any."""
        return self._by_key(idempotency_key)

    def live_count(self, annotator: str) -> int:
        """Decisions of one annotator still in effect (undo records and undone decisions excluded):
        a counter kept with the log (`pair_state`)."""
        row = self._connection().execute("SELECT live FROM live_per_annotator WHERE annotator = ?",
                                         (annotator,)).fetchone()
        return row["live"] if row else 0

    def skipped_pairs(self, wnid: str, annotator: str) -> set[tuple[str, str]]:
        """Pairs of a class this annotator skipped (live skips), so they are not shown to them again."""
        rows = self._connection().execute(
            "SELECT file_a, file_b FROM decisions_in_effect WHERE wnid = ? AND annotator = ? AND verdict = 'skip'"
            " AND review_of IS NULL", (wnid, annotator))
        return {(row["file_a"], row["file_b"]) for row in rows}

    def review_candidates(self, wnid: str, reviewer: str) -> list[Decision]:
        """Accepts and rejects of a class that are in force, taken by someone other than `reviewer`,
        and not yet reviewed by a live review; oldest first."""
        rows = self._connection().execute(
            "SELECT d.* FROM pair_state p JOIN decisions d ON d.seq = p.decision_seq"
            " WHERE p.wnid = ? AND p.state IN ('accepted', 'rejected') AND d.annotator != ?"
            " AND NOT EXISTS (SELECT 1 FROM decisions_in_effect r WHERE r.review_of = d.seq)"
            " ORDER BY d.seq", (wnid, reviewer))
        return [decision_from_row(row) for row in rows]

    def accepted_pairs(self) -> list[AcceptedPair]:
        """Accepted pairs ranked within their class by acceptance order (the 50/100/157 subsets)."""
        connection = self._connection()
        rows = connection.execute(
            "SELECT d.* FROM pair_state p JOIN decisions d ON d.seq = p.decision_seq"
            " WHERE p.state = 'accepted' ORDER BY d.wnid, d.seq").fetchall()
        confirmed = {row["review_of"] for row in connection.execute(
            "SELECT review_of FROM decisions_in_effect WHERE review_of IS NOT NULL AND verdict = 'accept'")}
        ranks: dict[str, int] = {}
        pairs = []
        for row in rows:
            decision = decision_from_row(row)
            rank = ranks.get(decision.wnid, 0)
            ranks[decision.wnid] = rank + 1
            status = "confirmed" if decision.seq in confirmed else "unreviewed"
            pairs.append(AcceptedPair(decision, rank, status))
        return pairs

    def rebuild_state(self) -> None:
        """Recompute the derived tables from the log (the log is the truth; this proves it)."""
        with self._transaction() as connection:
            pair_state.rebuild(connection)


class BulkRecorder:
    """`DecisionStore.bulk()`'s handle: records into the open transaction, with the image facts
    the caller computed (an import hashes on every core)."""

    def __init__(self, store: DecisionStore, connection: sqlite3.Connection):
        self.store = store
        self.connection = connection

    def record(self, new: NewDecision, facts_a: ImageFacts, facts_b: ImageFacts) -> Recorded:
        store = self.store
        file_a, file_b, tags = policy.well_formed(new)
        if canonical_pair(new.file_a, new.file_b) != (new.file_a, new.file_b):
            facts_a, facts_b = facts_b, facts_a
        existing = store._by_key(new.idempotency_key)
        if existing:
            return policy.same_request(existing, new, file_a, file_b, tags)
        if new.verdict == "accept" and new.review_of is None:
            policy.distinct_photos(file_a, file_b, facts_a, facts_b, store.resolve)
        return store._append(self.connection, new, file_a, file_b, tags, facts_a.sha256, facts_b.sha256)
