"""Cursor arithmetic: the read's upper bound is capped by the source clock, and watermarks only move forward."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from pipezone.core.spec.cursor_values import capped, later, parse_cursor_text

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
BUFFER = timedelta(seconds=10)


def test_a_timestamp_is_capped_at_source_now_minus_the_buffer() -> None:
    assert capped(NOW + timedelta(hours=1), NOW, BUFFER) == NOW - BUFFER  # a row stamped in the future waits
    assert capped(NOW - timedelta(seconds=3), NOW, BUFFER) == NOW - BUFFER  # still in flight, maybe
    old = NOW - timedelta(minutes=1)
    assert capped(old, NOW, BUFFER) == old


def test_a_date_cursor_reads_closed_days_only() -> None:
    assert capped(date(2026, 11, 23), NOW, BUFFER) == date(2026, 11, 22)
    assert capped(date(2026, 11, 20), NOW, BUFFER) == date(2026, 11, 20)


def test_numbers_and_unknown_clocks_are_not_capped() -> None:
    assert capped(500, NOW, BUFFER) == 500
    assert capped(NOW + BUFFER, None, BUFFER) == NOW + BUFFER
    assert capped(None, NOW, BUFFER) is None


def test_later_compares_dates_with_datetimes() -> None:
    assert later(datetime(2026, 1, 2, 0, 0, 1, tzinfo=UTC), date(2026, 1, 2))
    assert not later(date(2026, 1, 2), datetime(2026, 1, 2, tzinfo=UTC))
    assert later(3, 2) and not later(2, 2)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("42", 42),
        ("-7", -7),
        ("10.50", Decimal("10.50")),
        ("2024-03-01", date(2024, 3, 1)),
        ("2024-03-01 10:00:00", datetime(2024, 3, 1, 10, tzinfo=UTC)),
        ("2024-03-01T10:00:00+02:00", datetime(2024, 3, 1, 8, tzinfo=UTC)),
        ("abc", "abc"),
    ],
)
def test_parse_cursor_text(text: str, value: object) -> None:
    assert parse_cursor_text(text) == value
