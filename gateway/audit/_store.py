"""Where audit records and checkpoints are kept: one port, one store on either engine.

``AuditStore`` is synchronous; the service runs it on its own threads and the
CLI calls it directly. ``SqlAuditStore`` runs the same SQL on SQLite
(``data_dir/audit.db``, WAL, ``synchronous=FULL``) or PostgreSQL through
``gateway.infra.sql``; the two differ in the sequencer lock a write takes:

* SQLite: ``BEGIN IMMEDIATE`` takes the database's single write lock, across
  processes; writers first queue on a ``flock`` of ``audit.db-writelock``, so
  that a waiter wakes when the holder commits rather than at the next of
  SQLite's polling sleeps (``audit_database``).
* PostgreSQL: ``pg_advisory_xact_lock`` on a key derived from the schema, held
  until the transaction ends.

Under that lock the writer reads the next index, inserts its batch with
consecutive indices and commits, so indices are dense and unique whichever
process writes. Nothing here updates or deletes; triggers refuse both. The
schema is versioned (``AUDIT_SCHEMA``, brought up to date when the store opens).

Errors::

    * AuditStoreError     the store is unreachable, corrupt or has shrunk
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from gateway.infra.migrations import (
    Migration,
    Schema,
    adopt_if_table,
    migrate,
    tables_migration,
)
from gateway.infra.sql import (
    POSTGRES,
    SQLITE,
    Cursor,
    Database,
    StorageError,
    WriteLock,
)

__all__ = [
    "AUDIT_SCHEMA",
    "AuditStore",
    "AuditStoreError",
    "EntryRow",
    "PruneGrant",
    "RecordFilter",
    "Seal",
    "SqlAuditStore",
    "StoredCheckpoint",
    "audit_database",
    "open_store",
    "sqlite_path",
]


class AuditStoreError(Exception):
    """The audit store failed or holds something it must not."""


class EntryRow(NamedTuple):
    """One record to append, with the columns queries filter on.

    A named tuple: immutable like a frozen dataclass, and less than half its cost to
    make (one is made for every audit record, on the event loop)."""

    event_id: str
    ts_ms: int
    event_type: str
    outcome: str
    partner: str | None
    matter: str | None
    record: bytes
    leaf_hash: bytes


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """A signed checkpoint as kept."""

    size: int
    root: bytes
    note: str
    created_ms: int


@dataclass(frozen=True, kw_only=True, slots=True)
class RecordFilter:
    """Which records a query wants; all conditions must hold."""

    start_ms: int | None = None
    end_ms: int | None = None
    partner: str | None = None
    matter: str | None = None
    event_type: str | None = None
    outcome: str | None = None
    after_index: int = -1
    limit: int = 100


@dataclass(frozen=True, slots=True)
class PruneGrant:
    """What one approved prune covers of one record kind: entries of ``event_type`` below
    ``end_idx`` whose time is before ``cutoff_ms`` (``audit_prune_grants``)."""

    proposal_idx: int
    event_type: str
    end_idx: int
    cutoff_ms: int
    approval_idx: int
    created_ms: int

    def covers(self, index: int, event_type: str, ts_ms: int) -> bool:
        """Whether an entry is one this grant lets a prune empty."""
        return event_type == self.event_type and index < self.end_idx and ts_ms < self.cutoff_ms


Seal = Callable[[int, list[bytes]], StoredCheckpoint]
"""Signs the tree a batch makes: ``(first index, foreign leaf hashes) -> checkpoint``."""


class AuditStore(Protocol):
    """The audit log's storage port (synchronous; one thread per instance)."""

    def setup(self) -> None:
        """Bring the schema up to date; put the append-only triggers back if missing."""

    def size(self) -> int:
        """Number of entries."""

    def leaf_hashes(self, start: int, end: int | None = None) -> list[bytes]:
        """Stored leaf hashes of entries ``[start, end)`` in index order."""

    def append(self, rows: Sequence[EntryRow], known_size: int | None,
               seal: Seal | None = None, ready: Callable[[], None] | None = None
               ) -> tuple[int, list[bytes]]:
        """Append rows under the sequencer lock and commit.

        Returns the first index given to ``rows`` and the leaf hashes of
        entries ``[known_size, first)`` other writers added meanwhile (none
        when ``known_size`` is None: the caller keeps no tree). ``seal``, when
        given, is called with those two inside the transaction and its
        checkpoint is kept in the same commit (unless one of that size is).
        ``ready``, when given, is called once everything is written, just before
        the commit (and its wait for the disk): it must not raise.
        """

    def wait_turn(self) -> None:
        """Return once no other writer holds the sequencer lock, nothing written: a writer
        that shares the log waits here for the other's commit before it gathers its own
        rows. Only a wait (on SQLite the lock file's ``flock``, taken and let go): the
        order of commits is still decided by each append's own lock."""

    def entry(self, index: int) -> tuple[bytes, bytes] | None:
        """Record bytes and stored leaf hash of an entry."""

    def entry_with_leaves(
        self, index: int, start: int, end: int
    ) -> tuple[tuple[bytes, bytes] | None, list[bytes]]:
        """``entry(index)`` and ``leaf_hashes(start, end)`` (a range holding ``index``) in
        one indexed range query, for a proof."""

    def iter_entries(
        self, start: int = 0, chunk: int = 20_000
    ) -> Iterator[tuple[int, bytes, bytes]]:
        """``(index, record, leaf_hash)`` from ``start`` on, in index order."""

    def iter_columns(
        self, start: int = 0, chunk: int = 20_000
    ) -> Iterator[tuple[int, tuple[Any, ...]]]:
        """``(index, (event_id, ts_ms, event_type, outcome, partner, matter))`` in index order:
        the query columns, which the tree does not cover and ``audit verify`` re-derives."""

    def iter_rows(self, start: int = 0, chunk: int = 50_000) -> Iterator[tuple[Any, ...]]:
        """``(index, record, leaf_hash, event_id, ts_ms, event_type, outcome, partner,
        matter)`` from ``start`` on, in index order, as the driver gives them: the one pass
        over the table ``audit verify`` makes."""

    def checkpoints(self) -> list[StoredCheckpoint]:
        """Every kept checkpoint, smallest tree first."""

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        """The checkpoint of the largest tree."""

    def checkpoint_at_most(self, size: int) -> StoredCheckpoint | None:
        """The checkpoint of the largest tree of at most ``size`` entries."""

    def add_checkpoint(self, checkpoint: StoredCheckpoint, previous_size: int | None) -> bool:
        """Keep a checkpoint if the latest kept one still has ``previous_size``."""

    def query(self, flt: RecordFilter) -> list[tuple[int, bytes]]:
        """Matching ``(index, record)`` pairs after ``flt.after_index``, in index order."""

    def count(self, flt: RecordFilter) -> int:
        """How many records match ``flt`` after ``flt.after_index`` (its ``limit`` aside)."""

    def stats(self, start_ms: int, end_ms: int) -> list[tuple[str | None, str | None, str, int]]:
        """Counts per partner, matter and outcome of records in ``[start_ms, end_ms)``."""

    def meta(self, name: str) -> str | None:
        """A log-wide setting (origin, public key, HMAC check value)."""

    def set_meta_once(self, name: str, value: str) -> str:
        """Store a setting unless one exists; return the stored value."""

    def grants(self) -> list[PruneGrant]:
        """Every prune grant kept, oldest proposal first."""

    def prunable(self, grant: PruneGrant) -> int:
        """How many entries ``grant`` covers whose record is still kept."""

    def prune(self, grants: Sequence[PruneGrant], chunk: int = 5000) -> int:
        """Keep ``grants`` (unless kept already), then empty the records they cover, a
        chunk of indices per transaction; return how many were emptied. SQLite: the freed
        bytes are overwritten (``secure_delete``) and the WAL is checkpointed and truncated
        so no copy of a pruned record stays in the database's files; PostgreSQL: the table
        is vacuumed, so the old row versions leave its pages (its WAL keeps them until
        the segments are recycled)."""

    def close(self) -> None:
        """Release the connection."""


