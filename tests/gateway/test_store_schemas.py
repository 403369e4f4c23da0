"""Every store's versioned schema, from an empty database and from the schema the gateway
made before versions were recorded (its DDL copied here), on SQLite and real PostgreSQL.

A database of the earlier release must be recognised as the version it is at (recorded as
adopted, nothing run again), brought up to date, and keep every row.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.audit import open_store as open_audit_store
from gateway.audit._store import EntryRow, StoredCheckpoint, audit_database
from gateway.credentials.store import (
    IdentityKind,
    add_identity,
    identity_database,
    identity_db_path,
    lookup_token,
    open_identities,
)
from gateway.infra.sql import Connection, Database, StorageError
from gateway.licences.store import (
    HolderKeyring,
    licence_database,
    open_repository,
    record_from_mapping,
)
from gateway.trustlist.store import (
    ProposalStatus,
    StoredVersion,
    TrustStoreError,
    open_trust_store,
    trust_store_database,
)
from tests.gateway.test_partner_api import licence_row

pytestmark = pytest.mark.allow_blocking  # the stores are synchronous; no event loop here

Place = tuple[Path, str | None]
"""A data folder, and the PostgreSQL DSN its settings name (None: SQLite in the folder)."""


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    """Each engine: SQLite files in the test's folder, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path, None
    return tmp_path, str(request.getfixturevalue("postgres_dsn"))


def _run(database: Database, statements: Sequence[str],
         rows: Sequence[tuple[str, Sequence[Any]]] = ()) -> None:
    """Make an earlier release's database: its DDL, then its rows."""
    conn = database.connect()
    try:
        for statement in statements:
            conn.execute(statement)
        for sql, params in rows:
            conn.execute(sql, params)
    finally:
        conn.close()


def _versions(database: Database, store: str) -> list[tuple[int, bool]]:
    """(version, adopted) recorded for ``store``."""
    conn = database.connect()
    try:
        return [(int(r[0]), bool(r[1])) for r in conn.execute(
            "SELECT version, adopted FROM schema_migrations WHERE store = ? ORDER BY version",
            (store,))]
    finally:
        conn.close()


def _columns(database: Database, table: str) -> set[str]:
    conn = database.connect()
    try:
        return conn.columns(table)
    finally:
        conn.close()


def _indexed_columns(database: Database, table: str) -> set[str]:
    """The columns an index of ``table`` (its primary key aside) leads with."""
    conn = database.connect()
    try:
        if database.backend == "sqlite":
            names = [r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?", (table,))]
            return {str(conn.execute(f"PRAGMA index_info('{name}')").fetchone()[2])
                    for name in names}
        rows = conn.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]"
            " WHERE c.relname = ? AND n.nspname = current_schema() AND NOT i.indisprimary",
            (table,))
        return {str(r[0]) for r in rows}
    finally:
        conn.close()


def _refused(database: Database, sql: str) -> str:
    """The message of the error an append-only guard raises for ``sql``."""
    conn = database.connect()
    try:
        with pytest.raises(StorageError) as caught:
            conn.execute(sql)
        return str(caught.value)
    finally:
        conn.close()


# -- the trust list --------------------------------------------------------------------------

_TRUST_TABLES = {
    "trust_list_versions": {"version", "document", "sha256", "created_at", "source", "actor",
                            "proposal_id"},
    "trust_list_proposals": {"id", "created_at", "author", "base_version", "changes", "note",
                             "status", "updated_at", "result_version", "reason"},
    "trust_list_votes": {"proposal_id", "operator", "approve", "at", "comment"},
}

