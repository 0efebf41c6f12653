"""Cursor values as they travel between the source, the state store and SQL literals.

Sources hand back timestamps as naive datetimes (PySpark converts to the process's local time) or, for
SQLite, as ISO text; watermarks are kept as aware UTC datetimes so lookback arithmetic and comparisons
are exact whatever the source.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from pipezone.core.spec.value_types import parse_duration

CursorValue = int | float | Decimal | datetime | date | str

_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|[+-]\d{2}:?\d{2})?$")


def normalize(value: Any) -> CursorValue | None:
    """Aware UTC datetimes for anything time-like (ISO text included); numbers and other text unchanged."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC)  # naive = local time of this process, as PySpark returns it
    if isinstance(value, str) and _ISO.match(value.strip()):
        text = value.strip().replace("Z", "+00:00")
        parsed = datetime.fromisoformat(text)
        if len(text) == 10:
            return parsed.date()
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    return value


def minus_lookback(value: CursorValue, lookback: str | int) -> CursorValue:
    """`value` moved back by the flow's lookback: a duration for times, a number for numeric cursors."""
    if not lookback:
        return value
    if isinstance(value, datetime | date):
        delta = parse_duration(lookback) if isinstance(lookback, str) else timedelta(seconds=lookback)
        return value - delta
    if isinstance(value, int | float | Decimal) and isinstance(lookback, int):
        return value - lookback
    raise ValueError(f"lookback {lookback!r} does not fit cursor value {value!r}")


def capped(hi: CursorValue | None, now: CursorValue | None, buffer: timedelta) -> CursorValue | None:
    """The read's upper bound: the source's max cursor, but for time cursors no later than the source's
    clock minus `buffer` (rows of transactions still in flight commit with earlier cursor values). A
    DATE cursor reads closed days only (a day's rows can still arrive until it ends)."""
    if hi is None or not isinstance(now, datetime):
        return hi
    limit = now - buffer
    if isinstance(hi, datetime):
        return min(hi, limit)
    if isinstance(hi, date):
        return min(hi, limit.date() - timedelta(days=1))
    return hi


def later(a: CursorValue, b: CursorValue) -> bool:
    """a > b, comparing a date with a datetime by its midnight (UTC), so watermarks only move forward."""
    if isinstance(a, datetime) != isinstance(b, datetime) and isinstance(a, date) and isinstance(b, date):
        a, b = (x if isinstance(x, datetime) else datetime(x.year, x.month, x.day, tzinfo=UTC) for x in (a, b))
    return a > b  # type: ignore[operator]


def parse_cursor_text(text: str) -> CursorValue:
    """A cursor value typed on the command line: an integer, a decimal, an ISO date/time, else the text."""
    text = text.strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if re.fullmatch(r"-?\d+\.\d+", text):
        return Decimal(text)
    value = normalize(text)
    assert value is not None
    return value
