"""Values into and out of state-store columns: typed watermarks, aware datetimes, JSON details, clipped errors.

The store is half of the commit protocol, so a watermark must come back as an equal value of the type it
was set with, and a datetime must never be stored without knowing its zone. These rules are kept apart
from the tables and queries so that each can be checked (and property-tested) on its own.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from pipezone.core.state.errors import StateStoreError

ERROR_MAX_CHARS = 20_000

WatermarkValue = int | float | Decimal | datetime | date | str


def encode_watermark(value: WatermarkValue) -> tuple[str, str]:
    """Return (type tag, text) such that `decode_watermark` gives back an equal value of the same type."""
    if isinstance(value, bool):
        raise TypeError("watermark cannot be a bool")
    if isinstance(value, int):
        return "int", str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"watermark must be a finite number, got {value}")
        return "float", repr(value)  # repr is the shortest text that parses back to the same double
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"watermark must be a finite Decimal, got {value}")
        return "decimal", str(value)
    if isinstance(value, datetime):
        return "datetime", require_aware(value).astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, date):
        return "date", value.isoformat()
    if isinstance(value, str):
        return "str", value
    raise TypeError(
        f"unsupported watermark type {type(value).__name__}: use int, float, Decimal, aware datetime, date or str"
    )


def decode_watermark(type_tag: str, text: str) -> WatermarkValue:
    """Inverse of `encode_watermark`."""
    decoders: dict[str, Callable[[str], WatermarkValue]] = {
        "int": int,
        "float": float,
        "decimal": Decimal,
        "datetime": lambda s: datetime.fromisoformat(s).astimezone(UTC),
        "date": date.fromisoformat,
        "str": str,
    }
    try:
        return decoders[type_tag](text)
    except KeyError:
        raise StateStoreError(f"unknown watermark type tag {type_tag!r}") from None


def require_aware(value: datetime) -> datetime:
    """`value` itself, when it carries a timezone; a naive datetime is refused."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()} is ambiguous: attach a timezone (UTC)")
    return value


def _json_default(value: Any) -> Any:
    """Details are for people reading logs: an odd value becomes its text rather than failing the step."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def dump_json(value: dict[str, Any] | None) -> str | None:
    """A step's details as sorted JSON (None stays None)."""
    return None if value is None else json.dumps(value, sort_keys=True, default=_json_default)


def as_text(value: Any) -> str | None:
    """Quality observations arrive as numbers, lists or strings; keep strings as they are."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=_json_default)


def clip_error(error: str | None) -> str | None:
    """Keep the head (what failed) and the tail (Java's `Caused by`) of very long errors."""
    if error is None or len(error) <= ERROR_MAX_CHARS:
        return error
    half = ERROR_MAX_CHARS // 2
    return f"{error[:half]}\n... [{len(error) - 2 * half} characters cut] ...\n{error[-half:]}"


def check_choice(value: str, allowed: Sequence[str], what: str) -> str:
    """`value` itself when it is one of `allowed`, else a ValueError naming `what`."""
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)}; got {value!r}")
    return value
