"""The embedding cache: `DIR/embeddings.sqlite`, keyed by SHA-256, written as the run goes.

- `files`: `<wnid>/<name>` -> (size, mtime_ns, SHA-256), so a re-run hashes only files whose size
  or modification time changed (the make/git rule), and knows each class's pool;
- `facts`: per SHA-256, what every embedder needs: the pHash (the decision store's), the window
  descriptors of the crop test and the pixels context vector;
- `vectors`: per (embedder cache key, SHA-256), the object vector.

Results are committed in small transactions while the run goes, a `files` row in the same
transaction as its facts and vector, so a killed run loses at most the last batch and the next run
carries on from there. SQLite in WAL mode: readers (the app ranking candidates) never block the
writer. `synchronous=NORMAL` is enough here: after a crash WAL keeps the database consistent, and
the worst case (the last commit lost) costs re-embedding a batch, not data.
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from curation_app.proposals import duplicates, pixels
from pair_manifest.errors import UserError
from pair_manifest.sqlite_db import open_wal, to_sqlite_int as _signed

CACHE_FILE = "embeddings.sqlite"
THUMBNAIL_SIDE = 128  # the decode size: the decision store hashes at 128 px too, so pHashes agree
FACTS_VERSION = (f"pixels-v{pixels.FEATURE_VERSION}/windows-{duplicates.WINDOWS}x{duplicates.DESCRIPTOR_WIDTH}"
                 f"-v2/decode-{THUMBNAIL_SIDE}")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    file TEXT PRIMARY KEY, wnid TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS files_class ON files (wnid);
CREATE TABLE IF NOT EXISTS facts (
    sha256 TEXT PRIMARY KEY, phash INTEGER NOT NULL, phash_mirrored INTEGER NOT NULL,
    context BLOB NOT NULL, windows BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS vectors (
    embedder TEXT NOT NULL, sha256 TEXT NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (embedder, sha256)
);
"""


@dataclass
class Facts:
    phash: int
    phash_mirrored: int
    context: np.ndarray  # (pixels.FEATURE_WIDTH,) float32
    windows: np.ndarray  # (duplicates.WINDOWS, duplicates.DESCRIPTOR_WIDTH) float16


@dataclass
class Entry:
    """One embedded file, ready to be committed."""

    file: str
    size: int
    mtime_ns: int
    sha256: str
    facts: Facts | None  # None when the SHA-256 was already cached (a renamed or copied file)
    vector: np.ndarray | None


@dataclass
class ClassData:
    """Everything scoring needs about a class's images, rows in `files` order."""

    files: list[str]
    sha256: list[str]
    sizes: np.ndarray  # bytes
    phash: np.ndarray  # uint64
    phash_mirrored: np.ndarray  # uint64
    context: np.ndarray  # (N, pixels.FEATURE_WIDTH)
    windows: np.ndarray  # (N, WINDOWS, DESCRIPTOR_WIDTH)
    vectors: np.ndarray  # (N, D)

    def __len__(self) -> int:
        return len(self.files)


