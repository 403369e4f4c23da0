"""Local systems' API keys and operators' tokens, from issue to revocation.

Both are random secrets printed once (by the CLI, or by the admin API's
rotation); only their SHA-256 is stored (they carry 256 bits of entropy, so an
unkeyed hash is not brute-forceable). They are kept where the settings keep
every store (``gateway.infra.sql``): the data folder's ``identity.db``, or
PostgreSQL when ``postgres_dsn`` is set, so that every instance on it shares
them. The running gateway and the CLI open the same one, so a key made while
the gateway runs is honoured on its next lookup.

A credential's life: *added* (optionally with an expiry), *rotated* (a new
secret replaces the old one; the old one may keep working for an overlap window
so that a local system can deploy the new one), *disabled* (revoked: refused at
once; who, when and why are kept) and *enabled* again, its expiry *set* or
removed. A change is planned (``plan_change``: read and validate, no write),
audited by the caller, then committed (``commit_change``: one transaction that
re-checks what the plan read), in the order the trust-list store follows.

How fast a change is honoured: ``IdentityStore.lookup`` checks disablement,
expiry and the overlap window against the current time on every request, also
on a cache hit. Positive answers are cached for a few seconds; a change made
through this instance clears the cache before it is answered, and a watcher
asks every 250 ms whether another process (the CLI, another instance) committed
a change, and clears the cache when one did (or when it cannot tell): SQLite's
``PRAGMA data_version``, or on PostgreSQL the ``identity_changes`` counter, which
statement triggers on both tables bump once per writing transaction.

An operator's credential is checked in one place for the admin API and the
CLI alike: ``IdentityStore.lookup`` (the gateway) or ``lookup_token`` (the CLI)
find the usable identity a secret belongs to, and ``authorize_operator``
decides whether it may act (an operator's token, a fitting role).

Schema (``IDENTITY_SCHEMA``, brought up to date at open): version 1 is the
first table (``identities``: hash, kind, name, role, created, disabled); 2 adds
columns to it (expiry, rotation, who disabled it and why, a revision),
``retired_secrets`` (replaced secrets still inside their overlap window) and,
on PostgreSQL, the change counter. The migrations are additive, so an older
gateway on the same folder keeps reading the table. SQLite files also keep
``PRAGMA user_version`` as earlier gateways counted it (0, then 1), so that
they refuse a database a newer gateway changed, as this one refuses a higher
number.

A data folder whose instance moves to PostgreSQL keeps its credentials: the
first time they are opened there, ``identity.db``'s identities are copied in
(``move_folder_identities``).

Errors::

    * IdentityError        an identity could not be created or changed (``refusal`` says why)
    * CredentialError      a credential does not let its holder act (``refusal`` says why)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import secrets
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import Enum, StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.infra.migrations import Migration, Schema
from gateway.infra.migrations import migrate as apply_migrations
from gateway.infra.sql import (
    POSTGRES,
    SQLITE,
    Connection,
    ConstraintError,
    Database,
    SchemaError,
    StorageError,
    Worker,
    WriteLock,
    change_counter,
)

if TYPE_CHECKING:  # gateway.audit imports gateway.web.appkeys, which imports this module
    from gateway.audit.event import AuditEvent, AuditLog

__all__ = [
    "CREDENTIAL_MANAGERS",
    "CREDENTIAL_READERS",
    "IDENTITY_SCHEMA",
    "MAX_OVERLAP",
    "NOT_CACHED",
    "SCHEMA_VERSION",
    "Credential",
    "CredentialAction",
    "CredentialChange",
    "CredentialError",
    "CredentialRefusal",
    "CredentialRequest",
    "CredentialState",
    "FolderMove",
    "Identity",
    "IdentityError",
    "IdentityKind",
    "IdentityRefusal",
    "IdentityStore",
    "Role",
    "add_identity",
    "authorize_operator",
    "change_event",
    "commit_change",
    "get_credential",
    "identity_database",
    "identity_db_path",
    "list_credentials",
    "lookup_token",
    "migrate",
    "move_folder_identities",
    "open_identities",
    "parse_time",
    "plan_change",
    "refusal_event",
]

_log = logging.getLogger("gateway.credentials.store")

SCHEMA_VERSION = 1
"""What this code writes into an SQLite identity database's ``PRAGMA user_version`` (the
count earlier gateways keep: 0 for the first table, 1 since the credential lifecycle)."""

_SCHEMA_V0 = """
CREATE TABLE IF NOT EXISTS identities (
    token_sha256 TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    role TEXT,
    created_at TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    UNIQUE (kind, name)
)
"""

_COLUMNS_V1 = (
    ("expires_at", "TEXT"),        # the current secret's end; NULL: none
    ("rotated_at", "TEXT"),        # when the current secret replaced another; NULL: never
    ("disabled_at", "TEXT"),       # NULL for rows disabled before schema 1
    ("disabled_by", "TEXT"),
    ("disabled_reason", "TEXT"),
    ("revision", "INTEGER NOT NULL DEFAULT 0"),  # bumped by every change (commit re-checks it)
)

_RETIRED_V1 = """
CREATE TABLE IF NOT EXISTS retired_secrets (
    token_sha256 TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    retired_at TEXT NOT NULL,
    valid_until TEXT NOT NULL,
    FOREIGN KEY (kind, name) REFERENCES identities (kind, name)
)
"""

_POSITIVE_TTL_S = 5.0
"""A positive lookup is trusted this long at most; the watcher clears it sooner on a change."""

WATCH_INTERVAL_S = 0.25
"""How often the store asks the database whether another process changed the identities."""

_MAX_TOKEN_CHARS = 256
"""A longer secret is no secret this store made (the bound of the admin API's bearer check)."""

MAX_OVERLAP = timedelta(days=30)
"""The longest a replaced secret may keep working after a rotation."""

_MAX_REASON_CHARS = 500

_DURATION = re.compile(r"(\d{1,6})([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class IdentityRefusal(StrEnum):
    """Why an identity could not be created or changed."""

    INVALID = "invalid"
    """A bad name, role, time or duration."""
    NOT_FOUND = "not-found"
    """No identity of that kind and name."""
    EXISTS = "exists"
    """An identity of that kind and name already exists."""
    STATE = "state"
    """The change does nothing in the identity's state (disabling a disabled one)."""
    CONFLICT = "conflict"
    """Another change came between the plan and its commit; nothing was written."""
    SCHEMA = "schema"
    """The identity database was written by a newer gateway."""


class IdentityError(Exception):
    """An identity could not be created or changed; ``refusal`` says why."""

    def __init__(self, message: str, refusal: IdentityRefusal = IdentityRefusal.INVALID) -> None:
        super().__init__(message)
        self.refusal = refusal


class CredentialRefusal(StrEnum):
    """Why a credential does not let its holder act as an operator."""

    MISSING = "missing"
    """No credential was given."""
    UNKNOWN = "unknown"
    """Not a usable operator's token: unknown, disabled, expired, or a local system's key."""
    ROLE = "role"
    """An operator whose role may not do this."""
    MISMATCH = "mismatch"
    """An operator's valid token, but another operator was named (the CLI's ``--as``)."""


class IdentityKind(StrEnum):
    """Which door a credential opens."""

    CLIENT = "client"
    OPERATOR = "operator"

    @property
    def label(self) -> str:
        """How a person calls one of this kind."""
        return "local system" if self is IdentityKind.CLIENT else "operator"


class Role(StrEnum):
    """Operator roles, kept apart as GB/T 22239 level 3 asks (三权分立)."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    APPROVER = "approver"
    AUDITOR = "auditor"
    METRICS = "metrics"
    """A scraper's credential: opens ``GET /metrics`` and nothing else."""


CREDENTIAL_READERS = frozenset({Role.OPERATOR, Role.APPROVER, Role.AUDITOR})
"""Who may list the credentials (not viewers: who exists and who is disabled is more than a
trust-list reader needs)."""
CREDENTIAL_MANAGERS = frozenset({Role.APPROVER})
"""Who may disable, enable and rotate credentials (a security officer's act)."""


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated caller."""

    kind: IdentityKind
    name: str
    role: Role | None


class CredentialError(Exception):
    """A credential does not let its holder act; ``refusal`` says why.

    ``identity`` is the operator the credential names when it names one
    (``ROLE``, ``MISMATCH``), and ``roles`` the roles that would have been allowed.
    """

    def __init__(self, refusal: CredentialRefusal, message: str, *,
                 identity: Identity | None = None, roles: frozenset[Role] = frozenset()) -> None:
        super().__init__(message)
        self.refusal = refusal
        self.identity = identity
        self.roles = roles


def authorize_operator(identity: Identity | None, roles: Collection[Role]) -> Identity:
    """The operator ``identity`` names, when it holds one of ``roles``.

    ``identity`` is what a lookup of the presented secret found (None: nothing,
    or no secret). Raises ``CredentialError``: ``UNKNOWN`` for no operator
    (a local system's key included), ``ROLE`` for an operator whose role is
    not among ``roles``.
    """
    allowed = frozenset(roles)
    if identity is None or identity.kind is not IdentityKind.OPERATOR:
        raise CredentialError(CredentialRefusal.UNKNOWN, "an operator token is required",
                              roles=allowed)
    if identity.role not in allowed:
        raise CredentialError(
            CredentialRefusal.ROLE,
            f"{identity.name} is {identity.role}; this needs one of "
            f"{sorted(r.value for r in allowed)}", identity=identity, roles=allowed)
    return identity


def identity_db_path(data_dir: Path) -> Path:
    """Where a data folder keeps its identities (when not in PostgreSQL)."""
    return data_dir / "identity.db"


def identity_database(data_dir: Path, postgres_dsn: str | None = None) -> Database:
    """Where the settings keep the identities: PostgreSQL, else the folder's ``identity.db``."""
    return Database.of(identity_db_path(data_dir), postgres_dsn, synchronous="FULL")


# -- times ---------------------------------------------------------------------------------


def _stamp(moment: datetime) -> str:
    """How a time is stored (as ``created_at`` always was): ISO 8601, UTC, whole seconds.

    Truncating never lengthens a validity: an end stored is at or before the end meant.
    """
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _from_stamp(text: object) -> datetime:
    moment = datetime.fromisoformat(str(text))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _maybe_stamp(text: object) -> datetime | None:
    return None if text is None else _from_stamp(text)


def _iso(moment: datetime | None) -> str | None:
    """RFC 3339, UTC, as the HTTP API and the CLI show times."""
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str, at: datetime, *, what: str) -> datetime:
    """A duration from ``at`` (``90d``, ``12h``, ``30m``, ``45s``, ``2w``) or an RFC 3339 time.

    ``what`` names the value in the message of the ``IdentityError`` (``INVALID``)
    raised for anything else, a time without an offset included.
    """
    cleaned = text.strip()
    match = _DURATION.fullmatch(cleaned)
    if match is not None:
        return at + timedelta(seconds=int(match[1]) * _UNIT_SECONDS[match[2]])
    try:
        moment = datetime.fromisoformat(cleaned) if "T" in cleaned.upper() else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise IdentityError(
            f"{what} {text[:40]!r} is neither a duration (90d, 12h, 30m, 45s, 2w) nor an "
            f"RFC 3339 time with an offset (2027-01-31T00:00:00Z)")
    return moment.astimezone(UTC)


def _parse_expiry(text: str, at: datetime) -> datetime | None:
    """``never`` (None), or a future time."""
    if text.strip().lower() == "never":
        return None
    moment = parse_time(text, at, what="expires")
    if moment <= at:
        raise IdentityError(f"expires {text[:40]!r} is not in the future")
    return moment


def _parse_overlap(text: str, at: datetime) -> datetime:
    """Until when a replaced secret works: ``at`` itself for none (``0s``)."""
    moment = parse_time(text, at, what="overlap")
    if moment < at:
        raise IdentityError(f"overlap {text[:40]!r} ends in the past")
    if moment - at > MAX_OVERLAP:
        raise IdentityError(f"overlap {text[:40]!r} is longer than {MAX_OVERLAP.days} days")
    return moment


# -- schema --------------------------------------------------------------------------------


def _lifecycle(conn: Connection) -> None:
    """Version 2: the credential lifecycle, added to the first table (columns a
    half-done earlier migration already added are left as they are)."""
    have = conn.columns("identities")
    for column, declaration in _COLUMNS_V1:
        if column not in have:
            conn.execute(f"ALTER TABLE identities ADD COLUMN {column} {declaration}")
    conn.execute(_RETIRED_V1)
    conn.execute("CREATE INDEX IF NOT EXISTS retired_secrets_owner "
                 "ON retired_secrets (kind, name)")
    if conn.dialect is SQLITE:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    else:
        for statement in change_counter("identity_changes", ("identities", "retired_secrets"),
                                        function="identity_changed"):
            conn.execute(statement)


def _adopt(conn: Connection) -> int:
    """The version an identity database made before versions were recorded is at: its
    ``PRAGMA user_version`` plus one, when it has the table."""
    if not conn.table_exists("identities"):
        return 0
    return 1 + (_user_version(conn) if conn.dialect is SQLITE else 0)


IDENTITY_SCHEMA = Schema("identities", (
    Migration(1, "identities", {"sqlite": (_SCHEMA_V0,), "postgresql": (_SCHEMA_V0,)}),
    Migration(2, "credential lifecycle: expiry, rotation, disablement, replaced secrets",
              step=_lifecycle),
), adopt=_adopt)
"""The identity store's schema versions."""


def migrate(conn: Connection) -> None:
    """Bring the identity database to its newest schema (made if empty; additive).

    Safe when several processes open the same database at once (the migration
    lock). ``IdentityError`` (``SCHEMA``) for a database written by a newer gateway.
    """
    if conn.dialect is SQLITE:
        version = _user_version(conn)
        if version > SCHEMA_VERSION:
            raise IdentityError(
                f"identity.db has schema version {version}; this gateway knows up to "
                f"{SCHEMA_VERSION}: run a newer gateway", IdentityRefusal.SCHEMA)
    try:
        apply_migrations(conn, IDENTITY_SCHEMA)
    except SchemaError as exc:
        raise IdentityError(str(exc), IdentityRefusal.SCHEMA) from exc


def _user_version(conn: Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def open_identities(data_dir: Path, postgres_dsn: str | None = None) -> Connection:
    """A connection to the identities the settings name, migrated (made if missing).

    On PostgreSQL the data folder's ``identity.db``, if any, is first copied in
    (``move_folder_identities``, once).
    """
    conn = identity_database(data_dir, postgres_dsn).connect()
    try:
        _prepare(conn, data_dir)
    except BaseException:
        conn.close()
        raise
    return conn


def _prepare(conn: Connection, data_dir: Path) -> None:
    migrate(conn)
    if conn.dialect is POSTGRES:
        move_folder_identities(data_dir, conn)


# -- moving a folder's identities into PostgreSQL ------------------------------------------

_IDENTITY_ROW = ("token_sha256, kind, name, role, created_at, disabled, expires_at, rotated_at, "
                 "disabled_at, disabled_by, disabled_reason, revision")
_RETIRED_ROW = "token_sha256, kind, name, retired_at, valid_until"
_MOVE_LOCK = WriteLock("SELECT pg_advisory_xact_lock(?, hashtext(current_schema() || ?))",
                       (0x330500, ":identities-move"))


@dataclass(frozen=True, slots=True)
class FolderMove:
    """What ``move_folder_identities`` did."""

    copied: tuple[tuple[str, str], ...]
    """(kind, name) of the identities copied into PostgreSQL."""
    kept: tuple[tuple[str, str], ...]
    """(kind, name) PostgreSQL already held with another secret: its own stands."""


def move_folder_identities(data_dir: Path, conn: Connection) -> FolderMove | None:
    """Copy the data folder's ``identity.db`` into the PostgreSQL of ``conn``, once.

    An instance set to use PostgreSQL keeps its local systems' keys and its
    operators' tokens: every identity the folder holds that PostgreSQL does not
    (by kind and name) is copied as it stands (hash, role, expiry, disablement,
    rotation, revision), with its replaced secrets still inside their overlap.
    An identity PostgreSQL already holds is never overwritten; when its secret
    differs from the folder's (another instance's folder was moved first), the
    folder's no longer works, and a warning names it. The folder's database then
    records the move (``moved_to_postgres``) and is not read again; None when
    there is nothing to move (no ``identity.db``, or moved before).
    """
    path = identity_db_path(data_dir)
    if not path.exists():
        return None
    folder = Database.sqlite(path).connect()
    try:
        if folder.table_exists("moved_to_postgres"):
            return None
        migrate(folder)  # a folder of an earlier release: its columns first
        identities = folder.execute(f"SELECT {_IDENTITY_ROW} FROM identities").fetchall()  # noqa: S608 - constant columns
        retired = folder.execute(f"SELECT {_RETIRED_ROW} FROM retired_secrets").fetchall()  # noqa: S608 - constant columns
        copied: list[tuple[str, str]] = []
        kept: list[tuple[str, str]] = []
        with conn.transaction(_MOVE_LOCK):
            for row in identities:
                owner = (str(row[1]), str(row[2]))
                held = conn.execute("SELECT token_sha256 FROM identities WHERE kind = ? "
                                    "AND name = ?", owner).fetchone()
                if held is None:
                    inserted = conn.execute(
                        f"INSERT INTO identities ({_IDENTITY_ROW}) VALUES "  # noqa: S608 - constant columns
                        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", tuple(row))
                    (copied if inserted.rowcount == 1 else kept).append(owner)
                elif held[0] != row[0]:
                    kept.append(owner)
            moved = set(copied)
            for row in retired:
                if (str(row[1]), str(row[2])) in moved:
                    conn.execute(f"INSERT INTO retired_secrets ({_RETIRED_ROW}) VALUES "  # noqa: S608 - constant columns
                                 "(?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", tuple(row))
        with folder.transaction():
            folder.execute("CREATE TABLE IF NOT EXISTS moved_to_postgres (moved_at TEXT NOT "
                           "NULL, copied INTEGER NOT NULL, kept INTEGER NOT NULL)")
            folder.execute("INSERT INTO moved_to_postgres (moved_at, copied, kept) "
                           "VALUES (?, ?, ?)", (_stamp(datetime.now(UTC)), len(copied), len(kept)))
    finally:
        folder.close()
    _log.debug("identities of %s moved into PostgreSQL: %d copied", path, len(copied))
    for kind, name in kept:
        _log.warning("%s %r of %s was not moved into PostgreSQL, which holds another secret "
                     "for it: the folder's secret no longer works (rotate it to hand out the "
                     "one that does)", kind, name, path)
    return FolderMove(tuple(copied), tuple(kept))


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# -- lookup --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Found:
    identity: Identity
    valid_until: datetime | None
    """When this secret stops working (its expiry, or its overlap's end); None: never."""

    def usable(self, at: datetime) -> bool:
        return self.valid_until is None or at < self.valid_until


def _find(conn: Connection, digest: str) -> _Found | None:
    """The enabled identity whose current or retired secret hashes to ``digest``."""
    row = conn.execute(
        "SELECT kind, name, role, expires_at FROM identities "
        "WHERE token_sha256 = ? AND disabled = 0 "
        "UNION ALL "
        "SELECT i.kind, i.name, i.role, r.valid_until FROM retired_secrets r "
        "JOIN identities i ON i.kind = r.kind AND i.name = r.name "
        "WHERE r.token_sha256 = ? AND i.disabled = 0",
        (digest, digest),
    ).fetchone()
    if row is None:
        return None
    return _Found(Identity(IdentityKind(row[0]), row[1], Role(row[2]) if row[2] else None),
                  _maybe_stamp(row[3]))


def lookup_token(data_dir: Path, token: str, *, at: datetime | None = None,
                 postgres_dsn: str | None = None) -> Identity | None:
    """The usable identity a secret belongs to at ``at`` (default now), or None (blocking; CLI).

    The same decision as ``IdentityStore.lookup``, without its cache, in the
    identities the settings name (PostgreSQL when ``postgres_dsn`` is set); a
    data folder without an identity database has no identities (nothing is
    created).
    """
    if not token or len(token) > _MAX_TOKEN_CHARS:
        return None
    if not postgres_dsn and not identity_db_path(data_dir).exists():
        return None
    conn = open_identities(data_dir, postgres_dsn)
    try:
        found = _find(conn, _digest(token))
    finally:
        conn.close()
    if found is None or not found.usable(at or datetime.now(UTC)):
        return None
    return found.identity


# -- what is known of a credential ---------------------------------------------------------


class CredentialState(StrEnum):
    """Whether a credential's current secret opens its door now."""

    ACTIVE = "active"
    DISABLED = "disabled"
    EXPIRED = "expired"


@dataclass(frozen=True, kw_only=True, slots=True)
class Credential:
    """What is known of one identity's credential: never its secret, nor its hash."""

    kind: IdentityKind
    name: str
    role: Role | None
    state: CredentialState
    created_at: datetime
    expires_at: datetime | None
    """The current secret's end; None: no expiry."""
    rotated_at: datetime | None
    """When the current secret replaced an older one; None: never rotated."""
    old_secret_until: datetime | None
    """The latest end of a replaced secret that still works (an overlap); None: none works."""
    disabled_at: datetime | None
    disabled_by: str | None
    disabled_reason: str | None

    def to_json(self) -> dict[str, object]:
        """The credential as the HTTP API and ``list --json`` show it."""
        return {
            "kind": self.kind.value, "name": self.name,
            "role": None if self.role is None else self.role.value,
            "state": self.state.value, "created_at": _iso(self.created_at),
            "expires_at": _iso(self.expires_at), "rotated_at": _iso(self.rotated_at),
            "old_secret_until": _iso(self.old_secret_until),
            "disabled_at": _iso(self.disabled_at), "disabled_by": self.disabled_by,
            "disabled_reason": self.disabled_reason,
        }


_CREDENTIAL_COLUMNS = ("kind, name, role, created_at, disabled, expires_at, rotated_at, "
                       "disabled_at, disabled_by, disabled_reason, revision")


def _retired_ends(conn: Connection, kind: IdentityKind | None = None,
                  name: str | None = None) -> dict[tuple[str, str], list[tuple[str, datetime]]]:
    """Replaced secrets by owner: (hash, end of its window)."""
    query = "SELECT kind, name, token_sha256, valid_until FROM retired_secrets"
    params: tuple[str, ...] = ()
    if kind is not None and name is not None:
        query += " WHERE kind = ? AND name = ?"
        params = (kind.value, name)
    ends: dict[tuple[str, str], list[tuple[str, datetime]]] = {}
    for row_kind, row_name, digest, until in conn.execute(query, params):
        ends.setdefault((row_kind, row_name), []).append((digest, _from_stamp(until)))
    return ends


def _credential(row: Sequence[object], retired: list[tuple[str, datetime]],
                at: datetime) -> Credential:
    (kind, name, role, created, disabled, expires, rotated, disabled_at, disabled_by,
     disabled_reason, _revision) = row
    expires_at = _maybe_stamp(expires)
    if disabled:
        state = CredentialState.DISABLED
    elif expires_at is not None and at >= expires_at:
        state = CredentialState.EXPIRED
    else:
        state = CredentialState.ACTIVE
    live = [end for _, end in retired if at < end]
    return Credential(
        kind=IdentityKind(str(kind)), name=str(name), role=Role(str(role)) if role else None,
        state=state, created_at=_from_stamp(created), expires_at=expires_at,
        rotated_at=_maybe_stamp(rotated),
        old_secret_until=max(live) if live else None,
        disabled_at=_maybe_stamp(disabled_at),
        disabled_by=None if disabled_by is None else str(disabled_by),
        disabled_reason=None if disabled_reason is None else str(disabled_reason),
    )


def list_credentials(conn: Connection, at: datetime,
                     kind: IdentityKind | None = None) -> list[Credential]:
    """Every credential (of one kind), by kind and name, as it stands at ``at``."""
    query = f"SELECT {_CREDENTIAL_COLUMNS} FROM identities"  # noqa: S608 - a constant
    params: tuple[str, ...] = ()
    if kind is not None:
        query += " WHERE kind = ?"
        params = (kind.value,)
    # Sorted here, by code point: the order then does not depend on a database's collation.
    rows = sorted(conn.execute(query, params).fetchall(), key=lambda r: (str(r[0]), str(r[1])))
    retired = _retired_ends(conn)
    return [_credential(row, retired.get((row[0], row[1]), []), at) for row in rows]


def _row(conn: Connection, kind: IdentityKind, name: str) -> tuple[object, ...]:
    query = f"SELECT {_CREDENTIAL_COLUMNS} FROM identities"  # noqa: S608 - a constant
    row = conn.execute(query + " WHERE kind = ? AND name = ?", (kind.value, name)).fetchone()
    if row is None:
        raise IdentityError(f"there is no {kind.label} named {name!r} in this data folder",
                            IdentityRefusal.NOT_FOUND)
    return tuple(row)


def get_credential(conn: Connection, kind: IdentityKind, name: str,
                   at: datetime) -> Credential:
    """One credential as it stands at ``at``; ``IdentityError`` (``NOT_FOUND``) if none."""
    row = _row(conn, kind, name)
    retired = _retired_ends(conn, kind, name).get((kind.value, name), [])
    return _credential(row, retired, at)


# -- changes -------------------------------------------------------------------------------


class CredentialAction(StrEnum):
    """What a change does to a credential."""

    ADD = "add"
    DISABLE = "disable"
    ENABLE = "enable"
    ROTATE = "rotate"
    SET_EXPIRY = "set-expiry"

    @property
    def done(self) -> str:
        """The past tense, as audit records name the act (``client-disabled``)."""
        return {"add": "added", "disable": "disabled", "enable": "enabled",
                "rotate": "rotated", "set-expiry": "expiry-set"}[self.value]


@dataclass(frozen=True, kw_only=True, slots=True)
class CredentialRequest:
    """A change asked for, as the caller gave it (times unparsed: they count from the change).

    ``expires`` is a duration, an RFC 3339 time or ``never``; None means no
    expiry for ``ADD``, the replaced secret's lifetime for ``ROTATE``, and is
    required for ``SET_EXPIRY``. ``overlap`` (``ROTATE``): how long the
    replaced secret keeps working (default: not at all). ``reason`` (``DISABLE``).
    """

    action: CredentialAction
    kind: IdentityKind
    name: str
    role: Role | None = None
    expires: str | None = None
    overlap: str | None = None
    reason: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class CredentialChange:
    """A planned change: what the audit record says and what the commit writes."""

    request: CredentialRequest
    at: datetime
    role: Role | None
    revision: int
    """The identity's revision the plan read; the commit writes only if it is unchanged."""
    by: str
    secret: str | None = field(default=None, repr=False)
    """The new secret (``ADD``, ``ROTATE``): shown once to the caller, never audited or stored."""
    expires_at: datetime | None = None
    """The (new) current secret's end (``ADD``, ``ROTATE``, ``SET_EXPIRY``)."""
    old_secret_until: datetime | None = None
    """``ROTATE``: until when the replaced secret works (``at`` for no overlap)."""

    @property
    def kind(self) -> IdentityKind:
        """The credential's kind."""
        return self.request.kind

    @property
    def name(self) -> str:
        """The credential's name."""
        return self.request.name

    def details(self) -> dict[str, object]:
        """The audit record's details: the act and its parameters, never the secret or a hash."""
        action = self.request.action
        details: dict[str, object] = {
            "action": f"{self.kind.value}-{action.done}", "name": self.name,
            "role": None if self.role is None else self.role.value}
        if action in (CredentialAction.ADD, CredentialAction.ROTATE,
                      CredentialAction.SET_EXPIRY):
            details["expires_at"] = _iso(self.expires_at)
        if action is CredentialAction.ROTATE:
            details["old_secret_until"] = _iso(self.old_secret_until)
        if action is CredentialAction.DISABLE and self.request.reason:
            details["reason"] = self.request.reason
        return details


def _new_secret(kind: IdentityKind) -> str:
    prefix = "ecg_c_" if kind is IdentityKind.CLIENT else "ecg_o_"
    return prefix + secrets.token_urlsafe(32)


def plan_change(conn: Connection, request: CredentialRequest, at: datetime, *,
                by: str) -> CredentialChange:
    """Check ``request`` against the store at ``at`` and plan it (nothing is written).

    ``by`` is who asks (an operator's name, or ``cli``). Raises
    ``IdentityError``: ``INVALID``, ``NOT_FOUND``, ``EXISTS``, ``STATE``.
    """
    kind, name, action = request.kind, request.name, request.action
    if action is CredentialAction.ADD:
        if not name or len(name) > 128 or not name.isprintable():
            raise IdentityError("name must be 1-128 printable characters")
        if (kind is IdentityKind.OPERATOR) != (request.role is not None):
            raise IdentityError("operators need a role; local systems have none")
        if conn.execute("SELECT 1 FROM identities WHERE kind = ? AND name = ?",
                        (kind.value, name)).fetchone() is not None:
            raise IdentityError(f"a {kind.value} named {name!r} already exists",
                                IdentityRefusal.EXISTS)
        expires_at = None if request.expires is None else _parse_expiry(request.expires, at)
        return CredentialChange(request=request, at=at, role=request.role, revision=0, by=by,
                                secret=_new_secret(kind), expires_at=expires_at)

    row = _row(conn, kind, name)
    current = _credential(row, _retired_ends(conn, kind, name).get((kind.value, name), []), at)
    revision = int(str(row[-1]))
    plan = CredentialChange(request=request, at=at, role=current.role, revision=revision, by=by)
    match action:
        case CredentialAction.DISABLE:
            if current.state is CredentialState.DISABLED:
                raise IdentityError(f"{kind.label} {name!r} is already disabled",
                                    IdentityRefusal.STATE)
            reason = request.reason
            if reason is not None and (len(reason) > _MAX_REASON_CHARS
                                       or not reason.isprintable()):
                raise IdentityError(
                    f"the reason must be at most {_MAX_REASON_CHARS} printable characters")
            return plan
        case CredentialAction.ENABLE:
            if current.state is not CredentialState.DISABLED:
                raise IdentityError(f"{kind.label} {name!r} is not disabled",
                                    IdentityRefusal.STATE)
            return plan
        case CredentialAction.SET_EXPIRY:
            if request.expires is None:
                raise IdentityError("expires is required (a duration, a time, or never)")
            return replace(plan, expires_at=_parse_expiry(request.expires, at))
        case CredentialAction.ROTATE:
            if request.expires is not None:
                expires_at = _parse_expiry(request.expires, at)
            elif current.expires_at is None:
                expires_at = None
            else:  # as long as the replaced secret was given, from its issue to its end
                expires_at = at + (current.expires_at - (current.rotated_at or current.created_at))
            until = at if request.overlap is None else _parse_overlap(request.overlap, at)
            if current.expires_at is not None:
                until = min(until, max(current.expires_at, at))
            return replace(plan, secret=_new_secret(kind), expires_at=expires_at,
                            old_secret_until=until)
    raise AssertionError(action)  # pragma: no cover - every action is matched above


def commit_change(conn: Connection, change: CredentialChange) -> None:
    """Write a planned change in one transaction.

    ``IdentityError`` (``CONFLICT``) when the identity changed since the plan
    (or, adding, one of that name appeared): nothing is written.
    """
    # SQLite: the file's write lock; PostgreSQL: the row lock the revision check takes.
    with conn.transaction():
        _commit_locked(conn, change)


def _commit_locked(conn: Connection, change: CredentialChange) -> None:
    request = change.request
    kind, name = request.kind.value, request.name
    if request.action is not CredentialAction.ADD:
        bumped = conn.execute(
            "UPDATE identities SET revision = revision + 1 "
            "WHERE kind = ? AND name = ? AND revision = ?", (kind, name, change.revision))
        if bumped.rowcount != 1:
            raise IdentityError(
                f"{request.kind.label} {name!r} was changed by someone else meanwhile; "
                "nothing was written: look again and retry", IdentityRefusal.CONFLICT)
        _write(conn, change)
        return
    assert change.secret is not None
    try:
        conn.execute(
            "INSERT INTO identities (token_sha256, kind, name, role, created_at, expires_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (_digest(change.secret), kind, name,
             None if change.role is None else change.role.value, _stamp(change.at),
             None if change.expires_at is None else _stamp(change.expires_at)))
    except ConstraintError as exc:
        raise IdentityError(f"a {kind} named {name!r} already exists",
                            IdentityRefusal.EXISTS) from exc


def _write(conn: Connection, change: CredentialChange) -> None:
    """The statements of an accepted change to an existing identity (inside its transaction)."""
    request = change.request
    owner = (request.kind.value, request.name)
    at = _stamp(change.at)
    match request.action:
        case CredentialAction.DISABLE:
            conn.execute("UPDATE identities SET disabled = 1, disabled_at = ?, disabled_by = ?, "
                         "disabled_reason = ? WHERE kind = ? AND name = ?",
                         (at, change.by, request.reason, *owner))
        case CredentialAction.ENABLE:
            conn.execute("UPDATE identities SET disabled = 0, disabled_at = NULL, "
                         "disabled_by = NULL, disabled_reason = NULL WHERE kind = ? AND name = ?",
                         owner)
        case CredentialAction.SET_EXPIRY:
            conn.execute("UPDATE identities SET expires_at = ? WHERE kind = ? AND name = ?",
                         (None if change.expires_at is None else _stamp(change.expires_at),
                          *owner))
        case CredentialAction.ROTATE:
            assert change.secret is not None
            until = change.old_secret_until
            assert until is not None
            # Secrets replaced earlier end no later than this one's overlap: a rotation
            # without overlap leaves the new secret alone.
            for digest, end in _retired_ends(conn, request.kind, request.name).get(owner, []):
                if min(end, until) <= change.at:
                    conn.execute("DELETE FROM retired_secrets WHERE token_sha256 = ?", (digest,))
                elif until < end:
                    conn.execute("UPDATE retired_secrets SET valid_until = ? "
                                 "WHERE token_sha256 = ?", (_stamp(until), digest))
            if _from_stamp(_stamp(until)) > change.at:  # an overlap left after truncation
                conn.execute(
                    "INSERT INTO retired_secrets (token_sha256, kind, name, retired_at, "
                    "valid_until) SELECT token_sha256, kind, name, ?, ? FROM identities "
                    "WHERE kind = ? AND name = ?", (at, _stamp(until), *owner))
            conn.execute("UPDATE identities SET token_sha256 = ?, expires_at = ?, "
                         "rotated_at = ? WHERE kind = ? AND name = ?",
                         (_digest(change.secret),
                          None if change.expires_at is None else _stamp(change.expires_at),
                          at, *owner))
        case CredentialAction.ADD:  # pragma: no cover - handled by commit_change
            raise AssertionError(request.action)


def change_event(change: CredentialChange, *, actor: str, via_cli: bool,
                 request_id: str | None = None, source: str | None = None) -> AuditEvent:
    """The ``identity-change`` audit record of a planned change (no secret, no hash)."""
    from gateway.audit.event import ActorKind, AuditEvent, EventType  # noqa: PLC0415 - a cycle

    return AuditEvent(
        event_type=EventType.IDENTITY_CHANGE,
        actor_kind=ActorKind.CLI if via_cli else ActorKind.OPERATOR,
        actor_id=actor, at=change.at, outcome="ok", request_id=request_id,
        source_addr=source, details=change.details())


def refusal_event(request: CredentialRequest, reason: str, *, actor: str, via_cli: bool,
                  at: datetime, request_id: str | None = None,
                  source: str | None = None, refusal: str | None = None) -> AuditEvent:
    """The audit record of a refused change: ``client-rotate-refused`` and why."""
    from gateway.audit.event import ActorKind, AuditEvent, EventType  # noqa: PLC0415 - a cycle

    details: dict[str, object] = {
        "action": f"{request.kind.value}-{request.action.value}-refused",
        "name": request.name[:128], "reason": reason}
    if refusal is not None:
        details["refusal"] = refusal
    return AuditEvent(
        event_type=EventType.IDENTITY_CHANGE,
        actor_kind=ActorKind.CLI if via_cli else ActorKind.OPERATOR,
        actor_id=actor, at=at, outcome="refused", request_id=request_id, source_addr=source,
        details=details)


def add_identity(data_dir: Path, kind: IdentityKind, name: str, role: Role | None = None, *,
                 expires: str | None = None, postgres_dsn: str | None = None) -> str:
    """Create an identity and return its secret (shown once, never stored); not audited.

    The CLI's ``clients add`` and ``operators add`` plan, audit, then commit;
    this is the same change without the record, for tests and set-up scripts.
    """
    conn = open_identities(data_dir, postgres_dsn)
    try:
        change = plan_change(conn, CredentialRequest(
            action=CredentialAction.ADD, kind=kind, name=name, role=role, expires=expires),
            datetime.now(UTC), by="cli")
        commit_change(conn, change)
    finally:
        conn.close()
    assert change.secret is not None
    return change.secret


# -- the gateway's store -------------------------------------------------------------------


class NotCached(Enum):
    """``IdentityStore.cached``'s answer when the secret is not remembered."""

    NOT_CACHED = "not-cached"


NOT_CACHED = NotCached.NOT_CACHED


@dataclass(frozen=True, slots=True)
class _Cached:
    fresh_until: float
    """``time.monotonic()`` after which the database is asked again."""
    found: _Found


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _data_version(conn: Connection) -> int:
    """A number that moves when another connection commits a change to the identities
    (SQLite: to the file; PostgreSQL: the ``identity_changes`` counter)."""
    version = conn.data_version("identity_changes")
    if version is None:  # its triggers would bump nothing: changes could not be seen
        raise StorageError("identity_changes has no row")
    return version


class IdentityStore:
    """The gateway's face of the identity database: lookups for every request, and changes.

    The identities are the data folder's ``identity.db``, or PostgreSQL's when
    ``postgres_dsn`` is set; ``clock`` is the wall clock expiry is judged by
    (injected by tests); ``watch_interval_s`` how often other processes' changes
    are looked for.
    """

    def __init__(self, data_dir: Path, *, postgres_dsn: str | None = None,
                 clock: Callable[[], datetime] = _utc_now,
                 watch_interval_s: float = WATCH_INTERVAL_S) -> None:
        database = identity_database(data_dir, postgres_dsn)
        self._data_dir = data_dir
        self._db = Worker.connection(database, name=f"identities-{database.backend}",
                                     connect_timeout=5)
        self._clock = clock
        self._watch_interval_s = watch_interval_s
        self._cache: dict[str, _Cached] = {}
        self._generation = 0
        self._data_version = 0
        self._watcher: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Make or migrate the database (on PostgreSQL, with the folder's identities moved
        in), and start watching it for other processes' changes."""
        data_dir = self._data_dir
        await self._db.run(lambda conn: _prepare(conn, data_dir))
        self._data_version = await self._db.run(_data_version)
        self._watcher = asyncio.create_task(self._watch(), name="identity-watcher")

    async def close(self) -> None:
        """Stop watching and release the database."""
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        await self._db.close()

    def now(self) -> datetime:
        """The time expiry is judged by."""
        return self._clock()

    async def ping(self) -> None:
        """Raise if the store cannot be read."""
        await self._db.run(lambda c: c.execute("SELECT 1").fetchone())

    def invalidate(self) -> None:
        """Forget every cached answer, including lookups still on their way back."""
        self._cache.clear()
        self._generation += 1

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._watch_interval_s)
            try:
                version = await self._db.run(_data_version)
            except StorageError:
                _log.warning("identity database unreadable; cache cleared", exc_info=True)
                self.invalidate()
                continue
            if version != self._data_version:
                self._data_version = version
                self.invalidate()

    def cached(self, token: str) -> Identity | NotCached | None:
        """``lookup``'s answer when this process remembers the secret (no await: the
        request's path stays synchronous), else ``NOT_CACHED``."""
        digest = _digest(token)
        hit = self._cache.get(digest)
        if hit is None or hit.fresh_until <= time.monotonic():
            return NOT_CACHED
        if hit.found.usable(self._clock()):
            return hit.found.identity
        self._cache.pop(digest, None)
        return None

    async def lookup(self, token: str) -> Identity | None:
        """The identity a secret belongs to, if enabled, unexpired and not past its overlap."""
        known = self.cached(token)
        return await self.fetch(token) if known is NOT_CACHED else known

    async def fetch(self, token: str) -> Identity | None:
        """``lookup`` from the database, for a secret ``cached`` did not answer; its answer
        is remembered."""
        digest = _digest(token)
        generation = self._generation
        found = await self._db.run(lambda conn: _find(conn, digest))
        if found is None or not found.usable(self._clock()):
            self._cache.pop(digest, None)
            return None
        if generation == self._generation:  # no change seen while the database was asked
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = _Cached(time.monotonic() + _POSITIVE_TTL_S, found)
        return found.identity

    async def credentials(self, kind: IdentityKind | None = None) -> list[Credential]:
        """Every credential (of one kind), as it stands now."""
        at = self._clock()
        return await self._db.run(lambda conn: list_credentials(conn, at, kind))

    async def credential(self, kind: IdentityKind, name: str) -> Credential:
        """One credential as it stands now; ``IdentityError`` (``NOT_FOUND``) if none."""
        at = self._clock()
        return await self._db.run(lambda conn: get_credential(conn, kind, name, at))

    async def change(self, request: CredentialRequest, *, audit: AuditLog, actor: str,
                     request_id: str | None = None,
                     source: str | None = None) -> tuple[CredentialChange, Credential]:
        """Plan, audit, commit; every cached answer is forgotten before this returns.

        A refusal (other than an unknown name) is audited too, best-effort. Raises
        ``IdentityError``, and ``AuditUnavailableError`` when the record cannot be
        made durable (nothing is then changed).
        """
        at = self._clock()
        try:
            change = await self._db.run(lambda conn: plan_change(conn, request, at, by=actor))
        except IdentityError as exc:
            if exc.refusal is not IdentityRefusal.NOT_FOUND:
                await self.audit_refusal(audit, request, str(exc), actor=actor, at=at,
                                         request_id=request_id, source=source,
                                         refusal=exc.refusal.value)
            raise
        await audit.append(change_event(change, actor=actor, via_cli=False,
                                        request_id=request_id, source=source))
        try:
            await self._db.run(lambda conn: commit_change(conn, change))
        except IdentityError as exc:
            await self.audit_refusal(audit, request, str(exc), actor=actor, at=at,
                                     request_id=request_id, source=source,
                                     refusal=exc.refusal.value)
            raise
        finally:
            self.invalidate()
        after = await self._db.run(lambda conn: get_credential(conn, request.kind,
                                                                request.name, at))
        return change, after

    @staticmethod
    async def audit_refusal(audit: AuditLog, request: CredentialRequest, reason: str, *,
                            actor: str, at: datetime, request_id: str | None = None,
                            source: str | None = None, refusal: str | None = None) -> None:
        """Record a refused change; best-effort, since a refusal changed nothing."""
        try:
            await audit.append(refusal_event(request, reason, actor=actor, via_cli=False, at=at,
                                             request_id=request_id, source=source,
                                             refusal=refusal))
        except Exception:
            _log.warning("refusal not audited: %s %s", request.kind.value, request.action.value,
                         exc_info=True)

