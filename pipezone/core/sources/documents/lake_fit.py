"""Records typed like the lake's table: a read keeps the column types raw already has.

Each read types its own records (records.py), so a window can disagree with earlier ones: raw says
`amount: double`, this window holds `"free"`; raw says `customer: string` (JSON text), this window's
customers are all sub-documents. Before extract writes, the batch is fitted to raw's schema:

- values the lake type holds (an int in a double column, a sub-document in a string column as its JSON
  text, a sub-document whose fields raw knows) take the lake type, so the batch is no drift at all;
- a sub-document or array that only adds fields keeps them: the schema drift policy decides
  (`evolve` adds the nested fields, `freeze` stops);
- a value the lake type can't hold exactly (text in a number column, a float in a bigint column) goes,
  as its text, into a companion string column `<column>__text`, and its main column is null there. No value
  is lost and the flow keeps running; the new column is drift like any other.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa

from pipezone.core.sources.documents.records import (
    INT64,
    MAX_DEPTH,
    Nested,
    _fit,
    case_renames,
    finalize,
    infer,
    names_fit,
    prepared,
    records_to_arrow,
    renamed,
    shallow,
    text_of,
    type_depth,
    widen,
)

VARIANT_SUFFIX = "__text"


def typed_records(records: list[dict[str, Any]], nested: Nested, lake: pa.Schema | None) -> pa.Table:
    """The records as an Arrow table, each column raw already has typed as raw has it where values allow."""
    records = prepared(records, nested)
    try:
        table = records_to_arrow(records)
    except RecursionError:  # thousands of levels, mixed types: typed value by value, too deep for Python
        table = pa.table({})
    if not table.num_columns and records or type_depth(pa.struct(list(table.schema))) > MAX_DEPTH:
        records = shallow(records)
        table = records_to_arrow(records)
    if not names_fit(pa.struct(list(table.schema))):
        records = [renamed(r) for r in records]
        renames = case_renames(records_to_arrow(records).column_names)
        if renames:
            records = [{renames.get(k, k): v for k, v in r.items()} for r in records]
        table = records_to_arrow(records)
    return fit_to_lake(table, records, lake)


def fit_to_lake(table: pa.Table, records: list[dict[str, Any]], lake: pa.Schema | None) -> pa.Table:
    """`table` (typed from `records`) with each column the lake has typed as the lake has it: decided on the
    records' own values, so a value the read widened to text still fits the lake's number column."""
    if lake is None or not table.num_columns:
        return table
    known = {field.name.lower(): field.type for field in lake}
    columns: dict[str, pa.ChunkedArray | pa.Array] = {}
    for name in table.column_names:
        column = table.column(name)
        target = known.get(name.lower())
        if target is None or column.type == target:
            columns[name] = column
            continue
        values = [record.get(name) for record in records]
        read: pa.DataType = pa.null()  # typed from the values again: nested nulls not yet turned to text
        for value in values:
            read = widen(read, infer(value))
        merged = widen(target, read)
        if merged == target or _adds_fields_only(target, merged):
            merged = finalize(merged)
            columns[name] = pa.array([_fit(v, merged) for v in values], type=merged)
            continue
        main, variant = _split(values, target)
        columns[name] = main
        if any(v is not None for v in variant):
            columns[name + VARIANT_SUFFIX] = pa.array(variant, pa.string())
    return pa.table(columns)


def _adds_fields_only(old: pa.DataType, new: pa.DataType) -> bool:
    """Whether `new` is `old` with more (nested) struct fields and nothing else changed."""
    if pa.types.is_struct(old) and pa.types.is_struct(new):
        fields = {f.name: f.type for f in new}
        return all(f.name in fields and _same_or_grown(f.type, fields[f.name]) for f in old)
    if pa.types.is_list(old) and pa.types.is_list(new):
        return _adds_fields_only(old.value_type, new.value_type)
    return False


def _same_or_grown(old: pa.DataType, new: pa.DataType) -> bool:
    return old == new or _adds_fields_only(old, new)


def _split(values: list[Any], kind: pa.DataType) -> tuple[pa.Array, list[str | None]]:
    """Values `kind` holds exactly (others null), and the others as text (fitting ones null)."""
    main, variant = [], []
    for value in values:
        if fits(value, kind):
            main.append(_fit(value, kind))
            variant.append(None)
        else:
            main.append(None)
            variant.append(text_of(value))
    return pa.array(main, type=kind), variant


def fits(value: Any, kind: pa.DataType) -> bool:
    """Whether `kind` holds `value` exactly."""
    if value is None or pa.types.is_string(kind):
        return True
    if isinstance(value, bool):
        return pa.types.is_boolean(kind)
    if pa.types.is_integer(kind):
        return isinstance(value, int) and value in INT64
    if pa.types.is_floating(kind):
        return isinstance(value, int | float)
    if pa.types.is_decimal(kind):
        return isinstance(value, int | Decimal) and _decimal_fits(Decimal(value), kind)
    if pa.types.is_timestamp(kind):
        return isinstance(value, datetime)
    if pa.types.is_date(kind):
        return isinstance(value, date) and not isinstance(value, datetime)
    if pa.types.is_binary(kind):
        return isinstance(value, bytes)
    if pa.types.is_struct(kind):
        names = {f.name: f.type for f in kind}
        return isinstance(value, dict) and all(k in names and fits(v, names[k]) for k, v in value.items())
    if pa.types.is_list(kind):
        return isinstance(value, list) and all(fits(v, kind.value_type) for v in value)
    return False


def _decimal_fits(value: Decimal, kind: pa.Decimal128Type) -> bool:
    if not value.is_finite():
        return False
    quantized = value.quantize(Decimal(1).scaleb(-kind.scale)) if kind.scale else value.to_integral_value()
    return quantized == value and len(quantized.as_tuple().digits) <= kind.precision
