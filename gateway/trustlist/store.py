"""Where the trust list's versions, proposals and votes are kept.

One store for both engines (``gateway.infra.sql``): SQLite ``data_dir/trustlist.db``
(WAL, every commit fsynced) by default, PostgreSQL when ``postgres_dsn`` is set,
so that every instance on it sees one history. The store is synchronous; the
gateway runs it on one worker thread, the CLI calls it directly. Its schema is
versioned (``TRUST_LIST_SCHEMA``, applied by ``open_trust_store``); versions are
append-only, a trigger refuses UPDATE and DELETE of them.

A write runs in one transaction under the store's write lock (SQLite ``BEGIN
IMMEDIATE``, PostgreSQL an advisory lock) and re-checks what its plan read, so a
concurrent writer makes it fail with ``StoreConflictError`` instead of
overwriting.

Errors::

    * TrustStoreError      the store is unreachable or failed
      x StoreConflictError a concurrent writer changed what a commit relied on
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import orjson

from gateway.infra.migrations import Schema, adopt_if_table, migrate, tables_migration
from gateway.infra.sql import (
    Cursor,
    Database,
    StorageError,
    WriteLock,
)

__all__ = [
    "TRUST_LIST_SCHEMA",
    "Proposal",
    "ProposalStatus",
    "SqlTrustStore",
    "StoreConflictError",
    "StoredVersion",
    "TrustListStore",
    "TrustStoreError",
    "Vote",
    "open_trust_store",
    "trust_store_database",
]


# -- errors --------------------------------------------------------------------------------


class TrustStoreError(Exception):
    """The trust-list store is unreachable or failed."""


class StoreConflictError(TrustStoreError):
    """A concurrent writer changed what a commit relied on; nothing was written."""



# -- records -------------------------------------------------------------------------------


class ProposalStatus(StrEnum):
    """Where a proposal stands."""

    PENDING = "pending"
    APPLIED = "applied"
    REJECTED = "rejected"
    FAILED = "failed"
    """Approved, but no longer applicable to the current list (``reason`` says why)."""


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """One kept version of the trust list."""

    version: int
    document: dict[str, Any]
    sha256: str
    created_at: str
    source: str
    """``start-up``, ``proposal`` or ``import``."""
    actor: str
    proposal_id: str | None = None

    def info(self) -> dict[str, Any]:
        """Everything but the document."""
        return {"version": self.version, "sha256": self.sha256, "created_at": self.created_at,
                "source": self.source, "actor": self.actor, "proposal_id": self.proposal_id}


@dataclass(frozen=True, slots=True)
class Vote:
    """An approval or rejection of a proposal."""

    operator: str
    approve: bool
    at: str
    comment: str | None = None


@dataclass(frozen=True, slots=True)
class Proposal:
    """A proposed change and the votes on it."""

    id: str
    created_at: str
    author: str
    base_version: int
    changes: list[dict[str, Any]]
    note: str | None
    status: ProposalStatus
    updated_at: str
    result_version: int | None = None
    reason: str | None = None
    votes: tuple[Vote, ...] = ()

    @property
    def approvals(self) -> list[str]:
        """Operators who approved."""
        return [v.operator for v in self.votes if v.approve]

    @property
    def rejections(self) -> list[str]:
        """Operators who rejected."""
        return [v.operator for v in self.votes if not v.approve]

    def to_json(self, approvals_required: int) -> dict[str, Any]:
        """The API form."""
        return {
            "id": self.id, "created_at": self.created_at, "author": self.author,
            "base_version": self.base_version, "changes": self.changes, "note": self.note,
            "status": self.status.value, "updated_at": self.updated_at,
            "result_version": self.result_version, "reason": self.reason,
            "approvals_required": approvals_required,
            "approvals": [{"operator": v.operator, "at": v.at, "comment": v.comment}
                          for v in self.votes if v.approve],
            "rejections": [{"operator": v.operator, "at": v.at, "comment": v.comment}
                           for v in self.votes if not v.approve],
        }



# -- the port ------------------------------------------------------------------------------


class TrustListStore(Protocol):
    """Where versions, proposals and votes are kept (synchronous; one thread per instance)."""

    def setup(self) -> None:
        """Bring the schema up to date (made when missing, adopted when unversioned)."""

    def current_version(self) -> int | None:
        """The highest version kept, or None when the store is empty."""

    def version(self, version: int | None = None) -> StoredVersion | None:
        """A version (default: the current one)."""

    def history(self) -> list[StoredVersion]:
        """Every version, oldest first (documents included)."""

    def add_version(self, row: StoredVersion, expected_current: int | None) -> None:
        """Keep ``row`` if the current version is still ``expected_current``."""

    def add_proposal(self, proposal: Proposal) -> None:
        """Keep a new proposal."""

    def proposal(self, proposal_id: str) -> Proposal | None:
        """A proposal with its votes."""

    def proposals(self, status: ProposalStatus | None = None) -> list[Proposal]:
        """Proposals, newest first."""

    def record_vote(self, proposal_id: str, vote: Vote, *, expected_votes: int,
                    status: ProposalStatus, reason: str | None,
                    version: StoredVersion | None, expected_current: int | None) -> None:
        """Add a vote and settle the proposal in one transaction, re-checking the plan."""

    def close(self) -> None:
        """Release the connection."""




# -- the schema ----------------------------------------------------------------------------


_TABLES = (
    ("CREATE TABLE IF NOT EXISTS trust_list_versions (version {int} PRIMARY KEY,"
     " document TEXT NOT NULL, sha256 TEXT NOT NULL, created_at TEXT NOT NULL,"
     " source TEXT NOT NULL, actor TEXT NOT NULL, proposal_id TEXT)"),
    ("CREATE TABLE IF NOT EXISTS trust_list_proposals (id TEXT PRIMARY KEY,"
     " created_at TEXT NOT NULL, author TEXT NOT NULL, base_version {int} NOT NULL,"
     " changes TEXT NOT NULL, note TEXT, status TEXT NOT NULL, updated_at TEXT NOT NULL,"
     " result_version {int}, reason TEXT)"),
    ("CREATE TABLE IF NOT EXISTS trust_list_votes (proposal_id TEXT NOT NULL"
     " REFERENCES trust_list_proposals (id), operator TEXT NOT NULL, approve {int} NOT NULL,"
     " at TEXT NOT NULL, comment TEXT, PRIMARY KEY (proposal_id, operator))"),
)
_GUARDS = {
    # Versions are kept: UPDATE and DELETE refused. Put back at every open, as they
    # always were (a guard dropped by hand does not stay dropped).
    "sqlite": tuple(
        f"CREATE TRIGGER IF NOT EXISTS trust_list_versions_no_{op.lower()}"
        f" BEFORE {op} ON trust_list_versions BEGIN SELECT RAISE(ABORT,"
        f" 'trust-list versions are kept: {op} refused'); END"
        for op in ("UPDATE", "DELETE")),
    "postgresql": (
        ("CREATE OR REPLACE FUNCTION trust_list_versions_refuse() RETURNS trigger"
         " LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION"
         " 'trust-list versions are kept: % refused', TG_OP; END $$"),
        ("CREATE OR REPLACE TRIGGER trust_list_versions_kept BEFORE UPDATE OR DELETE"
         " ON trust_list_versions FOR EACH ROW EXECUTE FUNCTION trust_list_versions_refuse()"),
    ),
}


TRUST_LIST_SCHEMA = Schema("trust_list", (
    tables_migration(1, "versions, proposals and votes", _TABLES, _GUARDS),
), adopt=adopt_if_table("trust_list_versions"))
"""The trust-list store's schema versions."""

