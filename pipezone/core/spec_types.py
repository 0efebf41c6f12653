"""Value types shared by the flow and connection specs: identifiers, names, durations, secret references.

Each type carries its own JSON Schema so editors flag the same mistakes `pipezone validate` does.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, PlainSerializer, WithJsonSchema
from pydantic_core import PydanticCustomError


class SpecModel(BaseModel):
    """Base of every spec: unknown keys are errors (a typo must never be silently ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


IDENTIFIER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
SECRET_REF_PATTERN = r"^\$\{(env|file|vault):([^}#]+)(#[^}]+)?\}$"
DURATION_PATTERN = r"^\s*(\d+)\s*(ms|s|m|h|d|w)\s*$"
SPARK_TYPE_PATTERN = (
    r"^(string|boolean|tinyint|smallint|int|integer|bigint|float|double|date|timestamp|timestamp_ntz|"
    r"binary|decimal(\(\s*\d+\s*(,\s*\d+\s*)?\))?)$"
)

_IDENTIFIER_RE = re.compile(IDENTIFIER_PATTERN)
_NAME_RE = re.compile(NAME_PATTERN)
_SECRET_RE = re.compile(SECRET_REF_PATTERN)
_DURATION_RE = re.compile(DURATION_PATTERN)
_SPARK_TYPE_RE = re.compile(SPARK_TYPE_PATTERN, re.IGNORECASE)
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _identifier(value: str) -> str:
    if not _IDENTIFIER_RE.match(value):
        raise PydanticCustomError(
            "unsafe_identifier",
            "unsafe SQL identifier '{value}': use letters, digits and _, not starting with a digit",
            {"value": value},
        )
    return value


def _name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise PydanticCustomError(
            "invalid_name",
            "invalid name '{value}': use lowercase letters, digits and _, starting with a letter (max 63)",
            {"value": value},
        )
    return value


def _secret_ref(value: str) -> str:
    if not _SECRET_RE.match(value):
        raise PydanticCustomError(
            "literal_secret",
            "secrets must be references: ${env:NAME}, ${file:PATH} or ${vault:PATH#KEY}, never literal values",
        )
    return value


def parse_duration(value: Any) -> timedelta:
    """Accept `90s`, `5m`, `2h`, `1d`, `1w` or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return timedelta(seconds=value)
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        if match:
            return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])
    raise PydanticCustomError(
        "invalid_duration", "invalid duration '{value}': use e.g. 30s, 5m, 2h, 1d or seconds", {"value": value}
    )


def format_duration(value: timedelta) -> str:
    """The shortest exact unit form, so a dumped spec reads like the YAML that produced it."""
    seconds = value.total_seconds()
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds * 1000)}ms" if seconds else "0s"


def _spark_type(value: str) -> str:
    if not _SPARK_TYPE_RE.match(value):
        raise PydanticCustomError(
            "invalid_type",
            "unknown column type '{value}': use a Spark SQL type such as int, "
            "bigint, double, decimal(12,2), string, date, timestamp, boolean",
            {"value": value},
        )
    return value.lower().replace(" ", "")


def _sql_expression(value: str) -> str:
    if ";" in value:
        raise PydanticCustomError("unsafe_sql", "a SQL expression must not contain ';'")
    if not value.strip():
        raise PydanticCustomError("empty_sql", "empty SQL expression")
    return value


def _select_statement(value: str) -> str:
    body = value.strip().rstrip(";").strip()
    if ";" in body:
        raise PydanticCustomError("unsafe_sql", "SQL must be one SELECT statement (found ';' inside)")
    if not re.match(r"^(select|with)\b", body, re.IGNORECASE):
        raise PydanticCustomError("not_select", "SQL must be a single SELECT (or WITH ... SELECT) statement")
    return body


Identifier = Annotated[
    str, AfterValidator(_identifier), WithJsonSchema({"type": "string", "pattern": IDENTIFIER_PATTERN})
]
Name = Annotated[str, AfterValidator(_name), WithJsonSchema({"type": "string", "pattern": NAME_PATTERN})]
SecretRef = Annotated[
    str,
    AfterValidator(_secret_ref),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": SECRET_REF_PATTERN,
            "description": "A secret reference: ${env:NAME}, ${file:PATH} or ${vault:MOUNT/PATH#KEY}.",
        }
    ),
]
Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "oneOf": [
                {"type": "string", "pattern": DURATION_PATTERN},
                {"type": "integer", "minimum": 0},
            ],
            "description": "A duration such as 30s, 5m, 2h, 1d, or a number of seconds.",
        }
    ),
]
SparkType = Annotated[
    str, AfterValidator(_spark_type), WithJsonSchema({"type": "string", "pattern": SPARK_TYPE_PATTERN})
]
SqlExpression = Annotated[str, AfterValidator(_sql_expression)]
SelectStatement = Annotated[str, AfterValidator(_select_statement)]
