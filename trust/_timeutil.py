"""Time parsing for trust data. No clock: times are always arguments."""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, timedelta, timezone

__all__ = ["CHINA_TZ", "day_end", "day_start", "day_start_s", "parse_rfc3339", "require_aware"]

CHINA_TZ = timezone(timedelta(hours=8), "CST")
"""Licence dates (有效期, 颁发日期) are calendar days in China Standard Time."""


def require_aware(at: datetime, name: str = "at") -> datetime:
    """Refuse naive datetimes: every check takes an aware time."""
    if at.tzinfo is UTC:
        return at
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return at.astimezone(UTC)


def parse_rfc3339(text: object, name: str) -> datetime:
    """Parse an RFC 3339 timestamp with an explicit offset (``Z`` or ``+hh:mm``)."""
    if not isinstance(text, str) or len(text) < 20 or "T" not in text.upper():
        raise ValueError(f"{name} must be an RFC 3339 date-time string")
    try:
        value = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError as exc:
        raise ValueError(f"{name} is not an RFC 3339 date-time: {text!r}") from exc
    if value.tzinfo is None:
        raise ValueError(f"{name} must carry a time zone offset")
    return value.astimezone(UTC)


FIRST_DAY = date(1900, 1, 1)
LAST_DAY = date(9998, 12, 31)
"""Calendar days a licence may name; outside them a day's instants in UTC+8 may not exist."""


def parse_day(text: object, name: str) -> date:
    """Parse ``YYYY-MM-DD`` between ``FIRST_DAY`` and ``LAST_DAY``."""
    if not isinstance(text, str) or len(text) != 10:
        raise ValueError(f"{name} must be YYYY-MM-DD")
    try:
        day = date.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"{name} is not a valid date: {text!r}") from exc
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ValueError(f"{name} is outside {FIRST_DAY.isoformat()}..{LAST_DAY.isoformat()}")
    return day


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_CHINA_OFFSET_S = 8 * 3600  # CHINA_TZ: UTC+08:00, no daylight saving


def day_start_s(day: date) -> int:
    """First instant of ``day`` in China Standard Time as a NumericDate (seconds since the
    epoch), by day arithmetic: it is on the hot path of every licence Huzhou signs."""
    return (day.toordinal() - _EPOCH_ORDINAL) * 86400 - _CHINA_OFFSET_S


@functools.lru_cache(maxsize=4096)
def day_start(day: date) -> datetime:
    """First instant of ``day`` in China Standard Time, as UTC."""
    return datetime.fromtimestamp(day_start_s(day), UTC)


@functools.lru_cache(maxsize=4096)
def day_end(day: date) -> datetime:
    """First instant after ``day`` (inclusive end date) in China Standard Time, as UTC."""
    return day_start(day) + timedelta(days=1)
