"""Audit records: the canonical bytes that become Merkle leaves.

A record is a JSON object with a fixed set of fields (absent values are
``null``), serialised by orjson with sorted keys, so the same record always
gives the same bytes and the same leaf hash. Personal data never appears raw:
each ``AuditEvent.personal`` value becomes ``{"hmac": "hmac:v<N>:<hex>",
"mask": "..."}`` where the HMAC-SHA256 key lives outside the log.
"""

from __future__ import annotations

import hashlib
import os
import struct
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from gateway.audit._keys import HmacKeyring
from gateway.audit.event import AuditEvent

__all__ = [
    "RECORD_FIELDS",
    "RECORD_VERSION",
    "Pseudonymiser",
    "Uuid7Generator",
    "build_record",
    "encode_record",
    "mask",
    "record_time_ms",
    "time_ms",
]

RECORD_VERSION = 1

RECORD_FIELDS = (
    "v", "event_id", "time", "event_type", "actor_kind", "actor_id", "source_addr",
    "outcome", "sub_indication", "cn_status", "use_cause", "matter_before",
    "matters_after", "licence_identifier", "licence_type", "issuer_region",
    "partner_region", "trust_list_version", "cached", "latency_ms", "request_id",
    "personal", "details", "gateway",
)  # fmt: skip


_U64 = struct.Struct(">Q")


class Uuid7Generator:
    """RFC 9562 UUIDv7: 48-bit Unix milliseconds, then a 12-bit counter and 62 random bits.

    Monotonic within the process (RFC 9562 6.2 method 1): ids made in the same
    millisecond, or after the clock stepped back, count up from the last one.
    The random bits come from the operating system's CSPRNG (RFC 9562 6.9),
    read 4 KiB at a time rather than with one system call per id.
    """

    _POOL_BYTES = 4096

    def __init__(self, clock_ms: Callable[[], int]) -> None:
        self._clock_ms = clock_ms
        self._last_ms = -1
        self._counter = 0
        self._pool = b""
        self._offset = 0

    def __call__(self) -> str:
        """A new id in the 8-4-4-4-12 hex form."""
        now = self._clock_ms()
        offset = self._offset
        if offset >= len(self._pool):
            self._pool, offset = os.urandom(self._POOL_BYTES), 0
        (bits,) = _U64.unpack_from(self._pool, offset)
        self._offset = offset + 8
        if now > self._last_ms:
            self._last_ms = now
            self._counter = bits >> 53  # 11 random bits: leave room to count up
        else:
            self._counter += 1
            if self._counter >= 1 << 12:
                self._last_ms += 1
                self._counter = 0
        # The five groups of the 128 bits: the 48-bit time (32 + 16 bits), version 7 and
        # the counter, variant 10 and 14 random bits, the last 48 random bits.
        ms = self._last_ms & 0xFFFF_FFFF_FFFF
        return "%08x-%04x-%04x-%04x-%012x" % (  # noqa: UP031 - one call, no 128-bit int
            ms >> 16, ms & 0xFFFF, 0x7000 | self._counter,
            0x8000 | (bits >> 48) & 0x3FFF, bits & 0xFFFF_FFFF_FFFF)


def mask(field: str, value: str) -> str:
    """A form a person may read: names keep their first character, codes their ends."""
    value = value.strip()
    if not value:
        return ""
    if "name" in field:
        return value[0] + "*" * max(1, len(value) - 1)
    if len(value) > 8:
        return value[:4] + "*" * (len(value) - 8) + value[-4:]
    return value[0] + "*" * max(1, len(value) - 1)


def _normalise(field: str, value: str) -> str:
    value = unicodedata.normalize("NFC", value.strip())
    # Codes and id numbers are case-insensitive (a 身份证号 may end in x or X).
    return value if "name" in field else value.upper()