_WRITE_LOCK = WriteLock("SELECT pg_advisory_xact_lock(?, ?)", (0x330500, 0x7457))
"""PostgreSQL: the store's one write lock (gateway, "tW"); SQLite: BEGIN IMMEDIATE."""
_VERSION_COLUMNS = "version, document, sha256, created_at, source, actor, proposal_id"
_PROPOSAL_COLUMNS = ("id, created_at, author, base_version, changes, note, status, updated_at,"
                     " result_version, reason")


# -- the adapter ---------------------------------------------------------------------------


class SqlTrustStore:
    """``TrustListStore`` on either engine; one connection, used from one thread."""

    def __init__(self, database: Database) -> None:
        self.backend = database.backend
        try:
            self._conn = database.connect()
        except StorageError as exc:
            raise TrustStoreError(str(exc)) from exc

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        try:
            return self._conn.execute(sql, params)
        except StorageError as exc:
            raise TrustStoreError(str(exc)) from exc

    @contextmanager
    def _write(self) -> Iterator[None]:
        try:
            with self._conn.transaction(_WRITE_LOCK):
                yield
        except StorageError as exc:
            raise TrustStoreError(str(exc)) from exc

    def setup(self) -> None:
        try:
            migrate(self._conn, TRUST_LIST_SCHEMA)
        except StorageError as exc:
            raise TrustStoreError(f"trust-list store schema: {exc}") from exc
        with self._write():
            for statement in _GUARDS[self._conn.dialect.name]:
                self._exec(statement)

    def close(self) -> None:
        try:
            self._conn.close()
        except StorageError as exc:
            raise TrustStoreError(str(exc)) from exc

    def current_version(self) -> int | None:
        row = self._exec("SELECT MAX(version) FROM trust_list_versions").fetchone()
        return None if row is None or row[0] is None else int(row[0])

    @staticmethod
    def _version(row: Sequence[Any]) -> StoredVersion:
        return StoredVersion(int(row[0]), orjson.loads(row[1]), str(row[2]), str(row[3]),
                             str(row[4]), str(row[5]), row[6])

    def version(self, version: int | None = None) -> StoredVersion | None:
        if version is None:
            version = self.current_version()
            if version is None:
                return None
        row = self._exec(
            f"SELECT {_VERSION_COLUMNS} FROM trust_list_versions WHERE version = ?",  # noqa: S608 - fixed column list
            (version,)).fetchone()
        return None if row is None else self._version(row)

    def history(self) -> list[StoredVersion]:
        rows = self._exec(
            f"SELECT {_VERSION_COLUMNS} FROM trust_list_versions ORDER BY version"  # noqa: S608 - fixed column list
        ).fetchall()
        return [self._version(r) for r in rows]

    def _insert_version(self, row: StoredVersion, expected_current: int | None) -> None:
        current = self.current_version()
        if current != expected_current:
            raise StoreConflictError(
                f"the current version is {current}, not {expected_current}: another change "
                "was applied meanwhile")
        if current is not None and row.version <= current:
            raise StoreConflictError(f"version {row.version} is not above {current}")
        self._exec(
            f"INSERT INTO trust_list_versions ({_VERSION_COLUMNS})"  # noqa: S608 - fixed column list
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (row.version, orjson.dumps(row.document).decode(), row.sha256, row.created_at,
             row.source, row.actor, row.proposal_id))

    def add_version(self, row: StoredVersion, expected_current: int | None) -> None:
        with self._write():
            self._insert_version(row, expected_current)

    def add_proposal(self, proposal: Proposal) -> None:
        with self._write():
            self._exec(
                f"INSERT INTO trust_list_proposals ({_PROPOSAL_COLUMNS})"  # noqa: S608 - fixed column list
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (proposal.id, proposal.created_at, proposal.author, proposal.base_version,
                 orjson.dumps(proposal.changes).decode(), proposal.note, proposal.status.value,
                 proposal.updated_at, proposal.result_version, proposal.reason))

    def _votes(self, proposal_id: str) -> tuple[Vote, ...]:
        rows = self._exec(
            "SELECT operator, approve, at, comment FROM trust_list_votes"
            " WHERE proposal_id = ? ORDER BY at, operator", (proposal_id,)).fetchall()
        return tuple(Vote(str(r[0]), bool(r[1]), str(r[2]), r[3]) for r in rows)

    def _proposal(self, row: Sequence[Any]) -> Proposal:
        return Proposal(
            id=str(row[0]), created_at=str(row[1]), author=str(row[2]),
            base_version=int(row[3]), changes=orjson.loads(row[4]), note=row[5],
            status=ProposalStatus(row[6]), updated_at=str(row[7]),
            result_version=None if row[8] is None else int(row[8]), reason=row[9],
            votes=self._votes(str(row[0])),
        )

    def proposal(self, proposal_id: str) -> Proposal | None:
        row = self._exec(
            f"SELECT {_PROPOSAL_COLUMNS} FROM trust_list_proposals WHERE id = ?",  # noqa: S608 - fixed column list
            (proposal_id,)).fetchone()
        return None if row is None else self._proposal(row)

    def proposals(self, status: ProposalStatus | None = None) -> list[Proposal]:
        sql = f"SELECT {_PROPOSAL_COLUMNS} FROM trust_list_proposals"  # noqa: S608 - fixed column list
        params: tuple[Any, ...] = ()
        if status is not None:
            sql += " WHERE status = ?"
            params = (status.value,)
        rows = self._exec(sql + " ORDER BY created_at DESC, id", params).fetchall()
        return [self._proposal(r) for r in rows]

    def record_vote(self, proposal_id: str, vote: Vote, *, expected_votes: int,
                    status: ProposalStatus, reason: str | None,
                    version: StoredVersion | None, expected_current: int | None) -> None:
        with self._write():
            row = self._exec(
                "SELECT status, (SELECT COUNT(*) FROM trust_list_votes WHERE proposal_id = ?)"
                " FROM trust_list_proposals WHERE id = ?", (proposal_id, proposal_id)).fetchone()
            pending = row is not None and row[0] == ProposalStatus.PENDING.value
            if not pending or int(row[1]) != expected_votes:
                raise StoreConflictError("the proposal changed meanwhile; look at it again")
            self._exec(
                "INSERT INTO trust_list_votes (proposal_id, operator, approve, at, comment)"
                " VALUES (?, ?, ?, ?, ?)",
                (proposal_id, vote.operator, int(vote.approve), vote.at, vote.comment))
            if version is not None:
                self._insert_version(version, expected_current)
            self._exec(
                "UPDATE trust_list_proposals SET status = ?, updated_at = ?,"
                " result_version = ?, reason = ? WHERE id = ?",
                (status.value, vote.at, None if version is None else version.version, reason,
                 proposal_id))


def trust_store_database(data_dir: Path, postgres_dsn: str | None) -> Database:
    """Where the settings keep the trust list: PostgreSQL, else ``data_dir/trustlist.db``."""
    return Database.of(data_dir / "trustlist.db", postgres_dsn)


def open_trust_store(data_dir: Path, postgres_dsn: str | None) -> TrustListStore:
    """The store the settings call for, its schema up to date (blocking)."""
    store = SqlTrustStore(trust_store_database(data_dir, postgres_dsn))
    try:
        store.setup()
    except BaseException:
        store.close()
        raise
    return store
