"""The state of every pair, derived from the decision log inside the transaction that appends each
decision, so the policy is enforced by SQLite itself even with many writer processes.

Derived tables (the log is the truth; `rebuild` recomputes all of them from it and tests prove
the two agree):

- `pair_state`: the current verdict of each pair (accepted / rejected / refuted);
- `image_use`: the images of accepted pairs, `file` being the primary key, so an image can be in
  at most one accepted pair (files carry their wnid, so this is "one pair per image per class");
- `accepted_per_class` and `live_per_annotator`: counters kept by triggers on `pair_state` and
  `decisions`, so the app's progress figures cost one row read whatever the size of the log.

The view `decisions_in_effect` is the one definition of "still in effect": a decision no undo
points at. Every query that needs it reads the view.

State rules (the app, the manifest and `stats` all rely on them):
- the live annotate decision of a pair is its latest accept/reject that has not been undone; skips
  change no state;
- `undo` removes the effect of one earlier decision of the same annotator (an accept frees its
  images, a review stops counting);
- a review (`review_of` set) is an accept (confirm) or reject (refute) by a *different* annotator
  of an accept or reject decision; a refuted accept leaves the accepted set and is not proposed
  again; reviews of rejects only feed the agreement figures;
- an accept put back in force (its refutation or a later verdict undone) returns only if its
  images are still free.
"""
from __future__ import annotations

import sqlite3

from pair_manifest.decisions import Decision, decision_from_row, get_decision

SCHEMA = """
CREATE VIEW IF NOT EXISTS decisions_in_effect AS
    SELECT * FROM decisions d WHERE NOT EXISTS (SELECT 1 FROM decisions u WHERE u.undo_of = d.seq);
CREATE TABLE IF NOT EXISTS pair_state (
    file_a TEXT NOT NULL, file_b TEXT NOT NULL, wnid TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('accepted', 'rejected', 'refuted')),
    decision_seq INTEGER NOT NULL,
    PRIMARY KEY (file_a, file_b)
);
CREATE INDEX IF NOT EXISTS pair_state_class ON pair_state (wnid, state);
CREATE TABLE IF NOT EXISTS image_use (
    file TEXT PRIMARY KEY, wnid TEXT NOT NULL, decision_seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS image_use_class ON image_use (wnid);
CREATE TABLE IF NOT EXISTS accepted_per_class (wnid TEXT PRIMARY KEY, accepted INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS live_per_annotator (annotator TEXT PRIMARY KEY, live INTEGER NOT NULL);
CREATE TRIGGER IF NOT EXISTS pair_state_counted_insert AFTER INSERT ON pair_state WHEN NEW.state = 'accepted'
BEGIN
    INSERT INTO accepted_per_class VALUES (NEW.wnid, 1)
        ON CONFLICT (wnid) DO UPDATE SET accepted = accepted + 1;
END;
CREATE TRIGGER IF NOT EXISTS pair_state_counted_delete AFTER DELETE ON pair_state WHEN OLD.state = 'accepted'
BEGIN
    UPDATE accepted_per_class SET accepted = accepted - 1 WHERE wnid = OLD.wnid;
END;
CREATE TRIGGER IF NOT EXISTS pair_state_counted_update AFTER UPDATE ON pair_state
    WHEN (OLD.state = 'accepted') != (NEW.state = 'accepted') OR OLD.wnid != NEW.wnid
BEGIN
    UPDATE accepted_per_class SET accepted = accepted - 1 WHERE wnid = OLD.wnid AND OLD.state = 'accepted';
    INSERT INTO accepted_per_class SELECT NEW.wnid, 1 WHERE NEW.state = 'accepted'
        ON CONFLICT (wnid) DO UPDATE SET accepted = accepted + 1;
END;
CREATE TRIGGER IF NOT EXISTS decisions_counted AFTER INSERT ON decisions
BEGIN
    INSERT INTO live_per_annotator VALUES (NEW.annotator, CASE NEW.verdict WHEN 'undo' THEN -1 ELSE 1 END)
        ON CONFLICT (annotator) DO UPDATE SET live = live + CASE NEW.verdict WHEN 'undo' THEN -1 ELSE 1 END;
END;
"""
COUNTERS_VERSION = "1"  # meta key `counters`: the counters exist and agree with the log


def count_from_scratch(connection: sqlite3.Connection) -> None:
    """Fill the counters from the tables they summarise (a store made before they existed)."""
    connection.execute("DELETE FROM accepted_per_class")
    connection.execute("DELETE FROM live_per_annotator")
    connection.execute("INSERT INTO accepted_per_class SELECT wnid, COUNT(*) FROM pair_state"
                       " WHERE state = 'accepted' GROUP BY wnid")
    connection.execute("INSERT INTO live_per_annotator SELECT annotator, COUNT(*) FROM decisions_in_effect"
                       " WHERE verdict != 'undo' GROUP BY annotator")