_TABLES = (
    (
        "CREATE TABLE IF NOT EXISTS audit_entries (idx {int} PRIMARY KEY,"
        " event_id TEXT NOT NULL UNIQUE, ts_ms {int} NOT NULL, event_type TEXT NOT NULL,"
        " outcome TEXT NOT NULL, partner TEXT, matter TEXT, record {blob} NOT NULL,"
        " leaf_hash {blob} NOT NULL)"
    ),
    (
        "CREATE TABLE IF NOT EXISTS audit_checkpoints (tree_size {int} PRIMARY KEY,"
        " root_hash {blob} NOT NULL, note TEXT NOT NULL, created_ms {int} NOT NULL)"
    ),
    "CREATE TABLE IF NOT EXISTS audit_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS audit_entries_ts ON audit_entries (ts_ms)",
)
_TABLE_NAMES = ("audit_entries", "audit_checkpoints", "audit_meta")
_GUARDS_V1 = {
    # Version 1's guards: UPDATE and DELETE (on PostgreSQL TRUNCATE too) refused on every
    # table. Version 3 narrows audit_entries' UPDATE guard (``_GUARDS``, below).
    "sqlite": tuple(
        f"CREATE TRIGGER IF NOT EXISTS {name}_no_{op.lower()} BEFORE {op} ON {name}"
        f" BEGIN SELECT RAISE(ABORT, 'audit log is append-only: {op} refused'); END"
        for name in _TABLE_NAMES for op in ("UPDATE", "DELETE")
    ),
    "postgresql": (
        (
            "CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger"
            " LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'audit log is append-only: % refused on %',"
            " TG_OP, TG_TABLE_NAME; END $$"
        ),
        *(
            statement
            for name in _TABLE_NAMES
            for statement in (
                (f"CREATE OR REPLACE TRIGGER {name}_no_change BEFORE UPDATE OR DELETE"
                 f" ON {name} FOR EACH ROW EXECUTE FUNCTION audit_refuse_change()"),
                (f"CREATE OR REPLACE TRIGGER {name}_no_truncate BEFORE TRUNCATE ON {name}"
                 " FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change()"),
            )
        ),
    ),
}


