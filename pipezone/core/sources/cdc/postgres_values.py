"""Values of PostgreSQL's change stream in the Python types of the table's snapshot read.

The snapshot (psycopg reading the batch read's own SELECT) and the log (wal2json's text of each value) must
give a row the same values, so both go through `normalize` by the column's Spark type (what the batch read
produces). The log's values are first turned into Python objects by psycopg's own text loaders, chosen by
the value's type OID (wal2json's `include-type-oids`); a column the batch read takes as its text (`col::text`,
Spark `string`: numeric beyond 38 digits, json, uuid, interval, time, enums, ...) keeps wal2json's text,
which is the type's output function, the same text `::text` gives in a session with the same settings.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.pq import Format

BYTEA_OID = 17
MONEY_OID = 790
BPCHAR_OID = 1042
INET_OID = 869
INTEGERS = frozenset({"tinyint", "smallint", "int", "integer", "bigint", "long", "short", "byte"})
FLOATS = frozenset({"double", "float", "real"})


def parse_message(text: str) -> dict[str, Any]:
    """One wal2json (format 2) message; numbers kept as their exact text (never a float on the way)."""
    return json.loads(text, parse_int=str, parse_float=str)


def is_text(spark_type: str | None) -> bool:
    """Whether the batch read gives the column as a string (a text column, or another type as its text)."""
    kind = (spark_type or "").strip().lower()
    return kind == "string" or kind.startswith(("varchar(", "char("))


def normalize(value: Any, spark_type: str) -> Any:
    """`value` (a psycopg object or a loaded log value) as the Python type the column's Spark type stands for."""
    if value is None:
        return None
    kind = spark_type.strip().lower()
    if is_text(kind):
        if isinstance(value, bool):
            return "true" if value else "false"
        return value if isinstance(value, str) else str(value)
    if kind in INTEGERS:
        return int(value)
    if kind in FLOATS:
        return float(value)
    if kind.startswith("decimal"):
        return value if isinstance(value, Decimal) else Decimal(str(value))
    if kind == "boolean":
        return value if isinstance(value, bool) else str(value).lower() in ("t", "true", "1")
    if kind == "binary":
        return bytes.fromhex(value) if isinstance(value, str) else bytes(value)
    if kind.startswith("timestamp") and isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC)
    if kind.startswith("array<") and isinstance(value, list):
        element = kind[len("array<") : -1]
        return [normalize(item, element) for item in value]
    return value


def _as_cast_text(oid: int, text: str) -> str:
    """`col::text` where it differs from the type's output: char(n) drops its padding, inet keeps its mask."""
    if oid == BPCHAR_OID:
        return text.rstrip(" ")
    if oid == INET_OID and "/" not in text:
        return f"{text}/{128 if ':' in text else 32}"
    return text


class LogValues:
    """Turns wal2json's column entries ({name, type, typeoid, value}) into normalized Python values, with
    psycopg's text loaders of `conn` (its session settings: UTC, ISO dates) chosen by type OID; a domain
    is loaded as its base type (looked up once)."""

    def __init__(self, conn: psycopg.Connection[Any], spark_types: dict[str, str]) -> None:
        self.conn = conn
        self.spark_types = spark_types
        self._loaders: dict[int, Any] = {}

    def value(self, entry: dict[str, Any]) -> Any:
        raw = entry.get("value")
        spark_type = self.spark_types.get(entry["name"])
        if raw is None:
            return None
        if is_text(spark_type):  # the batch read takes the column's text (`::text`): wal2json's output function's
            return _as_cast_text(int(entry.get("typeoid") or 0), normalize(raw, "string"))
        if isinstance(raw, bool):
            return raw if spark_type is None else normalize(raw, spark_type)
        loaded = self._load(int(entry.get("typeoid") or 0), raw)
        return loaded if spark_type is None else normalize(loaded, spark_type)

    def row(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        return {entry["name"]: self.value(entry) for entry in entries}

    def _load(self, oid: int, raw: str) -> Any:
        if oid == BYTEA_OID:  # wal2json drops bytea's `\x` prefix
            return bytes.fromhex(raw[2:] if raw.startswith("\\x") else raw)
        if oid == MONEY_OID:  # "-$1,234.50" (lc_monetary C): the batch read casts money to numeric(19,2)
            return Decimal(re.sub(r"[^0-9.\-]", "", raw))
        loader = self._loaders.get(oid)
        if loader is None:
            loader = self._loaders[oid] = self._loader(oid)
        return loader.load(raw.encode())

    def _loader(self, oid: int) -> Any:
        """psycopg's text loader for `oid`; a domain's is its base type's (psycopg knows types, not domains)."""
        if oid and not self.conn.adapters.types.get(oid):
            row = self.conn.execute(
                "WITH RECURSIVE d(oid, base) AS (SELECT oid, typbasetype FROM pg_type WHERE oid = %(oid)s"
                " UNION ALL SELECT t.oid, t.typbasetype FROM pg_type t JOIN d ON t.oid = d.base)"
                " SELECT oid FROM d WHERE base = 0",
                {"oid": oid},
            ).fetchone()
            base = int(row[0]) if row else oid
            if base != oid:
                return _Domain(self, base)
        cls = self.conn.adapters.get_loader(oid, Format.TEXT) or self.conn.adapters.get_loader(0, Format.TEXT)
        return cls(oid, self.conn)  # type: ignore[misc]


class _Domain:
    """A domain's loader: its base type's."""

    def __init__(self, values: LogValues, base: int) -> None:
        self.values = values
        self.base = base

    def load(self, data: bytes) -> Any:
        return self.values._load(self.base, data.decode())
