"""The migration runner: versions recorded, adopted, refused, and safe against a second migrator."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.infra.migrations import Migration, Schema, applied_version, migrate
from gateway.infra.sql import Connection, Database, SchemaError, StorageError

pytestmark = pytest.mark.allow_blocking  # the migrators run on threads the test starts

_NOTES = "CREATE TABLE notes (id {int} PRIMARY KEY, body TEXT NOT NULL)"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    """Each engine: an SQLite file in the test's folder, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return Database.sqlite(tmp_path / "test.db")
    return Database.postgres(str(request.getfixturevalue("postgres_dsn")))


def _schema(*, step: Callable[[Connection], None] | None = None,
            adopt: Callable[[Connection], int] | None = None,
            third: Migration | None = None) -> Schema:
    """``notes``: version 1 makes the table, 2 adds a column (and runs ``step``)."""
    migrations = [
        Migration(1, "notes", {"sqlite": (_NOTES.format(int="INTEGER"),),
                               "postgresql": (_NOTES.format(int="BIGINT"),)}),
        Migration(2, "notes get an author", {
            "sqlite": ("ALTER TABLE notes ADD COLUMN author TEXT",),
            "postgresql": ("ALTER TABLE notes ADD COLUMN author TEXT",)}, step=step),
    ]
    if third is not None:
        migrations.append(third)
    if adopt is None:
        return Schema("notes", tuple(migrations))
    return Schema("notes", tuple(migrations), adopt=adopt)


def _recorded(conn: Connection, store: str = "notes") -> list[tuple[int, str, bool]]:
    rows = conn.execute("SELECT version, name, adopted FROM schema_migrations WHERE store = ?"
                        " ORDER BY version", (store,)).fetchall()
    return [(int(r[0]), str(r[1]), bool(r[2])) for r in rows]


class TestMigrate:
    """What ``migrate`` writes and refuses."""

    def test_from_an_empty_database(self, database: Database) -> None:
        """Every version is applied in order and recorded; the schema is usable."""
        conn = database.connect()
        try:
            assert 2 == migrate(conn, _schema())
            assert [(1, "notes", False), (2, "notes get an author", False)] == _recorded(conn)
            assert {"id", "body", "author"} == conn.columns("notes")
            assert 2 == applied_version(conn, "notes")
            assert applied_version(conn, "another store") is None
        finally:
            conn.close()

    def test_an_up_to_date_database_is_only_read(self, tmp_path: Path) -> None:
        """A second open takes no lock: it goes through while another process holds the
        file's write lock (it would otherwise wait for the busy timeout, 30 s)."""
        database = Database.sqlite(tmp_path / "test.db")
        conn, writer = database.connect(), database.connect()
        try:
            migrate(conn, _schema())
            writer.execute("BEGIN IMMEDIATE")
            started = time.monotonic()
            assert 2 == migrate(conn, _schema())
            assert time.monotonic() - started < 1.0
            writer.execute("ROLLBACK")
        finally:
            conn.close()
            writer.close()

    def test_a_database_from_before_versions_is_adopted(self, database: Database) -> None:
        """Tables made before versions were recorded count as the version ``adopt`` names
        (recorded as adopted, not run again); the later versions run; rows stay."""
        conn = database.connect()
        try:
            conn.execute(conn.dialect.ddl(_NOTES))
            conn.execute("INSERT INTO notes (id, body) VALUES (?, ?)", (1, "kept"))
            schema = _schema(adopt=lambda c: 1 if c.table_exists("notes") else 0)
            assert 2 == migrate(conn, schema)
            assert [(1, "notes", True), (2, "notes get an author", False)] == _recorded(conn)
            assert [(1, "kept", None)] == [tuple(r) for r in conn.execute(
                "SELECT id, body, author FROM notes")]
        finally:
            conn.close()

    def test_a_newer_database_is_refused_untouched(self, database: Database) -> None:
        """A version this code does not know: SchemaError, and nothing is written."""
        conn = database.connect()
        try:
            newer = _schema(third=Migration(3, "notes get a title", {
                "sqlite": ("ALTER TABLE notes ADD COLUMN title TEXT",),
                "postgresql": ("ALTER TABLE notes ADD COLUMN title TEXT",)}))
            migrate(conn, newer)
            with pytest.raises(SchemaError, match="notes schema is at version 3; this gateway "
                                                  "knows up to 2"):
                migrate(conn, _schema())
            assert 3 == len(_recorded(conn))
        finally:
            conn.close()

    def test_an_adopted_database_newer_than_known_is_refused(self, database: Database) -> None:
        """``adopt`` naming a version past the newest known is refused the same way."""
        conn = database.connect()
        try:
            with pytest.raises(SchemaError):
                migrate(conn, _schema(adopt=lambda _: 5))
            assert applied_version(conn, "notes") is None
            assert not conn.table_exists("notes")
        finally:
            conn.close()

    def test_a_failing_migration_leaves_the_version_before(self, database: Database) -> None:
        """A run is one transaction: when version 2 fails, nothing of the run is kept
        (version 1 of the same run included); from version 1, the database stays at 1."""
        conn = database.connect()
        try:
            def fail(_: Connection) -> None:
                raise StorageError("the step failed")

            with pytest.raises(StorageError, match="the step failed"):
                migrate(conn, _schema(step=fail))
            assert not conn.table_exists("notes")
            assert applied_version(conn, "notes") is None
            migrate(conn, Schema("notes", _schema().migrations[:1]))
            with pytest.raises(StorageError):
                migrate(conn, _schema(step=fail))
            assert 1 == applied_version(conn, "notes")
            assert {"id", "body"} == conn.columns("notes")
        finally:
            conn.close()

    def test_versions_must_run_from_one_in_order(self) -> None:
        """A schema with a gap or out of order is a programming error, caught at import."""
        with pytest.raises(ValueError, match=r"1\.\.N"):
            Schema("bad", (Migration(1, "a"), Migration(3, "c")))


