"""Silver: bronze's new batches, transformed, merged by primary key (forward-only) by default (see
layer_writes for the protocol)."""

from __future__ import annotations

from pipezone.core import failpoints
from pipezone.core.lake import delta_tables as dt
from pipezone.core.steps.context import StepContext, StepResult
from pipezone.core.steps.events import as_events, latest_events
from pipezone.core.steps.layer_writes import (
    batch_key_ranges,
    commit_layer,
    layer_keys,
    pending,
    pending_rows,
    without_dropped_columns,
    write_layer,
)
from pipezone.core.steps.row_checks import judge, row_checks, write_quarantine
from pipezone.core.steps.transforms import apply_transforms, renamed, unchanged_columns


def run_silver(ctx: StepContext) -> StepResult:
    from pyspark.sql import functions as F

    df, previous, newest = pending(ctx, ctx.runtime.lake.bronze(ctx.flow.name), "silver")
    if df is None:
        return StepResult(note=f"no new bronze batches (at batch {previous})")
    transforms = ctx.flow.layers.silver.transforms
    keys, cursor = layer_keys(ctx)
    bronze = ctx.runtime.lake.bronze(ctx.flow.name)
    rows_in = pending_rows(ctx, bronze, df, (previous, newest))
    within = batch_key_ranges(ctx, bronze, (previous, newest), unchanged_columns(keys, transforms))
    df = df.drop(dt.ROW_HASH, dt.VALID_FROM, dt.VALID_TO, dt.IS_CURRENT)
    df = as_events(without_dropped_columns(ctx, df, (previous, newest)))
    if ctx.flow.layers.silver.write_mode != "scd2":
        df = latest_events(df, keys, cursor)
    df = apply_transforms(df, transforms).withColumn(dt.LOADED_AT, F.current_timestamp())
    keys = renamed(keys, transforms)
    cursor = renamed([cursor], transforms)[0] if cursor else None
    batches = (previous, newest)
    if not row_checks(ctx.flow.quality):
        write = lambda: (write_layer(ctx, df, "silver", keys, cursor, newest, rows_in, within=within), "spark")  # noqa: E731
        return commit_layer(ctx, "silver", batches, rows_in, write)
    df = df.cache()  # judged by GX, counted, then written to quarantine and silver
    try:
        verdict = judge(ctx, df, keys)
        assert verdict is not None

        def write() -> tuple[dt.CommitInfo, str]:
            write_quarantine(ctx, verdict, newest)  # first: a retry after silver's commit skips it (txnVersion)
            failpoints.reach("silver.after_quarantine")
            return write_layer(ctx, verdict.keep, "silver", keys, cursor, newest, rows_in, within=within), "spark"

        result = commit_layer(ctx, "silver", batches, rows_in, write)
    finally:
        df.unpersist()
    result.details |= verdict.details()
    counts = [f"{n} {what}" for n, what in ((verdict.dropped, "dropped"), (verdict.quarantined, "quarantined")) if n]
    result.note = "; ".join(filter(None, [result.note, ", ".join(counts)]))
    return result