_ENTRIES_V2 = (
    "CREATE TABLE audit_entries_v2 (idx {int} PRIMARY KEY, event_id TEXT NOT NULL,"
    " ts_ms {int} NOT NULL, event_type TEXT NOT NULL, outcome TEXT NOT NULL, partner TEXT,"
    " matter TEXT, record {blob} NOT NULL, leaf_hash {blob} NOT NULL)"
)
_WITHOUT_EVENT_ID_INDEX = Migration(
    2, "entries without the event_id index (no query reads it)", {
        # SQLite cannot drop a UNIQUE constraint: the table is copied, row for row, into one
        # without it. DROP TABLE fires no trigger; the guards are put back at every open.
        SQLITE.name: (
            SQLITE.ddl(_ENTRIES_V2),
            ("INSERT INTO audit_entries_v2 (idx, event_id, ts_ms, event_type, outcome, partner,"
             " matter, record, leaf_hash) SELECT idx, event_id, ts_ms, event_type, outcome,"
             " partner, matter, record, leaf_hash FROM audit_entries ORDER BY idx"),
            "DROP TABLE audit_entries",
            "ALTER TABLE audit_entries_v2 RENAME TO audit_entries",
            "CREATE INDEX IF NOT EXISTS audit_entries_ts ON audit_entries (ts_ms)",
        ),
        POSTGRES.name: (
            "ALTER TABLE audit_entries DROP CONSTRAINT IF EXISTS audit_entries_event_id_key",
        ),
    })
"""Every appended row paid for a B-tree insert into the ``event_id`` index (a 36-character
key), and a page of it in every commit, for a lookup no query makes: entries are found by
index, time, partner, matter, type and outcome. Ids stay unique by construction (UUIDv7);
record bytes and leaf hashes are untouched, so a log migrated keeps verifying."""