class TestConcurrentMigrators:
    """Two processes starting at once on one database."""

    def test_two_migrators_apply_each_version_once(self, database: Database) -> None:
        """Both start together on an empty database; the step of version 2 runs once, slowly
        enough for the second to arrive while the first holds the lock; both end at 2."""
        runs: list[str] = []
        gate = threading.Barrier(2)

        def slow_step(conn: Connection) -> None:
            runs.append(threading.current_thread().name)
            time.sleep(0.3)

        schema = _schema(step=slow_step)
        results: dict[str, int | BaseException] = {}

        def migrator() -> None:
            name = threading.current_thread().name
            conn = database.connect()
            try:
                gate.wait()
                results[name] = migrate(conn, schema)
            except BaseException as exc:
                results[name] = exc
            finally:
                conn.close()

        threads = [threading.Thread(target=migrator, name=f"migrator-{n}") for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert {"migrator-0": 2, "migrator-1": 2} == results
        assert 1 == len(runs)
        conn = database.connect()
        try:
            assert [1, 2] == [v for v, _, _ in _recorded(conn)]
        finally:
            conn.close()

    def test_two_stores_migrating_at_once_share_the_versions_table(
            self, database: Database) -> None:
        """Two stores' first migrations race to make ``schema_migrations``: both succeed."""
        other = Schema("others", (Migration(1, "others", {
            "sqlite": ("CREATE TABLE others (id INTEGER PRIMARY KEY)",),
            "postgresql": ("CREATE TABLE others (id BIGINT PRIMARY KEY)",)}),))
        gate = threading.Barrier(2)
        errors: list[BaseException] = []

        def run(schema: Schema) -> None:
            conn = database.connect()
            try:
                gate.wait()
                migrate(conn, schema)
            except BaseException as exc:
                errors.append(exc)
            finally:
                conn.close()

        threads = [threading.Thread(target=run, args=(s,)) for s in (_schema(), other)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert [] == errors
        conn = database.connect()
        try:
            assert 2 == applied_version(conn, "notes")
            assert 1 == applied_version(conn, "others")
        finally:
            conn.close()
