"""SQLite connections as every store opens them (``gateway.infra.sql`` uses this).

WAL mode, the durability level asked for, foreign keys on, and a busy timeout,
so that processes sharing a file wait for each other instead of failing.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

__all__ = ["connect"]


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
