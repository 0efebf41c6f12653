"""Arrow batches as CSV text for the databases' bulk loads (PostgreSQL `COPY ... (FORMAT csv)`, MySQL
`LOAD DATA ... OPTIONALLY ENCLOSED BY '"'`), written by Arrow's C++ CSV writer.

Why: formatting every value in Python (psycopg's `write_row`, a hand-made TSV line) costs ~50 µs a row and
was 95% of an export's time; Arrow formats whole columns at once. Every valid value is quoted and a NULL is
the unquoted null marker, so an empty string, the text `NULL` and a real NULL stay three different things.
Only what Arrow's writer has no form for goes through Python first, per column: nested values (JSON text,
as row_values writes them) and binary (each destination's hex form).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.csv as pa_csv

from pipezone.core.destinations.row_values import COMPLEX_TYPES, json_text

if TYPE_CHECKING:
    from pyspark.sql.types import StructField, StructType

__all__ = ["NULL", "csv_bytes"]

NULL = "NULL"  # unquoted: every valid value is quoted, so a text 'NULL' is never taken for it
_OPTIONS = pa_csv.WriteOptions(include_header=False, quoting_style="all_valid", null_string=NULL)

Binary = Callable[[bytes], str]


def csv_bytes(
    batch: pa.RecordBatch, schema: StructType, binary: Binary, *, naive_utc: bool = False, numeric_bools: bool = False
) -> bytes:
    """The batch's rows in `schema`'s column order as CSV. `binary` renders one binary value; `naive_utc`
    writes timestamps as UTC without a zone (MySQL DATETIME), else with `Z` (PostgreSQL timestamptz);
    `numeric_bools` writes booleans as 1/0 (MySQL's BOOLEAN is a TINYINT)."""
    columns = [_column(batch.column(f.name), f, binary, naive_utc, numeric_bools) for f in schema.fields]
    table = pa.Table.from_arrays(columns, names=[f"c{i}" for i in range(len(columns))])
    out = io.BytesIO()
    pa_csv.write_csv(table, out, _OPTIONS)
    return out.getvalue()


def _column(array: pa.Array, field: StructField, binary: Binary, naive_utc: bool, numeric_bools: bool) -> pa.Array:
    kind = field.dataType.typeName()
    if kind in COMPLEX_TYPES:
        return pa.array([None if v is None else json_text(v, field) for v in array.to_pylist()], pa.string())
    if kind == "binary":
        return pa.array([None if v is None else binary(v) for v in array.to_pylist()], pa.string())
    if pa.types.is_timestamp(array.type) and array.type.tz is not None:
        # the instants are stored in UTC whatever the zone: relabel, then drop the zone where none is wanted
        return array.cast(pa.timestamp(array.type.unit) if naive_utc else pa.timestamp(array.type.unit, "UTC"))
    if numeric_bools and pa.types.is_boolean(array.type):
        return array.cast(pa.int8())
    return array
