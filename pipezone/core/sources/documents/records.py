"""Records (JSON-like dicts) into an Arrow table, typed from every record read, never losing a value.

Documents declare no schema, and a sample can miss a field or a type, so each read types the records it
actually holds: Arrow infers one type per field across all records (in C, the common case), and when two
records disagree (`1` here, `"one"` there) the field widens instead of failing or dropping the value:

- int and float: float (double), as MongoDB and JSON compare them;
- decimals: the precision and scale that hold both;
- sub-documents: one struct with every field any record has (missing ones are null);
- arrays: one list of the widened element type;
- anything else mixed: string, holding each value's JSON text (a string stays itself).

A field that is null in every record carries no type and is left out (the lake adds it as null when it
exists there); a nested one, or an empty sub-document, becomes a string. With `nested: json` every
sub-document and array is its JSON text.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

import pyarrow as pa

Nested = Literal["struct", "json"]
MAX_DECIMAL_DIGITS = 38
INT64 = range(-(2**63), 2**63)


def json_text(value: Any) -> str:
    """A value's JSON text: compact, key order kept, dates as ISO 8601, decimals exact, bytes as base64."""
    return json.dumps(value, default=_json_default, ensure_ascii=False, separators=(",", ":"))


def text_of(value: Any) -> str:
    """A value held by a string column: text as itself, containers as JSON text, scalars as they print
    in JSON (`true`, `2.5`) or ISO 8601, anything else (a UUID, a regex) as its own text."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list | bool | int | float):
        return json_text(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return str(value)


def records_to_arrow(records: list[dict[str, Any]]) -> pa.Table:
    """The records as one table: a column per top-level field, in order of first appearance (`records` as
    `prepared` returns them)."""
    if not records:
        return pa.table({})
    try:
        array = pa.array(records)
        kind = array.type
        if _merged_silently(records, kind):
            raise pa.ArrowInvalid("mixed types Arrow merged")
        final = finalize(kind, top=True)
        if final != kind:
            array = pa.array([_fit(r, final) for r in records], type=final)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        final = finalize(infer_records(records), top=True)
        array = pa.array([_fit(r, final) for r in records], type=final)
    return pa.Table.from_struct_array(array)


def prepared(records: list[dict[str, Any]], nested: Nested) -> list[dict[str, Any]]:
    """The records as typing takes them: with `nested: json`, sub-documents and arrays as JSON text."""
    if nested == "struct":
        return records
    return [{k: json_text(v) if isinstance(v, dict | list) else v for k, v in r.items()} for r in records]


MAX_DEPTH = 32


def type_depth(kind: pa.DataType) -> int:
    """How deep a type nests (a scalar 0)."""
    if pa.types.is_struct(kind):
        return 1 + max((type_depth(f.type) for f in kind), default=0)
    if pa.types.is_list(kind):
        return 1 + type_depth(kind.value_type)
    return 0


def shallow(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records with anything nested deeper than MAX_DEPTH levels as its JSON text (MongoDB allows 100
    levels, JSON any number; Spark and Parquet plans for 100-level structs are not worth having)."""
    return [_cut(r, MAX_DEPTH) for r in records]


class _Piece(str):
    """Ready JSON text on `flat_json`'s stack."""


def flat_json(value: Any) -> str:
    """`json_text`, without recursion: a value nested thousands of levels deep (JSON allows it) still becomes
    its text instead of a RecursionError."""
    out: list[str] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Piece):
            out.append(item)
        elif isinstance(item, dict):
            parts: list[Any] = [_Piece("{")]
            for index, (key, inner) in enumerate(item.items()):
                parts += [_Piece(("," if index else "") + json_text(str(key)) + ":"), inner]
            stack.extend(reversed([*parts, _Piece("}")]))
        elif isinstance(item, list):
            parts = [_Piece("[")]
            for index, inner in enumerate(item):
                parts += [_Piece(",")] if index else []
                parts.append(inner)
            stack.extend(reversed([*parts, _Piece("]")]))
        else:
            out.append(json_text(item))
    return "".join(out)


def _cut(value: Any, levels: int) -> Any:
    """`value` with what lies deeper than `levels` as JSON text (text of the text where json can't)."""
    if not isinstance(value, dict | list):
        return value
    if levels <= 0:
        return flat_json(value)
    if isinstance(value, dict):
        return {k: _cut(v, levels - 1) for k, v in value.items()}
    return [_cut(v, levels - 1) for v in value]


