"""Who works on what: class leases, each annotator's current item, and bad images met while
curating. A second SQLite file beside the decision store (`PROJECT/work.sqlite`, WAL), so the
decision log stays exactly the data model and nothing here can corrupt it.

- A **lease** gives one annotator one class for one kind of work (`annotate`: verify and pick;
  `review`) until it expires. Items of a class are only handed to the lease holder, so two
  annotators never see the same pair, anchor or review. Every action renews the lease; an idle
  annotator's class goes back to the pool after `LEASE_SECONDS`.
- The **current item** of each annotator and mode is stored before it is shown, under the
  idempotency key its decision will carry. A reload, a second tab or a restarted server finds
  it again; if the key is already in the decision log, the item was decided just before a crash
  and the annotator moves on.
"""
from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pair_manifest.errors import UserError
from pair_manifest.sqlite_db import ThreadConnections

WORK_FILE = "work.sqlite"
LEASE_SECONDS = 15 * 60  # a coffee break keeps the class; a finished shift gives it back

_SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    kind TEXT NOT NULL, wnid TEXT NOT NULL, annotator TEXT NOT NULL, expires_at REAL NOT NULL,
    PRIMARY KEY (kind, wnid)
);
CREATE INDEX IF NOT EXISTS leases_annotator ON leases (annotator, kind);
CREATE TABLE IF NOT EXISTS items (
    key TEXT PRIMARY KEY, annotator TEXT NOT NULL, mode TEXT NOT NULL, payload TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS current (
    annotator TEXT NOT NULL, mode TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (annotator, mode)
);
CREATE TABLE IF NOT EXISTS annotators (
    annotator TEXT PRIMARY KEY, mode TEXT NOT NULL, preferred_wnid TEXT
);
CREATE TABLE IF NOT EXISTS skipped_anchors (
    annotator TEXT NOT NULL, file TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (annotator, file)
);
CREATE TABLE IF NOT EXISTS skipped_reviews (
    annotator TEXT NOT NULL, decision_seq INTEGER NOT NULL, PRIMARY KEY (annotator, decision_seq)
);
CREATE TABLE IF NOT EXISTS bad_images (
    file TEXT PRIMARY KEY, wnid TEXT NOT NULL, reason TEXT NOT NULL, at REAL NOT NULL
);
"""

MODES = ("verify", "pick", "review")


def lease_kind(mode: str) -> str:
    """Verify and pick both decide pairs of a class, so they share one lease."""
    return "review" if mode == "review" else "annotate"


@dataclass(frozen=True)
class Item:
    """What one annotator is shown. `files` is the pair (verify, review) or the anchor (pick)."""

    key: str
    mode: str
    wnid: str
    files: tuple[str, ...]
    candidates: tuple[str, ...] = ()
    page: int = 0
    source: str = "manual"
    review_of: int | None = None
    notes: tuple[str, ...] = field(default=(), compare=False)

    def to_json(self) -> str:
        data = asdict(self)
        data.pop("notes")
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> "Item":
        data = json.loads(text)
        data["files"] = tuple(data["files"])
        data["candidates"] = tuple(data["candidates"])
        return cls(**data)


class WorkState:
    def __init__(self, path: str | Path, *, lease_seconds: float = LEASE_SECONDS, timeout: float = 60.0):
        self.path = Path(path)
        self.lease_seconds = lease_seconds
        # synchronous=NORMAL, not FULL: in WAL mode a killed process loses nothing either way, and
        # what a power cut could roll back here (the current item) is rebuilt from the decision log.
        self._db = ThreadConnections(self.path, synchronous="NORMAL", what="work-state file", timeout=timeout)
        self._connection().executescript(_SCHEMA)

    @classmethod
    def for_project(cls, project_dir: str | Path, **kwargs) -> "WorkState":
        return cls(Path(project_dir) / WORK_FILE, **kwargs)

    def _connection(self) -> sqlite3.Connection:
        return self._db.connection()

    def _transaction(self):
        return self._db.transaction()

    def close(self) -> None:
        self._db.close()

    # -- leases ------------------------------------------------------------------------------

    def acquire(self, annotator: str, kind: str, wnid: str, *, now: float | None = None) -> bool:
        """Take or renew the lease of one class; False while someone else holds it. Taking a new
        class gives back any other class this annotator held for the same kind of work."""
        now = time.time() if now is None else now
        row = self._connection().execute("SELECT annotator, expires_at FROM leases WHERE kind = ? AND wnid = ?",
                                         (kind, wnid)).fetchone()
        if row is not None and row["annotator"] == annotator and row["expires_at"] - now > self.lease_seconds / 2:
            return True  # held with time to spare: no write (and no fsync) on every keypress
        with self._transaction() as connection:
            row = connection.execute("SELECT annotator, expires_at FROM leases WHERE kind = ? AND wnid = ?",
                                     (kind, wnid)).fetchone()
            if row is not None and row["annotator"] != annotator and row["expires_at"] > now:
                return False
            connection.execute("DELETE FROM leases WHERE annotator = ? AND kind = ? AND wnid != ?",
                               (annotator, kind, wnid))
            connection.execute("INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?)",
                               (kind, wnid, annotator, now + self.lease_seconds))
            return True

    def release(self, annotator: str, kind: str, wnid: str | None = None) -> None:
        with self._transaction() as connection:
            if wnid is None:
                connection.execute("DELETE FROM leases WHERE annotator = ? AND kind = ?", (annotator, kind))
            else:
                connection.execute("DELETE FROM leases WHERE annotator = ? AND kind = ? AND wnid = ?",
                                   (annotator, kind, wnid))

    def holder(self, kind: str, wnid: str, *, now: float | None = None) -> str | None:
        now = time.time() if now is None else now
        row = self._connection().execute(
            "SELECT annotator FROM leases WHERE kind = ? AND wnid = ? AND expires_at > ?", (kind, wnid, now)).fetchone()
        return row["annotator"] if row else None

    def held_class(self, annotator: str, kind: str, *, now: float | None = None) -> str | None:
        now = time.time() if now is None else now
        row = self._connection().execute(
            "SELECT wnid FROM leases WHERE annotator = ? AND kind = ? AND expires_at > ?", (annotator, kind, now)).fetchone()
        return row["wnid"] if row else None

    def leases(self, *, now: float | None = None) -> dict[tuple[str, str], str]:
        """(kind, wnid) -> holder, for the live leases."""
        now = time.time() if now is None else now
        rows = self._connection().execute("SELECT kind, wnid, annotator FROM leases WHERE expires_at > ?", (now,))
        return {(row["kind"], row["wnid"]): row["annotator"] for row in rows}

    # -- current items -----------------------------------------------------------------------

    def set_current(self, annotator: str, item: Item) -> None:
        with self._transaction() as connection:
            connection.execute("INSERT OR IGNORE INTO items VALUES (?, ?, ?, ?, ?)",
                               (item.key, annotator, item.mode, item.to_json(), time.time()))
            connection.execute("INSERT OR REPLACE INTO current VALUES (?, ?, ?)", (annotator, item.mode, item.key))

    def clear_current(self, annotator: str, mode: str) -> None:
        with self._transaction() as connection:
            connection.execute("DELETE FROM current WHERE annotator = ? AND mode = ?", (annotator, mode))

    def current(self, annotator: str, mode: str) -> Item | None:
        row = self._connection().execute(
            "SELECT i.payload FROM current c JOIN items i ON i.key = c.key WHERE c.annotator = ? AND c.mode = ?",
            (annotator, mode)).fetchone()
        return Item.from_json(row["payload"]) if row else None

    def item(self, key: str) -> Item | None:
        row = self._connection().execute("SELECT payload FROM items WHERE key = ?", (key,)).fetchone()
        return Item.from_json(row["payload"]) if row else None

    def mode(self, annotator: str) -> str:
        row = self._connection().execute("SELECT mode FROM annotators WHERE annotator = ?", (annotator,)).fetchone()
        return row["mode"] if row else "verify"

    def set_mode(self, annotator: str, mode: str) -> None:
        if mode not in MODES:
            raise UserError(f"mode: '{mode}' is not one of {', '.join(MODES)}")
        with self._transaction() as connection:
            connection.execute(
                "INSERT INTO annotators (annotator, mode) VALUES (?, ?)"
                " ON CONFLICT(annotator) DO UPDATE SET mode = excluded.mode", (annotator, mode))

    def preferred_class(self, annotator: str) -> str | None:
        row = self._connection().execute(
            "SELECT preferred_wnid FROM annotators WHERE annotator = ?", (annotator,)).fetchone()
        return row["preferred_wnid"] if row else None

    def set_preferred_class(self, annotator: str, wnid: str | None) -> None:
        with self._transaction() as connection:
            connection.execute(
                "INSERT INTO annotators (annotator, mode, preferred_wnid) VALUES (?, 'verify', ?)"
                " ON CONFLICT(annotator) DO UPDATE SET preferred_wnid = excluded.preferred_wnid", (annotator, wnid))

    # -- skips that the decision log does not hold -------------------------------------------

    def skip_anchor(self, annotator: str, file: str) -> None:
        with self._transaction() as connection:
            connection.execute("INSERT OR REPLACE INTO skipped_anchors VALUES (?, ?, ?)", (annotator, file, time.time()))

    def skipped_anchors(self, annotator: str) -> dict[str, float]:
        rows = self._connection().execute("SELECT file, at FROM skipped_anchors WHERE annotator = ?", (annotator,))
        return {row["file"]: row["at"] for row in rows}

    def skip_review(self, annotator: str, seq: int) -> None:
        with self._transaction() as connection:
            connection.execute("INSERT OR IGNORE INTO skipped_reviews VALUES (?, ?)", (annotator, seq))

    def skipped_reviews(self, annotator: str) -> set[int]:
        rows = self._connection().execute("SELECT decision_seq FROM skipped_reviews WHERE annotator = ?", (annotator,))
        return {row["decision_seq"] for row in rows}

    # -- bad images --------------------------------------------------------------------------

    def mark_bad(self, wnid: str, file: str, reason: str) -> bool:
        """Remember an image that failed while curating; True the first time."""
        with self._transaction() as connection:
            cursor = connection.execute("INSERT OR IGNORE INTO bad_images VALUES (?, ?, ?, ?)",
                                        (file, wnid, reason, time.time()))
            return cursor.rowcount == 1

    def bad_images(self, wnid: str | None = None) -> dict[str, str]:
        query, args = ("SELECT file, reason FROM bad_images", ()) if wnid is None else (
            "SELECT file, reason FROM bad_images WHERE wnid = ?", (wnid,))
        return {row["file"]: row["reason"] for row in self._connection().execute(query, args)}
