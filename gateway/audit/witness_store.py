"""Where witnessing is kept: cosignatures of Huzhou's checkpoints, and what Huzhou's own
witness cosigned of partners' logs. Append-only, like the audit log.

Its own database (``data_dir/witness.db``, or the gateway's PostgreSQL), so that
witnessing never takes the audit log's sequencer lock:

* ``audit_cosignatures (tree_size, witness, line, cosigned_at, received_ms)``: one row
  per cosignature a witness returned for a checkpoint of Huzhou's log (the line as
  received, checked before it is kept).
* ``audit_submitted (tree_size, note, submitted_ms)``: each checkpoint of Huzhou's log
  sent to the witnesses (its note as signed), so a witnessed one can be served whole.
* ``witness_cosigned (origin, tree_size, root_hash, note, cosigned_ms)``: one row per
  partner checkpoint Huzhou's witness cosigned; the origin's row of the largest size
  is its state (c2sp.org/tlog-witness). A row is added only under the store's write
  lock after the latest is read again, so two requests never both advance from one size.

No statement updates or deletes; triggers refuse both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.infra.migrations import Schema, adopt_if_table, migrate, tables_migration
from gateway.infra.sql import Connection, Database, StorageError, WriteLock

__all__ = [
    "WITNESS_SCHEMA",
    "StoredCosignature",
    "WitnessStore",
    "WitnessStoreError",
    "witness_database",
]


class WitnessStoreError(Exception):
    """The witness store failed."""


_TABLES = (
    ("CREATE TABLE IF NOT EXISTS audit_cosignatures (tree_size {int} NOT NULL,"
     " witness TEXT NOT NULL, line TEXT NOT NULL, cosigned_at {int} NOT NULL,"
     " received_ms {int} NOT NULL, PRIMARY KEY (tree_size, witness))"),
    ("CREATE TABLE IF NOT EXISTS audit_submitted (tree_size {int} PRIMARY KEY,"
     " note TEXT NOT NULL, submitted_ms {int} NOT NULL)"),
    ("CREATE TABLE IF NOT EXISTS witness_cosigned (origin TEXT NOT NULL,"
     " tree_size {int} NOT NULL, root_hash {blob} NOT NULL, note TEXT NOT NULL,"
     " cosigned_ms {int} NOT NULL, PRIMARY KEY (origin, tree_size))"),
)
_NAMES = ("audit_cosignatures", "audit_submitted", "witness_cosigned")
_GUARDS = {
    "sqlite": tuple(
        f"CREATE TRIGGER IF NOT EXISTS {name}_no_{op.lower()} BEFORE {op} ON {name}"
        f" BEGIN SELECT RAISE(ABORT, 'witness store is append-only: {op} refused'); END"
        for name in _NAMES for op in ("UPDATE", "DELETE")
    ),
    "postgresql": (
        ("CREATE OR REPLACE FUNCTION witness_refuse_change() RETURNS trigger"
         " LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION"
         " 'witness store is append-only: % refused on %', TG_OP, TG_TABLE_NAME; END $$"),
        *(f"CREATE OR REPLACE TRIGGER {name}_no_change BEFORE UPDATE OR DELETE ON {name}"
          " FOR EACH ROW EXECUTE FUNCTION witness_refuse_change()" for name in _NAMES),
    ),
}

WITNESS_SCHEMA = Schema("witness", (
    tables_migration(1, "cosignatures received and given, append-only", _TABLES, _GUARDS),
), adopt=adopt_if_table("audit_cosignatures"))
"""The witness store's schema versions."""

_LOCK = WriteLock("SELECT pg_advisory_xact_lock(?, hashtext(current_schema() || ?))",
                  (0x330500, "witness"))


@dataclass(frozen=True, slots=True)
class StoredCosignature:
    """A witness's cosignature of one of Huzhou's checkpoints, as kept."""

    tree_size: int
    witness: str
    line: str
    cosigned_at: int
    received_ms: int


def witness_database(data_dir: Path, postgres_dsn: str | None) -> Database:
    """The witness store of a data folder's settings."""
    return Database.of(data_dir / "witness.db", postgres_dsn)


