"""The dataset policy a decision must pass before the store appends it: a well-formed decision of
two different files of its class, not one photo twice, each image in at most one accepted pair of
its class, a pair refuted in review never accepted again, a review by someone else of a decision
still in force, and an idempotency key never reused for another decision.

The checks that read the store run inside the transaction that appends the decision
(`DecisionStore`), so they hold with any number of writers.
"""
from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Callable

from pair_manifest.decisions import (Decision, IdempotencyConflict, NewDecision, PolicyViolation, Recorded,
                                     canonical_tags, get_decision)
from pair_manifest.errors import UserError
from pair_manifest.file_ids import canonical_pair, check_file_id

if TYPE_CHECKING:
    from pathlib import Path

    from pair_manifest.images import ImageFacts


def well_formed(new: NewDecision) -> tuple[str, str, str]:
    """The checks that need no image and no database: (file_a, file_b, tags), canonical."""
    if new.verdict not in ("accept", "reject", "skip"):
        raise UserError(f"verdict: '{new.verdict}' is not one of accept, reject, skip (use undo_last to undo)")
    check_file_id(new.wnid, new.file_a)
    check_file_id(new.wnid, new.file_b)
    if not new.annotator:
        raise UserError("annotator: empty annotator name")
    tags = canonical_tags(new.tags)
    file_a, file_b = canonical_pair(new.file_a, new.file_b)
    if file_a == file_b:
        raise PolicyViolation(f"{file_a}: a pair needs two different files")
    return file_a, file_b, tags


def distinct_photos(file_a: str, file_b: str, facts_a: ImageFacts, facts_b: ImageFacts,
                    resolve: Callable[[str], Path]) -> None:
    """The near-duplicate rule (`pair_manifest.near_duplicates`; `resolve` gives the paths, only
    needed when the hashes match). Equal bytes are refused by `same_bytes` with their own
    message."""
    from pair_manifest.near_duplicates import grey_thumbnail, same_photo

    if facts_a.sha256 == facts_b.sha256:
        return
    if same_photo(facts_a, facts_b, lambda: (grey_thumbnail(resolve(file_a), name=file_a),
                                             grey_thumbnail(resolve(file_b), name=file_b))):
        raise PolicyViolation(
            f"{file_a} and {file_b} are near-duplicates (perceptual hashes {facts_a.phash.distance(facts_b.phash)} "
            "bits apart, and their thumbnails line up): a semantic pair needs two different photos")


def same_bytes(new: NewDecision, file_a: str, file_b: str, sha_a: str, sha_b: str) -> None:
    if new.verdict == "accept" and new.review_of is None and sha_a == sha_b:
        raise PolicyViolation(f"{file_a} and {file_b} have the same bytes (SHA-256 {sha_a[:12]}…)")


def annotation_allowed(connection: sqlite3.Connection, verdict: str, wnid: str, file_a: str, file_b: str) -> None:
    """An accept, reject or skip of a pair, against the pair's state and its images' use."""
    state = connection.execute(
        "SELECT state, decision_seq FROM pair_state WHERE file_a = ? AND file_b = ?", (file_a, file_b)).fetchone()
    if state is not None and state["state"] == "accepted" and verdict != "skip":
        by = get_decision(connection, state["decision_seq"])
        raise PolicyViolation(f"{file_a} + {file_b}: already accepted by {by.annotator} (decision {by.seq})")
    if state is not None and state["state"] == "refuted" and verdict == "accept":
        raise PolicyViolation(f"{file_a} + {file_b}: refuted in review, cannot be accepted again")
    if verdict == "accept":
        for file in (file_a, file_b):
            used = connection.execute("SELECT decision_seq FROM image_use WHERE file = ?", (file,)).fetchone()
            if used:
                other = get_decision(connection, used["decision_seq"])
                partner = other.file_b if other.file_a == file else other.file_a
                raise PolicyViolation(
                    f"{file}: already in an accepted pair of {wnid} (with {partner}, decision {other.seq})")


def review_allowed(connection: sqlite3.Connection, new: NewDecision, file_a: str, file_b: str) -> None:
    reviewed = get_decision(connection, new.review_of)
    if reviewed is None or reviewed.verdict not in ("accept", "reject") or reviewed.review_of is not None:
        raise PolicyViolation(f"review_of: decision {new.review_of} is not an accept or reject to review")
    if (reviewed.file_a, reviewed.file_b) != (file_a, file_b):
        raise PolicyViolation(f"review_of: decision {new.review_of} is about another pair")
    if reviewed.annotator == new.annotator:
        raise PolicyViolation(f"review_of: {new.annotator} cannot review their own decision {reviewed.seq}")
    if new.verdict == "skip":
        raise PolicyViolation("verdict: a review confirms (accept) or refutes (reject); skip records nothing")
    if connection.execute("SELECT 1 FROM decisions WHERE undo_of = ?", (reviewed.seq,)).fetchone():
        raise PolicyViolation(f"review_of: decision {reviewed.seq} has been undone")


def same_request(existing: Decision, new: NewDecision, file_a: str, file_b: str, tags: str) -> Recorded:
    """A key already in the log: the same decision again is answered as recorded; another
    decision under it is refused."""
    same = (existing.wnid, existing.file_a, existing.file_b, existing.verdict, "|".join(existing.tags),
            existing.annotator, existing.review_of) == (new.wnid, file_a, file_b, new.verdict, tags,
                                                        new.annotator, new.review_of)
    if not same:
        raise IdempotencyConflict(
            f"idempotency key {new.idempotency_key} was already used for decision {existing.seq}, "
            "which differs from this one")
    return Recorded(existing, duplicate=True)