_TRUST_TODAY = {
    "sqlite": [
        ("CREATE TABLE IF NOT EXISTS trust_list_versions (version INTEGER PRIMARY KEY, document"
         " TEXT NOT NULL, sha256 TEXT NOT NULL, created_at TEXT NOT NULL, source TEXT NOT NULL,"
         " actor TEXT NOT NULL, proposal_id TEXT)"),
        ("CREATE TABLE IF NOT EXISTS trust_list_proposals (id TEXT PRIMARY KEY, created_at TEXT"
         " NOT NULL, author TEXT NOT NULL, base_version INTEGER NOT NULL, changes TEXT NOT NULL,"
         " note TEXT, status TEXT NOT NULL, updated_at TEXT NOT NULL, result_version INTEGER,"
         " reason TEXT)"),
        ("CREATE TABLE IF NOT EXISTS trust_list_votes (proposal_id TEXT NOT NULL REFERENCES"
         " trust_list_proposals (id), operator TEXT NOT NULL, approve INTEGER NOT NULL, at TEXT"
         " NOT NULL, comment TEXT, PRIMARY KEY (proposal_id, operator))"),
        ("CREATE TRIGGER IF NOT EXISTS trust_list_versions_no_update BEFORE UPDATE ON"
         " trust_list_versions BEGIN SELECT RAISE(ABORT, 'trust-list versions are kept: UPDATE"
         " refused'); END"),
        ("CREATE TRIGGER IF NOT EXISTS trust_list_versions_no_delete BEFORE DELETE ON"
         " trust_list_versions BEGIN SELECT RAISE(ABORT, 'trust-list versions are kept: DELETE"
         " refused'); END"),
    ],
    "postgresql": [
        ("CREATE TABLE IF NOT EXISTS trust_list_versions (version BIGINT PRIMARY KEY, document"
         " TEXT NOT NULL, sha256 TEXT NOT NULL, created_at TEXT NOT NULL, source TEXT NOT NULL,"
         " actor TEXT NOT NULL, proposal_id TEXT)"),
        ("CREATE TABLE IF NOT EXISTS trust_list_proposals (id TEXT PRIMARY KEY, created_at TEXT"
         " NOT NULL, author TEXT NOT NULL, base_version BIGINT NOT NULL, changes TEXT NOT NULL,"
         " note TEXT, status TEXT NOT NULL, updated_at TEXT NOT NULL, result_version BIGINT,"
         " reason TEXT)"),
        ("CREATE TABLE IF NOT EXISTS trust_list_votes (proposal_id TEXT NOT NULL REFERENCES"
         " trust_list_proposals (id), operator TEXT NOT NULL, approve BIGINT NOT NULL, at TEXT"
         " NOT NULL, comment TEXT, PRIMARY KEY (proposal_id, operator))"),
        ("CREATE OR REPLACE FUNCTION trust_list_versions_refuse() RETURNS trigger LANGUAGE"
         " plpgsql AS $$ BEGIN RAISE EXCEPTION 'trust-list versions are kept: % refused', TG_OP;"
         " END $$"),
        ("CREATE OR REPLACE TRIGGER trust_list_versions_kept BEFORE UPDATE OR DELETE ON"
         " trust_list_versions FOR EACH ROW EXECUTE FUNCTION trust_list_versions_refuse()"),
    ],
}


def _trust_version(version: int) -> StoredVersion:
    document = {"version": version, "partners": []}
    return StoredVersion(version, document, hashlib.sha256(orjson.dumps(document)).hexdigest(),
                         "2026-01-02T03:04:05Z", "start-up", "gateway")


