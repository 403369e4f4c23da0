"""Audit records: fixed fields in a fixed order, canonical bytes, times in UTC."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import unicodedata
from datetime import UTC, datetime, timedelta, timezone
from types import MappingProxyType

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.audit._keys import HmacKeyring
from gateway.audit._record import (
    RECORD_FIELDS,
    Pseudonymiser,
    build_record,
    encode_record,
    event_time_ms,
    time_ms,
)
from tests.audit.conftest import HOLDER_CODE, event

_PS = Pseudonymiser(HmacKeyring({1: secrets.token_bytes(32)}))


def _record(**overrides: object) -> dict[str, object]:
    return build_record(event(**overrides), event_id="id-1", pseudonymiser=_PS, gateway="330500")


def test_fields_in_order_and_no_raw_personal_data() -> None:
    """Every record has exactly the fixed fields, in order; personal values are hashed."""
    record = _record()
    assert RECORD_FIELDS == tuple(record)
    encoded = encode_record(record)
    assert HOLDER_CODE.encode() not in encoded
    assert list(orjson.loads(encoded)) == sorted(RECORD_FIELDS)  # canonical: sorted keys


def test_other_mappings_are_encoded_like_dicts() -> None:
    """Read-only mappings in an event are recorded as the same JSON as dicts."""
    plain = _record(matter_before={"region": "330500", "code": "M-001"},
                    details={"b": 1, "a": [1, 2]})
    proxied = _record(matter_before=MappingProxyType({"code": "M-001", "region": "330500"}),
                      details=MappingProxyType({"a": [1, 2], "b": 1}),
                      matters_after=(MappingProxyType({"code": "S-9", "region": "310000"}),))
    assert encode_record(plain) == encode_record(proxied)


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(9998, 12, 30),  # noqa: DTZ001 - hypothesis bounds are naive
                    timezones=st.sampled_from([UTC, timezone(timedelta(hours=8)),
                                               timezone(timedelta(hours=-5, minutes=-30))])))
def test_time_is_utc_milliseconds(at: datetime) -> None:
    """The record's time is the instant in UTC, to the millisecond, ending in Z, whatever
    the event's zone; it agrees with ``time_ms``."""
    text = _record(at=at)["time"]
    assert isinstance(text, str)
    assert text.endswith("Z")
    utc = at.astimezone(UTC)
    assert text == utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    parsed = datetime.fromisoformat(text)
    assert time_ms(at) == time_ms(parsed)


def test_the_stored_milliseconds_are_the_instant_of_the_record_just_built() -> None:
    """``event_time_ms`` reuses the milliseconds of the record just built only for that
    very instant: another instant, even an equal one in another zone or a later one,
    gets its own, and a naive one is refused before anything is kept."""
    first = datetime(2026, 12, 7, 14, 5, 6, 789_999, tzinfo=UTC)
    text = _record(at=first)["time"]
    assert text == "2026-12-07T14:05:06.789Z"
    assert event_time_ms(first) == time_ms(first) == 1_796_652_306_789
    later = first + timedelta(milliseconds=1)
    assert event_time_ms(later) == time_ms(first) + 1  # not the one kept
    elsewhere = first.astimezone(timezone(timedelta(hours=8)))
    assert event_time_ms(elsewhere) == time_ms(first)
    with pytest.raises(ValueError, match="timezone-aware"):
        _record(at=datetime(2026, 12, 7, 14, 5, 6))  # noqa: DTZ001 - the naive time refused
    assert event_time_ms(first) == time_ms(first)


def test_times_of_one_second_and_the_next_share_nothing_stale() -> None:
    """The text of a second is kept for the records of that second: a record a millisecond
    later in the same second, in the next second, back in the earlier one, or the same
    instant in another zone, each gets its own time."""
    base = datetime(2026, 12, 6, 21, 40, 13, 999_999, tzinfo=UTC)
    shanghai = timezone(timedelta(hours=8))
    for at, expected in [
        (base, "2026-12-06T21:40:13.999Z"),
        (base - timedelta(microseconds=998_000), "2026-12-06T21:40:13.001Z"),
        (base + timedelta(microseconds=1), "2026-12-06T21:40:14.000Z"),
        (base - timedelta(milliseconds=500), "2026-12-06T21:40:13.499Z"),
        (base.astimezone(shanghai), "2026-12-06T21:40:13.999Z"),
        (datetime(2026, 12, 31, 23, 59, 59, 1_500, tzinfo=UTC), "2026-12-31T23:59:59.001Z"),
        (datetime(2027, 1, 1, 0, 0, 0, tzinfo=UTC), "2027-01-01T00:00:00.000Z"),
    ]:
        assert _record(at=at)["time"] == expected


def test_naive_time_is_refused() -> None:
    """An event time without a zone cannot be recorded."""
    with pytest.raises(ValueError, match="timezone-aware"):
        _record(at=datetime(2026, 11, 26, 8, 30))  # noqa: DTZ001 - the point of the test


@given(key=st.binary(min_size=1, max_size=100), value=st.text(max_size=40))
def test_pseudonym_is_hmac_sha256_of_the_normalised_value(key: bytes, value: str) -> None:
    """The prepared HMAC state gives exactly ``hmac.new(key, value, sha256)``, for keys
    shorter and longer than SHA-256's block; the memo hands out equal fresh copies."""
    pseudonymiser = Pseudonymiser(HmacKeyring({3: key}))
    for field in ("holder_code", "holder_name"):
        normalised = unicodedata.normalize("NFC", value.strip())
        if "name" not in field:
            normalised = normalised.upper()
        expected = hmac.new(key, normalised.encode("utf-8", "surrogatepass"),
                            hashlib.sha256).hexdigest()
        try:
            got = pseudonymiser.pseudonym(field, value)
        except UnicodeEncodeError:  # lone surrogates are not text a record can hold
            continue
        assert f"hmac:v3:{expected}" == got
        first = pseudonymiser.protected(field, value)
        assert first == pseudonymiser.protect({field: value})[field]
        first["hmac"] = "changed"
        assert pseudonymiser.protected(field, value)["hmac"] == got