class _HmacSha256:
    """HMAC-SHA256 under one key (RFC 2104), the key's two padded blocks hashed once.

    Each value then costs two ``copy()`` of a prepared SHA-256 state, two updates
    and two digests, where a one-shot ``hmac.digest`` hashes the padded key again
    every time. Same bytes as ``hmac.digest``.
    """

    __slots__ = ("_inner", "_outer")

    _BLOCK = 64  # SHA-256's block size

    def __init__(self, key: bytes) -> None:
        if len(key) > self._BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(self._BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def hexdigest(self, message: bytes) -> str:
        """``HMAC-SHA256(key, message)`` in lower-case hex."""
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


class Pseudonymiser:
    """Keyed hashes and masks of personal values.

    The protected forms of the most recent values are remembered (a bounded
    LRU, in this process only): the same licence holder is seen again and again.
    """

    MEMO_SIZE = 4096

    def __init__(self, keyring: HmacKeyring) -> None:
        self._keyring = keyring
        self._macs: dict[int, _HmacSha256] = {}
        self._memo: OrderedDict[tuple[str, str, int], dict[str, str]] = OrderedDict()

    def _mac(self, version: int) -> _HmacSha256:
        mac = self._macs.get(version)
        if mac is None:
            mac = self._macs[version] = _HmacSha256(self._keyring.key(version))
        return mac

    def pseudonym(self, field: str, value: str, version: int | None = None) -> str:
        """``hmac:v<N>:<hex>`` of the normalised value under key version N."""
        version = self._keyring.current if version is None else version
        digest = self._mac(version).hexdigest(_normalise(field, value).encode("utf-8"))
        return f"hmac:v{version}:{digest}"

    def _remember(self, key: tuple[str, str, int]) -> dict[str, str]:
        field, value, _ = key
        memo = self._memo
        found = memo[key] = {"hmac": self.pseudonym(field, value), "mask": mask(field, value)}
        if len(memo) > self.MEMO_SIZE:
            memo.popitem(last=False)
        return found

    def protected(self, field: str, value: str) -> dict[str, str]:
        """One value's pseudonym and mask (a fresh dict the caller may keep)."""
        return dict(self.protect({field: value})[field])

    def protect(self, personal: Mapping[str, str]) -> dict[str, dict[str, str]]:
        """Every personal value as its pseudonym and mask. The inner dicts are shared with
        the memo: encode them, never change them (``build_record`` encodes at once)."""
        memo = self._memo
        current = self._keyring.current
        protected: dict[str, dict[str, str]] = {}
        for field, value in personal.items():
            key = (field, value, current)
            found = memo.get(key)
            if found is None:
                found = self._remember(key)
            else:
                memo.move_to_end(key)
            protected[field] = found
        return protected


_last_time: tuple[datetime | None, str, int] = (None, "", 0)


def _time(at: datetime) -> str:
    global _last_time  # noqa: PLW0603 - a one-entry cache: a batch's records share one instant
    last, text, _ = _last_time
    if at is last:
        return text
    if at.tzinfo is None:
        raise ValueError("audit event time must be timezone-aware")
    ms = time_ms(at)
    text = _time_text(ms)
    _last_time = (at, text, ms)
    return text


def event_time_ms(at: datetime) -> int:
    """``time_ms(at)``, taken from the record just built when ``at`` is its very instant
    (the store's ``ts_ms`` column beside the record's ``time``: computed once)."""
    last, _, ms = _last_time
    return ms if at is last else time_ms(at)


_second_text: tuple[int, str] = (0, "1970-01-01T00:00:00")


def _time_text(ms: int) -> str:
    """RFC 3339 UTC, milliseconds, ``Z``: the text of the instant ``ms`` (Unix
    milliseconds), as ``isoformat(timespec="milliseconds")`` writes it once truncated to
    its millisecond. The text of the second is made once per second (records of one
    second share it); only the milliseconds are new."""
    global _second_text  # noqa: PLW0603 - a one-entry cache, as _last_time
    second, milli = divmod(ms, 1000)
    known, prefix = _second_text
    if second != known:
        prefix = (_EPOCH + timedelta(seconds=second)).isoformat()[:-6]
        _second_text = (second, prefix)
    return f"{prefix}.{milli:03d}Z"


def _plain(value: Mapping[str, Any]) -> dict[str, Any]:
    # The record is encoded as soon as it is built, so a dict is taken as it is; orjson
    # needs a dict, so any other mapping is copied into one.
    return value if type(value) is dict else dict(value)


def build_record(
    event: AuditEvent, *, event_id: str, pseudonymiser: Pseudonymiser, gateway: str
) -> dict[str, Any]:
    """The record of an event: the fields of ``RECORD_FIELDS`` in that order, personal data
    pseudonymised. It shares the event's dicts: encode it before changing them."""
    return {
        "v": RECORD_VERSION,
        "event_id": event_id,
        "time": _time(event.at),
        "event_type": str(event.event_type),
        "actor_kind": str(event.actor_kind),
        "actor_id": event.actor_id,
        "source_addr": event.source_addr,
        "outcome": event.outcome,
        "sub_indication": event.sub_indication,
        "cn_status": event.cn_status,
        "use_cause": event.use_cause,
        "matter_before": None if event.matter_before is None else _plain(event.matter_before),
        "matters_after": [_plain(m) for m in event.matters_after],
        "licence_identifier": event.licence_identifier,
        "licence_type": event.licence_type,
        "issuer_region": event.issuer_region,
        "partner_region": event.partner_region,
        "trust_list_version": event.trust_list_version,
        "cached": event.cached,
        "latency_ms": None if event.latency_ms is None else round(event.latency_ms, 3),
        "request_id": event.request_id,
        "personal": pseudonymiser.protect(event.personal),
        "details": _plain(event.details),
        "gateway": gateway,
    }


def encode_record(record: Mapping[str, Any]) -> bytes:
    """Canonical bytes: orjson, sorted keys, no whitespace, UTF-8."""
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def time_ms(at: datetime) -> int:
    """Unix milliseconds of an aware instant, truncated as the record's ``time`` is.

    Integer arithmetic: ``timestamp() * 1000`` is a float and can land a
    millisecond low.
    """
    return (at - _EPOCH) // _MS


def record_time_ms(record: Mapping[str, Any]) -> int:
    """The record's time as Unix milliseconds."""
    return time_ms(datetime.fromisoformat(str(record["time"])))


def record_partner(record: Mapping[str, Any]) -> str | None:
    """The partner region a record concerns: the querying partner or the issuer."""
    value = record.get("partner_region") or record.get("issuer_region")
    return None if value is None else str(value)


def record_matter(record: Mapping[str, Any]) -> str | None:
    """The matter as the caller named it, ``region:code``."""
    matter = record.get("matter_before")
    if not isinstance(matter, Mapping):
        return None
    return f"{matter.get('region', '')}:{matter.get('code', '')}"
