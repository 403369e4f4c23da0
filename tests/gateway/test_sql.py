"""The SQL layer every store runs on: one SQL text, SQLite or real PostgreSQL underneath."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from gateway.infra.sql import (
    Connection,
    ConstraintError,
    Database,
    StorageError,
    Worker,
    WriteLock,
    change_counter,
)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    """Each engine: an SQLite file in the test's folder, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return Database.sqlite(tmp_path / "test.db")
    return Database.postgres(str(request.getfixturevalue("postgres_dsn")))


def _table(conn: Connection) -> None:
    conn.execute(conn.dialect.ddl(
        "CREATE TABLE things (id {int} PRIMARY KEY, name TEXT NOT NULL, data {blob})"))


class TestConnection:
    """Statements, transactions and the catalogue, written once for both engines."""

    def test_placeholders_bytes_and_a_literal_percent(self, database: Database) -> None:
        """``?`` works on both; bytes come back as bytes; a ``%`` in the text stays literal."""
        conn = database.connect()
        try:
            _table(conn)
            conn.executemany("INSERT INTO things (id, name, data) VALUES (?, ?, ?)",
                             [(1, "50% off", b"\x00\xff"), (2, "whole", None)])
            rows = conn.execute("SELECT id, data FROM things WHERE name LIKE '%\\%%' ESCAPE '\\'"
                                " AND id >= ? ORDER BY id", (1,)).fetchall()
            assert [(1, b"\x00\xff")] == [(int(r[0]), bytes(r[1])) for r in rows]
            upserted = conn.execute("INSERT INTO things (id, name) VALUES (?, ?)"
                                    " ON CONFLICT (id) DO NOTHING", (2, "other"))
            assert 0 == upserted.rowcount
        finally:
            conn.close()

    def test_a_transaction_is_all_or_nothing(self, database: Database) -> None:
        """A block that raises keeps nothing; a broken key is a ConstraintError; the
        connection serves on afterwards."""
        conn = database.connect()
        try:
            _table(conn)

            def regret() -> None:
                with conn.transaction():
                    conn.execute("INSERT INTO things (id, name) VALUES (?, ?)", (1, "kept?"))
                    raise RuntimeError("the caller changed its mind")

            def twice() -> None:
                with conn.transaction():
                    conn.execute("INSERT INTO things (id, name) VALUES (?, ?)", (2, "first"))
                    conn.execute("INSERT INTO things (id, name) VALUES (?, ?)", (2, "twice"))

            with pytest.raises(RuntimeError):
                regret()
            with pytest.raises(ConstraintError):
                twice()
            lock = WriteLock("SELECT pg_advisory_xact_lock(?, ?)", (1, 2))
            with conn.transaction(lock):
                conn.execute("INSERT INTO things (id, name) VALUES (?, ?)", (3, "third"))
            assert [3] == [int(r[0]) for r in conn.execute("SELECT id FROM things")]
        finally:
            conn.close()

    def test_a_failed_statement_is_a_storage_error(self, database: Database) -> None:
        """The driver's error is mapped, its message kept."""
        conn = database.connect()
        try:
            with pytest.raises(StorageError, match="no_such_table") as caught:
                conn.execute("SELECT * FROM no_such_table")
            assert not isinstance(caught.value, ConstraintError)
        finally:
            conn.close()

    def test_catalogue(self, database: Database) -> None:
        """Which tables exist and which columns they have."""
        conn = database.connect()
        try:
            assert not conn.table_exists("things")
            assert set() == conn.columns("things")
            _table(conn)
            assert conn.table_exists("things")
            assert {"id", "name", "data"} == conn.columns("things")
        finally:
            conn.close()

    def test_another_connections_commit_moves_the_data_version(self, database: Database) -> None:
        """A transaction of three inserts by another connection moves the number (on
        PostgreSQL: exactly once); reading does not."""
        conn, other = database.connect(), database.connect()
        try:
            _table(conn)
            if database.backend == "postgresql":
                for statement in change_counter("things_changes", ("things",),
                                                function="things_changed"):
                    conn.execute(statement)
            before = conn.data_version("things_changes")
            assert before is not None
            conn.execute("SELECT COUNT(*) FROM things").fetchone()
            assert before == conn.data_version("things_changes")
            with other.transaction():
                for n in range(3):
                    other.execute("INSERT INTO things (id, name) VALUES (?, ?)", (n, "x"))
            after = conn.data_version("things_changes")
            assert after is not None
            assert after != before
            if database.backend == "postgresql":
                assert before + 1 == after
        finally:
            conn.close()
            other.close()

    @pytest.mark.allow_blocking
    def test_waiting_for_the_writer_queues_on_the_lock_file_alone(self, tmp_path: Path) -> None:
        """With a ``write_lock`` file, ``wait_for_writer`` waits while another connection's
        transaction holds that file, and takes no lock of SQLite's own: it returns while a
        writer that skipped the file holds SQLite's (its commit decides nothing here).
        Without the file it is an empty write transaction, which SQLite's lock holds up."""
        locked = Database.sqlite(tmp_path / "locked.db", write_lock=tmp_path / "locked.lock")
        waiter, holder = locked.connect(), locked.connect()
        try:
            with holder.transaction():
                done = threading.Thread(target=waiter.wait_for_writer)
                done.start()
                done.join(0.3)
                assert done.is_alive(), "returned while the other held the lock file"
            done.join(10)
            assert not done.is_alive()
            holder.raw.execute("BEGIN IMMEDIATE")  # SQLite's lock, not the file's
            try:
                started = time.monotonic()
                waiter.wait_for_writer()
                assert time.monotonic() - started < 1.0
            finally:
                holder.raw.execute("ROLLBACK")
            # From inside its own transaction it would let go of the file that transaction
            # holds: refused.
            with holder.transaction(), pytest.raises(StorageError, match="inside"):
                holder.wait_for_writer()
            done = threading.Thread(target=waiter.wait_for_writer)
            done.start()
            done.join(10)
            assert not done.is_alive(), "the lock file was left held"
        finally:
            waiter.close()
            holder.close()
        plain = Database.sqlite(tmp_path / "plain.db")
        waiter, holder = plain.connect(), plain.connect()
        try:
            holder.raw.execute("BEGIN IMMEDIATE")
            done = threading.Thread(target=waiter.wait_for_writer)
            done.start()
            done.join(0.3)
            assert done.is_alive(), "returned while the other held SQLite's write lock"
            holder.raw.execute("ROLLBACK")
            done.join(10)
            assert not done.is_alive()
        finally:
            waiter.close()
            holder.close()

    def test_an_unreachable_database_is_a_storage_error(self, tmp_path: Path) -> None:
        """Neither engine's connect error escapes as the driver's."""
        with pytest.raises(StorageError, match="cannot open"):
            Database.sqlite(tmp_path).connect()  # a folder, not a database file
        with pytest.raises(StorageError, match="cannot connect to PostgreSQL"):
            Database.postgres("postgresql://nobody@127.0.0.1:1/none").connect(connect_timeout=2)

    def test_the_dsn_is_never_shown(self) -> None:
        """A DSN may hold a password: the database's repr leaves it out."""
        assert "s3cret" not in repr(Database.postgres("postgresql://u:s3cret@db/gw"))


