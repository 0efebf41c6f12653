"""steps/events.py on Arrow tables: rows as events and the newest event per key, for a small batch that
bronze or silver write with delta-rs instead of Spark (steps/small_batch.py).

Same rules as the Spark functions, which stay the reference: the differential tests in
tests/core/steps/test_small_batch.py run both on the same rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipezone.core.lake import delta_tables as dt
from pipezone.core.steps.events import order_columns

if TYPE_CHECKING:
    import pyarrow as pa

_INDEX = "_pz_row_index"  # working column, never written


def with_column(table: pa.Table, name: str, values: pa.Array | pa.ChunkedArray) -> pa.Table:
    """`table` with `name` set to `values`: replaced in place when present (as Spark's withColumn), else last."""
    index = table.schema.get_field_index(name)
    if index >= 0:
        return table.set_column(index, name, values)
    return table.append_column(name, values)


def as_events(table: pa.Table) -> pa.Table:
    """`_pz_deleted` (false when absent or null) and `_pz_deleted_at` (the extraction time of a tombstone)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if dt.DELETED in table.column_names:
        deleted = pc.fill_null(table[dt.DELETED], False)
    else:
        deleted = pa.chunked_array([pa.array([False] * table.num_rows, pa.bool_())])
    table = with_column(table, dt.DELETED, deleted)
    extracted = table[dt.EXTRACTED_AT]
    return with_column(table, dt.DELETED_AT, pc.if_else(deleted, extracted, pa.scalar(None, extracted.type)))


def latest_per_key(table: pa.Table, keys: list[str], order_by: list[str]) -> pa.Table:
    """One row per key (nulls are a key value, as Spark's window partitions): the one with the highest
    `order_by` values, nulls lowest (Spark's `desc_nulls_last`)."""
    import pyarrow as pa

    if not keys or table.num_rows == 0:
        return table
    indexed = table.append_column(_INDEX, pa.array(range(table.num_rows), pa.int64()))
    ordered = indexed.sort_by([(c, "descending", "at_end") for c in order_by]) if order_by else indexed
    # an ordered aggregation (no threads) keeps the sort: "first" is each key's highest row
    firsts = ordered.group_by(keys, use_threads=False).aggregate([(_INDEX, "first")])
    return table.take(firsts[f"{_INDEX}_first"])


def latest_events(table: pa.Table, keys: list[str], cursor: str | None) -> pa.Table:
    """One event per key: the newest live version (by cursor, then batch), unless a tombstone of the same
    or a later batch follows it. A CDC flow's cursor is the log's change order, deletes ranked with the
    other changes."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not keys:
        return table
    if cursor == dt.CHANGE_ORDER:
        return latest_per_key(table, keys, [dt.CHANGE_ORDER, dt.BATCH])
    deleted = table[dt.DELETED]
    live = latest_per_key(table.filter(pc.invert(deleted)), keys, order_columns(cursor))
    tombstones = latest_per_key(table.filter(deleted), keys, [dt.BATCH])
    return latest_per_key(pa.concat_tables([live, tombstones]), keys, [dt.BATCH, dt.DELETED])
