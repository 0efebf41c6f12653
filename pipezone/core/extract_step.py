"""Extract: read the source window over JDBC and append it to raw as one immutable batch.

Order of events, so that nothing is lost or duplicated:
1. If a raw commit for this run id exists, the step already wrote its data: only the watermark is
   brought up to date from that commit's metadata (a crash between the two is repaired here).
2. The window's upper bound `hi` is captured before reading (partitions are separate transactions).
3. The batch is appended with txnAppId/txnVersion = batch number, so a retried write is a no-op.
4. Only then does the watermark move to `hi`.
"""

from __future__ import annotations

from typing import Any

from pipezone.core import delta_tables as dt
from pipezone.core.cursor_values import CursorValue, minus_lookback, normalize
from pipezone.core.sources import source_adapter
from pipezone.core.step_context import StepContext, StepResult


def _jdbc_reader(ctx: StepContext) -> tuple[Any, Any]:
    """A configured `spark.read.format('jdbc')` and the adapter, credentials attached."""
    source = ctx.flow.source
    assert source is not None
    conn = ctx.runtime.connection(source.connection)
    adapter = source_adapter(conn)
    reader = (
        ctx.spark.read.format("jdbc")
        .option("url", adapter.jdbc_url(conn, ctx.runtime.settings.project_root))
        .option("driver", adapter.driver_class)
    )
    for key, value in adapter.connection_properties(conn, ctx.runtime.resolver).items():
        reader = reader.option(key, value)
    return reader, adapter


def _query_one(ctx: StepContext, options: dict[str, str]) -> dict[str, Any]:
    reader, _ = _jdbc_reader(ctx)
    rows = reader.options(**options).load().collect()
    return rows[0].asDict() if rows else {}


def _window(ctx: StepContext, adapter: Any) -> tuple[CursorValue | None, CursorValue | None, CursorValue | None]:
    """(watermark, lo, hi) for this run; lo/hi None means unbounded (full refresh)."""
    source = ctx.flow.source
    assert source is not None
    if source.incremental is None:
        return None, None, None
    stored = None if ctx.full_refresh else ctx.state.get_watermark(ctx.flow.name)
    watermark = normalize(stored.value if stored else source.incremental.initial_value)
    lo = minus_lookback(watermark, source.incremental.lookback) if watermark is not None else None
    hi = normalize(_query_one(ctx, adapter.bounds_read_options(source)).get("pz_hi"))
    return watermark, lo, hi


def _partition_bounds(ctx: StepContext, adapter: Any, window_sql: str) -> tuple[Any, Any] | None:
    source = ctx.flow.source
    assert source is not None
    column = adapter.partition_column(source)
    if source.read.num_partitions <= 1 or column is None:
        return None
    row = _query_one(ctx, adapter.partition_bounds_read_options(source, column, window_sql))
    return row.get("pz_lo"), row.get("pz_hi")


def _load(ctx: StepContext, adapter: Any, options: dict[str, str]) -> Any:
    """Read the window; drivers that type some columns badly get a customSchema and casts after."""
    from pyspark.sql import functions as F

    reader, _ = _jdbc_reader(ctx)
    df = reader.options(**options).load()
    inferred = {f.name: f.dataType.simpleString() for f in df.schema.fields}
    schema = adapter.custom_schema(inferred)
    if schema:
        reader, _ = _jdbc_reader(ctx)
        df = reader.options(**options).option("customSchema", schema).load()
    casts = adapter.post_read_casts(inferred)
    return df.withColumns({name: F.expr(expr) for name, expr in casts.items()}) if casts else df


def _reconcile(ctx: StepContext, raw_path: str) -> StepResult | None:
    """If this run id already committed to raw, finish its bookkeeping instead of extracting again."""
    for commit in dt.commits_with_metadata(ctx.spark, raw_path):
        if commit.get("run_id") == ctx.run_id and commit.get("step") == "extract":
            source = ctx.flow.source
            hi = normalize(commit.get("hi"))
            if source and source.incremental and hi is not None:
                ctx.state.set_watermark(ctx.flow.name, source.incremental.cursor, hi, ctx.run_id)
            return StepResult(skipped=True, note=f"batch {commit.get('batch')} already in raw for this run id")
    return None


def next_batch(ctx: StepContext, raw_path: str) -> int:
    """One more than the newest batch in raw (batches number the flow's extracts: 1, 2, 3, ...)."""
    return dt.newest_batch(ctx.spark, raw_path) + 1


def run_extract(ctx: StepContext) -> StepResult:
    from pyspark.sql import functions as F

    source = ctx.flow.source
    if source is None:
        return StepResult(skipped=True, note="gold-only flow: nothing to extract")
    raw_path = ctx.runtime.lake.raw(ctx.flow)
    done = _reconcile(ctx, raw_path)
    if done is not None:
        return done
    _, adapter = _jdbc_reader(ctx)
    watermark, lo, hi = _window(ctx, adapter)
    window = {"watermark": watermark, "lo": lo, "hi": hi}
    if source.incremental is not None and hi is None:
        return StepResult(note="source table is empty", details=window)
    if source.incremental is not None and watermark is not None and hi <= watermark and not source.incremental.lookback:
        return StepResult(note="no new rows", details=window)
    window_sql = adapter.window_query(source, lo, hi)
    options = adapter.read_options(source, window_sql, _partition_bounds(ctx, adapter, window_sql))
    batch = next_batch(ctx, raw_path)
    df = _load(ctx, adapter, options)
    df = df.withColumns(
        {
            dt.RUN_ID: F.lit(ctx.run_id),
            dt.BATCH: F.lit(batch).cast("long"),
            dt.EXTRACTED_AT: F.current_timestamp(),
            dt.INGEST_DATE: F.current_date(),
        }
    )
    meta = ctx.metadata("extract", batch=batch, lo=lo, hi=hi)
    commit = dt.append(
        df, raw_path, app_id=ctx.app_id("raw"), version=batch, metadata=meta, partition_by=[dt.INGEST_DATE]
    )
    if source.incremental is not None and hi is not None:
        ctx.state.set_watermark(ctx.flow.name, source.incremental.cursor, hi, ctx.run_id)
    return StepResult(
        rows_read=commit.rows_written,
        rows_written=commit.rows_written,
        bytes_written=commit.bytes_written,
        details={**window, "batch": batch, "delta_version": commit.version},
    )
