"""Value types shared by the flow and connection specs: identifiers, names, durations, secret references.

Each type carries its own JSON Schema so editors flag the same mistakes `pipezone validate` does, and
each is bounded: a duration that would overflow a timedelta (`9999999999d`), an infinite number, a
name ending in a newline (Python's `$` matches before one: every pattern here is matched in full) or
SQL that is not one read-only statement is a problem of the file, not an exception later.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, WithJsonSchema
from pydantic_core import PydanticCustomError

from pipezone.core.spec.airflow_names import AIRFLOW_TAG_MAX
from pipezone.core.spec.problems import clip
from pipezone.core.spec.sql_check import expression_problem, select_problem

MAX_TEXT_CHARS = 32_768  # any string in a spec (the SQL limit); narrower fields say their own
MAX_INT = 2**63 - 1  # what a Spark long, a JDBC BIGINT and a Delta column hold
MAX_DURATION = timedelta(days=3650)


class SpecModel(BaseModel):
    """Base of every spec: unknown keys are errors (a typo must never be silently ignored), text is
    bounded, and a float must be finite (`.inf` and `.nan` are YAML floats no setting can take)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, str_max_length=MAX_TEXT_CHARS, allow_inf_nan=False
    )


IDENTIFIER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
ENV_NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_]{0,127}"
SECRET_REF_PATTERN = r"^\$\{(?:env:" + ENV_NAME_PATTERN + r"|file:[^}#\s][^}#]*|vault:[^}#\s][^}#]*#[^}#\s]+)\}$"
DURATION_PATTERN = r"^\s*(\d{1,12})\s*(ms|s|m|h|d|w)\s*$"
SPARK_TYPE_PATTERN = (
    r"^(string|boolean|tinyint|smallint|int|integer|bigint|float|double|date|timestamp|timestamp_ntz|"
    r"binary|decimal(\(\s*\d{1,2}\s*(,\s*\d{1,2}\s*)?\))?)$"
)

_IDENTIFIER_RE = re.compile(IDENTIFIER_PATTERN)
_NAME_RE = re.compile(NAME_PATTERN)
_SECRET_RE = re.compile(SECRET_REF_PATTERN)
_SECRET_SHAPE = re.compile(r"^\$\{(?P<scheme>[^:}]*):(?P<body>[^}]*)\}$")
_DURATION_RE = re.compile(DURATION_PATTERN)
_SPARK_TYPE_RE = re.compile(SPARK_TYPE_PATTERN, re.IGNORECASE)
_DECIMAL_RE = re.compile(r"decimal\((\d+)(?:,(\d+))?\)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _identifier(value: str) -> str:
    if not _IDENTIFIER_RE.fullmatch(value):  # fullmatch: `$` alone lets a trailing newline through
        raise PydanticCustomError(
            "unsafe_identifier",
            "unsafe SQL identifier '{value}': use letters, digits and _, not starting with a digit (max 128)",
            {"value": clip(str(value))},
        )
    return value


def _name(value: str) -> str:
    if not _NAME_RE.fullmatch(value):
        raise PydanticCustomError(
            "invalid_name",
            "invalid name '{value}': use lowercase letters, digits and _, starting with a letter (max 63)",
            {"value": clip(str(value))},
        )
    return value


def is_secret_reference(value: Any) -> bool:
    """`${env:NAME}`, `${file:PATH}` or `${vault:MOUNT/PATH#KEY}`, exactly."""
    return isinstance(value, str) and bool(_SECRET_RE.fullmatch(value))


def reference_problem(value: str) -> str | None:
    """Why `value` is not a well-formed secret reference (never repeating it: it may be a literal secret)."""
    if is_secret_reference(value):
        return None
    shape = _SECRET_SHAPE.fullmatch(value.strip())
    if shape is None:
        return "secrets must be references: ${env:NAME}, ${file:PATH} or ${vault:PATH#KEY}, never literal values"
    scheme, body = shape["scheme"], shape["body"]
    if scheme == "vault" and "#" not in body:
        return "a vault reference needs '#KEY' after the path, e.g. ${vault:secret/pipezone/db#password}"
    if scheme == "env":
        return "an env reference names one variable: letters, digits and _, e.g. ${env:PIPEZONE_DB_PASSWORD}"
    if scheme in ("file", "vault"):
        return f"malformed {scheme} reference: expected " + (
            "${file:PATH}" if scheme == "file" else "${vault:MOUNT/PATH#KEY}"
        )
    return "unknown secret reference scheme: use ${env:NAME}, ${file:PATH} or ${vault:PATH#KEY}"


def _secret_ref(value: str) -> str:
    problem = reference_problem(value)
    if problem:
        raise PydanticCustomError("literal_secret", problem)
    return value


def _invalid_duration(value: Any) -> PydanticCustomError:
    return PydanticCustomError(
        "invalid_duration",
        "invalid duration '{value}': use e.g. 30s, 5m, 2h, 1d or seconds",
        {"value": clip(str(value))},
    )


def parse_duration(value: Any, maximum: timedelta = MAX_DURATION) -> timedelta:
    """Accept `90s`, `5m`, `2h`, `1d`, `1w` or a number of seconds, up to `maximum`."""
    if isinstance(value, timedelta):
        seconds: float = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value) or value < 0:
            raise _invalid_duration(value)
        seconds = value
    elif isinstance(value, str) and (match := _DURATION_RE.fullmatch(value)):
        seconds = int(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise _invalid_duration(value)
    if seconds > maximum.total_seconds():
        raise PydanticCustomError(
            "duration_too_long",
            "duration '{value}' is over the limit of {limit}",
            {
                "value": clip(str(value if not isinstance(value, timedelta) else format_duration(value))),
                "limit": _limit_text(maximum),
            },
        )
    return timedelta(seconds=seconds)


def _limit_text(value: timedelta) -> str:
    """A limit as people say it: `7d` rather than `1w`."""
    seconds = int(value.total_seconds())
    return f"{seconds // 86400}d" if seconds >= 86400 and seconds % 86400 == 0 else format_duration(value)


def format_duration(value: timedelta) -> str:
    """The shortest exact unit form, so a dumped spec reads like the YAML that produced it."""
    seconds = value.total_seconds()
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds * 1000)}ms" if seconds else "0s"


