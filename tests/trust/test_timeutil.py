"""China Standard Time day boundaries, as licences and their signed forms use them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trust import day_start_s
from trust._timeutil import FIRST_DAY, LAST_DAY, day_end, day_start

_UTC8 = timezone(timedelta(hours=8))


@given(st.dates(min_value=FIRST_DAY, max_value=LAST_DAY))
def test_day_start_is_midnight_in_utc8(day: date) -> None:
    """The arithmetic agrees with the calendar: 00:00 at UTC+08:00 on that day."""
    expected = datetime(day.year, day.month, day.day, tzinfo=_UTC8)
    assert expected.timestamp() == day_start_s(day)
    assert expected == day_start(day)
    assert UTC == day_start(day).tzinfo
    assert expected + timedelta(days=1) == day_end(day)


@pytest.mark.parametrize(("day", "seconds"), [
    (date(1970, 1, 1), -28800),           # the epoch is 08:00 in China
    (date(2026, 11, 27), 1_795_708_800),  # 2026-11-26T16:00:00Z
], ids=str)
def test_known_values(day: date, seconds: int) -> None:
    """Fixed points worked out by hand."""
    assert seconds == day_start_s(day)
