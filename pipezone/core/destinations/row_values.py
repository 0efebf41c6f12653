"""Arrow rows as the Python values the destinations' loaders take: nested values as JSON text, timestamps
as aware UTC datetimes (timestamp_ntz: naive), decimals as Decimal, binary as bytes."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pipezone.core.sources.jdbc.dialect import utc_naive

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql.types import DataType, StructField, StructType

__all__ = ["COMPLEX_TYPES", "LoadRefused", "json_text", "python_columns", "python_rows", "utc_naive"]

COMPLEX_TYPES = frozenset({"array", "map", "struct"})


class LoadRefused(Exception):
    """Rows a load cannot take as they are (a value with no form here, or a database that took them only in
    part, with warnings); `refused` names the connection and the table."""


def python_columns(batch: pa.RecordBatch, schema: StructType) -> list[list[Any]]:
    """The batch's columns as Python values, in `schema`'s order: nested values as JSON text, timestamps
    as aware UTC datetimes (timestamp_ntz: naive), decimals as Decimal, binary as bytes."""
    return [_values(batch.column(f.name), f) for f in schema.fields]


def python_rows(batch: pa.RecordBatch, schema: StructType) -> Iterator[tuple[Any, ...]]:
    return zip(*python_columns(batch, schema), strict=True)


def _values(array: pa.Array, field: StructField) -> list[Any]:
    values = array.to_pylist()
    kind = field.dataType.typeName()
    if kind in COMPLEX_TYPES:
        return [None if v is None else json_text(v, field) for v in values]
    if kind == "timestamp":
        return [None if v is None else (v.astimezone(UTC) if v.tzinfo else v.replace(tzinfo=UTC)) for v in values]
    return values


def json_text(value: Any, field: StructField) -> str:
    """A nested value as compact JSON; a NaN or infinity (no JSON form) fails naming the column."""
    try:
        return json.dumps(_jsonable(value, field.dataType), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except ValueError as err:
        raise LoadRefused(f"column {field.name}: {err}") from None


def _jsonable(value: Any, data_type: DataType) -> Any:
    if value is None:
        return None
    kind = data_type.typeName()
    if kind == "array":
        return [_jsonable(v, data_type.elementType) for v in value]  # type: ignore[attr-defined]
    if kind == "map":
        pairs = value.items() if isinstance(value, dict) else value
        key_type, value_type = data_type.keyType, data_type.valueType  # type: ignore[attr-defined]
        return {_json_key(_jsonable(k, key_type)): _jsonable(v, value_type) for k, v in pairs}
    if kind == "struct":
        return {f.name: _jsonable(value.get(f.name), f.dataType) for f in data_type.fields}  # type: ignore[attr-defined]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _json_key(key: Any) -> str:
    return key if isinstance(key, str) else json.dumps(key)  # true, 1, 1.5: as JSON writes them
