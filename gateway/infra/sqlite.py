"""SQLite access off the event loop.

Each database file gets one dedicated thread that owns its connection;
coroutines hand it functions to run. sqlite3 calls never run on the event loop,
and one connection per file keeps SQLite's locking simple.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

__all__ = ["SqliteDB", "connect"]

T = TypeVar("T")


def connect(path: Path, *, synchronous: str = "FULL") -> sqlite3.Connection:
    """Open ``path`` in WAL mode with the given durability level.

    ``synchronous=FULL`` makes every commit durable (fsync of the WAL), which is
    what the audit log needs; identity and cache tables may use NORMAL.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    # Switching a new file to WAL needs a moment alone with it, and SQLite answers
    # "database is locked" at once (no busy wait) when two processes open it together.
    deadline = time.monotonic() + 30.0
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                conn.close()
                raise
            time.sleep(0.01)
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


class SqliteDB:
    """One SQLite file served by one worker thread."""

    def __init__(self, path: Path, *, synchronous: str = "FULL") -> None:
        self.path = path
        self._synchronous = synchronous
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sqlite-{path.name}")
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        with self._lock:
            if self._conn is None:
                self._conn = connect(self.path, synchronous=self._synchronous)
            return self._conn

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` on the database's thread and return its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(self._connection()))

    async def close(self) -> None:
        """Close the connection and stop the thread."""

        def _close(_: sqlite3.Connection) -> None:
            with self._lock:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None

        if self._conn is not None:
            await self.run(_close)
        # The worker is idle now; do not join it on the event loop.
        self._executor.shutdown(wait=False)