class EmbeddingCache:
    def __init__(self, path: str | Path, *, readonly: bool = False):
        self.path = Path(path)
        try:
            if readonly:
                self.connection = open_wal(self.path, synchronous="NORMAL", readonly=True)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # NORMAL: a power cut may lose the last vectors, which the next run computes again.
                self.connection = open_wal(self.path, synchronous="NORMAL")
                self.connection.executescript(_SCHEMA)
                self._check_version()
        except sqlite3.DatabaseError as error:
            raise UserError(f"{self.path}: not a usable embedding cache ({error})") from None

    @classmethod
    def for_project(cls, project_dir: str | Path, **kwargs) -> "EmbeddingCache":
        return cls(Path(project_dir) / CACHE_FILE, **kwargs)

    def _check_version(self) -> None:
        """Facts computed by another feature version are dropped (vectors carry their own key)."""
        if self.get_meta("facts_version") != FACTS_VERSION:
            with self.connection:
                self.connection.execute("BEGIN IMMEDIATE")
                self.connection.execute("DELETE FROM facts")
                self.connection.execute("DELETE FROM files")
                self.connection.execute("INSERT OR REPLACE INTO meta VALUES ('facts_version', ?)", (FACTS_VERSION,))

    def close(self) -> None:
        self.connection.close()

    def get_meta(self, key: str) -> str | None:
        row = self.connection.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, values: dict[str, str]) -> None:
        with self.connection:
            self.connection.execute("BEGIN IMMEDIATE")
            self.connection.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(values.items()))

    # -- what is known -----------------------------------------------------------------------

    def known_files(self) -> dict[str, tuple[int, int, str]]:
        """file -> (size, mtime_ns, sha256) of every file embedded so far."""
        return {row[0]: (row[1], row[2], row[3])
                for row in self.connection.execute("SELECT file, size, mtime_ns, sha256 FROM files")}

    def complete(self, embedder: str) -> set[str]:
        """SHA-256s with both facts and a vector for this embedder."""
        rows = self.connection.execute(
            "SELECT v.sha256 FROM vectors v JOIN facts f ON f.sha256 = v.sha256 WHERE v.embedder = ?", (embedder,))
        return {row[0] for row in rows}

    def is_complete(self, embedder: str, sha256: str) -> bool:
        return self.connection.execute(
            "SELECT 1 FROM vectors v JOIN facts f ON f.sha256 = v.sha256 WHERE v.embedder = ? AND v.sha256 = ?",
            (embedder, sha256)).fetchone() is not None

    def count_vectors(self, embedder: str) -> int:
        return self.connection.execute("SELECT COUNT(*) FROM vectors WHERE embedder = ?", (embedder,)).fetchone()[0]

    def class_files(self, wnid: str) -> list[str]:
        return [row[0] for row in self.connection.execute(
            "SELECT file FROM files WHERE wnid = ? ORDER BY file", (wnid,))]

    # -- writing -----------------------------------------------------------------------------

    def write(self, embedder: str, entries: list[Entry]) -> None:
        """Commit a batch: facts, vectors and the files rows pointing at them, in one transaction."""
        with self.connection:
            self.connection.execute("BEGIN IMMEDIATE")
            self.connection.executemany(
                "INSERT OR REPLACE INTO facts VALUES (?, ?, ?, ?, ?)",
                [(e.sha256, _signed(e.facts.phash), _signed(e.facts.phash_mirrored),
                  e.facts.context.astype(np.float32).tobytes(), e.facts.windows.astype(np.float16).tobytes())
                 for e in entries if e.facts is not None])
            self.connection.executemany(
                "INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)",
                [(embedder, e.sha256, e.vector.astype(np.float32).tobytes()) for e in entries if e.vector is not None])
            self.connection.executemany(
                "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)",
                [(e.file, e.file.split("/", 1)[0], e.size, e.mtime_ns, e.sha256) for e in entries])

    def keep_only(self, wnid: str, files: set[str]) -> None:
        """Forget files of a class that are no longer there (their vectors stay, keyed by bytes)."""
        stale = [(f,) for f in self.class_files(wnid) if f not in files]
        if stale:
            with self.connection:
                self.connection.execute("BEGIN IMMEDIATE")
                self.connection.executemany("DELETE FROM files WHERE file = ?", stale)

    # -- reading -----------------------------------------------------------------------------

    def load(self, embedder: str, wnid: str, files: list[str]) -> tuple[ClassData, list[str]]:
        """The data of `files` of class `wnid` (kept in the given order) and the files that have none."""
        query = ("SELECT fi.file, fi.sha256, fi.size, fa.phash, fa.phash_mirrored, fa.context, fa.windows, v.vector"
                 " FROM files fi JOIN facts fa ON fa.sha256 = fi.sha256"
                 " JOIN vectors v ON v.sha256 = fi.sha256 AND v.embedder = ? WHERE fi.wnid = ?")
        wanted = set(files)
        rows = {row[0]: row for row in self.connection.execute(query, (embedder, wnid)) if row[0] in wanted}
        present = [f for f in files if f in rows]
        missing = [f for f in files if f not in rows]
        picked = [rows[f] for f in present]
        width = pixels.FEATURE_WIDTH
        window_shape = (duplicates.WINDOWS, duplicates.DESCRIPTOR_WIDTH)
        data = ClassData(
            files=present,
            sha256=[r[1] for r in picked],
            sizes=np.array([r[2] for r in picked], dtype=np.int64),
            phash=np.array([r[3] for r in picked], dtype=np.int64).view(np.uint64),
            phash_mirrored=np.array([r[4] for r in picked], dtype=np.int64).view(np.uint64),
            context=np.array([np.frombuffer(r[5], dtype=np.float32) for r in picked], dtype=np.float32).reshape(-1, width),
            windows=np.array([np.frombuffer(r[6], dtype=np.float16).reshape(window_shape) for r in picked],
                             dtype=np.float16).reshape(-1, *window_shape),
            vectors=np.array([np.frombuffer(r[7], dtype=np.float32) for r in picked], dtype=np.float32),
        )
        if not picked:
            data.vectors = np.zeros((0, 1), dtype=np.float32)
        return data, missing