_GRANTS = (
    "CREATE TABLE IF NOT EXISTS audit_prune_grants (proposal_idx {int} NOT NULL,"
    " event_type TEXT NOT NULL, end_idx {int} NOT NULL, cutoff_ms {int} NOT NULL,"
    " approval_idx {int} NOT NULL, created_ms {int} NOT NULL,"
    " PRIMARY KEY (proposal_idx, event_type))"
)
_PRUNABLE = (
    # The one change the log allows: an approved prune empties the record bytes of an
    # entry a grant covers (its kind, below its end index, older than its cut-off). Every
    # other column, the leaf hash first, stays as it was; nothing is ever deleted.
    "{new}.record IS NOT NULL AND length({new}.record) = 0 AND length({old}.record) > 0"
    " AND {new}.idx = {old}.idx AND {new}.leaf_hash = {old}.leaf_hash"
    " AND {new}.event_id = {old}.event_id AND {new}.ts_ms = {old}.ts_ms"
    " AND {new}.event_type = {old}.event_type AND {new}.outcome = {old}.outcome"
    " AND {new}.partner IS NOT DISTINCT FROM {old}.partner"
    " AND {new}.matter IS NOT DISTINCT FROM {old}.matter"
    " AND EXISTS (SELECT 1 FROM audit_prune_grants g WHERE g.event_type = {old}.event_type"
    " AND {old}.idx < g.end_idx AND {old}.ts_ms < g.cutoff_ms)"
)
_SQLITE_ENTRIES_UPDATE = (
    "CREATE TRIGGER IF NOT EXISTS audit_entries_no_update BEFORE UPDATE ON audit_entries"
    " WHEN NOT (" + _PRUNABLE.format(new="NEW", old="OLD").replace(
        "NEW.record IS NOT NULL AND ", "typeof(NEW.record) = 'blob' AND ").replace(
        "IS NOT DISTINCT FROM", "IS") + ")"
    " BEGIN SELECT RAISE(ABORT, 'audit log is append-only: UPDATE refused'); END"
)
_POSTGRES_ENTRIES_GUARD = (
    # SET search_path FROM CURRENT: the grants table is found whatever the writer's path.
    "CREATE OR REPLACE FUNCTION audit_entries_guard() RETURNS trigger LANGUAGE plpgsql"
    " SET search_path FROM CURRENT AS"
    " $$ BEGIN IF TG_OP = 'UPDATE' AND " + _PRUNABLE.format(new="NEW", old="OLD")
    + " THEN RETURN NEW; END IF;"
    " RAISE EXCEPTION 'audit log is append-only: % refused on %', TG_OP, TG_TABLE_NAME;"
    " END $$"
)
_GUARDED = ("audit_checkpoints", "audit_meta", "audit_prune_grants")
_GUARDS = {
    # Append-only: put back at every open, as they always were (a trigger dropped by hand
    # does not stay dropped). On audit_entries an UPDATE may only empty the record of an
    # entry an approved prune covers (``_PRUNABLE``); DELETE is refused on every table.
    "sqlite": (
        _SQLITE_ENTRIES_UPDATE,
        ("CREATE TRIGGER IF NOT EXISTS audit_entries_no_delete BEFORE DELETE ON audit_entries"
         " BEGIN SELECT RAISE(ABORT, 'audit log is append-only: DELETE refused'); END"),
        *(
            f"CREATE TRIGGER IF NOT EXISTS {name}_no_{op.lower()} BEFORE {op} ON {name}"
            f" BEGIN SELECT RAISE(ABORT, 'audit log is append-only: {op} refused'); END"
            for name in _GUARDED for op in ("UPDATE", "DELETE")
        ),
    ),
    "postgresql": (
        _GUARDS_V1["postgresql"][0],  # audit_refuse_change()
        _POSTGRES_ENTRIES_GUARD,
        ("CREATE OR REPLACE TRIGGER audit_entries_no_change BEFORE UPDATE OR DELETE"
         " ON audit_entries FOR EACH ROW EXECUTE FUNCTION audit_entries_guard()"),
        ("CREATE OR REPLACE TRIGGER audit_entries_no_truncate BEFORE TRUNCATE ON audit_entries"
         " FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change()"),
        *(
            statement
            for name in _GUARDED
            for statement in (
                (f"CREATE OR REPLACE TRIGGER {name}_no_change BEFORE UPDATE OR DELETE"
                 f" ON {name} FOR EACH ROW EXECUTE FUNCTION audit_refuse_change()"),
                (f"CREATE OR REPLACE TRIGGER {name}_no_truncate BEFORE TRUNCATE ON {name}"
                 " FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change()"),
            )
        ),
    ),
}
_PRUNE_GRANTS = Migration(
    3, "prune grants; an approved prune may empty a record's bytes", {
        # The old UPDATE guard refused every change; it is replaced by the narrow one
        # (SQLite: dropped here, made again by the guards below; PostgreSQL: replaced).
        SQLITE.name: (SQLITE.ddl(_GRANTS), "DROP TRIGGER IF EXISTS audit_entries_no_update",
                      *_GUARDS["sqlite"]),
        POSTGRES.name: (POSTGRES.ddl(_GRANTS), *_GUARDS["postgresql"]),
    })
