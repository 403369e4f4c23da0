"""One SQL layer for every store: SQLite or PostgreSQL behind one connection type.

A store writes its SQL once, with ``?`` placeholders, and runs it through a
``Connection`` to the ``Database`` its settings name (``Database.of``: the
PostgreSQL DSN when one is set, else an SQLite file in the data folder). What
the two need differently is kept here:

=====================  ===============================  ===============================
                       SQLite                           PostgreSQL
=====================  ===============================  ===============================
placeholders           ``?``                            ``%s`` (a literal ``%`` doubled)
``{int}`` in DDL       ``INTEGER`` (64-bit already)     ``BIGINT``
``{blob}`` in DDL      ``BLOB``                         ``BYTEA``
write transaction      ``BEGIN IMMEDIATE``: the file's  ``BEGIN``, then the store's
                       one write lock, at once          ``WriteLock`` (an advisory or a
                                                        table lock), if it names one
waiting for the lock   a ``flock`` on a file beside     the server queues waiters and
                       the database, if it names one    wakes the next at once
                       (``write_lock``); else SQLite's
                       busy handler, which sleeps
others' commits        ``PRAGMA data_version``          a counter row that a statement
                                                        trigger bumps once per
                                                        transaction (``change_counter``)
catalogue              ``sqlite_master``,               ``to_regclass``,
                       ``PRAGMA table_info``            ``information_schema.columns``
=====================  ===============================  ===============================

Why the ``flock``: SQLite's own busy handler waits for a held write lock by
sleeping and trying again (sleeps of 1, 2, 5, 10, 15 ms ...: tries at 1, 3, 8,
18 ms), so a waiter whose holder commits 3.5 ms later sleeps until the 8th: where
several processes write one file in turn (``serve --workers N`` on one audit
log) those sleeps, not the commits, set the pace. A waiter blocked in ``flock``
is woken by the kernel the moment the holder lets go. The ``flock`` only
queues writers in front of ``BEGIN IMMEDIATE``, which still takes SQLite's lock
and still decides: a writer that does not take the ``flock`` (an older build, a
statement outside ``transaction()``) is serialised by SQLite as before, only
polled. ``flock`` locks belong to an open file, so two connections of one
process exclude each other too, and the kernel drops a lock whose holder dies.

Upserts (``INSERT ... ON CONFLICT ... DO NOTHING``) are written the same in both;
so are ``RETURNING`` (SQLite 3.35+) and ``executemany``. Booleans are stored as
``INTEGER`` 0/1 in both, as the stores always did.

Connections are synchronous; the gateway hands functions to a ``Worker``, one
thread that owns one connection (no sqlite3 or psycopg call ever runs on the
event loop), and the CLI calls them directly. Driver errors are mapped here,
once, to this module's errors.

Errors::

    * StorageError          the database is unreachable, or a statement failed
      x ConstraintError     a write broke a constraint (a unique or foreign key)
      x SchemaError         the schema is newer than this code, or cannot be brought up to date
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import psycopg

from gateway.infra.sqlite import connect as connect_sqlite

__all__ = [
    "POSTGRES",
    "SQLITE",
    "ConstraintError",
    "Connection",
    "Cursor",
    "Database",
    "Dialect",
    "SchemaError",
    "StorageError",
    "Worker",
    "WriteLock",
    "change_counter",
]

T = TypeVar("T")


class StorageError(Exception):
    """The database is unreachable, or a statement failed."""


class ConstraintError(StorageError):
    """A write broke a constraint (a unique or foreign key); nothing of it was kept."""


class SchemaError(StorageError):
    """The schema is newer than this code, or cannot be brought up to date."""


_DRIVER_ERRORS = (sqlite3.Error, psycopg.Error)


def _mapped(exc: Exception) -> StorageError:
    """The layer's error for a driver's (its message kept; the driver's as the cause)."""
    if isinstance(exc, sqlite3.IntegrityError | psycopg.IntegrityError):
        return ConstraintError(str(exc))
    return StorageError(str(exc) or type(exc).__name__)


@dataclass(frozen=True, slots=True)
class Dialect:
    """What one database engine writes differently (see the module's table)."""

    name: str
    """``sqlite`` or ``postgresql`` (also what ``Migration.sql`` is keyed by)."""
    types: dict[str, str] = field(hash=False, compare=False)
    """What ``{int}`` and ``{blob}`` in a DDL statement become."""

    def ddl(self, statement: str) -> str:
        """``statement`` with ``{int}`` and ``{blob}`` in this dialect's types."""
        return statement.format_map(self.types)


SQLITE = Dialect("sqlite", {"int": "INTEGER", "blob": "BLOB"})
POSTGRES = Dialect("postgresql", {"int": "BIGINT", "blob": "BYTEA"})


@dataclass(frozen=True, slots=True)
class WriteLock:
    """What a PostgreSQL write transaction takes before its first statement, so that
    writers of one store queue up (SQLite's ``BEGIN IMMEDIATE`` already takes the
    file's one write lock, for every process)."""

    statement: str
    params: tuple[Any, ...] = ()


class Cursor(Protocol):
    """The rows a statement returned (either driver's cursor answers this)."""

    @property
    def rowcount(self) -> int:
        """Rows the statement changed."""

    def fetchone(self) -> Any:
        """The next row, or None."""

    def fetchall(self) -> list[Any]:
        """The remaining rows."""

    def __iter__(self) -> Iterator[Any]:
        """The remaining rows, one at a time."""


class _MappedCursor:
    """A cursor whose fetches map driver errors (SQLite steps through rows as they are
    fetched, so a failure can surface there)."""

    __slots__ = ("_cursor",)

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    @property
    def rowcount(self) -> int:
        return int(self._cursor.rowcount)

    def fetchone(self) -> Any:
        try:
            return self._cursor.fetchone()
        except _DRIVER_ERRORS as exc:
            raise _mapped(exc) from exc

    def fetchall(self) -> list[Any]:
        try:
            return list(self._cursor.fetchall())
        except _DRIVER_ERRORS as exc:
            raise _mapped(exc) from exc

    def __iter__(self) -> Iterator[Any]:
        try:
            yield from self._cursor
        except _DRIVER_ERRORS as exc:
            raise _mapped(exc) from exc


class Connection:
    """One connection, in autocommit mode outside ``transaction()``; SQL with ``?``."""

    def __init__(self, raw: sqlite3.Connection | psycopg.Connection[Any],
                 dialect: Dialect, *, write_lock: int | None = None) -> None:
        self.raw = raw
        """The driver's connection (for what this layer does not cover; avoid)."""
        self.dialect = dialect
        self._write_lock = write_lock
        """SQLite: the open lock file that ``transaction()`` takes (``Database.write_lock``)."""
        self._pg = dialect is POSTGRES
        self._texts: dict[str, str] = {}

    def _sql(self, sql: str, params: object) -> str:
        # psycopg reads placeholders only when parameters are given; then a literal "%"
        # must be doubled. Statements are constants: translate each once.
        if not self._pg or not params:
            return sql
        text = self._texts.get(sql)
        if text is None:
            text = self._texts[sql] = sql.replace("%", "%%").replace("?", "%s")
        return text

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        """Run one statement (``?`` placeholders) and return its rows."""
        raw = self.raw
        try:
            if isinstance(raw, sqlite3.Connection):
                cursor: Any = raw.execute(sql, params)
            else:
                cursor = raw.execute(self._sql(sql, params), params or None)
        except _DRIVER_ERRORS as exc:
            raise _mapped(exc) from exc
        return _MappedCursor(cursor)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement once per row of parameters."""
        try:
            if isinstance(self.raw, sqlite3.Connection):
                self.raw.executemany(sql, rows)
            else:
                with self.raw.cursor() as cursor:  # psycopg: executemany is a cursor's
                    cursor.executemany(self._sql(sql, True), rows)
        except _DRIVER_ERRORS as exc:
            raise _mapped(exc) from exc

    @contextmanager
    def transaction(self, lock: WriteLock | None = None) -> Iterator[None]:
        """One write transaction: committed when the block ends, rolled back when it raises.

        SQLite takes the file's write lock at once (``BEGIN IMMEDIATE``, waiting up
        to the busy timeout), after the database's ``write_lock`` file when it has
        one (module doc), held until the commit or rollback; PostgreSQL takes
        ``lock`` first when given (else only the row locks its statements take).
        Transactions do not nest.
        """
        if isinstance(self.raw, sqlite3.Connection):
            raw = self.raw
            held = self._write_lock
            if held is not None:
                try:
                    fcntl.flock(held, fcntl.LOCK_EX)  # blocks this thread, not the GIL
                except OSError as exc:
                    raise StorageError(f"cannot lock the database for writing: {exc}") from exc
            try:
                self.execute("BEGIN IMMEDIATE")
                try:
                    yield
                    self.execute("COMMIT")
                except BaseException:
                    if raw.in_transaction:
                        raw.rollback()
                    raise
            finally:
                if held is not None:
                    fcntl.flock(held, fcntl.LOCK_UN)
            return
        try:
            with self.raw.transaction():
                if lock is not None:
                    self.execute(lock.statement, lock.params)
                yield
        except _DRIVER_ERRORS as exc:
            raise _mapped(exc) from exc

    def wait_for_writer(self, lock: WriteLock | None = None) -> None:
        """Return once no other writer holds the write lock; nothing is written.

        SQLite with a ``write_lock`` file: that ``flock`` taken and let go at once (a
        writer of such a database holds it for its whole transaction, commit included).
        Otherwise an empty write transaction: ``BEGIN IMMEDIATE`` and ``COMMIT``, or on
        PostgreSQL ``lock`` in a transaction of its own. Only a wait, for a writer that
        takes turns with others: what a transaction reads is decided inside it.
        """
        held = self._write_lock
        if held is None:
            with self.transaction(lock):
                pass
            return
        if isinstance(self.raw, sqlite3.Connection) and self.raw.in_transaction:
            # letting the file go would free the lock that transaction holds
            raise StorageError("waiting for the writer from inside a write transaction")
        try:
            fcntl.flock(held, fcntl.LOCK_EX)  # blocks this thread, not the GIL
            fcntl.flock(held, fcntl.LOCK_UN)
        except OSError as exc:
            raise StorageError(f"cannot lock the database for writing: {exc}") from exc

    def table_exists(self, name: str) -> bool:
        """Whether a table of this name is in the schema this connection uses."""
        if self._pg:
            row = self.execute("SELECT to_regclass(?) IS NOT NULL", (name,)).fetchone()
            return bool(row[0])
        row = self.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                           (name,)).fetchone()
        return row is not None

    def columns(self, table: str) -> set[str]:
        """The column names of ``table`` (empty when there is no such table)."""
        if self._pg:
            rows = self.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND table_name = ?", (table,))
            return {str(r[0]) for r in rows}
        return {str(r[1]) for r in self.execute("SELECT * FROM pragma_table_info(?)", (table,))}

    def data_version(self, counter: str) -> int | None:
        """A number that moves when another connection commits a change.

        SQLite: ``PRAGMA data_version`` (the file's, whichever table changed).
        PostgreSQL: the row of ``counter``, which ``change_counter`` makes and its
        triggers bump; None when that row is missing (no change could be seen).
        """
        if self._pg:
            row = self.execute(f"SELECT version FROM {counter}").fetchone()  # noqa: S608 - a table name of the code's
            return None if row is None else int(row[0])
        return int(self.execute("PRAGMA data_version").fetchone()[0])

    @property
    def closed(self) -> bool:
        """Whether the connection is closed (PostgreSQL: also after the server dropped it)."""
        if isinstance(self.raw, sqlite3.Connection):
            return False
        return bool(self.raw.closed)

    def close(self) -> None:
        """Close the connection."""
        try:
            self.raw.close()
        except _DRIVER_ERRORS as exc:
            raise _mapped(exc) from exc
        finally:
            if self._write_lock is not None:
                os.close(self._write_lock)
                self._write_lock = None


@dataclass(frozen=True, slots=True)
class Database:
    """Where one store lives: an SQLite file or a PostgreSQL database."""

    dialect: Dialect
    path: Path | None = None
    """The SQLite file (None on PostgreSQL)."""
    dsn: str | None = field(default=None, repr=False)
    """The PostgreSQL DSN (None on SQLite); never shown, it may hold a password."""
    synchronous: str = "FULL"
    """SQLite's durability level (``FULL``: every commit fsynced)."""
    write_lock: Path | None = None
    """SQLite: a file that every write transaction ``flock``s before ``BEGIN IMMEDIATE``
    (module doc), for a database that several processes write in turn; None: SQLite's
    busy handler alone."""

    @classmethod
    def sqlite(cls, path: Path, *, synchronous: str = "FULL",
               write_lock: Path | None = None) -> Database:
        """An SQLite file (made with its folder on first connection), in WAL mode."""
        return cls(SQLITE, path=path, synchronous=synchronous, write_lock=write_lock)

    @classmethod
    def postgres(cls, dsn: str) -> Database:
        """A PostgreSQL database, shared by every instance that names it."""
        return cls(POSTGRES, dsn=dsn)

    @classmethod
    def of(cls, sqlite_path: Path, postgres_dsn: str | None, *,
           synchronous: str = "FULL", write_lock: Path | None = None) -> Database:
        """PostgreSQL when a DSN is set, else the SQLite file: what every store's settings mean."""
        if postgres_dsn:
            return cls.postgres(postgres_dsn)
        return cls.sqlite(sqlite_path, synchronous=synchronous, write_lock=write_lock)

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.dialect.name

    def connect(self, *, connect_timeout: int | None = None) -> Connection:
        """A new connection (blocking); ``StorageError`` when it cannot be made."""
        if self.path is not None:
            try:
                raw_sqlite = connect_sqlite(self.path, synchronous=self.synchronous)
            except sqlite3.Error as exc:
                raise StorageError(f"cannot open {self.path}: {exc}") from exc
            if self.write_lock is None:
                return Connection(raw_sqlite, SQLITE)
            try:
                # O_CLOEXEC: a program the process runs does not hold the lock file open.
                fd = os.open(self.write_lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                raw_sqlite.close()
                raise StorageError(f"cannot open {self.write_lock}: {exc}") from exc
            return Connection(raw_sqlite, SQLITE, write_lock=fd)
        assert self.dsn is not None
        try:
            raw: psycopg.Connection[Any] = psycopg.connect(
                self.dsn, autocommit=True, connect_timeout=connect_timeout)
        except psycopg.Error as exc:
            raise StorageError(f"cannot connect to PostgreSQL: {exc}") from exc
        return Connection(raw, POSTGRES)


def change_counter(counter: str, tables: Sequence[str], *, function: str) -> list[str]:
    """PostgreSQL statements that make ``counter``'s one row move once per transaction
    that writes any of ``tables`` (SQLite's ``PRAGMA data_version`` needs none).

    The function keeps the ``search_path`` it was made under, whatever the writer's;
    the ``xact`` column makes a transaction of many statements count once.
    """
    # Only names of the code's own tables and function are interpolated.
    statements = [
        f"""CREATE TABLE IF NOT EXISTS {counter} (
            one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
            version BIGINT NOT NULL
        )""",
        f"ALTER TABLE {counter} ADD COLUMN IF NOT EXISTS xact BIGINT",
        f"INSERT INTO {counter} (one, version) VALUES (TRUE, 0) ON CONFLICT DO NOTHING",  # noqa: S608 - see above
        f"""CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql
        SET search_path FROM CURRENT AS $$
        BEGIN
            UPDATE {counter} SET version = version + 1, xact = txid_current()
                WHERE xact IS DISTINCT FROM txid_current();
            RETURN NULL;
        END $$""",  # noqa: S608 - see above
    ]
    statements += [
        f"""CREATE OR REPLACE TRIGGER {table}_changed
        AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table}
        FOR EACH STATEMENT EXECUTE FUNCTION {function}()"""
        for table in tables
    ]
    return statements


class _Closeable(Protocol):
    def close(self) -> None: ...


R = TypeVar("R", bound=_Closeable)


class Worker(Generic[R]):
    """One thread that owns one connection (or a store made on one); coroutines hand it
    functions to run there, one at a time.

    The resource is made on the thread by ``factory`` at the first call, and made again
    when ``reopen`` says it is no longer usable (a PostgreSQL connection the server
    dropped). A driver error escaping a function is mapped to ``StorageError``.
    """

    def __init__(self, factory: Callable[[], R], *, name: str,
                 reopen: Callable[[R], bool] | None = None) -> None:
        self._factory = factory
        self._reopen = reopen
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._conn: R | None = None

    @classmethod
    def connection(cls, database: Database, *, name: str,
                   connect_timeout: int | None = None) -> Worker[Connection]:
        """A worker holding a connection to ``database``, reconnecting when it was dropped."""
        return Worker(lambda: database.connect(connect_timeout=connect_timeout), name=name,
                      reopen=lambda conn: conn.closed)

    def _call(self, fn: Callable[[R], T]) -> T:
        conn = self._conn
        if conn is not None and self._reopen is not None and self._reopen(conn):
            self._conn = conn = None
        if conn is None:
            conn = self._conn = self._factory()
        return fn(conn)

    async def run(self, fn: Callable[[R], T]) -> T:
        """Run ``fn(resource)`` on the worker's thread and return its result."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._call, fn)
        except _DRIVER_ERRORS as exc:
            raise _mapped(exc) from exc

    async def close(self) -> None:
        """Close the resource and stop the thread (the thread is not joined on the loop)."""

        def _close() -> None:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

        if self._conn is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._executor, _close)
        self._executor.shutdown(wait=False)  # idle: the close job above was the last
