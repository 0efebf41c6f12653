"""MySQL/MariaDB values from the binlog (and the snapshot's cursor) as the batch read gives them.

A change must land exactly as the same row would through the JDBC or Arrow read (README, Type mappings):
that read selects some columns through SQL (TIME as the server's text, BIT(1) as a boolean, spatial types
as WKT, DECIMAL wider than 38 digits as text). The binlog carries the stored values instead (a timedelta,
a bit string, WKB, a Python set), so each is turned into the read's form here: by the column's type in
`information_schema` and the Spark type the read produces. Spatial values (and MySQL's binary JSON) are
rendered by the server itself, with the same function the read uses, so the text cannot differ.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from pymysqlreplication.constants import NONE_SOURCE

SPATIAL = ("geometry", "point", "linestring", "polygon", "multipoint", "multilinestring", "multipolygon")
SPATIAL += ("geometrycollection", "geomcollection")
QUOTED = re.compile(r"'((?:[^']|'')*)'")
LENGTH = re.compile(r"\((\d+)\)")  # binary(4)
PRECISION = re.compile(r"\((\d+),(\d+)\)")  # decimal(12,2), float(10,3)
FLOAT_DIGITS = 6  # FLT_DIG: the significant digits the server prints of a FLOAT (123456.789 is '123457')
SPARK_DECIMAL_DIGITS = 38
INTEGER_TYPES = ("tinyint", "smallint", "int", "bigint")
SIGNED_READ = {"mediumint": "int"}  # Spark's integer types of the read, the unsigned ones widened
UNSIGNED_READ = {
    "tinyint": "smallint",
    "smallint": "int",
    "mediumint": "int",
    "int": "bigint",
    "bigint": "decimal(20,0)",
}
ZERO_DATE = re.compile(r"^(?:0000-\d\d-\d\d|\d{4}-00-\d\d|\d{4}-\d\d-00)")  # PyMySQL's text of a zero date
ZERO_TIMESTAMP = datetime(1970, 1, 1)  # what the library makes of TIMESTAMP '0000-00-00 00:00:00' (epoch 0)


class MySqlValues:
    """Per table: the columns' declared types (read once) and the conversions into the read's types."""

    def __init__(self, connect: Callable[[], Any], database: str, table: str, spark_types: dict[str, str]) -> None:
        self._connect = connect
        self.database, self.table = database, table
        self.spark_types = spark_types
        self._columns: dict[str, tuple[str, str, int]] | None = None
        self._absent: set[str] = set()  # columns of older row images the catalog no longer has (dropped)

    def columns(self) -> dict[str, tuple[str, str, int]]:
        """column -> (DATA_TYPE, COLUMN_TYPE, fractional digits), from information_schema."""
        if self._columns is None:
            with self._connect().cursor() as cursor:
                cursor.execute(
                    "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, COALESCE(DATETIME_PRECISION, 0) "
                    "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                    (self.database, self.table),
                )
                self._columns = {r[0]: (str(r[1]).lower(), str(r[2]), int(r[3])) for r in cursor.fetchall()}
        return self._columns

    def refresh(self, spark_types: dict[str, str]) -> None:
        """After DDL: the read's new types, the catalog read again."""
        self.spark_types, self._columns, self._absent = spark_types, None, set()

    def _known(self, names: Any) -> dict[str, tuple[str, str, int]]:
        """The catalog, read again when a row names a column it does not have: one added while streaming
        (ALTER TABLE ... ADD COLUMN after the catalog was read) must be converted by its type too."""
        columns = self.columns()
        unknown = {name for name in names if name not in columns} - self._absent
        if unknown:
            self._columns = None
            columns = self.columns()
            self._absent |= {name for name in unknown if name not in columns}
        return columns

    def snapshot_row(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """A row of the read's own SELECT: only Python driver types to settle (0/1 for booleans, ...)."""
        return {name: to_spark(value, self.spark_types.get(name, "string")) for name, value in row.items()}

    def log_row(self, values: Mapping[str, Any], none: Mapping[str, str], before: Mapping[str, Any]) -> dict[str, Any]:
        """A binlog row image in the read's form; columns the read does not know are kept (DDL: the step
        describes the table again). `none` says why the library gave None for a column (an empty SET is
        '', a zero date NULL as in the read, a MySQL partial JSON update the `before` image's value)."""
        columns = self._known(values)
        out = {}
        for name, value in values.items():
            kind, declared, digits = columns.get(name, ("", "", 0))
            why = none.get(name)
            if why == NONE_SOURCE.EMPTY_SET:
                value = ""
            elif why == NONE_SOURCE.JSON_PARTIAL_UPDATE:
                value = before.get(name)
            elif why == NONE_SOURCE.COLS_BITMAP:
                raise ValueError(f"column {name} is missing from the binlog's row image: set binlog_row_image=FULL")
            elif kind == "timestamp" and value == ZERO_TIMESTAMP:
                value = None  # the zero TIMESTAMP, NULL as the read has it
            spark_type = self.spark_types.get(name) or (read_type(kind, declared) if kind else None)
            out[name] = self._from_log(value, kind, declared, digits, spark_type)
        return out

    def _from_log(self, value: Any, kind: str, declared: str, digits: int, spark_type: str | None) -> Any:
        if value is None:
            return None
        if kind == "binary":  # an empty value comes as '' (Python decodes b'' even as the unknown "binary")
            value = binary_padded(value.encode() if isinstance(value, str) else bytes(value), declared)
        elif kind == "year" and value == 1900:  # YEAR 0000: the library adds 1900 to the stored 0
            value = 0
        elif kind in ("float", "double") and isinstance(value, float):
            value = server_float(value, kind, declared)
        elif kind == "bit" and isinstance(value, str):
            value = int(value or "0", 2)  # the binlog's bit string
        elif kind == "time" and isinstance(value, timedelta):
            value = time_text(binlog_time(value), digits)
        elif kind == "set" and isinstance(value, set | frozenset):
            members = [m.replace("''", "'") for m in QUOTED.findall(declared)]
            value = ",".join(m for m in members if m in value)
        elif kind in SPATIAL and isinstance(value, bytes | bytearray):
            value = self._render("SELECT ST_AsText(ST_GeomFromWKB(%s, %s))", bytes(value[4:]), _srid(value))
        elif kind == "json" and not isinstance(value, str):  # MySQL's binary JSON, decoded by the library
            value = self._render("SELECT CAST(CAST(%s AS JSON) AS CHAR)", json.dumps(_plain(value)))
        return to_spark(value, spark_type or _guess(value))

    def _render(self, sql: str, *args: Any) -> Any:
        with self._connect().cursor() as cursor:
            cursor.execute(sql, args)
            return cursor.fetchone()[0]


def to_spark(value: Any, spark_type: str) -> Any:
    """`value` as the Python value of `spark_type` (what Arrow writes for that Spark type)."""
    if value is None:
        return None
    if spark_type == "boolean":
        return bool(int(value)) if not isinstance(value, bool) else value
    if spark_type.startswith("decimal("):
        return value if isinstance(value, Decimal) else Decimal(str(value))
    if spark_type in INTEGER_TYPES:
        return int(value)
    if spark_type in ("float", "double"):
        return float(value)
    if spark_type in ("date", "timestamp", "timestamp_ntz") and isinstance(value, str) and ZERO_DATE.match(value):
        return None  # a zero date ('0000-00-00', '2024-00-00'): PyMySQL returns its text, the read NULL
    if spark_type in ("timestamp", "timestamp_ntz"):
        if isinstance(value, datetime) and value.tzinfo is None and spark_type == "timestamp":
            return value.replace(tzinfo=UTC)  # the session and the binlog's TIMESTAMPs are UTC
        return value
    if spark_type == "binary":
        return value.encode() if isinstance(value, str) else bytes(value)
    if spark_type == "string":
        return _text(value)
    return value


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, timedelta):
        return time_text(value, 6).rstrip("0").rstrip(".")
    if isinstance(value, datetime | date):
        return value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
    return str(value)


