"""Local systems' API keys and operators' tokens.

Both are random secrets printed once by the CLI; only their SHA-256 is stored
(they carry 256 bits of entropy, so an unkeyed hash is not brute-forceable).
The running gateway reads the same SQLite file, so a key made while it runs is
honoured on its next lookup; positive answers are cached for a few seconds.

An operator's credential is checked in one place for the admin API and the
CLI alike: ``IdentityStore.lookup`` (the gateway) or ``lookup_token`` (the CLI)
find the enabled identity a secret belongs to, and ``authorize_operator``
decides whether it may act (an operator's token, a fitting role).

Errors::

    * IdentityError        an identity could not be created
    * CredentialError      a credential does not let its holder act (``refusal`` says why)
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from gateway.sqlite import SqliteDB, connect

__all__ = [
    "CredentialError",
    "CredentialRefusal",
    "Identity",
    "IdentityError",
    "IdentityKind",
    "IdentityStore",
    "Role",
    "add_identity",
    "authorize_operator",
    "identity_db_path",
    "lookup_token",
]

_SCHEMA = """
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

_POSITIVE_TTL_S = 5.0

_MAX_TOKEN_CHARS = 256
"""A longer secret is no secret this store made (the bound of the admin API's bearer check)."""


class IdentityError(Exception):
    """An identity could not be created (duplicate name, bad role)."""


class CredentialRefusal(StrEnum):
    """Why a credential does not let its holder act as an operator."""

    MISSING = "missing"
    """No credential was given."""
    UNKNOWN = "unknown"
    """Not an enabled operator's token: unknown, disabled, or a local system's key."""
    ROLE = "role"
    """An operator whose role may not do this."""
    MISMATCH = "mismatch"
    """An operator's valid token, but another operator was named (the CLI's ``--as``)."""


class IdentityKind(StrEnum):
    """Which door a credential opens."""

    CLIENT = "client"
    OPERATOR = "operator"


class Role(StrEnum):
    """Operator roles, kept apart as GB/T 22239 level 3 asks (三权分立)."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    APPROVER = "approver"
    AUDITOR = "auditor"
    METRICS = "metrics"
    """A scraper's credential: opens ``GET /metrics`` and nothing else."""


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
    """Where a data folder keeps its identities."""
    return data_dir / "identity.db"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _ensure(conn: sqlite3.Connection) -> None:
    conn.execute(_SCHEMA)


def _find(conn: sqlite3.Connection, digest: str) -> Identity | None:
    """The enabled identity whose secret hashes to ``digest``."""
    row = conn.execute(
        "SELECT kind, name, role FROM identities WHERE token_sha256 = ? AND disabled = 0",
        (digest,),
    ).fetchone()
    if row is None:
        return None
    return Identity(IdentityKind(row[0]), row[1], Role(row[2]) if row[2] else None)


def lookup_token(data_dir: Path, token: str) -> Identity | None:
    """The enabled identity a secret belongs to, or None (blocking; for the CLI).

    The same query as ``IdentityStore.lookup``, without its cache; a data folder
    without an identity database has no identities (nothing is created).
    """
    path = identity_db_path(data_dir)
    if not token or len(token) > _MAX_TOKEN_CHARS or not path.exists():
        return None
    conn = connect(path, synchronous="NORMAL")
    try:
        return _find(conn, _digest(token))
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):  # made, but no identity added yet
            return None
        raise
    finally:
        conn.close()


def add_identity(data_dir: Path, kind: IdentityKind, name: str, role: Role | None = None) -> str:
    """Create an identity and return its secret (shown once, never stored)."""
    if not name or len(name) > 128 or not name.isprintable():
        raise IdentityError("name must be 1-128 printable characters")
    if (kind is IdentityKind.OPERATOR) != (role is not None):
        raise IdentityError("operators need a role; local systems have none")
    prefix = "ecg_c_" if kind is IdentityKind.CLIENT else "ecg_o_"
    token = prefix + secrets.token_urlsafe(32)
    conn = connect(identity_db_path(data_dir), synchronous="FULL")
    try:
        _ensure(conn)
        conn.execute(
            "INSERT INTO identities (token_sha256, kind, name, role, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (_digest(token), kind.value, name, role.value if role else None,
             datetime.now(UTC).isoformat(timespec="seconds")),
        )
    except sqlite3.IntegrityError as exc:
        raise IdentityError(f"a {kind.value} named {name!r} already exists") from exc
    finally:
        conn.close()
    return token


class IdentityStore:
    """Looks credentials up in the data folder's identity database."""

    def __init__(self, data_dir: Path) -> None:
        self._db = SqliteDB(identity_db_path(data_dir), synchronous="NORMAL")
        self._cache: dict[str, tuple[float, Identity]] = {}

    async def open(self) -> None:
        """Create the table if this data folder has none yet."""
        await self._db.run(_ensure)

    async def close(self) -> None:
        """Release the database."""
        await self._db.close()

    async def ping(self) -> None:
        """Raise if the store cannot be read."""
        await self._db.run(lambda c: c.execute("SELECT 1").fetchone())

    async def lookup(self, token: str) -> Identity | None:
        """The identity a secret belongs to, or None."""
        digest = _digest(token)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]

        identity = await self._db.run(lambda conn: _find(conn, digest))
        if identity is None:
            self._cache.pop(digest, None)
            return None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (now + _POSITIVE_TTL_S, identity)
        return identity
