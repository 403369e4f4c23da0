"""Versioned schemas: each store's ordered migrations, applied when the store opens.

A store declares a ``Schema``: its name and its ``Migration`` list, versions 1,
2, ... in order, each with SQL per dialect (a dialect it does not name has
nothing to do in it) and an optional Python step run after that SQL.
``migrate(conn, schema)`` brings a database up to the newest version:

* Applied versions are rows of ``schema_migrations`` (store, version, name,
  when, adopted), one table for every store (on PostgreSQL the stores share a
  database). A run of migrations and their rows is one transaction (DDL is
  transactional in both engines): when one fails, the database stays at the
  version it had before the run.
* Two processes that start at once queue up: SQLite's ``BEGIN IMMEDIATE`` takes
  the file's write lock, PostgreSQL ``pg_advisory_xact_lock`` a key of the
  schema's; whoever comes second reads the versions again under the lock and
  finds nothing left to do. An up-to-date database is only read, never locked.
* A database made before versions existed (tables made by ``CREATE TABLE IF
  NOT EXISTS``) is *adopted*: the schema's ``adopt`` looks at its tables and
  says which version they are at; those versions are recorded as adopted
  (nothing is run) and the later ones applied, so no row is lost.
* A database at a version this code does not know (a newer gateway wrote it)
  raises ``SchemaError`` and is not written to.

``schema_migrations`` is the record of what ran and when; the runner logs it at
DEBUG only (the CLI runs it on every command's first open of a new database).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from gateway.infra.sql import POSTGRES, SQLITE, Connection, SchemaError, WriteLock

__all__ = [
    "MIGRATION_LOCK",
    "Migration",
    "Schema",
    "adopt_if_table",
    "applied_version",
    "migrate",
    "tables_migration",
]

_log = logging.getLogger("gateway.infra.migrations")

_TABLE = """CREATE TABLE IF NOT EXISTS schema_migrations (
    store TEXT NOT NULL,
    version INTEGER NOT NULL,
    name TEXT NOT NULL,
    applied_at TEXT NOT NULL,
    adopted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (store, version)
)"""

MIGRATION_LOCK = WriteLock("SELECT pg_advisory_xact_lock(?, hashtext(current_schema() || ?))",
                           (0x330500, ":schema_migrations"))
"""PostgreSQL: one lock for every store's migrations (``CREATE TABLE IF NOT EXISTS``
itself is not safe against a concurrent one there)."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of a schema: SQL per dialect name, then an optional Python step."""

    version: int
    name: str
    sql: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """Statements by dialect name (``sqlite``, ``postgresql``), run in order."""
    step: Callable[[Connection], None] | None = None
    """Run after the statements, inside the same transaction (it must not commit)."""

    def apply(self, conn: Connection) -> None:
        """Run the migration's statements and step on ``conn`` (inside a transaction)."""
        for statement in self.sql.get(conn.dialect.name, ()):
            conn.execute(statement)
        if self.step is not None:
            self.step(conn)


def _nothing_yet(_: Connection) -> int:
    return 0


def tables_migration(version: int, name: str, tables: Sequence[str],
                     after: Mapping[str, Sequence[str]]) -> Migration:
    """A migration that creates ``tables`` (portable DDL, ``Dialect.ddl``) on either
    engine, then runs ``after`` (statements by dialect name, e.g. guard triggers)."""
    return Migration(version, name, {
        dialect.name: (*(dialect.ddl(t) for t in tables), *after.get(dialect.name, ()))
        for dialect in (SQLITE, POSTGRES)})


def adopt_if_table(table: str) -> Callable[[Connection], int]:
    """An ``adopt`` for a store whose one pre-version schema is version 1, known by
    ``table``: the database holds it (1) or holds nothing of the store yet (0)."""

    def adopt(conn: Connection) -> int:
        return 1 if conn.table_exists(table) else 0

    return adopt


@dataclass(frozen=True, slots=True)
class Schema:
    """A store's schema: its name in ``schema_migrations`` and its migrations, in order."""

    store: str
    migrations: tuple[Migration, ...]
    adopt: Callable[[Connection], int] = _nothing_yet
    """The version a database without recorded versions is at, judged from its tables
    (0: nothing of this store is there). Runs under the migration lock."""

    def __post_init__(self) -> None:
        versions = [m.version for m in self.migrations]
        if versions != list(range(1, len(versions) + 1)):
            raise ValueError(f"schema {self.store}: versions must be 1..N in order, "
                             f"not {versions}")

    @property
    def latest(self) -> int:
        """The newest version this code knows."""
        return len(self.migrations)


def applied_version(conn: Connection, store: str) -> int | None:
    """The newest version recorded for ``store``; None when none is (or no table yet)."""
    if not conn.table_exists("schema_migrations"):
        return None
    row = conn.execute("SELECT MAX(version) FROM schema_migrations WHERE store = ?",
                       (store,)).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def _refuse_newer(schema: Schema, version: int) -> None:
    if version > schema.latest:
        raise SchemaError(
            f"the {schema.store} schema is at version {version}; this gateway knows up to "
            f"{schema.latest}: run a newer gateway")


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _record(conn: Connection, schema: Schema, migration: Migration, *, adopted: bool) -> None:
    conn.execute("INSERT INTO schema_migrations (store, version, name, applied_at, adopted)"
                 " VALUES (?, ?, ?, ?, ?)",
                 (schema.store, migration.version, migration.name, _stamp(), int(adopted)))


def migrate(conn: Connection, schema: Schema) -> int:
    """Bring ``schema`` up to its newest version on ``conn``; return that version.

    ``SchemaError`` when the database holds a newer version than this code
    knows; when a migration fails (``StorageError``, or what its step raised),
    the database stays at the version it had before the call.
    """
    current = applied_version(conn, schema.store)
    if current is not None:
        _refuse_newer(schema, current)
        if current == schema.latest:
            return current
    with conn.transaction(MIGRATION_LOCK):
        conn.execute(_TABLE)
        current = applied_version(conn, schema.store)
        if current is None:
            current = schema.adopt(conn)
            _refuse_newer(schema, current)
            for migration in schema.migrations[:current]:
                _record(conn, schema, migration, adopted=True)
            if current:
                _log.debug("schema %s: existing tables adopted at version %d",
                           schema.store, current)
        _refuse_newer(schema, current)
        for migration in schema.migrations[current:]:
            migration.apply(conn)
            _record(conn, schema, migration, adopted=False)
            _log.debug("schema %s: version %d applied (%s)", schema.store,
                       migration.version, migration.name)
    return schema.latest