class WitnessStore:
    """The witness tables on one connection (synchronous; one thread uses it)."""

    def __init__(self, database: Database) -> None:
        try:
            self._conn: Connection = database.connect()
            migrate(self._conn, WITNESS_SCHEMA)
        except StorageError as exc:
            raise WitnessStoreError(str(exc)) from exc

    def close(self) -> None:
        """Release the connection."""
        try:
            self._conn.close()
        except StorageError as exc:
            raise WitnessStoreError(str(exc)) from exc

    @property
    def closed(self) -> bool:
        """Whether the connection is gone (PostgreSQL dropped it)."""
        return self._conn.closed

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except StorageError as exc:
            raise WitnessStoreError(str(exc)) from exc

    @contextmanager
    def _write(self) -> Iterator[None]:
        try:
            with self._conn.transaction(_LOCK):
                yield
        except StorageError as exc:
            raise WitnessStoreError(str(exc)) from exc

    # -- cosignatures of Huzhou's checkpoints ----------------------------------------------

    def add_cosignature(self, cosignature: StoredCosignature) -> None:
        """Keep a cosignature (a second one of the same witness and size is not kept)."""
        with self._write():
            self._conn.execute(
                "INSERT INTO audit_cosignatures (tree_size, witness, line, cosigned_at,"
                " received_ms) VALUES (?, ?, ?, ?, ?) ON CONFLICT (tree_size, witness) DO NOTHING",
                (cosignature.tree_size, cosignature.witness, cosignature.line,
                 cosignature.cosigned_at, cosignature.received_ms))

    def add_submitted(self, tree_size: int, note: str, submitted_ms: int) -> None:
        """Keep a checkpoint note sent to the witnesses (once per size)."""
        with self._write():
            self._conn.execute("INSERT INTO audit_submitted (tree_size, note, submitted_ms)"
                               " VALUES (?, ?, ?) ON CONFLICT (tree_size) DO NOTHING",
                               (tree_size, note, submitted_ms))

    def submitted(self, tree_size: int) -> str | None:
        """The note of the checkpoint of ``tree_size`` sent to the witnesses."""
        rows = self._rows("SELECT note FROM audit_submitted WHERE tree_size = ?", (tree_size,))
        return str(rows[0][0]) if rows else None

    def cosignatures(self, tree_size: int) -> list[StoredCosignature]:
        """The cosignatures kept for the checkpoint of ``tree_size``, by witness name."""
        rows = self._rows("SELECT tree_size, witness, line, cosigned_at, received_ms"
                          " FROM audit_cosignatures WHERE tree_size = ? ORDER BY witness",
                          (tree_size,))
        return [StoredCosignature(int(r[0]), str(r[1]), str(r[2]), int(r[3]), int(r[4]))
                for r in rows]

    def cosigned_sizes(self) -> list[int]:
        """Every tree size with a kept cosignature, smallest first."""
        rows = self._rows("SELECT DISTINCT tree_size FROM audit_cosignatures ORDER BY tree_size")
        return [int(r[0]) for r in rows]

    def witnessed_sizes(self, witnesses: Sequence[str], k: int, since: int = 0) -> list[int]:
        """Tree sizes from ``since`` on with cosignatures by at least ``k`` of ``witnesses``,
        largest first (``since`` keeps the scan to recent rows: the key leads with size)."""
        if not witnesses:
            return []
        marks = ", ".join("?" for _ in witnesses)
        where = f"tree_size >= ? AND witness IN ({marks})"
        sql = ("SELECT tree_size FROM audit_cosignatures WHERE "  # noqa: S608 - placeholders only
               + where + " GROUP BY tree_size HAVING COUNT(*) >= ?"
               " ORDER BY tree_size DESC LIMIT 16")
        rows = self._rows(sql, (since, *witnesses, k))
        return [int(r[0]) for r in rows]

    def last_sizes(self) -> dict[str, int]:
        """The largest size each witness cosigned (where it stands, unless it moved on)."""
        rows = self._rows("SELECT witness, MAX(tree_size) FROM audit_cosignatures"
                          " GROUP BY witness")
        return {str(r[0]): int(r[1]) for r in rows}

    # -- Huzhou's own witness ----------------------------------------------------------------

    def latest_cosigned(self) -> dict[str, tuple[int, bytes]]:
        """Per origin, the size and root Huzhou's witness last cosigned."""
        rows = self._rows(
            "SELECT w.origin, w.tree_size, w.root_hash FROM witness_cosigned w"
            " JOIN (SELECT origin, MAX(tree_size) AS size FROM witness_cosigned"
            " GROUP BY origin) m ON w.origin = m.origin AND w.tree_size = m.size")
        return {str(r[0]): (int(r[1]), bytes(r[2])) for r in rows}

    def advance(self, origin: str, decide: Callable[[dict[str, tuple[int, bytes]]],
                                                    tuple[int, bytes, str]],
                cosigned_ms: int) -> tuple[int, bytes, str]:
        """Under the write lock: read the origin's state again, let ``decide`` judge
        against it (it raises to refuse), and keep what it returns ``(size, root, note)``
        as the new state, unless that is the state already."""
        with self._write():
            rows = self._rows("SELECT tree_size, root_hash FROM witness_cosigned"
                              " WHERE origin = ? ORDER BY tree_size DESC LIMIT 1", (origin,))
            state = {origin: (int(rows[0][0]), bytes(rows[0][1]))} if rows else {}
            size, root, note = decide(state)
            if state.get(origin) != (size, root):
                self._conn.execute(
                    "INSERT INTO witness_cosigned (origin, tree_size, root_hash, note,"
                    " cosigned_ms) VALUES (?, ?, ?, ?, ?)",
                    (origin, size, root, note, cosigned_ms))
        return size, root, note
