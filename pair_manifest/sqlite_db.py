"""The SQLite access every live store of the project shares (decision store, app work state).

One connection per thread (Gradio runs handlers in threads; a connection must not cross them),
WAL mode so readers never block the writer, and explicit `BEGIN IMMEDIATE` transactions so
writers in several processes serialize on the database lock instead of failing on upgrade.
"""
from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from pair_manifest.errors import UserError


class ThreadConnections:
    def __init__(self, path: str | Path, *, synchronous: str, what: str, timeout: float = 60.0,
                 foreign_keys: bool = False):
        self.path = Path(path)
        self.synchronous = synchronous
        self.what = what
        self.timeout = timeout
        self.foreign_keys = foreign_keys
        self._local = threading.local()
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            try:
                connection = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute(f"PRAGMA synchronous={self.synchronous}")
                if self.foreign_keys:
                    connection.execute("PRAGMA foreign_keys=ON")
            except sqlite3.DatabaseError as error:
                raise UserError(f"{self.path}: not a usable {self.what} ({error})") from None
            connection.row_factory = sqlite3.Row
            self._local.connection = connection
        return connection

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: it has committed when the `with` block is left without error."""
        connection = self.connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        else:
            connection.execute("COMMIT")

    def close(self) -> None:
        """Close this thread's connection (other threads close their own)."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None