"""Retention (docs/audit.md, *Retention and pruning*): ``audit_prune_grants`` keeps what
each approved prune covers (append-only); the entries' UPDATE guard lets a prune empty the
record bytes of exactly those entries. No row is rewritten by the migration itself."""

AUDIT_SCHEMA = Schema("audit", (
    tables_migration(1, "entries, checkpoints and settings, append-only", _TABLES, _GUARDS_V1),
    _WITHOUT_EVENT_ID_INDEX,
    _PRUNE_GRANTS,
), adopt=adopt_if_table("audit_entries"))
"""The audit store's schema versions."""

_LOCK_CLASS = 0x330500
"""PostgreSQL: first key of the advisory locks; the second is the schema's hash."""
_APPEND_LOCK = WriteLock("SELECT pg_advisory_xact_lock(?, hashtext(current_schema() || ?))",
                         (_LOCK_CLASS, "1"))
"""The sequencer: taken by appends and settings."""
_CHECKPOINT_LOCK = WriteLock(_APPEND_LOCK.statement, (_LOCK_CLASS, "2"))
"""Taken by checkpoint writes."""
_INSERT = (
    "INSERT INTO audit_entries (idx, event_id, ts_ms, event_type, outcome, partner, matter,"
    " record, leaf_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

_INSERT_CHECKPOINT = (
    "INSERT INTO audit_checkpoints (tree_size, root_hash, note, created_ms) VALUES (?, ?, ?, ?)"
)


class SqlAuditStore:
    """``AuditStore`` on either engine; one connection, used from one thread."""

    def __init__(self, database: Database) -> None:
        self.backend = database.backend
        try:
            self._conn = database.connect()
        except StorageError as exc:
            raise AuditStoreError(str(exc)) from exc

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        try:
            return self._conn.execute(sql, params)
        except StorageError as exc:
            raise AuditStoreError(str(exc)) from exc

    @contextmanager
    def _write(self, lock: WriteLock) -> Iterator[None]:
        try:
            with self._conn.transaction(lock):
                yield
        except StorageError as exc:
            raise AuditStoreError(str(exc)) from exc

    def _insert_many(self, sql: str, params: list[tuple[Any, ...]]) -> None:
        try:
            self._conn.executemany(sql, params)
        except StorageError as exc:
            raise AuditStoreError(str(exc)) from exc

    def setup(self) -> None:
        try:
            migrate(self._conn, AUDIT_SCHEMA)
        except StorageError as exc:
            raise AuditStoreError(f"audit store schema: {exc}") from exc
        with self._write(_APPEND_LOCK):
            for statement in _GUARDS[self._conn.dialect.name]:
                self._exec(statement)

    def close(self) -> None:
        try:
            self._conn.close()
        except StorageError as exc:
            raise AuditStoreError(str(exc)) from exc

    def size(self) -> int:
        row = self._exec("SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_entries").fetchone()
        return int(row[0])

    def leaf_hashes(self, start: int, end: int | None = None) -> list[bytes]:
        stop = (1 << 62) if end is None else end
        rows = self._exec(
            "SELECT leaf_hash FROM audit_entries WHERE idx >= ? AND idx < ? ORDER BY idx",
            (start, stop),
        ).fetchall()
        return [bytes(r[0]) for r in rows]

    def append(self, rows: Sequence[EntryRow], known_size: int | None,
               seal: Seal | None = None, ready: Callable[[], None] | None = None
               ) -> tuple[int, list[bytes]]:
        with self._write(_APPEND_LOCK):
            first = self.size()
            if known_size is None:
                known_size = first
            if first < known_size:
                raise AuditStoreError(
                    f"the store holds {first} entries but {known_size} were seen: refusing to write"
                )
            foreign = self.leaf_hashes(known_size, first) if first > known_size else []
            if len(foreign) != first - known_size:
                raise AuditStoreError("the store has a gap in its indices")
            self._insert_many(
                _INSERT,
                [
                    (first + i, r.event_id, r.ts_ms, r.event_type, r.outcome, r.partner,
                     r.matter, r.record, r.leaf_hash)
                    for i, r in enumerate(rows)
                ],
            )  # fmt: skip
            if seal is not None:
                # One commit, one fsync, for the batch and the tree head that covers it.
                # The same tree signed twice is the same note (Ed25519 is deterministic).
                checkpoint = seal(first, foreign)
                self._exec(_INSERT_CHECKPOINT + " ON CONFLICT (tree_size) DO NOTHING",
                           (checkpoint.size, checkpoint.root, checkpoint.note,
                            checkpoint.created_ms))
            if ready is not None:
                ready()
        return first, foreign

    def wait_turn(self) -> None:
        try:
            self._conn.wait_for_writer(_APPEND_LOCK)
        except StorageError as exc:
            raise AuditStoreError(str(exc)) from exc

    def entry(self, index: int) -> tuple[bytes, bytes] | None:
        row = self._exec(
            "SELECT record, leaf_hash FROM audit_entries WHERE idx = ?", (index,)
        ).fetchone()
        return None if row is None else (bytes(row[0]), bytes(row[1]))

    def entry_with_leaves(
        self, index: int, start: int, end: int
    ) -> tuple[tuple[bytes, bytes] | None, list[bytes]]:
        rows = self._exec(
            "SELECT idx, leaf_hash, CASE WHEN idx = ? THEN record END FROM audit_entries"
            " WHERE idx >= ? AND idx < ? ORDER BY idx",
            (index, start, end),
        ).fetchall()
        found = None
        for idx, leaf, record in rows:
            if int(idx) == index and record is not None:
                found = (bytes(record), bytes(leaf))
        return found, [bytes(r[1]) for r in rows]

    def iter_entries(
        self, start: int = 0, chunk: int = 20_000
    ) -> Iterator[tuple[int, bytes, bytes]]:
        sql = ("SELECT idx, record, leaf_hash FROM audit_entries"
               " WHERE idx >= ? ORDER BY idx LIMIT ?")
        while True:
            rows = self._exec(sql, (start, chunk)).fetchall()
            for idx, record, leaf in rows:
                yield int(idx), bytes(record), bytes(leaf)
            if len(rows) < chunk:
                return
            start = int(rows[-1][0]) + 1

    def iter_columns(
        self, start: int = 0, chunk: int = 20_000
    ) -> Iterator[tuple[int, tuple[Any, ...]]]:
        sql = ("SELECT idx, event_id, ts_ms, event_type, outcome, partner, matter"
               " FROM audit_entries WHERE idx >= ? ORDER BY idx LIMIT ?")
        while True:
            rows = self._exec(sql, (start, chunk)).fetchall()
            for row in rows:
                yield int(row[0]), (str(row[1]), int(row[2]), *row[3:])
            if len(rows) < chunk:
                return
            start = int(rows[-1][0]) + 1

    def iter_rows(self, start: int = 0, chunk: int = 50_000) -> Iterator[tuple[Any, ...]]:
        sql = ("SELECT idx, record, leaf_hash, event_id, ts_ms, event_type, outcome, partner,"
               " matter FROM audit_entries WHERE idx >= ? ORDER BY idx LIMIT ?")
        while True:
            rows = self._exec(sql, (start, chunk)).fetchall()
            yield from rows
            if len(rows) < chunk:
                return
            start = int(rows[-1][0]) + 1

    def _checkpoint(self, row: Sequence[Any]) -> StoredCheckpoint:
        return StoredCheckpoint(int(row[0]), bytes(row[1]), str(row[2]), int(row[3]))

    def checkpoints(self) -> list[StoredCheckpoint]:
        rows = self._exec(
            "SELECT tree_size, root_hash, note, created_ms FROM audit_checkpoints"
            " ORDER BY tree_size"
        ).fetchall()
        return [self._checkpoint(r) for r in rows]

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        row = self._exec(
            "SELECT tree_size, root_hash, note, created_ms FROM audit_checkpoints"
            " ORDER BY tree_size DESC LIMIT 1"
        ).fetchone()
        return None if row is None else self._checkpoint(row)

    def checkpoint_at_most(self, size: int) -> StoredCheckpoint | None:
        row = self._exec(
            "SELECT tree_size, root_hash, note, created_ms FROM audit_checkpoints"
            " WHERE tree_size <= ? ORDER BY tree_size DESC LIMIT 1", (size,)
        ).fetchone()
        return None if row is None else self._checkpoint(row)

    def add_checkpoint(self, checkpoint: StoredCheckpoint, previous_size: int | None) -> bool:
        with self._write(_CHECKPOINT_LOCK):
            row = self._exec("SELECT MAX(tree_size) FROM audit_checkpoints").fetchone()
            latest = None if row[0] is None else int(row[0])
            if latest != previous_size:
                return False
            self._exec(
                _INSERT_CHECKPOINT,
                (checkpoint.size, checkpoint.root, checkpoint.note, checkpoint.created_ms),
            )
        return True

    @staticmethod
    def _where(flt: RecordFilter) -> tuple[str, list[Any]]:
        """The WHERE clause (with ``?`` placeholders) and parameters of a filter."""
        where: list[str] = ["idx > ?"]
        params: list[Any] = [flt.after_index]
        if flt.start_ms is not None:
            where.append("ts_ms >= ?")
            params.append(flt.start_ms)
        if flt.end_ms is not None:
            where.append("ts_ms < ?")
            params.append(flt.end_ms)
        for column, value in (
            ("partner", flt.partner),
            ("event_type", flt.event_type),
            ("outcome", flt.outcome),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if flt.matter is not None:
            if ":" in flt.matter:
                where.append("matter = ?")
                params.append(flt.matter)
            else:  # a bare code matches it in any region
                where.append("substr(matter, length(matter) - ? + 1) = ?")
                params.extend([len(flt.matter) + 1, ":" + flt.matter])
        return " AND ".join(where), params

    def query(self, flt: RecordFilter) -> list[tuple[int, bytes]]:
        where, params = self._where(flt)
        sql = (
            "SELECT idx, record FROM audit_entries WHERE "  # noqa: S608 - only fixed column names are interpolated
            + where
            + " ORDER BY idx LIMIT ?"
        )
        params.append(flt.limit)
        rows = self._exec(sql, params).fetchall()
        return [(int(i), bytes(r)) for i, r in rows]

    def count(self, flt: RecordFilter) -> int:
        where, params = self._where(flt)
        sql = "SELECT COUNT(*) FROM audit_entries WHERE " + where  # noqa: S608 - fixed column names
        (found,) = self._exec(sql, params).fetchone()
        return int(found)

    def stats(self, start_ms: int, end_ms: int) -> list[tuple[str | None, str | None, str, int]]:
        rows = self._exec(
            "SELECT partner, matter, outcome, COUNT(*) FROM audit_entries"
            " WHERE ts_ms >= ? AND ts_ms < ? GROUP BY partner, matter, outcome",
            (start_ms, end_ms),
        ).fetchall()
        result = [(p, m, str(o), int(c)) for p, m, o, c in rows]
        result.sort(key=lambda r: (r[0] or "", r[1] or "", r[2]))
        return result

    def meta(self, name: str) -> str | None:
        row = self._exec(
            "SELECT value FROM audit_meta WHERE name = ?", (name,)
        ).fetchone()
        return None if row is None else str(row[0])

    def set_meta_once(self, name: str, value: str) -> str:
        with self._write(_APPEND_LOCK):
            self._exec(
                "INSERT INTO audit_meta (name, value) VALUES (?, ?)"
                " ON CONFLICT (name) DO NOTHING",
                (name, value),
            )
        stored = self.meta(name)
        assert stored is not None
        return stored

    def grants(self) -> list[PruneGrant]:
        rows = self._exec(
            "SELECT proposal_idx, event_type, end_idx, cutoff_ms, approval_idx, created_ms"
            " FROM audit_prune_grants ORDER BY proposal_idx, event_type").fetchall()
        return [PruneGrant(int(r[0]), str(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5]))
                for r in rows]

    def prunable(self, grant: PruneGrant) -> int:
        (found,) = self._exec(
            "SELECT COUNT(*) FROM audit_entries WHERE event_type = ? AND idx < ? AND ts_ms < ?"
            " AND length(record) > 0", (grant.event_type, grant.end_idx, grant.cutoff_ms),
        ).fetchone()
        return int(found)

    def prune(self, grants: Sequence[PruneGrant], chunk: int = 5000) -> int:
        sqlite = self._conn.dialect is SQLITE
        if sqlite:  # the bytes an UPDATE frees are zeroed, not left in free space
            self._exec("PRAGMA secure_delete = ON")
        with self._write(_APPEND_LOCK):
            self._insert_many(
                "INSERT INTO audit_prune_grants (proposal_idx, event_type, end_idx, cutoff_ms,"
                " approval_idx, created_ms) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (proposal_idx, event_type) DO NOTHING",
                [(g.proposal_idx, g.event_type, g.end_idx, g.cutoff_ms, g.approval_idx,
                  g.created_ms) for g in grants])
        emptied = 0
        end = max((g.end_idx for g in grants), default=0)
        for start in range(0, end, chunk):
            # One transaction per chunk: appends wait for one chunk at a time, not the prune.
            with self._write(_APPEND_LOCK):
                for g in grants:
                    emptied += self._exec(
                        "UPDATE audit_entries SET record = ? WHERE idx >= ? AND idx < ?"
                        " AND event_type = ? AND ts_ms < ? AND length(record) > 0",
                        (b"", start, min(start + chunk, g.end_idx), g.event_type, g.cutoff_ms),
                    ).rowcount
        if sqlite:
            # The WAL still holds the pages as they were written: copy it into the file and
            # truncate it (a reader still on an old snapshot can keep it; see docs/audit.md).
            self._exec("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        elif emptied:
            # The old row versions stay in the table's pages until a vacuum reclaims them
            # (appends go on meanwhile; only the table's owner may: others get a warning).
            self._exec("VACUUM audit_entries")
        return emptied


def sqlite_path(data_dir: Path) -> Path:
    """Where a data folder keeps its SQLite audit log."""
    return data_dir / "audit.db"


def audit_database(data_dir: Path, postgres_dsn: str | None) -> Database:
    """Where the settings keep the audit log: PostgreSQL, else ``data_dir/audit.db``, whose
    writers queue on a ``flock`` of ``audit.db-writelock`` before SQLite's write lock
    (``gateway.infra.sql``): every worker of a ``serve --workers N`` and the CLI write it."""
    path = sqlite_path(data_dir)
    return Database.of(path, postgres_dsn, write_lock=path.with_name(path.name + "-writelock"))


def open_store(data_dir: Path, postgres_dsn: str | None) -> AuditStore:
    """The store a data folder's settings call for, with its schema up to date."""
    store = SqlAuditStore(audit_database(data_dir, postgres_dsn))
    try:
        store.setup()
    except BaseException:
        store.close()
        raise
    return store