class TestTrustListStore:
    """``open_trust_store``: versions, proposals and votes."""

    def test_from_an_empty_database(self, place: Place) -> None:
        """The schema is made at version 1; versions are kept and guarded."""
        data_dir, dsn = place
        database = trust_store_database(data_dir, dsn)
        store = open_trust_store(data_dir, dsn)
        try:
            store.add_version(_trust_version(1), None)
            assert [1] == [v.version for v in store.history()]
        finally:
            store.close()
        assert [(1, False)] == _versions(database, "trust_list")
        for table, columns in _TRUST_TABLES.items():
            assert columns == _columns(database, table)
        assert "versions are kept" in _refused(database, "DELETE FROM trust_list_versions")

    def test_from_todays_schema(self, place: Place) -> None:
        """An earlier release's store is adopted at version 1, with its versions, proposals
        and votes; it takes new versions; a guard dropped by hand is put back."""
        data_dir, dsn = place
        database = trust_store_database(data_dir, dsn)
        version = _trust_version(1)
        _run(database, _TRUST_TODAY[database.backend], [
            (("INSERT INTO trust_list_versions (version, document, sha256, created_at, source,"
              " actor) VALUES (?, ?, ?, ?, ?, ?)"),
             (1, orjson.dumps(version.document).decode(), version.sha256, version.created_at,
              "start-up", "gateway")),
            (("INSERT INTO trust_list_proposals (id, created_at, author, base_version, changes,"
              " status, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)"),
             ("p-1", "2026-01-02T04:00:00Z", "olga", 1, "[]", "pending",
              "2026-01-02T04:00:00Z")),
            (("INSERT INTO trust_list_votes (proposal_id, operator, approve, at) VALUES"
              " (?, ?, ?, ?)"), ("p-1", "adam", 1, "2026-01-02T05:00:00Z")),
        ])
        drop = ("DROP TRIGGER trust_list_versions_no_delete" if dsn is None
                else "DROP TRIGGER trust_list_versions_kept ON trust_list_versions")
        _run(database, [drop])
        store = open_trust_store(data_dir, dsn)
        try:
            assert [version] == store.history()
            proposal = store.proposal("p-1")
            assert proposal is not None
            assert (ProposalStatus.PENDING, ["adam"]) == (proposal.status, proposal.approvals)
            store.add_version(_trust_version(2), 1)
            with pytest.raises(TrustStoreError, match="not 1"):
                store.add_version(_trust_version(3), 1)
        finally:
            store.close()
        assert [(1, True)] == _versions(database, "trust_list")
        for table, columns in _TRUST_TABLES.items():
            assert columns == _columns(database, table)
        assert "versions are kept" in _refused(database, "DELETE FROM trust_list_versions")


# -- the audit log ---------------------------------------------------------------------------

_AUDIT_TABLES = {
    "audit_entries": {"idx", "event_id", "ts_ms", "event_type", "outcome", "partner",
                      "matter", "record", "leaf_hash"},
    "audit_checkpoints": {"tree_size", "root_hash", "note", "created_ms"},
    "audit_meta": {"name", "value"},
    "audit_prune_grants": {"proposal_idx", "event_type", "end_idx", "cutoff_ms", "approval_idx",
                           "created_ms"},
}
_AUDIT_NAMES = ("audit_entries", "audit_checkpoints", "audit_meta")