def _spark_type(value: str) -> str:
    if not _SPARK_TYPE_RE.fullmatch(value):
        raise PydanticCustomError(
            "invalid_type",
            "unknown column type '{value}': use a Spark SQL type such as int, "
            "bigint, double, decimal(12,2), string, date, timestamp, boolean",
            {"value": clip(str(value))},
        )
    value = value.lower().replace(" ", "")
    if (decimal := _DECIMAL_RE.fullmatch(value)) and not (
        1 <= int(decimal.group(1)) <= 38 and int(decimal.group(2) or 0) <= int(decimal.group(1))
    ):
        raise PydanticCustomError(
            "invalid_type", "decimal(p,s) needs 1 <= p <= 38 and s <= p (found '{value}')", {"value": value}
        )
    return value


def _sql_expression(value: str) -> str:
    problem = expression_problem(value)
    if problem:
        raise PydanticCustomError("unsafe_sql", problem)
    return value


def _select_statement(value: str) -> str:
    """Gold SQL: one read-only Spark SQL query. (A source query is checked in its database's dialect by
    the cross-file checks, which know the connection.)"""
    problem = select_problem(value, "spark", lake_only=True)
    if problem:
        raise PydanticCustomError("not_select", problem)
    return value.strip().rstrip(";").strip()


def _check_query(value: str) -> str:
    """A `sql` quality check: one read-only Spark SQL query naming the checked table as {table}; it may
    read the lake's silver and gold tables too (checked as gold SQL, {table} standing for one of them)."""
    if "{table}" not in value:
        raise PydanticCustomError(
            "check_query_table", "the query names the checked table as {placeholder}", {"placeholder": "{table}"}
        )
    problem = select_problem(value.replace("{table}", "silver.pz_checked_table"), "spark", lake_only=True)
    if problem:
        raise PydanticCustomError("not_select", problem.replace("gold SQL", "a check query"))
    return value.strip().rstrip(";").strip()


def _query_text(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("empty_sql", "empty SQL")
    return value.strip().rstrip(";").strip()


def patterned(pattern: str, message: str) -> Any:
    """A string type matched in full against `pattern`, failing with `message` (which never quotes the
    value: URLs and hosts are where pasted credentials end up)."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise PydanticCustomError("pattern", message)
        return value

    return Annotated[str, AfterValidator(check), WithJsonSchema({"type": "string", "pattern": pattern})]


def bounded_duration(maximum: timedelta, minimum: timedelta = timedelta(0)) -> Any:
    """A Duration type with its own range, so the message names the limit of that setting."""

    def parse(value: Any) -> timedelta:
        parsed = parse_duration(value, maximum)
        if parsed < minimum:
            raise PydanticCustomError(
                "duration_too_short", "duration must be at least {limit}", {"limit": format_duration(minimum)}
            )
        return parsed

    return Annotated[
        timedelta,
        BeforeValidator(parse),
        PlainSerializer(format_duration, return_type=str),
        WithJsonSchema(
            {
                "oneOf": [
                    {"type": "string", "pattern": DURATION_PATTERN},
                    {
                        "type": "integer",
                        "minimum": int(minimum.total_seconds()),
                        "maximum": int(maximum.total_seconds()),
                    },
                ],
                "description": f"A duration such as 30s, 5m, 2h, 1d, or a number of seconds "
                f"(at most {format_duration(maximum)}).",
            }
        ),
    ]


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
Duration = bounded_duration(MAX_DURATION)
SparkType = Annotated[
    str, AfterValidator(_spark_type), WithJsonSchema({"type": "string", "pattern": SPARK_TYPE_PATTERN})
]
SqlExpression = Annotated[str, AfterValidator(_sql_expression)]
SelectStatement = Annotated[str, AfterValidator(_select_statement)]
SqlCheckQuery = Annotated[str, AfterValidator(_check_query)]
QueryText = Annotated[str, AfterValidator(_query_text)]
BoundedInt = Annotated[int, Field(ge=-MAX_INT - 1, le=MAX_INT)]


def distinct(values: list[Any]) -> list[Any]:
    """Column lists name each column once: a repeat is a slip (and breaks joins and partitioning)."""
    seen: set[Any] = set()
    for value in values:
        if value in seen:
            raise PydanticCustomError("duplicate", "'{value}' is listed twice", {"value": clip(str(value))})
        seen.add(value)
    return values


Columns = Annotated[list[Identifier], AfterValidator(distinct)]
Names = Annotated[list[Name], AfterValidator(distinct)]


_LINE_BREAK = re.compile(r"[\r\n]")


def _tag(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("empty_tag", "empty tag")
    if _LINE_BREAK.search(value):
        raise PydanticCustomError("tag_line", "a tag is one line of text")
    if len(value) > AIRFLOW_TAG_MAX:
        raise PydanticCustomError(
            "tag_too_long",
            "tag has {n} characters, over Airflow's limit of {limit}",
            {"n": len(value), "limit": AIRFLOW_TAG_MAX},
        )
    return value


Tag = Annotated[str, AfterValidator(_tag)]  # an Airflow DAG tag
