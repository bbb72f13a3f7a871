"""The SQLite access every live store of the project shares (decision store, app work state).

One connection per thread (Gradio runs handlers in threads; a connection must not cross them),
WAL mode so readers never block the writer, and explicit `BEGIN IMMEDIATE` transactions so
writers in several processes serialize on the database lock instead of failing on upgrade.

A write the machine refuses (a full disk, a read-only file system, an I/O error) becomes a
`StorageError` naming the file, not a bare `sqlite3.OperationalError`. Such an error can come
from a COMMIT that in fact took effect (SQLite reports a failed automatic checkpoint, which runs
right after the commit, as the commit's result), so callers that must not lose an acknowledgement
look the write up again (the decision store does, by idempotency key).
"""
from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from pair_manifest.errors import UserError

# Primary result codes of the machine refusing a write (https://sqlite.org/rescode.html).
_FULL, _IOERR, _READONLY, _CANTOPEN, _PERM = 13, 10, 8, 14, 3
_CAUSES = {_FULL: "the disk is full", _IOERR: "the disk reported an I/O error",
           _READONLY: "the file or its file system is read-only", _CANTOPEN: "the file cannot be opened",
           _PERM: "permission denied"}


class StorageError(UserError):
    """The machine refused a write to a store (disk full, read-only, I/O error); `cause` says
    which, in words, without the path."""

    exit_code = 1

    def __init__(self, message: str, cause: str):
        super().__init__(message)
        self.cause = cause


def storage_cause(error: sqlite3.Error) -> str | None:
    """What the machine refused, for the errors that are the disk's and not the data's."""
    code = getattr(error, "sqlite_errorcode", None)
    return _CAUSES.get(code & 0xFF) if code is not None else None


def to_sqlite_int(value: int) -> int:
    """An unsigned 64-bit value (a perceptual hash) as SQLite's signed 64-bit integer."""
    return value - (1 << 64) if value >= 1 << 63 else value


def from_sqlite_int(value: int) -> int:
    return value + (1 << 64) if value < 0 else value


def open_wal(path: str | Path, *, synchronous: str, timeout: float = 60.0, readonly: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL journal, the given
    `synchronous` level; `readonly` opens an existing file for reading only."""
    if readonly:
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout, isolation_level=None)
    connection = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(f"PRAGMA synchronous={synchronous}")
    return connection


class ThreadConnections:
    def __init__(self, path: str | Path, *, synchronous: str, what: str, timeout: float = 60.0,
                 foreign_keys: bool = False):
        self.path = Path(path)
        self.synchronous = synchronous
        self.what = what
        self.timeout = timeout
        self.foreign_keys = foreign_keys
        self._local = threading.local()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StorageError(f"{self.path.parent}: cannot create the folder of the {what} "
                               f"({error.strerror or error})", error.strerror or str(error)) from None

    def connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            try:
                connection = open_wal(self.path, synchronous=self.synchronous, timeout=self.timeout)
                if self.foreign_keys:
                    connection.execute("PRAGMA foreign_keys=ON")
            except sqlite3.DatabaseError as error:
                cause = storage_cause(error)
                if cause:
                    raise StorageError(f"{self.path}: cannot open the {self.what}: {cause} ({error})", cause) from None
                raise UserError(f"{self.path}: not a usable {self.what} ({error})") from None
            connection.row_factory = sqlite3.Row
            self._local.connection = connection
        return connection

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: it has committed when the `with` block is left without error."""
        connection = self.connection()
        try:
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            raise self._refused(error) from None
        try:
            yield connection
            connection.execute("COMMIT")
        except BaseException as error:
            if connection.in_transaction:
                try:
                    connection.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            if isinstance(error, sqlite3.OperationalError) and storage_cause(error):
                raise self._refused(error) from None
            raise

    def _refused(self, error: sqlite3.OperationalError) -> Exception:
        cause = storage_cause(error)
        if cause is None:
            return error
        return StorageError(f"{self.path}: cannot write the {self.what}: {cause} ({error})", cause)

    def close(self) -> None:
        """Close this thread's connection (other threads close their own)."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None