# Arrow's own inference merges a few pairs without a word: bool into a double column (true -> 1.0), text
# into binary, a datetime into a date column (the time cut off). Such a top-level column takes the slow path.
_SILENT = (
    (pa.types.is_floating, bool),
    (pa.types.is_binary, str),
    (pa.types.is_date, datetime),
)


def _merged_silently(records: list[dict[str, Any]], kind: pa.DataType) -> bool:
    for field in kind:
        for is_kind, intruder in _SILENT:
            if is_kind(field.type) and any(isinstance(r.get(field.name), intruder) for r in records):
                return True
    return False


def infer_records(records: Iterable[Mapping[str, Any]]) -> pa.DataType:
    """One struct type covering every record (the slow path, when Arrow's own inference meets a conflict)."""
    kind: pa.DataType = pa.struct([])
    for record in records:
        kind = widen(kind, infer(record))
    return kind


def infer(value: Any) -> pa.DataType:
    """The Arrow type of one JSON-like value."""
    if value is None:
        return pa.null()
    if isinstance(value, bool):
        return pa.bool_()
    if isinstance(value, int):
        return pa.int64() if value in INT64 else pa.string()
    if isinstance(value, float):
        return pa.float64()
    if isinstance(value, str):
        return pa.string()
    if isinstance(value, Decimal):
        return _decimal_type(value)
    if isinstance(value, datetime):
        return pa.timestamp("us", tz="UTC")
    if isinstance(value, date):
        return pa.date32()
    if isinstance(value, bytes):
        return pa.binary()
    if isinstance(value, dict):
        return pa.struct([pa.field(str(k), infer(v)) for k, v in value.items()])
    if isinstance(value, list):
        element: pa.DataType = pa.null()
        for item in value:
            element = widen(element, infer(item))
        return pa.list_(element)
    return pa.string()


def _decimal_type(value: Decimal) -> pa.DataType:
    if not value.is_finite():
        return pa.string()
    sign, digits, exponent = value.as_tuple()
    scale = max(0, -int(exponent))
    precision = max(len(digits), scale) if isinstance(exponent, int) and exponent < 0 else len(digits) + int(exponent)
    if precision > MAX_DECIMAL_DIGITS:
        return pa.string()
    return pa.decimal128(max(precision, 1), scale)


def widen(a: pa.DataType, b: pa.DataType) -> pa.DataType:
    """The narrowest type holding values of both `a` and `b` (string when nothing else does)."""
    if a == b:
        return a
    if pa.types.is_null(a):
        return b
    if pa.types.is_null(b):
        return a
    if pa.types.is_integer(a) and pa.types.is_integer(b):
        return pa.int64()
    numbers = (pa.types.is_integer, pa.types.is_floating)
    if any(f(a) for f in numbers) and any(f(b) for f in numbers):
        return pa.float64()
    if pa.types.is_decimal(a) or pa.types.is_decimal(b):
        return _widen_decimal(a, b)
    if pa.types.is_struct(a) and pa.types.is_struct(b):
        fields = {f.name: f.type for f in a}
        for f in b:
            fields[f.name] = widen(fields[f.name], f.type) if f.name in fields else f.type
        return pa.struct([pa.field(name, kind) for name, kind in fields.items()])
    if pa.types.is_list(a) and pa.types.is_list(b):
        return pa.list_(widen(a.value_type, b.value_type))
    return pa.string()


def _widen_decimal(a: pa.DataType, b: pa.DataType) -> pa.DataType:
    """Decimals with decimals or integers: enough digits on both sides of the point, else string."""
    sides = []
    for kind in (a, b):
        if pa.types.is_decimal(kind):
            sides.append((kind.precision - kind.scale, kind.scale))
        elif pa.types.is_integer(kind):
            sides.append((19, 0))
        else:
            return pa.string()
    whole, scale = max(s[0] for s in sides), max(s[1] for s in sides)
    return pa.decimal128(whole + scale, scale) if whole + scale <= MAX_DECIMAL_DIGITS else pa.string()


