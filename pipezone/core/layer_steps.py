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


def _pending(ctx: StepContext, below: str, layer: str) -> tuple[DataFrame | None, int, int]:
    """Rows of batches not yet consumed by `layer`, with the (previous, newest) batch numbers."""
    previous = ctx.state.get_progress(ctx.flow.name, layer)
    newest = dt.newest_batch(ctx.spark, below)
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


def _keys(ctx: StepContext) -> tuple[list[str], str | None]:
    """Primary key and cursor as bronze names them (snake_case)."""
    source = ctx.flow.source
    assert source is not None
    cursor = snake_case(source.incremental.cursor) if source.incremental else None
    return [snake_case(k) for k in source.primary_key], cursor


def _commit(
    ctx: StepContext,
    df: DataFrame,
    layer: str,
    keys: list[str],
    cursor: str | None,
    batches: tuple[int, int],
    rows_in: int,
) -> StepResult:
    """Write the layer, then (only after the commit) record the batches it consumed."""
    previous, newest = batches
    path = ctx.runtime.lake.table(layer, ctx.flow.name)
    commit = _write(ctx, df, path, layer, getattr(ctx.flow.layers, layer).write_mode, keys, cursor, newest)
    ctx.state.set_progress(ctx.flow.name, layer, newest, ctx.run_id)
    return StepResult(
        rows_read=rows_in,
        rows_written=commit.rows_written,
        bytes_written=commit.bytes_written,
        details={"batches": [previous + 1, newest], "delta_version": commit.version},
    )


def run_bronze(ctx: StepContext) -> StepResult:
    from pyspark.sql import functions as F

    df, previous, newest = _pending(ctx, ctx.runtime.lake.raw(ctx.flow), "bronze")
    if df is None:
        return StepResult(note=f"no new raw batches (at batch {previous})")
    df = snake_case_columns(df)
    keys, cursor = _keys(ctx)
    df = latest_per_key(df, keys, _order_columns(ctx, cursor)).drop(dt.INGEST_DATE)
    df = df.withColumn(dt.LOADED_AT, F.current_timestamp())
    return _commit(ctx, df, "bronze", keys, cursor, (previous, newest), df.count())


def run_silver(ctx: StepContext) -> StepResult:
    df, previous, newest = _pending(ctx, ctx.runtime.lake.bronze(ctx.flow.name), "silver")
    if df is None:
        return StepResult(note=f"no new bronze batches (at batch {previous})")
    transforms = ctx.flow.layers.silver.transforms
    keys, cursor = _keys(ctx)
    df = latest_per_key(df, keys, _order_columns(ctx, cursor))
    rows_in = df.count()
    df = apply_transforms(df, transforms)
    keys = renamed(keys, transforms)
    cursor = renamed([cursor], transforms)[0] if cursor else None
    return _commit(ctx, df, "silver", keys, cursor, (previous, newest), rows_in)
