"""A row-wise check's failing condition (`Expectation.failing`, Spark SQL) as an Arrow mask, where Arrow
computes exactly what Spark does: counting a check on the changed rows then needs no Spark session.

Exact only for the plain cases; everything else is None and Spark counts it:
- not_null: `col IS NULL`, any type;
- accepted_values: `col IS NOT NULL AND NOT col IN (...)` on a string column with string values, an
  integer column with integer values or a boolean column with boolean values (Spark compares those
  without coercion; floats, decimals, times and mixed types it coerces in ways not copied here);
- expressions: never (they are Spark SQL).
Columns are found as Spark finds them, ignoring case.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipezone.core.lake.arrow_feed import Condition
from pipezone.core.quality.expectations import Expectation
from pipezone.core.spec.quality import AcceptedValuesCheck, NotNullCheck

if TYPE_CHECKING:
    import pyarrow as pa


def failing(expectation: Expectation, schema: pa.Schema) -> Condition | None:
    """The mask of the rows `expectation` counts unexpected on a feed of `schema`, or None (Spark counts)."""
    check = expectation.check
    column = None if expectation.column is None else _column(schema, expectation.column)
    if column is None:
        return None
    if isinstance(check, NotNullCheck):
        return _is_null(column)
    if isinstance(check, AcceptedValuesCheck):
        values = _value_set(schema.field(column).type, list(check.values))
        return None if values is None else _not_in(column, values)
    return None


def _column(schema: pa.Schema, name: str) -> str | None:
    """The one column of `schema` named `name` ignoring case, or None."""
    found = [n for n in schema.names if n.lower() == name.lower()]
    return found[0] if len(found) == 1 else None


def _value_set(kind: pa.DataType, values: list[object]) -> pa.Array | None:
    """The accepted values as an array of the column's type, when Spark compares them without coercion."""
    import pyarrow as pa

    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        ok = all(isinstance(v, str) for v in values)
    elif pa.types.is_integer(kind):
        ok = all(isinstance(v, int) and not isinstance(v, bool) for v in values)
    elif pa.types.is_boolean(kind):
        ok = all(isinstance(v, bool) for v in values)
    else:
        ok = False
    if not ok:
        return None
    try:
        return pa.array(values, type=kind)
    except (pa.ArrowInvalid, OverflowError):  # a value the column's type cannot hold: Spark decides
        return None


def _is_null(column: str) -> Condition:
    import pyarrow.compute as pc

    return lambda feed: pc.is_null(feed[column])


def _not_in(column: str, values: pa.Array) -> Condition:
    import pyarrow.compute as pc

    return lambda feed: pc.and_(pc.is_valid(feed[column]), pc.invert(pc.is_in(feed[column], value_set=values)))
