"""Bronze and silver: carry new batches from the layer below into this layer's Delta table.

Each layer remembers (in the state store) the last batch it consumed. A run takes the batches after
it, up to the newest batch below, writes them with txnVersion = that newest batch (a retry is a Delta
no-op), and only then records the new position. Nothing depends on the run id being new.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipezone.core import delta_tables as dt
from pipezone.core.standardize import snake_case, snake_case_columns
from pipezone.core.step_context import StepContext, StepResult
from pipezone.core.transforms import apply_transforms, latest_per_key, renamed

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def _newest_batch(ctx: StepContext, path: str) -> int:
    """The newest batch number in a layer table (from the Delta log, not a scan)."""
    batches = [int(c["batch"]) for c in dt.commits_with_metadata(ctx.spark, path) if "batch" in c]
    if batches:
        return max(batches)
    if not dt.table_exists(ctx.spark, path):
        return 0
    row = ctx.spark.read.format("delta").load(path).agg({dt.BATCH: "max"}).collect()[0]
    return int(row[0] or 0)


def _pending(ctx: StepContext, below: str, layer: str) -> tuple[DataFrame | None, int, int]:
    """Rows of batches not yet consumed by `layer`, with the (previous, newest) batch numbers."""
    previous = ctx.state.get_progress(ctx.flow.name, layer)
    newest = _newest_batch(ctx, below)
    if newest <= previous:
        return None, previous, newest
    df = ctx.spark.read.format("delta").load(below)
    return df.filter((df[dt.BATCH] > previous) & (df[dt.BATCH] <= newest)), previous, newest


def _order_columns(ctx: StepContext, cursor: str | None) -> list[str]:
    return ([cursor] if cursor else []) + [dt.BATCH, dt.EXTRACTED_AT]


def _write(
    ctx: StepContext, df: DataFrame, path: str, layer: str, mode: str, keys: list[str], cursor: str | None, batch: int
) -> dt.CommitInfo:
    meta = ctx.metadata(layer, batch=batch)
    settings = getattr(ctx.flow.layers, layer)
    common = {"app_id": ctx.app_id(layer), "version": batch, "metadata": meta, "partition_by": settings.partition_by}
    if mode == "merge":
        return dt.merge(df, path, keys=keys, cursor=cursor, **common)
    if mode in ("append", "overwrite"):
        return dt.append(df, path, overwrite=mode == "overwrite", **common)
    raise ValueError(f"write_mode {mode} is not supported on layer {layer} yet")


def run_bronze(ctx: StepContext) -> StepResult:
    from pyspark.sql import functions as F

    source = ctx.flow.source
    assert source is not None
    lake = ctx.runtime.lake
    df, previous, newest = _pending(ctx, lake.raw(ctx.flow), "bronze")
    if df is None:
        return StepResult(note=f"no new raw batches (at batch {previous})")
    df = snake_case_columns(df)
    keys = [snake_case(k) for k in source.primary_key]
    cursor = snake_case(source.incremental.cursor) if source.incremental else None
    df = latest_per_key(df, keys, _order_columns(ctx, cursor)).drop(dt.INGEST_DATE)
    df = df.withColumn(dt.LOADED_AT, F.current_timestamp())
    rows_in = df.count()
    layer = ctx.flow.layers.bronze
    commit = _write(ctx, df, lake.bronze(ctx.flow.name), "bronze", layer.write_mode, keys, cursor, newest)
    ctx.state.set_progress(ctx.flow.name, "bronze", newest, ctx.run_id)
    return StepResult(
        rows_read=rows_in,
        rows_written=commit.rows_written,
        bytes_written=commit.bytes_written,
        details={"batches": [previous + 1, newest], "delta_version": commit.version},
    )


def run_silver(ctx: StepContext) -> StepResult:
    source = ctx.flow.source
    assert source is not None
    lake = ctx.runtime.lake
    df, previous, newest = _pending(ctx, lake.bronze(ctx.flow.name), "silver")
    if df is None:
        return StepResult(note=f"no new bronze batches (at batch {previous})")
    layer = ctx.flow.layers.silver
    keys = [snake_case(k) for k in source.primary_key]
    cursor = snake_case(source.incremental.cursor) if source.incremental else None
    df = latest_per_key(df, keys, _order_columns(ctx, cursor))
    rows_in = df.count()
    df = apply_transforms(df, layer.transforms)
    keys = renamed(keys, layer.transforms)
    cursor = renamed([cursor], layer.transforms)[0] if cursor else None
    commit = _write(ctx, df, lake.silver(ctx.flow.name), "silver", layer.write_mode, keys, cursor, newest)
    ctx.state.set_progress(ctx.flow.name, "silver", newest, ctx.run_id)
    return StepResult(
        rows_read=rows_in,
        rows_written=commit.rows_written,
        bytes_written=commit.bytes_written,
        details={"batches": [previous + 1, newest], "delta_version": commit.version},
    )