_AUDIT_TODAY = {
    "sqlite": [
        ("CREATE TABLE IF NOT EXISTS audit_entries (idx INTEGER PRIMARY KEY, event_id TEXT NOT"
         " NULL UNIQUE, ts_ms INTEGER NOT NULL, event_type TEXT NOT NULL, outcome TEXT NOT NULL,"
         " partner TEXT, matter TEXT, record BLOB NOT NULL, leaf_hash BLOB NOT NULL)"),
        ("CREATE TABLE IF NOT EXISTS audit_checkpoints (tree_size INTEGER PRIMARY KEY, root_hash"
         " BLOB NOT NULL, note TEXT NOT NULL, created_ms INTEGER NOT NULL)"),
         "CREATE TABLE IF NOT EXISTS audit_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
         "CREATE INDEX IF NOT EXISTS audit_entries_ts ON audit_entries (ts_ms)",
        *(f"CREATE TRIGGER IF NOT EXISTS {name}_no_{op.lower()} BEFORE {op} ON {name} BEGIN"
          f" SELECT RAISE(ABORT, 'audit log is append-only: {op} refused'); END"
          for name in _AUDIT_NAMES for op in ("UPDATE", "DELETE")),
    ],
    "postgresql": [
        ("CREATE TABLE IF NOT EXISTS audit_entries (idx BIGINT PRIMARY KEY, event_id TEXT NOT"
         " NULL UNIQUE, ts_ms BIGINT NOT NULL, event_type TEXT NOT NULL, outcome TEXT NOT NULL,"
         " partner TEXT, matter TEXT, record BYTEA NOT NULL, leaf_hash BYTEA NOT NULL)"),
        ("CREATE TABLE IF NOT EXISTS audit_checkpoints (tree_size BIGINT PRIMARY KEY, root_hash"
         " BYTEA NOT NULL, note TEXT NOT NULL, created_ms BIGINT NOT NULL)"),
         "CREATE TABLE IF NOT EXISTS audit_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
         "CREATE INDEX IF NOT EXISTS audit_entries_ts ON audit_entries (ts_ms)",
        ("CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS"
         " $$ BEGIN RAISE EXCEPTION 'audit log is append-only: % refused on %', TG_OP,"
         " TG_TABLE_NAME; END $$"),
        *(statement for name in _AUDIT_NAMES for statement in (
            (f"CREATE OR REPLACE TRIGGER {name}_no_change BEFORE UPDATE OR DELETE ON {name} FOR"
             " EACH ROW EXECUTE FUNCTION audit_refuse_change()"),
            (f"CREATE OR REPLACE TRIGGER {name}_no_truncate BEFORE TRUNCATE ON {name} FOR EACH"
             " STATEMENT EXECUTE FUNCTION audit_refuse_change()"))),
    ],
}


def _entry(index: int) -> EntryRow:
    record = f"record {index}".encode()
    return EntryRow(f"event-{index}", 1_700_000_000_000 + index, "verification", "ok",
                    "310000", None, record, hashlib.sha256(b"\x00" + record).digest())