def binary_padded(value: bytes, declared: str) -> bytes:
    """A BINARY(n) value as stored and read: the binlog drops its trailing zero bytes (the pad byte, as it
    drops a CHAR's trailing spaces), the read keeps all n bytes (X'0102' in BINARY(4) is 01020000)."""
    length = LENGTH.search(declared)
    return value.ljust(int(length[1]), b"\x00") if length else value


def server_float(value: float, kind: str, declared: str) -> float:
    """A FLOAT or DOUBLE as the server's text gives it to the read: the binlog has the stored binary value
    (FLOAT 123456.789 is the single 123456.7890625), the server prints a FLOAT with 6 significant digits
    ('123457') and a FLOAT(M,D)/DOUBLE(M,D) with D decimals; a plain DOUBLE prints exactly (17 digits)."""
    fixed = PRECISION.search(declared)
    if fixed:
        return float(f"{value:.{int(fixed[2])}f}")
    return float(f"{value:.{FLOAT_DIGITS}g}") if kind == "float" else value


def read_type(kind: str, declared: str) -> str:
    """The Spark type the batch read gives a column the stream was not told about (one added while streaming):
    README, Type mappings; jdbc/mysql.py `read_expression` for TIME, BIT, wide DECIMAL and spatial types."""
    unsigned = "unsigned" in declared
    if kind == "bit":
        length = LENGTH.search(declared)
        return "boolean" if length is not None and length[1] == "1" else "decimal(20,0)"
    if kind in INTEGER_TYPES or kind == "mediumint":
        return (UNSIGNED_READ if unsigned else SIGNED_READ).get(kind, kind)
    if kind == "year":
        return "int"
    if kind == "decimal":
        size = PRECISION.search(declared)
        precision, scale = (int(size[1]), int(size[2])) if size else (10, 0)
        wide = precision > SPARK_DECIMAL_DIGITS or (precision, scale) == (SPARK_DECIMAL_DIGITS, 0)
        return "string" if wide else f"decimal({precision},{scale})"
    if kind in ("float", "double", "date"):
        return kind
    if kind in ("datetime", "timestamp"):
        return "timestamp"
    if kind in ("binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"):
        return "binary"
    return "string"  # text, enum, set, json, time, spatial: the read's text