def finalize(kind: pa.DataType, top: bool = False) -> pa.DataType:
    """A type the lake can hold: no all-null top-level field (left out), no null or empty nested type."""
    if pa.types.is_struct(kind):
        fields = [pa.field(f.name, finalize(f.type)) for f in kind if not (top and pa.types.is_null(f.type))]
        return pa.struct(fields) if fields or top else pa.string()
    if pa.types.is_list(kind):
        return pa.list_(finalize(kind.value_type))
    if pa.types.is_decimal(kind) and kind.precision > MAX_DECIMAL_DIGITS:
        return pa.string()  # Delta's decimals end at 38 digits: the exact text instead
    return pa.string() if pa.types.is_null(kind) else kind


def _fit(value: Any, kind: pa.DataType) -> Any:
    """`value` shaped for `kind` (a widened type): JSON text where the type became string."""
    if value is None:
        return None
    if pa.types.is_string(kind):
        return text_of(value)
    if pa.types.is_struct(kind):
        return {f.name: _fit(value.get(f.name), f.type) for f in kind}
    if pa.types.is_list(kind):
        return [_fit(item, kind.value_type) for item in value]
    if pa.types.is_floating(kind):
        return float(value)
    if pa.types.is_decimal(kind) and isinstance(value, int):
        return Decimal(value)
    return value


def unify(tables: list[pa.Table]) -> pa.Table:
    """Tables converted chunk by chunk (each typed from its own records) as one table of the widened types:
    a column a chunk lacks is null there, a column typed narrower is cast, or refitted value by value."""
    tables = [t for t in tables if t.num_columns]
    if len(tables) <= 1:
        return tables[0] if tables else pa.table({})
    final: pa.DataType = pa.struct([])
    for table in tables:
        final = widen(final, pa.struct(list(table.schema)))
    final = finalize(final, top=True)
    schema = pa.schema(list(final))
    return pa.concat_tables([_conform(t, schema) for t in tables])


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    columns = []
    for field in schema:
        if field.name not in table.column_names:
            columns.append(pa.nulls(table.num_rows, field.type))
            continue
        column = table.column(field.name)
        if column.type == field.type:
            columns.append(column)
            continue
        try:
            if pa.types.is_string(field.type):  # JSON text, as in a chunk typed at once (cast spells dates its way)
                raise pa.ArrowInvalid("as JSON text")
            columns.append(column.cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            columns.append(pa.array([_fit(v, field.type) for v in column.to_pylist()], type=field.type))
    return pa.Table.from_arrays(columns, schema=schema)


# Delta refuses these in column and nested field names (without column mapping, which delta-rs can't write).
_NOT_IN_NAMES = frozenset(" ,;{}()\n\t=")


def _clean(name: str) -> str:
    return "".join("_" if c in _NOT_IN_NAMES else c for c in name) or "_"


def names_fit(kind: pa.DataType) -> bool:
    """Whether every (nested) field name is one the lake takes: none of ` ,;{}()=`, tab or newline, none
    empty, and no two equal but for case (Spark resolves names case-insensitively)."""
    if pa.types.is_struct(kind):
        names = [f.name for f in kind]
        if any(_clean(n) != n for n in names) or len({n.lower() for n in names}) != len(names):
            return False
        return all(names_fit(f.type) for f in kind)
    if pa.types.is_list(kind):
        return names_fit(kind.value_type)
    return True


def case_renames(names: list[str]) -> dict[str, str]:
    """Names equal but for case (`Name` in one record, `name` in another): the later ones -> `name__2`..."""
    seen: set[str] = set()
    renames: dict[str, str] = {}
    for name in names:
        new, n = name, 1
        while new.lower() in seen:
            n += 1
            new = f"{name}__{n}"
        seen.add(new.lower())
        if new != name:
            renames[name] = new
    return renames


def renamed(value: Any) -> Any:
    """`value` with every key the lake takes: forbidden characters as `_`, a key equal to an earlier one but
    for case suffixed `__2`, `__3`, ... (the value is kept under the new name)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        seen: set[str] = set()
        for key, inner in value.items():
            name = base = _clean(str(key))
            n = 1
            while name.lower() in seen:
                n += 1
                name = f"{base}__{n}"
            seen.add(name.lower())
            out[name] = renamed(inner)
        return out
    if isinstance(value, list):
        return [renamed(item) for item in value]
    return value