def rebuild(connection: sqlite3.Connection) -> None:
    """Recompute the derived state from the log (inside a write transaction)."""
    connection.execute("DELETE FROM pair_state")
    connection.execute("DELETE FROM image_use")
    for row in connection.execute("SELECT * FROM decisions ORDER BY seq").fetchall():
        apply(connection, decision_from_row(row))
    count_from_scratch(connection)


def apply(connection: sqlite3.Connection, decision: Decision) -> None:
    """Update the derived tables for one new decision (inside its transaction)."""
    key = (decision.file_a, decision.file_b)
    if decision.verdict == "undo":
        undone = get_decision(connection, decision.undo_of)
        if undone.review_of is not None:
            reviewed = get_decision(connection, undone.review_of)
            if undone.verdict == "reject" and reviewed.verdict == "accept":
                _restore_if_free(connection, reviewed)
            return
        if undone.verdict == "skip":
            return
        _set_state_from_log(connection, key)
        return
    if decision.verdict == "skip":
        return
    if decision.review_of is not None:
        reviewed = get_decision(connection, decision.review_of)
        if decision.verdict == "reject" and reviewed.verdict == "accept":
            current = connection.execute(
                "SELECT decision_seq FROM pair_state WHERE file_a = ? AND file_b = ?", key).fetchone()
            if current and current["decision_seq"] == reviewed.seq:
                connection.execute("UPDATE pair_state SET state = 'refuted' WHERE file_a = ? AND file_b = ?", key)
                connection.execute("DELETE FROM image_use WHERE decision_seq = ?", (reviewed.seq,))
        return
    state = "accepted" if decision.verdict == "accept" else "rejected"
    connection.execute("DELETE FROM image_use WHERE file IN (?, ?) AND decision_seq IN "
                       "(SELECT decision_seq FROM pair_state WHERE file_a = ? AND file_b = ?)", (*key, *key))
    _set(connection, decision, state)
    if state == "accepted":
        connection.executemany("INSERT INTO image_use VALUES (?, ?, ?)",
                               [(f, decision.wnid, decision.seq) for f in key])


def _set(connection: sqlite3.Connection, decision: Decision, state: str) -> None:
    """An upsert, not INSERT OR REPLACE: a replaced row would not fire the counters' triggers."""
    connection.execute(
        "INSERT INTO pair_state VALUES (?, ?, ?, ?, ?) ON CONFLICT (file_a, file_b) DO UPDATE SET"
        " wnid = excluded.wnid, state = excluded.state, decision_seq = excluded.decision_seq",
        (decision.file_a, decision.file_b, decision.wnid, state, decision.seq))


def _set_state_from_log(connection: sqlite3.Connection, key: tuple[str, str]) -> None:
    """After an undo: the pair's state is that of its latest live annotate decision, if any."""
    connection.execute("DELETE FROM image_use WHERE decision_seq IN "
                       "(SELECT decision_seq FROM pair_state WHERE file_a = ? AND file_b = ?)", key)
    connection.execute("DELETE FROM pair_state WHERE file_a = ? AND file_b = ?", key)
    row = connection.execute(
        "SELECT * FROM decisions_in_effect WHERE file_a = ? AND file_b = ? AND verdict IN ('accept', 'reject')"
        " AND review_of IS NULL ORDER BY seq DESC LIMIT 1", key).fetchone()
    if row is not None:
        decision = decision_from_row(row)
        if decision.verdict == "accept":
            _restore_if_free(connection, decision)
        else:
            _set(connection, decision, "rejected")


def _restore_if_free(connection: sqlite3.Connection, accept: Decision) -> None:
    """Put an accept back in force (its refutation or a later verdict was undone) if its images
    are still free; otherwise the pair stays out, which the policy requires."""
    key = (accept.file_a, accept.file_b)
    live_refutation = connection.execute(
        "SELECT 1 FROM decisions_in_effect WHERE review_of = ? AND verdict = 'reject'", (accept.seq,)).fetchone()
    state = "refuted" if live_refutation else "accepted"
    busy = connection.execute("SELECT 1 FROM image_use WHERE file IN (?, ?) AND decision_seq != ?",
                              (*key, accept.seq)).fetchone()
    if state == "accepted" and busy:
        return
    _set(connection, accept, state)
    if state == "accepted":
        connection.executemany("INSERT OR REPLACE INTO image_use VALUES (?, ?, ?)",
                               [(f, accept.wnid, accept.seq) for f in key])