def binlog_time(value: timedelta) -> timedelta:
    """python-mysql-replication 1.0.17 decodes a negative TIME's fraction as its complement (-12:34:56.789
    comes as -12:34:56.211: the stored fraction of a negative value is 1 - f); the whole seconds are right."""
    micros = value // timedelta(microseconds=1)
    if micros >= 0:
        return value
    seconds, fraction = divmod(-micros, 1_000_000)
    return -timedelta(seconds=seconds, microseconds=1_000_000 - fraction if fraction else 0)


def time_text(value: timedelta, digits: int) -> str:
    """A TIME as the server prints it: [-]H:MM:SS[.fff], hours past 24, `digits` fractional digits."""
    micros = value // timedelta(microseconds=1)
    sign, micros = ("-" if micros < 0 else ""), abs(micros)
    seconds, fraction = divmod(micros, 1_000_000)
    hours, rest = divmod(seconds, 3600)
    text = f"{sign}{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
    return text + (f".{fraction:06d}"[: digits + 1] if digits else "")


def _srid(value: bytes | bytearray) -> int:
    return int.from_bytes(bytes(value[:4]), "little")


def _plain(value: Any) -> Any:
    """The library's decoded JSON (bytes keys and strings) as json.dumps takes it."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _guess(value: Any) -> str:
    """A Spark type for a column the read does not know yet (added while streaming)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "bigint"
    if isinstance(value, float):
        return "double"
    if isinstance(value, Decimal):
        return "string"
    if isinstance(value, datetime):
        return "timestamp"
    if isinstance(value, date):
        return "date"
    if isinstance(value, bytes):
        return "binary"
    return "string"
