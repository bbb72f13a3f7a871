"""What a decision is: the record the store appends, what a caller asks to record, and the
policy's refusals. Shared by the store, the derived pair state, manifests and stats."""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone

from pair_manifest.errors import UserError
from pair_manifest.file_ids import pair_id

VERDICTS = ("accept", "reject", "skip", "undo")
TAGS = ("background", "occlusion", "pattern", "illumination", "viewpoint", "other")


class PolicyViolation(UserError):
    """A decision the dataset policy refuses (same file twice, image already paired, ...)."""


class IdempotencyConflict(UserError):
    """The same idempotency key was sent with a different decision."""


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def canonical_tags(tags) -> str:
    tags = set(tags)
    unknown = sorted(tags - set(TAGS))
    if unknown:
        raise UserError(f"tags: unknown tag(s) {', '.join(unknown)} (known: {', '.join(TAGS)})")
    return "|".join(t for t in TAGS if t in tags)


@dataclass(frozen=True)
class NewDecision:
    """What a caller asks to record. Files are `<wnid>/<name>` relative to the images root."""

    idempotency_key: str
    wnid: str
    file_a: str
    file_b: str
    verdict: str
    annotator: str
    tags: tuple[str, ...] = ()
    source: str = "manual"
    review_of: int | None = None
    decided_at: str | None = None  # set by the store unless replaying (import/merge)


@dataclass(frozen=True)
class Decision:
    seq: int
    idempotency_key: str
    wnid: str
    file_a: str
    file_b: str
    sha256_a: str
    sha256_b: str
    verdict: str
    tags: tuple[str, ...]
    annotator: str
    decided_at: str
    source: str
    review_of: int | None
    undo_of: int | None

    @property
    def pair_id(self) -> str:
        return pair_id(self.file_a, self.file_b)


@dataclass(frozen=True)
class Recorded:
    decision: Decision
    duplicate: bool = False  # True when the idempotency key had been recorded before


@dataclass
class AcceptedPair:
    decision: Decision
    rank_in_class: int
    review_status: str  # unreviewed | confirmed


def decision_from_row(row: sqlite3.Row) -> Decision:
    return Decision(
        seq=row["seq"], idempotency_key=row["idempotency_key"], wnid=row["wnid"], file_a=row["file_a"],
        file_b=row["file_b"], sha256_a=row["sha256_a"], sha256_b=row["sha256_b"], verdict=row["verdict"],
        tags=tuple(t for t in row["tags"].split("|") if t), annotator=row["annotator"],
        decided_at=row["decided_at"], source=row["source"], review_of=row["review_of"], undo_of=row["undo_of"],
    )


def get_decision(connection: sqlite3.Connection, seq: int | None) -> Decision | None:
    if seq is None:
        return None
    row = connection.execute("SELECT * FROM decisions WHERE seq = ?", (seq,)).fetchone()
    return decision_from_row(row) if row else None