class TestAuditStore:
    """``gateway.audit.open_store``: entries, checkpoints and settings, append-only."""

    def test_from_an_empty_database(self, place: Place) -> None:
        """The schema is made at version 3; appends are sequenced and guarded."""
        data_dir, dsn = place
        database = audit_database(data_dir, dsn)
        store = open_audit_store(data_dir, dsn)
        try:
            assert (0, []) == store.append([_entry(0), _entry(1)], 0)
            assert 2 == store.size()
        finally:
            store.close()
        assert [(1, False), (2, False), (3, False)] == _versions(database, "audit")
        # Only the indexes the queries use: by time (the primary key aside).
        assert {"ts_ms"} == _indexed_columns(database, "audit_entries")
        for table, columns in _AUDIT_TABLES.items():
            assert columns == _columns(database, table)
        assert "append-only" in _refused(database, "DELETE FROM audit_entries")

    def test_wait_turn_waits_for_the_writer_holding_the_lock(self, place: Place) -> None:
        """``wait_turn`` returns at once when no writer holds the sequencer lock, waits
        while another connection's append holds it, and writes nothing itself."""
        data_dir, dsn = place
        store, other = open_audit_store(data_dir, dsn), open_audit_store(data_dir, dsn)
        holding, release = threading.Event(), threading.Event()

        def seal(first: int, foreign: list[bytes]) -> StoredCheckpoint:
            holding.set()  # inside the other's append transaction, its lock held
            release.wait(10)
            return StoredCheckpoint(first + 1, b"\x02" * 32, "a signed note", 1_700_000_000_000)

        appending = threading.Thread(target=lambda: other.append([_entry(0)], 0, seal))
        try:
            store.wait_turn()
            appending.start()
            assert holding.wait(10)
            waiting = threading.Thread(target=store.wait_turn)
            waiting.start()
            waiting.join(0.3)
            assert waiting.is_alive(), "wait_turn returned while the other writer held the lock"
            release.set()
            appending.join(10)
            waiting.join(10)
            assert not waiting.is_alive()
            assert 1 == store.size()
        finally:
            release.set()
            if appending.is_alive():
                appending.join(10)
            store.close()
            other.close()

    def test_checkpoint_at_most_a_size(self, place: Place) -> None:
        """``checkpoint_at_most``: the checkpoint of the largest tree within a size, on
        both engines (what a gateway following another by its kept nodes checks against)."""
        data_dir, dsn = place
        store = open_audit_store(data_dir, dsn)
        try:
            assert store.checkpoint_at_most(10) is None
            kept = [StoredCheckpoint(size, bytes([size]) * 32, f"note {size}",
                                     1_700_000_000_000 + size) for size in (3, 7, 12)]
            previous = None
            for checkpoint in kept:
                assert store.add_checkpoint(checkpoint, previous)
                previous = checkpoint.size
            assert store.checkpoint_at_most(2) is None
            assert [kept[0], kept[0], kept[1], kept[1], kept[2], kept[2]] == [
                store.checkpoint_at_most(size) for size in (3, 6, 7, 11, 12, 1 << 40)]
        finally:
            store.close()

    def test_from_todays_schema(self, place: Place) -> None:
        """An earlier release's log is adopted at version 1 with every entry, checkpoint and
        setting, then loses its unused event_id index (version 2) keeping every row; the
        next append takes the next index; a dropped guard is put back."""
        data_dir, dsn = place
        database = audit_database(data_dir, dsn)
        first, second = _entry(0), _entry(1)
        insert = ("INSERT INTO audit_entries (idx, event_id, ts_ms, event_type, outcome,"
                  " partner, matter, record, leaf_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
        _run(database, _AUDIT_TODAY[database.backend], [
            *((insert, (i, e.event_id, e.ts_ms, e.event_type, e.outcome, e.partner, e.matter,
                        e.record, e.leaf_hash)) for i, e in enumerate((first, second))),
            (("INSERT INTO audit_checkpoints (tree_size, root_hash, note, created_ms) VALUES"
              " (?, ?, ?, ?)"), (2, b"\x01" * 32, "a signed note", 1_700_000_000_500)),
            ("INSERT INTO audit_meta (name, value) VALUES (?, ?)", ("origin", "huzhou")),
        ])
        drop = ("DROP TRIGGER audit_entries_no_delete" if dsn is None
                else "DROP TRIGGER audit_entries_no_change ON audit_entries")
        _run(database, [drop])
        store = open_audit_store(data_dir, dsn)
        try:
            assert 2 == store.size()
            assert (second.record, second.leaf_hash) == store.entry(1)
            assert StoredCheckpoint(2, b"\x01" * 32, "a signed note", 1_700_000_000_500) == (
                store.latest_checkpoint())
            assert "huzhou" == store.set_meta_once("origin", "elsewhere")
            assert (2, []) == store.append([_entry(2)], 2)
            assert [(0, first.record, first.leaf_hash), (1, second.record, second.leaf_hash)] \
                == list(store.iter_entries())[:2]
        finally:
            store.close()
        assert [(1, True), (2, False), (3, False)] == _versions(database, "audit")
        assert {"ts_ms"} == _indexed_columns(database, "audit_entries")
        for table, columns in _AUDIT_TABLES.items():
            assert columns == _columns(database, table)
        assert "append-only" in _refused(database, "DELETE FROM audit_entries")


# -- the licence library ---------------------------------------------------------------------

_LICENCE_COLUMNS = {"identifier", "type_code", "holder_hmac", "lic", "state", "status_idx",
                    "content_sha256", "created_at", "updated_at"}
_LICENCES_TODAY = [
    """CREATE TABLE IF NOT EXISTS licences (
        identifier TEXT PRIMARY KEY,
        type_code TEXT NOT NULL,
        holder_hmac TEXT NOT NULL,
        lic TEXT NOT NULL,
        state TEXT NOT NULL,
        status_idx INTEGER NOT NULL UNIQUE,
        content_sha256 TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS licences_holder ON licences (holder_hmac, type_code)",
    "CREATE INDEX IF NOT EXISTS licences_type ON licences (type_code)",
]
_LICENCE_CHANGES_TODAY = [
    "SELECT pg_advisory_xact_lock(hashtext('ecert-gateway licences schema'))",
    """CREATE TABLE IF NOT EXISTS licence_changes (
        one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
        version BIGINT NOT NULL
    )""",
    "ALTER TABLE licence_changes ADD COLUMN IF NOT EXISTS xact BIGINT",
    "INSERT INTO licence_changes (one, version) VALUES (TRUE, 0) ON CONFLICT DO NOTHING",
    """CREATE OR REPLACE FUNCTION licence_changed() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
    BEGIN
        UPDATE licence_changes SET version = version + 1, xact = txid_current()
            WHERE xact IS DISTINCT FROM txid_current();
        RETURN NULL;
    END $$""",
    """CREATE OR REPLACE TRIGGER licences_changed
        AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON licences
        FOR EACH STATEMENT EXECUTE FUNCTION licence_changed()""",
]
"""PostgreSQL, as the store has made it since its change counter counts transactions."""
_LICENCE_CHANGES_FIRST = [
    """CREATE TABLE IF NOT EXISTS licence_changes (
        one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
        version BIGINT NOT NULL
    )""",
    "INSERT INTO licence_changes (one, version) VALUES (TRUE, 0) ON CONFLICT DO NOTHING",
    """CREATE OR REPLACE FUNCTION licence_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE licence_changes SET version = version + 1;
        RETURN NULL;
    END $$""",
    """CREATE OR REPLACE TRIGGER licences_changed
        AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON licences
        FOR EACH STATEMENT EXECUTE FUNCTION licence_changed()""",
]
"""PostgreSQL, as the first change counter was made (before the one ``ALTER``): it counted
statements, not transactions."""


def _licence_rows(data_dir: Path, serials: Sequence[int]) -> list[tuple[str, Sequence[Any]]]:
    """INSERTs of licences as the earlier release stored them."""
    keyring = HolderKeyring.load(data_dir)
    rows: list[tuple[str, Sequence[Any]]] = []
    for index, serial in enumerate(serials):
        record = record_from_mapping(licence_row(serial))
        holder = keyring.pseudonym(str(record.lic["holder_code_type"]),
                                   str(record.lic["holder_code"]))
        rows.append((("INSERT INTO licences (identifier, type_code, holder_hmac, lic, state,"
                      " status_idx, content_sha256, created_at, updated_at) VALUES"
                      " (?, ?, ?, ?, ?, ?, ?, ?, ?)"),
                     (record.identifier, record.type_code, holder,
                      orjson.dumps(dict(record.lic)).decode(), record.state.value, index,
                      record.content_sha256(), "2026-01-02T03:04:05Z", "2026-01-02T03:04:05Z")))
    return rows


def _change_count(database: Database) -> int:
    conn = database.connect()
    try:
        return int(conn.execute("SELECT version FROM licence_changes").fetchone()[0])
    finally:
        conn.close()


class TestLicenceStore:
    """``open_repository`` (and the gateway's store, which runs the same set-up)."""

    def test_from_an_empty_database(self, place: Place) -> None:
        """The schema is made at version 2 (2 is PostgreSQL's change counter)."""
        data_dir, dsn = place
        database = licence_database(data_dir, dsn)
        keyring = HolderKeyring.load(data_dir)
        with open_repository(data_dir, dsn) as repo:
            counts = repo.import_records([record_from_mapping(licence_row(n))
                                          for n in (1, 2)], keyring)
        assert 2 == counts.added
        assert [(1, False), (2, False)] == _versions(database, "licences")
        assert _LICENCE_COLUMNS == _columns(database, "licences")
        if dsn is not None:
            assert {"one", "version", "xact"} == _columns(database, "licence_changes")
            assert 1 == _change_count(database)

    def test_from_todays_schema(self, place: Place) -> None:
        """An earlier release's library is adopted at version 2 with its licences and their
        status indices; an import updates and adds to it (on PostgreSQL: counted once)."""
        data_dir, dsn = place
        database = licence_database(data_dir, dsn)
        ddl = _LICENCES_TODAY + ([] if dsn is None else _LICENCE_CHANGES_TODAY)
        self._adopted(data_dir, dsn, ddl)
        assert [(1, True), (2, True)] == _versions(database, "licences")

    @pytest.mark.postgres
    def test_from_the_first_change_counter(self, tmp_path: Path, postgres_dsn: str) -> None:
        """PostgreSQL's first change counter (no ``xact``: it counted statements) is adopted
        at version 1 and brought to 2 by the one ALTER; it then counts transactions."""
        database = licence_database(tmp_path, postgres_dsn)
        self._adopted(tmp_path, postgres_dsn, _LICENCES_TODAY + _LICENCE_CHANGES_FIRST)
        assert [(1, True), (2, False)] == _versions(database, "licences")

    @staticmethod
    def _adopted(data_dir: Path, dsn: str | None, ddl: list[str]) -> None:
        database = licence_database(data_dir, dsn)
        _run(database, ddl, _licence_rows(data_dir, (1, 2)))
        keyring = HolderKeyring.load(data_dir)
        revoked = record_from_mapping({**licence_row(2), "state": "revoked"})
        changes = None if dsn is None else _change_count(database)
        with open_repository(data_dir, dsn) as repo:
            found = repo.by_identifier(record_from_mapping(licence_row(1)).identifier)
            assert found is not None
            assert 0 == found.status_idx
            counts = repo.import_records(
                [revoked, *(record_from_mapping(licence_row(n)) for n in range(3, 40))],
                keyring)
            assert (37, 1) == (counts.added, counts.updated)
            entries = repo.status_entries()
        assert (39, {1: 1}) == (entries.size, dict(entries.values))
        assert _LICENCE_COLUMNS == _columns(database, "licences")
        if changes is not None:
            assert {"one", "version", "xact"} == _columns(database, "licence_changes")
            assert changes + 1 == _change_count(database)  # one import, one transaction


# -- identities ------------------------------------------------------------------------------

_IDENTITY_COLUMNS = {"token_sha256", "kind", "name", "role", "created_at", "disabled",
                     "expires_at", "rotated_at", "disabled_at", "disabled_by", "disabled_reason",
                     "revision"}
_IDENTITIES_TODAY = [
    """CREATE TABLE IF NOT EXISTS identities (
        token_sha256 TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        role TEXT,
        created_at TEXT NOT NULL,
        disabled INTEGER NOT NULL DEFAULT 0,
        UNIQUE (kind, name)
    )""",
    "ALTER TABLE identities ADD COLUMN expires_at TEXT",
    "ALTER TABLE identities ADD COLUMN rotated_at TEXT",
    "ALTER TABLE identities ADD COLUMN disabled_at TEXT",
    "ALTER TABLE identities ADD COLUMN disabled_by TEXT",
    "ALTER TABLE identities ADD COLUMN disabled_reason TEXT",
    "ALTER TABLE identities ADD COLUMN revision INTEGER NOT NULL DEFAULT 0",
    """CREATE TABLE IF NOT EXISTS retired_secrets (
        token_sha256 TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        retired_at TEXT NOT NULL,
        valid_until TEXT NOT NULL,
        FOREIGN KEY (kind, name) REFERENCES identities (kind, name)
    )""",
    "CREATE INDEX IF NOT EXISTS retired_secrets_owner ON retired_secrets (kind, name)",
    "PRAGMA user_version = 1",
]
"""SQLite ``identity.db`` at ``PRAGMA user_version`` 1 (identities never were in PostgreSQL;
version 0, the first table alone, is covered in test_identity_cli and test_credentials_api)."""


def _sha(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TestIdentityStore:
    """``open_identities``: identities and their replaced secrets."""

    def test_from_an_empty_database(self, place: Place) -> None:
        """The schema is made at version 2; a key added is found."""
        data_dir, dsn = place
        database = identity_database(data_dir, dsn)
        key = add_identity(data_dir, IdentityKind.CLIENT, "window-01", postgres_dsn=dsn)
        assert "window-01" == getattr(lookup_token(data_dir, key, postgres_dsn=dsn), "name", None)
        assert [(1, False), (2, False)] == _versions(database, "identities")
        assert _IDENTITY_COLUMNS == _columns(database, "identities")
        if dsn is not None:
            assert not identity_db_path(data_dir).exists()

    def test_from_todays_schema(self, tmp_path: Path) -> None:
        """An identity.db at user_version 1 is adopted at version 2: its keys, a disabled
        operator and a replaced secret inside its overlap all behave as before, and the
        user_version earlier gateways read stays 1."""
        key, old_key, token = "ecg_c_" + "a" * 43, "ecg_c_" + "o" * 43, "ecg_o_" + "t" * 43
        until = (datetime.now(UTC) + timedelta(hours=1)).isoformat(timespec="seconds")
        database = identity_database(tmp_path)
        _run(database, _IDENTITIES_TODAY, [
            (("INSERT INTO identities (token_sha256, kind, name, role, created_at, rotated_at,"
              " revision) VALUES (?, 'client', 'window-01', NULL, ?, ?, 1)"),
             (_sha(key), "2025-01-02T03:04:05+00:00", "2025-06-01T00:00:00+00:00")),
            (("INSERT INTO retired_secrets (token_sha256, kind, name, retired_at, valid_until)"
              " VALUES (?, 'client', 'window-01', ?, ?)"),
             (_sha(old_key), "2025-06-01T00:00:00+00:00", until)),
            (("INSERT INTO identities (token_sha256, kind, name, role, created_at, disabled,"
              " disabled_by) VALUES (?, 'operator', 'olga', 'approver', ?, 1, 'adam')"),
             (_sha(token), "2025-01-02T03:04:05+00:00")),
        ])
        assert "window-01" == getattr(lookup_token(tmp_path, key), "name", None)
        assert "window-01" == getattr(lookup_token(tmp_path, old_key), "name", None)
        assert lookup_token(tmp_path, token) is None
        assert [(1, True), (2, True)] == _versions(database, "identities")
        conn: Connection = open_identities(tmp_path)
        try:
            assert 1 == conn.execute("PRAGMA user_version").fetchone()[0]
            assert _IDENTITY_COLUMNS == conn.columns("identities")
        finally:
            conn.close()


# -- every store at once -----------------------------------------------------------------------


class TestInstancesStartingAtOnce:
    """Two instances opening every store of one empty database at the same moment."""

    def test_every_store_opens_once_migrated(self, place: Place) -> None:
        """Each of two threads opens the four stores (in opposite orders) on an empty
        database; none fails, and each store's versions are recorded once."""
        data_dir, dsn = place

        def trust() -> None:
            open_trust_store(data_dir, dsn).close()

        def audit() -> None:
            open_audit_store(data_dir, dsn).close()

        def licences() -> None:
            with open_repository(data_dir, dsn):
                pass

        def identities() -> None:
            open_identities(data_dir, dsn).close()

        openers = [trust, audit, licences, identities]
        gate = threading.Barrier(2)
        errors: list[BaseException] = []

        def instance(order: list[Callable[[], None]]) -> None:
            try:
                gate.wait()
                for opener in order:
                    opener()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=instance, args=(order,))
                   for order in (openers, openers[::-1])]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert [] == errors
        database = identity_database(data_dir, dsn)
        assert [(1, False)] == _versions(trust_store_database(data_dir, dsn), "trust_list")
        assert [(1, False), (2, False), (3, False)] == _versions(audit_database(data_dir, dsn),
                                                                 "audit")
        assert [(1, False), (2, False)] == _versions(licence_database(data_dir, dsn), "licences")
        assert [(1, False), (2, False)] == _versions(database, "identities")