class TestWorker:
    """One thread per connection, driven from the event loop."""

    async def test_runs_off_the_loop_and_maps_driver_errors(self, database: Database) -> None:
        """Functions run on the worker's thread (the blocking guard would fail the test
        otherwise); a driver error raised inside one arrives as a StorageError."""
        worker = Worker.connection(database, name="test-sql")
        try:
            await worker.run(_table)
            await worker.run(lambda c: c.execute("INSERT INTO things (id, name) VALUES (?, ?)",
                                                 (1, "one")))

            def raw_failure(conn: Connection) -> None:
                conn.raw.execute("SELECT * FROM no_such_table")

            with pytest.raises(StorageError):
                await worker.run(raw_failure)
            count = await worker.run(lambda c: c.execute("SELECT COUNT(*) FROM things")
                                     .fetchone()[0])
            assert 1 == int(count)
        finally:
            await worker.close()

    @pytest.mark.postgres
    async def test_a_dropped_connection_is_made_again(self, postgres_dsn: str) -> None:
        """When PostgreSQL drops the connection, the call that finds out fails and the next
        one connects again."""
        worker = Worker.connection(Database.postgres(postgres_dsn), name="test-sql")
        try:
            pid = await worker.run(lambda c: c.execute("SELECT pg_backend_pid()").fetchone()[0])
            other = await asyncio.to_thread(Database.postgres(postgres_dsn).connect)
            try:
                await asyncio.to_thread(
                    lambda: other.execute("SELECT pg_terminate_backend(?)", (pid,)).fetchone())
            finally:
                await asyncio.to_thread(other.close)
            with pytest.raises(StorageError):
                await worker.run(lambda c: c.execute("SELECT 1").fetchone())
            again = await worker.run(lambda c: c.execute("SELECT pg_backend_pid()").fetchone()[0])
            assert pid != again
        finally:
            await worker.close()
