"""Bronze: raw's new batches with snake_case columns, each row version once (see layer_writes for the
protocol). A first load of one table read is written by Arrow (bronze_bulk) instead of Spark."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipezone.core.lake import delta_merge as dm
from pipezone.core.lake import delta_tables as dt
from pipezone.core.lake.arrow_tables import ArrowUnsupported
from pipezone.core.steps import bronze_bulk
from pipezone.core.steps.context import StepContext, StepResult
from pipezone.core.steps.events import as_events, latest_events
from pipezone.core.steps.layer_writes import (
    commit_layer,
    layer_keys,
    pending,
    pending_rows,
    without_dropped_columns,
    write_layer,
)
from pipezone.core.steps.standardize import snake_case_columns

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def run_bronze(ctx: StepContext) -> StepResult:
    from pyspark.sql import functions as F

    raw = ctx.runtime.lake.raw(ctx.flow)
    df, previous, newest = pending(ctx, raw, "bronze")
    if df is None:
        return StepResult(note=f"no new raw batches (at batch {previous})")
    batches = (previous, newest)
    rows_in = pending_rows(ctx, raw, df, batches)
    df = as_events(without_dropped_columns(ctx, snake_case_columns(df), batches)).drop(dt.INGEST_DATE)
    keys, cursor = layer_keys(ctx)
    mode = ctx.flow.layers.bronze.write_mode
    one_read = mode != "scd2" and _one_table_read(ctx, batches)
    if mode != "scd2" and keys and not one_read:
        df = latest_events(df, keys, cursor)
    df = df.withColumn(dt.LOADED_AT, F.current_timestamp())

    def write() -> tuple[dt.CommitInfo, str]:
        if one_read and not dt.table_exists(ctx.spark, ctx.runtime.lake.bronze(ctx.flow.name)):
            try:
                return _bulkwrite_layer(ctx, df, keys, cursor, newest), "arrow"
            except ArrowUnsupported as err:  # nothing written: Spark writes it
                print(f"pipezone: flow {ctx.flow.name}: bronze bulk path not used ({err}); writing with Spark")
        return write_layer(ctx, df, "bronze", keys, cursor, newest, rows_in), "spark"

    return commit_layer(ctx, "bronze", batches, rows_in, write)


def _bulkwrite_layer(ctx: StepContext, df: DataFrame, keys: list[str], cursor: str | None, batch: int) -> dt.CommitInfo:
    """A first load of one table read: the table `_write` would create, written from raw by Arrow."""
    mode = ctx.flow.layers.bronze.write_mode
    frame = dm.with_row_hash(df) if mode == "append" else df
    kinds = {f.name: f.dataType.simpleString() for f in frame.schema.fields}
    properties = dt.table_properties(kinds, [*keys, *([cursor] if cursor else [])], merged=mode == "merge")
    return bronze_bulk.write(ctx, frame, batch, hashed=mode == "append", properties=properties)


def _one_table_read(ctx: StepContext, batches: tuple[int, int]) -> bool:
    """Whether the pending raw rows are one read of a source table without tombstones: the table's primary
    key then holds each key once, and bronze can skip ranking versions (three shuffles of every row)."""
    previous, newest = batches
    source = ctx.flow.source
    if newest != previous + 1 or source is None or source.table is None:
        return False
    raw = ctx.runtime.lake.raw(ctx.flow)
    commit = dt.newest_commit(ctx.spark, raw, lambda m: m.get("step") == "extract" and m.get("batch") == newest)
    return commit is not None and commit.get("key_snapshot") is False and not commit.get("backfill")
