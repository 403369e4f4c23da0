"""Huzhou's licence library: the licences partner regions may query, and their status.

What is kept, per licence: its 证照标识, the profile's ``lic`` object (holder
fields included, since the licence handed to a partner carries them), its state
(``valid``, ``revoked``, ``suspended``) and its index in Huzhou's status list,
allocated once at import and never reused.

Holder codes are never an index in clear: a holder lookup goes through
``holder_hmac``, an HMAC-SHA256 of ``<holder_code_type>:<holder_code>`` under a
versioned key kept in ``DATA_DIR/keys/licence-holder-hmac-v<N>.key`` (outside
every store and log). The newest key hashes new rows; lookups try every version
held, so a rotation (drop in a ``v<N+1>`` key, re-import) needs no downtime.
Nothing of a licence is logged by this module.

One port, one SQL on either engine (``gateway.infra.sql``), its schema versioned
(``LICENCE_SCHEMA``, brought up to date when a store or repository opens):

* ``LicenceStore`` (async) is what the gateway asks: ``SqliteLicenceStore``
  (``DATA_DIR/licences.db``) or ``PostgresLicenceStore``
  (``settings.postgres_dsn``), each one connection on a worker thread of its
  own. ``open_store(settings)`` picks one.
* ``LicenceRepository`` (sync) is what ``ecert-gateway licences import`` writes
  through; ``open_repository(data_dir, postgres_dsn)`` picks the same backend.

The async store keeps the licences it found by identifier in memory, so a
licence queried again is answered without a trip to the store's thread. The
library changes in another process (``licences import``), so the store asks
every ``CHANGE_POLL_S`` whether it changed (SQLite's ``PRAGMA data_version``;
on PostgreSQL a counter a statement trigger bumps once per writing
transaction) and drops everything it remembers when it did. A remembered
licence is only served while the last such check started less than
``2 * CHANGE_POLL_S`` ago, and never longer than ``REMEMBER_S`` after it was
read, so a revocation or suspension committed anywhere is seen within about a
second, and a store whose checks fail serves nothing from memory.

Errors::

    * LicenceError
      x LicenceRecordError    a licence row is not acceptable (import)
      x LicenceStoreError     the store failed (wrapped at the adapter)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import logging
import math
import re
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, TypeVar

import orjson
from stdnum.cn import ric, uscc

from gateway.infra.coalesce import Coalescer
from gateway.infra.keyfiles import keys_dir, load_or_create_secret, load_versioned_secrets
from gateway.infra.migrations import Migration, Schema, migrate
from gateway.infra.sql import (
    POSTGRES,
    Connection,
    Database,
    Dialect,
    StorageError,
    Worker,
    WriteLock,
    change_counter,
)
from gateway.settings import Settings
from trust import CheckOutcome, IdentifierError, check_identifier, parse_identifier

__all__ = [
    "CHANGE_POLL_S",
    "HOLDER_CODE_TYPES",
    "LIC_KEYS",
    "STATUS_LIST_NAME",
    "LICENCE_SCHEMA",
    "HolderKeyring",
    "ImportCounts",
    "LicenceError",
    "LicenceRecord",
    "LicenceRecordError",
    "LicenceRepository",
    "LicenceState",
    "LicenceStore",
    "LicenceStoreError",
    "PostgresLicenceStore",
    "SqliteLicenceStore",
    "StatusEntries",
    "StoredLicence",
    "licence_db_path",
    "open_repository",
    "open_store",
    "record_from_mapping",
]

T = TypeVar("T")
_log = logging.getLogger(__name__)

CHANGE_POLL_S = 0.5
"""How often the async store asks whether the licence library changed."""
REMEMBER_S = 60.0
"""No licence is answered from memory longer than this after it was read, whatever the
change checks say (insurance against a write they cannot see, such as one made with
PostgreSQL's triggers disabled)."""

STATUS_LIST_NAME = "licences"
"""The name of Huzhou's one status list (``GET /v1/status/licences``)."""

LIC_KEYS = (
    "type_code", "type_name", "number", "issuer_name", "issuer_code", "issue_date",
    "holder_name", "holder_code", "holder_code_type", "valid_from", "valid_until",
    "matters", "fields", "components",
)
"""The keys of the profile's ``lic`` object (ecert-profile.md), in profile order, and
``components`` of a combined certificate (docs/combined-certificates.md)."""
_OPTIONAL = frozenset({"valid_until", "matters", "fields", "components"})
COMPONENT_KEYS = (
    "identifier", "type_code", "type_name", "number", "issuer_name", "issuer_code",
    "issue_date", "valid_from", "valid_until", "fields", "state",
)
"""The keys of one component of a combined certificate in an import row."""
MAX_COMPONENTS = 16
"""Most components a combined certificate may carry (as ``trust.MAX_COMPONENTS``)."""

HOLDER_CODE_TYPES = {"001": "USCC", "111": "居民身份证号"}
"""Holder code types whose codes are checked; other 3-digit types are kept as given."""

_TYPE_CODE = re.compile(r"\A[0-9A-Z]{21}\Z")
_CODE_TYPE = re.compile(r"\A[0-9]{3}\Z")
_DATE = re.compile(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
MAX_TEXT = 512
"""Longest text accepted in a ``lic`` field (a name, a number)."""


class LicenceError(Exception):
    """Root of the licence library's errors."""


class LicenceRecordError(LicenceError):
    """A licence row is not acceptable; the message says which field and why."""


class LicenceStoreError(LicenceError):
    """The licence store is unreachable or failed."""


class LicenceState(StrEnum):
    """What Huzhou's registry says of a licence (expiry is judged from ``valid_until``)."""

    VALID = "valid"
    REVOKED = "revoked"
    SUSPENDED = "suspended"

    @property
    def status_value(self) -> int:
        """The IETF Token Status List value: 0 valid, 1 invalid, 2 suspended."""
        return {"valid": 0, "revoked": 1, "suspended": 2}[self.value]


@dataclass(frozen=True, slots=True)
class LicenceRecord:
    """A validated licence row, ready to store."""

    identifier: str
    lic: Mapping[str, Any]
    state: LicenceState
    components: tuple[LicenceRecord, ...] = ()
    """A combined certificate's components, each stored as a licence of its own (its
    type, identifier, state and status index; the document's holder)."""

    @property
    def type_code(self) -> str:
        """证照类型代码."""
        return str(self.lic["type_code"])

    def content_sha256(self) -> str:
        """Digest of what the row says (lic and state): equal digests, nothing to change."""
        canonical = orjson.dumps({"lic": dict(self.lic), "state": self.state.value},
                                 option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(canonical).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredLicence:
    """A licence as the store holds it."""

    identifier: str
    lic: Mapping[str, Any]
    state: LicenceState
    status_idx: int

    @property
    def type_code(self) -> str:
        """证照类型代码."""
        return str(self.lic["type_code"])

    @property
    def valid_until(self) -> date | None:
        """Last day of validity (inclusive), None for 长期."""
        raw = self.lic.get("valid_until")
        return None if raw is None else date.fromisoformat(str(raw))

    @property
    def issue_date(self) -> date:
        """颁发日期."""
        return date.fromisoformat(str(self.lic["issue_date"]))


@dataclass(frozen=True, slots=True)
class StatusEntries:
    """What the status list needs: its length and every entry that is not valid."""

    size: int
    values: Mapping[int, int] = field(default_factory=dict)


@dataclass(slots=True)
class ImportCounts:
    """What an import did."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    rekeyed: int = 0
    """Rows whose content was the same but whose holder HMAC was made with an older key."""

    def add(self, other: ImportCounts) -> None:
        """Sum ``other`` into this."""
        self.added += other.added
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.rekeyed += other.rekeyed


# ----------------------------------------------------------------------- validation


def _text(raw: Mapping[str, Any], name: str) -> str:
    value = raw.get(name)
    if not isinstance(value, str) or not value.strip():
        raise LicenceRecordError(f"{name} is missing or empty")
    if len(value) > MAX_TEXT:
        raise LicenceRecordError(f"{name} is longer than {MAX_TEXT} characters")
    return value.strip()


def _date(raw: Mapping[str, Any], name: str) -> date:
    value = raw.get(name)
    if not isinstance(value, str) or not _DATE.match(value):
        raise LicenceRecordError(f"{name} must be a date YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise LicenceRecordError(f"{name} is not a calendar date") from exc


def _holder_code(code_type: str, code: str) -> str:
    if code_type == "001":
        if not uscc.is_valid(code):
            raise LicenceRecordError("holder_code is not a valid USCC (GB 32100) for type 001")
        return uscc.compact(code)
    if code_type == "111":
        # stdnum checks the county code, the birth date and the MOD 11-2 character.
        if not ric.is_valid(code):
            raise LicenceRecordError("holder_code is not a valid 居民身份证号 for type 111")
        return str(ric.compact(code)).upper()
    return code


def record_from_mapping(raw: Mapping[str, Any]) -> LicenceRecord:
    """Validate one row (``identifier``, the ``lic`` keys, ``state``); raise
    ``LicenceRecordError`` naming the first problem. Error messages never quote
    holder data."""
    unknown = sorted(set(raw) - {"identifier", "state", *LIC_KEYS})
    if unknown:
        raise LicenceRecordError(f"unknown keys {unknown}")
    identifier_text = _text(raw, "identifier")
    try:
        identifier = parse_identifier(identifier_text)
    except IdentifierError as exc:
        raise LicenceRecordError(f"identifier: {exc}") from exc
    outcome = check_identifier(identifier)
    if outcome is not CheckOutcome.VALID:
        # Huzhou issues strictly: the known wrong variant is a partner's tolerance, not ours.
        raise LicenceRecordError(
            f"identifier check character is wrong ({outcome.value}; ISO 7064 MOD 37,36 expected)")
    state_raw = raw.get("state", "valid")
    try:
        state = LicenceState(state_raw)
    except ValueError as exc:
        raise LicenceRecordError("state must be valid, revoked or suspended") from exc

    type_code = _text(raw, "type_code")
    if not _TYPE_CODE.match(type_code):
        raise LicenceRecordError("type_code must be 21 characters 0-9A-Z")
    if type_code != identifier.type_code:
        raise LicenceRecordError("type_code differs from the identifier's type code")
    issuer_code = _text(raw, "issuer_code")
    if not uscc.is_valid(issuer_code):
        raise LicenceRecordError("issuer_code is not a valid USCC (GB 32100)")
    if issuer_code != identifier.issuer_code:
        raise LicenceRecordError("issuer_code differs from the identifier's issuer code")
    code_type = _text(raw, "holder_code_type")
    if not _CODE_TYPE.match(code_type):
        raise LicenceRecordError("holder_code_type must be 3 digits (001 USCC, 111 身份证)")
    holder_code = _holder_code(code_type, _text(raw, "holder_code"))
    issue_date = _date(raw, "issue_date")
    valid_from = _date(raw, "valid_from")
    valid_until: date | None = None
    if raw.get("valid_until") not in (None, ""):
        valid_until = _date(raw, "valid_until")
        if valid_until < valid_from:
            raise LicenceRecordError("valid_until is before valid_from")
    lic: dict[str, Any] = {
        "type_code": type_code,
        "type_name": _text(raw, "type_name"),
        "number": _text(raw, "number"),
        "issuer_name": _text(raw, "issuer_name"),
        "issuer_code": issuer_code,
        "issue_date": issue_date.isoformat(),
        "holder_name": _text(raw, "holder_name"),
        "holder_code": holder_code,
        "holder_code_type": code_type,
        "valid_from": valid_from.isoformat(),
        "valid_until": None if valid_until is None else valid_until.isoformat(),
    }
    matters = raw.get("matters")
    if matters not in (None, [], ""):
        if not isinstance(matters, list) or not all(
                isinstance(m, str) and 0 < len(m) <= 64 for m in matters):
            raise LicenceRecordError("matters must be a list of matter codes")
        lic["matters"] = list(matters)
    fields_raw = raw.get("fields")
    if fields_raw not in (None, {}, ""):
        if not isinstance(fields_raw, dict) or not all(isinstance(k, str) for k in fields_raw):
            raise LicenceRecordError("fields must be an object")
        lic["fields"] = dict(fields_raw)
    components: tuple[LicenceRecord, ...] = ()
    if raw.get("components") is not None:
        components = _components(raw["components"], lic, valid_until)
        lic["components"] = [{k: v for k, v in c.lic.items() if not k.startswith("holder_")}
                             | {"identifier": c.identifier} for c in components]
    missing = [k for k in LIC_KEYS if k not in lic and k not in _OPTIONAL]
    assert not missing, missing
    return LicenceRecord(identifier=str(identifier), lic=lic, state=state,
                         components=components)


def _components(raw: object, document: Mapping[str, Any], valid_until: date | None
                ) -> tuple[LicenceRecord, ...]:
    """The components of a combined certificate row, each a licence row of its own that
    shares the document's holder (docs/combined-certificates.md)."""
    if not isinstance(raw, list) or not raw:
        raise LicenceRecordError("components must be a non-empty list")
    if len(raw) > MAX_COMPONENTS:
        raise LicenceRecordError(f"components: {len(raw)} given, at most {MAX_COMPONENTS}")
    records: list[LicenceRecord] = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            raise LicenceRecordError(f"components[{index}] must be an object")
        unknown = sorted(set(item) - set(COMPONENT_KEYS))
        if unknown:
            raise LicenceRecordError(f"components[{index}]: unknown keys {unknown}")
        row = {"issuer_name": document["issuer_name"], "issuer_code": document["issuer_code"],
               **item,
               **{k: document[k] for k in ("holder_name", "holder_code", "holder_code_type")}}
        try:
            record = record_from_mapping(row)
        except LicenceRecordError as exc:
            raise LicenceRecordError(f"components[{index}]: {exc}") from exc
        until = record.lic["valid_until"]
        if valid_until is not None and (until is None or
                                        date.fromisoformat(until) > valid_until):
            raise LicenceRecordError(f"components[{index}]: valid beyond the document")
        records.append(record)
    if len({r.identifier for r in records}) != len(records):
        raise LicenceRecordError("components repeat an identifier")
    if len({r.type_code for r in records}) != len(records):
        raise LicenceRecordError("components repeat a type_code")
    return tuple(records)


# ----------------------------------------------------------------------- holder keys


def _normalise_holder(code_type: str, code: str) -> bytes:
    # A 身份证号 may end in x or X; codes compare case-insensitively.
    return f"{code_type.strip()}:{unicodedata.normalize('NFC', code.strip()).upper()}".encode()


class HolderKeyring:
    """Versioned HMAC keys for holder lookups; the newest hashes new rows."""

    def __init__(self, keys: Mapping[int, bytes]) -> None:
        if not keys:
            raise LicenceError("a holder keyring needs at least one key")
        self._keys = dict(keys)
        self.current = max(self._keys)

    @classmethod
    def load(cls, data_dir: Path) -> HolderKeyring:
        """Every ``licence-holder-hmac-v<N>.key`` under ``DATA_DIR/keys``, making v1 if none
        exists (blocking file I/O: start-up, the CLI, or an executor)."""
        return cls(load_versioned_secrets(data_dir, "licence-holder-hmac"))

    @staticmethod
    def add_version(data_dir: Path) -> int:
        """Make the next key version (rotation); rows move to it on their next import."""
        current = HolderKeyring.load(data_dir).current
        load_or_create_secret(keys_dir(data_dir) / f"licence-holder-hmac-v{current + 1}.key")
        return current + 1

    def pseudonym(self, code_type: str, code: str, version: int | None = None) -> str:
        """``v<N>:<hex>``: the lookup key of a holder under key version N (default newest)."""
        version = self.current if version is None else version
        digest = hmac.new(self._keys[version], _normalise_holder(code_type, code),
                          hashlib.sha256).hexdigest()
        return f"v{version}:{digest}"

    def pseudonyms(self, code_type: str, code: str) -> list[str]:
        """The holder's lookup key under every version held, newest first."""
        return [self.pseudonym(code_type, code, v) for v in sorted(self._keys, reverse=True)]


# ----------------------------------------------------------------------- SQL


_TABLE = (
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
)
_COLUMNS = "identifier, lic, state, status_idx"


def _adopt(conn: Connection) -> int:
    """The version a store made before versions were recorded is at: 1 with the table
    alone (on PostgreSQL: also with the first change counter, which lacked ``xact``),
    2 with the counter as it is now (SQLite has nothing in version 2)."""
    if not conn.table_exists("licences"):
        return 0
    if conn.dialect is POSTGRES and "xact" not in conn.columns("licence_changes"):
        return 1
    return 2


LICENCE_SCHEMA = Schema("licences", (
    Migration(1, "licences and their indices", {"sqlite": _TABLE, "postgresql": _TABLE}),
    Migration(2, "change counter, once per writing transaction", {"postgresql": (
        # The lock earlier gateways took for their whole set-up: one starting at the same
        # moment does not replace the function under this migration.
        "SELECT pg_advisory_xact_lock(hashtext('ecert-gateway licences schema'))",
        *change_counter("licence_changes", ("licences",), function="licence_changed"),
    )}),
), adopt=_adopt)
"""The licence store's schema versions. PostgreSQL: ``licence_changes.version`` moves
with every transaction that writes ``licences`` (what the async store polls; SQLite has
``PRAGMA data_version``)."""

_WRITE_LOCK = WriteLock("LOCK TABLE licences IN SHARE ROW EXCLUSIVE MODE")
"""PostgreSQL: one import at a time (status indices are dense); SQLite: BEGIN IMMEDIATE."""


def _setup(conn: Connection, _: Dialect) -> None:
    migrate(conn, LICENCE_SCHEMA)


def _change_version(conn: Connection, _: Dialect) -> int:
    """A number that moves whenever the licence library changes (SQLite: when another
    connection commits to the file, which is the only way the library changes under
    the async store's own connection)."""
    version = conn.data_version("licence_changes")
    if version is None:  # the trigger would bump nothing: changes could not be seen
        raise LicenceStoreError("licence_changes has no row")
    return version


_STATES: Mapping[str, LicenceState] = {state.value: state for state in LicenceState}


def _stored(row: Sequence[Any]) -> StoredLicence:
    return StoredLicence(identifier=row[0], lic=orjson.loads(row[1]),
                         state=_STATES[row[2]], status_idx=int(row[3]))


def _by_identifier(conn: Connection, d: Dialect, identifier: str) -> StoredLicence | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM licences WHERE identifier = ?",  # noqa: S608 - constant columns
                       (identifier,)).fetchone()
    return None if row is None else _stored(row)


def _by_holder(conn: Connection, d: Dialect, pseudonyms: Sequence[str],
               type_code: str) -> list[StoredLicence]:
    marks = ", ".join("?" for _ in pseudonyms)
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM licences WHERE holder_hmac IN ({marks}) "  # noqa: S608 - placeholders only
        "AND type_code = ? ORDER BY identifier",
        (*pseudonyms, type_code)).fetchall()
    return [_stored(r) for r in rows]


def _type_published(conn: Connection, d: Dialect, type_code: str) -> bool:
    row = conn.execute("SELECT 1 FROM licences WHERE type_code = ? LIMIT 1",
                       (type_code,)).fetchone()
    return row is not None


_FindArgs = tuple[str, str | None, tuple[str, ...]]
"""One ``find``: type code, identifier (or None), holder lookup keys."""


_IN_SIZES = (1, 2, 4, 8, 16, 32, 64)
"""Lengths of the ``IN (...)`` lists of a batched identifier lookup: a short batch is
padded to the next one, so a handful of statements serve every batch (and stay in the
driver's statement cache)."""
_IN_SQL: dict[int, str] = {}


def _by_identifiers(conn: Connection, d: Dialect, identifiers: Sequence[str]
                    ) -> dict[str, StoredLicence]:
    """The licences with these 证照标识 (the missing ones absent), a few statements for
    the whole batch instead of one each."""
    found: dict[str, StoredLicence] = {}
    largest = _IN_SIZES[-1]
    for start in range(0, len(identifiers), largest):
        chunk = list(identifiers[start:start + largest])
        size = next(n for n in _IN_SIZES if n >= len(chunk))
        chunk += [chunk[-1]] * (size - len(chunk))
        sql = _IN_SQL.get(size)
        if sql is None:
            sql = _IN_SQL[size] = (
                f"SELECT {_COLUMNS} FROM licences WHERE identifier IN "  # noqa: S608 - placeholders only
                f"({', '.join('?' * size)})")
        for row in conn.execute(sql, chunk).fetchall():
            found[row[0]] = _stored(row)
    return found


def _find_many(conn: Connection, d: Dialect, queries: Sequence[_FindArgs]
               ) -> list[tuple[bool, list[StoredLicence]]]:
    published: dict[str, bool] = {}
    for type_code, _, _ in queries:
        if type_code not in published:
            published[type_code] = _type_published(conn, d, type_code)
    wanted = [identifier for type_code, identifier, _ in queries
              if identifier is not None and published[type_code]]
    by_id = _by_identifiers(conn, d, wanted) if wanted else {}
    answers: list[tuple[bool, list[StoredLicence]]] = []
    for type_code, identifier, pseudonyms in queries:
        if not published[type_code]:
            answers.append((False, []))
        elif identifier is not None:
            found = by_id.get(identifier)
            answers.append((True, [] if found is None else [found]))
        else:
            answers.append((True, _by_holder(conn, d, pseudonyms, type_code)
                            if pseudonyms else []))
    return answers


def _status_entries(conn: Connection, _: Dialect) -> StatusEntries:
    top = conn.execute("SELECT MAX(status_idx) FROM licences").fetchone()
    size = 0 if top is None or top[0] is None else int(top[0]) + 1
    values = {int(idx): LicenceState(state).status_value for idx, state in conn.execute(
        "SELECT status_idx, state FROM licences WHERE state <> 'valid'").fetchall()}
    return StatusEntries(size=size, values=values)


def _count(conn: Connection, _: Dialect) -> int:
    row = conn.execute("SELECT COUNT(*) FROM licences").fetchone()
    return int(row[0])


_DIGESTS_IN = 500
"""Identifiers per ``IN (...)`` list when an import batch looks up what is stored."""


def _stored_digests(conn: Connection, d: Dialect, identifiers: Sequence[str]
                    ) -> dict[str, tuple[str, str]]:
    """``identifier -> (content_sha256, holder_hmac)`` of the stored ones among these."""
    found: dict[str, tuple[str, str]] = {}
    for start in range(0, len(identifiers), _DIGESTS_IN):
        part = identifiers[start:start + _DIGESTS_IN]
        rows = conn.execute(
            "SELECT identifier, content_sha256, holder_hmac FROM licences "  # noqa: S608 - placeholders only
            f"WHERE identifier IN ({', '.join('?' * len(part))})",
            list(part)).fetchall()
        found.update((row[0], (row[1], row[2])) for row in rows)
    return found


def _import_batch(conn: Connection, d: Dialect, records: Sequence[LicenceRecord],
                  keyring: HolderKeyring, *, now: str, next_idx: int,
                  counts: ImportCounts) -> int:
    """Write one batch inside the import's transaction: one lookup of what is stored, then
    one statement per kind of write for the whole batch. Returns the next free status
    index."""
    stored = _stored_digests(conn, d, [r.identifier for r in records])
    inserts: list[tuple[Any, ...]] = []
    updates: list[tuple[Any, ...]] = []
    rekeys: list[tuple[str, str]] = []
    for record in records:
        digest = record.content_sha256()
        holder = keyring.pseudonym(str(record.lic["holder_code_type"]),
                                   str(record.lic["holder_code"]))
        row = stored.get(record.identifier)
        # A row given twice in one batch is judged against its first copy, as if written.
        stored[record.identifier] = (digest, holder)
        if row is None:
            inserts.append((record.identifier, record.type_code, holder,
                            orjson.dumps(dict(record.lic)).decode(), record.state.value,
                            next_idx, digest, now, now))
            next_idx += 1
            counts.added += 1
        elif row[0] != digest:
            # The status index stays: partners hold licences that point at it.
            updates.append((record.type_code, holder, orjson.dumps(dict(record.lic)).decode(),
                            record.state.value, digest, now, record.identifier))
            counts.updated += 1
        elif row[1] != holder:
            rekeys.append((holder, record.identifier))
            counts.rekeyed += 1
        else:
            counts.unchanged += 1
    # Inserts first: an update of a row added earlier in this batch finds it.
    if inserts:
        conn.executemany(
            "INSERT INTO licences (identifier, type_code, holder_hmac, lic, state, "
            "status_idx, content_sha256, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", inserts)
    if updates:
        conn.executemany(
            "UPDATE licences SET type_code = ?, holder_hmac = ?, lic = ?, state = ?, "
            "content_sha256 = ?, updated_at = ? WHERE identifier = ?", updates)
    if rekeys:
        conn.executemany("UPDATE licences SET holder_hmac = ? WHERE identifier = ?", rekeys)
    return next_idx


def _import_all(conn: Connection, d: Dialect, records: Iterable[LicenceRecord],
                keyring: HolderKeyring, *, now: str, batch: int) -> ImportCounts:
    counts = ImportCounts()
    with conn.transaction(_WRITE_LOCK):
        top = conn.execute("SELECT MAX(status_idx) FROM licences").fetchone()
        next_idx = 0 if top is None or top[0] is None else int(top[0]) + 1
        part: list[LicenceRecord] = []
        for record in records:
            part.append(record)
            if len(part) >= batch:
                next_idx = _import_batch(conn, d, part, keyring, now=now, next_idx=next_idx,
                                         counts=counts)
                part = []
        if part:
            _import_batch(conn, d, part, keyring, now=now, next_idx=next_idx, counts=counts)
    return counts


# ----------------------------------------------------------------------- sync repository


def licence_db_path(data_dir: Path) -> Path:
    """The SQLite file of the licence library."""
    return data_dir / "licences.db"


def _failed(backend: str, exc: StorageError) -> LicenceStoreError:
    # The driver's error class only: its message may quote a row.
    return LicenceStoreError(f"licence store ({backend}) failed: "
                             f"{type(exc.__cause__ or exc).__name__}")


class LicenceRepository:
    """Synchronous access for the CLI (and tests): import rows, read them back."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._dialect = conn.dialect
        self.backend = conn.dialect.name

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(self._conn, self._dialect, *args)
        except StorageError as exc:
            raise _failed(self.backend, exc) from exc

    def setup(self) -> None:
        """Bring the schema up to date (made when missing)."""
        self._call(_setup)

    def import_records(self, records: Iterable[LicenceRecord], keyring: HolderKeyring,
                       *, batch: int = 2000) -> ImportCounts:
        """Add or update ``records`` in one transaction, written ``batch`` rows at a time.

        ``records`` may be a generator (a file being read): it is drawn one batch at a
        time, so memory holds one batch whatever the number of rows. The import is
        all or nothing: when the store fails, or ``records`` raises (a file that turns
        out unreadable halfway), nothing of it is stored. A row whose content is
        unchanged is left as it is, so importing the same file twice changes nothing.
        A combined certificate's components are stored too, each as a licence of its own
        (counted as rows).
        """
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        rows = (row for record in records for row in (record, *record.components))
        return self._call(functools.partial(_import_all, now=now, batch=max(1, batch)),
                          rows, keyring)

    def by_identifier(self, identifier: str) -> StoredLicence | None:
        """The licence with this 证照标识."""
        return self._call(_by_identifier, identifier)

    def count(self) -> int:
        """Number of licences held."""
        return self._call(_count)

    def status_entries(self) -> StatusEntries:
        """The status list's length and non-valid entries."""
        return self._call(_status_entries)

    def close(self) -> None:
        """Close the connection."""
        self._call(lambda conn, _: conn.close())


def licence_database(data_dir: Path, postgres_dsn: str | None) -> Database:
    """Where the settings keep the licence library: PostgreSQL, else ``licences.db``."""
    return Database.of(licence_db_path(data_dir), postgres_dsn)


@contextmanager
def open_repository(data_dir: Path, postgres_dsn: str | None = None
                    ) -> Iterator[LicenceRepository]:
    """A set-up repository on PostgreSQL when ``postgres_dsn`` is given, else on SQLite."""
    try:
        repo = LicenceRepository(licence_database(data_dir, postgres_dsn).connect())
    except StorageError as exc:
        raise LicenceStoreError("cannot open the licence store: "
                                f"{type(exc.__cause__ or exc).__name__}") from exc
    try:
        repo.setup()
        yield repo
    finally:
        repo.close()


# ----------------------------------------------------------------------- async port


class LicenceStore(Protocol):
    """What the partner API asks of the licence library. Every method may raise
    ``LicenceStoreError``."""

    backend: str

    @property
    def memory_counts(self) -> Mapping[str, int]:
        """What the store's memory of licences did: ``hit``, ``miss`` (an identifier find
        that went to the store), ``dropped`` (forgotten after a change or a failed check)
        and ``check-failed`` (``/metrics``)."""

    @property
    def remembered(self) -> int:
        """Licences held in memory now."""

    async def open(self) -> None:
        """Connect and create the schema if missing."""

    async def close(self) -> None:
        """Release the connection."""

    async def ping(self) -> None:
        """Raise unless the store answers (readiness)."""

    async def by_identifier(self, identifier: str) -> StoredLicence | None:
        """The licence with this 证照标识."""

    async def by_holder(self, pseudonyms: Sequence[str], type_code: str) -> list[StoredLicence]:
        """Licences of one type held by the holder with any of these lookup keys."""

    async def find(self, type_code: str, *, identifier: str | None = None,
                   pseudonyms: Sequence[str] = ()) -> tuple[bool, list[StoredLicence]]:
        """A query in one store round trip: whether Huzhou publishes ``type_code`` at all,
        and (when it does) the licence with ``identifier``, or else the licences of that
        type held under any of ``pseudonyms``."""

    async def status_entries(self) -> StatusEntries:
        """The status list's length and non-valid entries."""


class _ThreadedStore:
    """Shared query methods; subclasses say how a function reaches the connection.

    ``cache_size`` licences found by identifier are remembered (module docstring);
    ``poll_s`` is how often the store asks whether the library changed.
    """

    def __init__(self, database: Database, *, name: str, connect_timeout: int | None = None,
                 cache_size: int = 0, poll_s: float = CHANGE_POLL_S) -> None:
        self.backend = database.backend
        self._dialect = database.dialect
        self._db = Worker.connection(database, name=name, connect_timeout=connect_timeout)
        # Concurrent queries share one trip to the store's thread (see gateway.infra.coalesce).
        self._finds: Coalescer[_FindArgs, tuple[bool, list[StoredLicence]]] = Coalescer(
            self._find_many)
        self._cache_size = max(0, cache_size)
        self._poll_s = poll_s
        self._known: dict[tuple[str, str], tuple[StoredLicence, float]] = {}
        """(type code, identifier) to the licence and when it was read (monotonic), oldest
        first (dicts keep order)."""
        self._generation = 0
        """Moves when ``_known`` is dropped: a lookup begun before must not refill it."""
        self._version: int | None = None
        self._checked = -math.inf
        """When the last check that found the library unchanged started (monotonic)."""
        self._watcher: asyncio.Task[None] | None = None
        self._counts: dict[str, int] = dict.fromkeys(("hit", "miss", "dropped", "check-failed"), 0)

    @property
    def memory_counts(self) -> Mapping[str, int]:
        """What the memory of licences did (``LicenceStore.memory_counts``)."""
        return self._counts

    @property
    def remembered(self) -> int:
        """Licences held in memory now."""
        return len(self._known)

    async def open(self) -> None:
        """Connect, create the schema if missing, and start watching the library for
        changes; an open that fails closes what it opened."""
        try:
            await self._call(_setup)
            if self._cache_size:
                await self._check()
                self._watcher = asyncio.create_task(self._watch(),
                                                    name=f"licences-{self.backend}-watch")
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop watching, close the connection and stop its thread."""
        await self._stop_watching()
        await self._db.close()

    async def _stop_watching(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        self._forget()

    def _forget(self) -> None:
        if self._known:
            self._counts["dropped"] += 1
        self._known.clear()
        self._generation += 1

    async def _check(self) -> None:
        started = time.monotonic()
        try:
            version = await self._call(_change_version)
        except Exception as exc:
            # ``_checked`` stays old: nothing is served from memory until a check passes.
            self._counts["check-failed"] += 1
            self._forget()
            _log.warning("licence library change check failed: %s", exc,
                         exc_info=not isinstance(exc, LicenceStoreError))
            return
        if version != self._version:
            self._version = version
            self._forget()
        self._checked = started

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            await self._check()

    async def _run(self, fn: Callable[[Connection], T]) -> T:
        return await self._db.run(fn)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        dialect = self._dialect
        try:
            return await self._run(lambda conn: fn(conn, dialect, *args))
        except StorageError as exc:
            raise _failed(self.backend, exc) from exc

    async def ping(self) -> None:
        """Raise unless the store answers."""
        await self._call(_count)

    async def by_identifier(self, identifier: str) -> StoredLicence | None:
        """The licence with this 证照标识."""
        return await self._call(_by_identifier, identifier)

    async def by_holder(self, pseudonyms: Sequence[str], type_code: str) -> list[StoredLicence]:
        """Licences of one type held by the holder with any of these lookup keys."""
        if not pseudonyms:
            return []
        return await self._call(_by_holder, list(pseudonyms), type_code)

    async def find(self, type_code: str, *, identifier: str | None = None,
                   pseudonyms: Sequence[str] = ()) -> tuple[bool, list[StoredLicence]]:
        """Type check and lookup on the store's thread (or connection), in one trip with
        the other queries waiting at the same moment; a licence found by identifier
        before, and unchanged since, is answered from memory."""
        if identifier is None or not self._cache_size:
            return await self._finds((type_code, identifier, tuple(pseudonyms)))
        key = (type_code, identifier)
        known = self._known.get(key)
        counts = self._counts
        now = time.monotonic()
        if known is not None and now - self._checked < 2 * self._poll_s \
                and now - known[1] < REMEMBER_S:
            counts["hit"] += 1
            return True, [known[0]]
        counts["miss"] += 1
        generation = self._generation
        published, found = await self._finds((type_code, identifier, ()))
        if found and generation == self._generation:
            self._known.pop(key, None)  # re-read: it moves to the young end
            if len(self._known) >= self._cache_size:
                del self._known[next(iter(self._known))]
            self._known[key] = (found[0], now)
        return published, found

    async def _find_many(self, queries: list[_FindArgs]
                         ) -> list[tuple[bool, list[StoredLicence]]]:
        return await self._call(_find_many, queries)

    async def status_entries(self) -> StatusEntries:
        """The status list's length and non-valid entries."""
        return await self._call(_status_entries)


class SqliteLicenceStore(_ThreadedStore):
    """The licence library in ``DATA_DIR/licences.db``, served by one SQLite thread."""

    def __init__(self, path: Path, *, cache_size: int = 0,
                 poll_s: float = CHANGE_POLL_S) -> None:
        super().__init__(Database.sqlite(path), name=f"sqlite-{path.name}",
                         cache_size=cache_size, poll_s=poll_s)


class PostgresLicenceStore(_ThreadedStore):
    """The licence library in PostgreSQL; one connection, used from one thread (made
    again when the server dropped it)."""

    def __init__(self, dsn: str, *, cache_size: int = 0, poll_s: float = CHANGE_POLL_S) -> None:
        super().__init__(Database.postgres(dsn), name="pg-licences", connect_timeout=5,
                         cache_size=cache_size, poll_s=poll_s)


def open_store(settings: Settings) -> LicenceStore:
    """The store the settings name (unopened): PostgreSQL when ``postgres_dsn`` is set."""
    size = settings.licence_cache_max_entries
    if settings.postgres_dsn:
        return PostgresLicenceStore(settings.postgres_dsn, cache_size=size)
    return SqliteLicenceStore(licence_db_path(settings.data_dir), cache_size=size)

