"""Extract: read the source window over JDBC and append it to raw as one immutable batch.

Order of events, so that nothing is lost or duplicated:
1. If a raw commit for this run id exists, the step already wrote its data: only the watermark is
   brought up to date from that commit's metadata (a crash between the two is repaired here).
2. The window's upper bound `hi` is captured before reading (partitions are separate transactions).
3. The batch is appended with txnAppId/txnVersion = batch number, so a retried write is a no-op.
4. Only then does the watermark move to `hi`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pipezone.core import failpoints
from pipezone.core.lake import delta_tables as dt
from pipezone.core.lake.schema_drift import conform_to_table
from pipezone.core.sources.jdbc import arrow_read as arrow_extract
from pipezone.core.sources.jdbc.base import HI_COLUMN, NOW_COLUMN
from pipezone.core.sources.registry import source_adapter
from pipezone.core.spec.cursor_values import CursorValue, capped, later, minus_lookback, normalize, parse_cursor_text
from pipezone.core.steps.context import StepContext, StepResult
from pipezone.core.steps.events import as_events, latest_events


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
    bounds = _query_one(ctx, adapter.bounds_read_options(source))
    hi = capped(normalize(bounds.get(HI_COLUMN)), normalize(bounds.get(NOW_COLUMN)), source.incremental.safety_buffer)
    return watermark, lo, hi


def _partition_bounds(ctx: StepContext, adapter: Any, window_sql: str) -> tuple[Any, Any] | None:
    source = ctx.flow.source
    assert source is not None
    column = adapter.partition_column(source)
    if source.read.num_partitions <= 1 or column is None:
        return None
    row = _query_one(ctx, adapter.partition_bounds_read_options(source, column, window_sql))
    return row.get("pz_lo"), row.get("pz_hi")


def _read(ctx: StepContext, adapter: Any, dbtable: str, bounds_over: str | None = None) -> Any:
    """The source rows of `dbtable` (a window, a key snapshot, a backfill range), split as the flow asks;
    the split's stride comes from MIN/MAX over `bounds_over` (default: `dbtable` itself)."""
    source = ctx.flow.source
    assert source is not None
    bounds = _partition_bounds(ctx, adapter, bounds_over or dbtable)
    return _load(ctx, adapter, adapter.read_options(source, dbtable, bounds))


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
    df = df.withColumns({name: F.expr(expr) for name, expr in casts.items()}) if casts else df
    return _without_length_limits(df)


def _without_length_limits(df: Any) -> Any:
    """Plain strings for the source's CHAR/VARCHAR columns: Spark carries their length into Delta as a
    write-time check, so a source that widens a column (or SQLite's TEXT, reported as varchar(0))
    would make every later write fail. The lake keeps the values, not the source's limits."""
    from pyspark.sql import functions as F

    marked = [f.name for f in df.schema.fields if "__CHAR_VARCHAR_TYPE_STRING" in f.metadata]
    if not marked:
        return df
    columns = [F.col(f"`{f.name}`") for f in df.schema.fields]
    return df.select(
        *[
            c.alias(f.name, metadata={}) if f.name in marked else c
            for c, f in zip(columns, df.schema.fields, strict=True)
        ]
    )


def _char_lengths(ctx: StepContext, adapter: Any, dbtable: str) -> dict[str, int]:
    """CHAR(n) columns of `dbtable` and their n, as Spark's JDBC schema reports them (Spark pads their values
    to n on read; another reader must do the same to write identical rows)."""
    reader, _ = _jdbc_reader(ctx)
    fields = reader.options(dbtable=dbtable).load().schema.fields
    kinds = {f.name: f.metadata.get("__CHAR_VARCHAR_TYPE_STRING", "") for f in fields}
    return {name: int(kind[5:-1]) for name, kind in kinds.items() if kind.startswith("char(")}


def _reconcile(ctx: StepContext, raw_path: str) -> StepResult | None:
    """Repair a watermark update lost after raw's commit, then skip if this run id already extracted.

    The newest live (non-backfill) extract commit in raw is the truth: its `hi` is where the watermark
    must be unless the watermark was changed after that commit (`pipezone state reset`).
    """
    commit = dt.newest_commit(ctx.spark, raw_path, lambda m: m.get("step") == "extract" and not m.get("backfill"))
    if commit is None:
        return None
    source = ctx.flow.source
    hi = normalize(commit.get("hi"))
    if source and source.incremental and hi is not None and not ctx.backfill:
        stored = ctx.state.get_watermark(ctx.flow.name)
        if (
            stored is not None
            and stored.last_run_id != commit.get("run_id")
            and stored.updated_at < commit["timestamp"]
        ):
            value = normalize(stored.value)
            if value is None or later(hi, value):
                ctx.state.set_watermark(ctx.flow.name, source.incremental.cursor, hi, commit.get("run_id"))
    if commit.get("run_id") == ctx.run_id and bool(commit.get("backfill")) == bool(ctx.backfill):
        return StepResult(skipped=True, note=f"batch {commit.get('batch')} already in raw for this run id")
    return None


def next_batch(ctx: StepContext, raw_path: str) -> int:
    """One more than the newest batch in raw (batches number the flow's extracts: 1, 2, 3, ...)."""
    return dt.newest_batch(ctx.spark, raw_path) + 1


def _stamped(df: Any, ctx: StepContext, batch: int) -> Any:
    from pyspark.sql import functions as F

    columns = {
        dt.RUN_ID: F.lit(ctx.run_id),
        dt.BATCH: F.lit(batch).cast("long"),
        dt.EXTRACTED_AT: F.current_timestamp(),
        dt.INGEST_DATE: F.current_date(),
    }
    if dt.DELETED not in df.columns:
        columns[dt.DELETED] = F.lit(False)
    return df.withColumns(columns)


def _append_raw(
    ctx: StepContext,
    adapter: Any,
    df: Any,
    raw_path: str,
    batch: int,
    meta: dict[str, Any],
    bulk: tuple[str | None, str],
) -> tuple[dt.CommitInfo, str]:
    """Append the batch to raw and say how it was read: through Arrow when the bulk path is open
    (`bulk` = (url, window)), else over JDBC."""
    url, window_sql = bulk
    if url is not None:
        try:
            target = arrow_extract.Target(df.schema, _char_lengths(ctx, adapter, window_sql), raw_stats_columns(ctx))
            return arrow_extract.append(ctx, adapter, url, window_sql, target, raw_path, batch, meta), "arrow"
        except arrow_extract.ArrowUnsupported as err:  # nothing written: the JDBC path reads it instead
            print(f"pipezone: flow {ctx.flow.name}: bulk path not used ({err}); reading over JDBC", flush=True)
    commit = dt.append(
        df,
        raw_path,
        app_id=ctx.app_id("raw"),
        version=batch,
        metadata=meta,
        partition_by=[dt.INGEST_DATE],
        stats_on=raw_stats_columns(ctx),
    )
    return commit, "jdbc"


def raw_stats_columns(ctx: StepContext) -> list[str]:
    """The source columns worth file statistics in raw: the primary key and the cursor."""
    source = ctx.flow.source
    assert source is not None
    return [*source.primary_key, *([source.incremental.cursor] if source.incremental else [])]


def _snapshot_due(ctx: StepContext, raw_path: str) -> bool:
    """Delete detection runs when the flow asks for it and its `every` has passed since the last one."""
    source = ctx.flow.source
    if source is None or source.deletes is None:
        return False
    if not source.deletes.every:
        return True
    last = dt.newest_commit(ctx.spark, raw_path, lambda m: bool(m.get("key_snapshot")))
    return last is None or datetime.now(UTC) - last["timestamp"] >= source.deletes.every


def _tombstones(ctx: StepContext, adapter: Any, raw_path: str) -> Any:
    """Keys loaded and not deleted yet that the source no longer has, as `_pz_deleted` rows.

    The key snapshot is read after the batch's window, so a key read in this batch and deleted since
    is tombstoned too (a tombstone outranks the live row of its own batch downstream).
    """
    from pyspark.sql import functions as F

    source = ctx.flow.source
    assert source is not None
    if not dt.table_exists(ctx.spark, raw_path):
        return None  # nothing loaded yet: no key can have gone
    keys = list(source.primary_key)
    in_source = _read(ctx, adapter, adapter.key_snapshot_query(source))
    raw = as_events(ctx.spark.read.format("delta").load(raw_path))
    events = latest_events(raw.select(*keys, dt.BATCH, dt.EXTRACTED_AT, dt.DELETED), keys, None)
    live = events.filter(f"NOT `{dt.DELETED}`").select(*keys)
    return live.join(in_source, on=keys, how="left_anti").withColumn(dt.DELETED, F.lit(True))


def _backfill(ctx: StepContext, adapter: Any, raw_path: str) -> StepResult:
    """A stateless `[start, end)` read into raw; the live watermark is neither read nor moved."""
    source = ctx.flow.source
    assert source is not None and ctx.backfill is not None
    start, end = (v if not isinstance(v, str) else parse_cursor_text(v) for v in ctx.backfill)
    if not later(end, start):
        raise ValueError(f"backfill window [{start}, {end}) is empty: --end must be after --start")
    batch = next_batch(ctx, raw_path)
    read = _read(ctx, adapter, adapter.backfill_query(source, start, end))
    columns = [c for c in read.columns if not c.startswith("_pz_")]
    df = _stamped(read, ctx, batch)
    df, _ = conform_to_table(df, raw_path, ctx.flow.schema_drift, f"raw.{ctx.flow.name}")
    meta = ctx.metadata("extract", batch=batch, backfill=True, start=start, end=end, columns=columns)
    commit = dt.append(
        df, raw_path, app_id=ctx.app_id("raw"), version=batch, metadata=meta, partition_by=[dt.INGEST_DATE]
    )
    details = {"backfill": [start, end], "batch": batch, "delta_version": commit.version}
    return StepResult(
        rows_read=commit.rows_written,
        rows_written=commit.rows_written,
        bytes_written=commit.bytes_written,
        details=details,
    )


def run_extract(ctx: StepContext) -> StepResult:
    source = ctx.flow.source
    if source is None:
        return StepResult(skipped=True, note="gold-only flow: nothing to extract")
    raw_path = ctx.runtime.lake.raw(ctx.flow)
    done = _reconcile(ctx, raw_path)
    if done is not None:
        return done
    _, adapter = _jdbc_reader(ctx)
    if ctx.backfill is not None:
        return _backfill(ctx, adapter, raw_path)
    return _extract_window(ctx, adapter, raw_path)


def _extract_window(ctx: StepContext, adapter: Any, raw_path: str) -> StepResult:
    """The live run: read the window (and the key snapshot when due), append it, then move the watermark."""
    source = ctx.flow.source
    assert source is not None
    watermark, lo, hi = _window(ctx, adapter)
    window = {"watermark": watermark, "lo": lo, "hi": hi}
    incremental = source.incremental
    nothing_new = incremental is not None and (
        hi is None or (watermark is not None and not later(hi, watermark) and not incremental.lookback)
    )
    snapshot = _snapshot_due(ctx, raw_path)
    if nothing_new and not snapshot:
        return StepResult(note="source table is empty" if hi is None else "no new rows", details=window)
    frames = []
    window_sql = adapter.window_query(source, lo, hi)
    if not nothing_new:
        # A window open below is (nearly) the whole table: the table's own MIN/MAX of the split column is an
        # index lookup, where MIN/MAX over the window scans it. Bounds only set the stride, never filter.
        whole = adapter.relation(source) if lo is None and source.table is not None else None
        frames.append(_read(ctx, adapter, window_sql, bounds_over=whole))
    tombstones = _tombstones(ctx, adapter, raw_path) if snapshot else None
    if tombstones is not None and (frames or not tombstones.isEmpty()):
        frames.append(tombstones)
    if not frames:
        return StepResult(note="no new rows, no deleted keys", details=window)
    batch = next_batch(ctx, raw_path)
    df = frames[0] if len(frames) == 1 else frames[0].unionByName(frames[1], allowMissingColumns=True)
    new_watermark = hi if watermark is None or (hi is not None and later(hi, watermark)) else watermark
    # The source's columns now, as this batch read them (None: a batch of tombstones only, which says nothing).
    columns = None if nothing_new else [c for c in frames[0].columns if not c.startswith("_pz_")]
    meta = ctx.metadata(
        "extract", batch=batch, lo=lo, hi=new_watermark, read_hi=hi, key_snapshot=snapshot, columns=columns
    )
    df, _ = conform_to_table(_stamped(df, ctx, batch), raw_path, ctx.flow.schema_drift, f"raw.{ctx.flow.name}")
    failpoints.reach("extract.before_commit")
    with ctx.timed("read_write"):
        bulk = arrow_extract.source_url(ctx, adapter, raw_path) if len(frames) == 1 and not nothing_new else None
        commit, read_path = _append_raw(ctx, adapter, df, raw_path, batch, meta, (bulk, window_sql))
    failpoints.reach("extract.after_commit")
    with ctx.timed("state"):
        if incremental is not None and new_watermark is not None:
            ctx.state.set_watermark(ctx.flow.name, incremental.cursor, new_watermark, ctx.run_id)
    return StepResult(
        rows_read=commit.rows_written,
        rows_written=commit.rows_written,
        bytes_written=commit.bytes_written,
        details={
            **window,
            "batch": batch,
            "delta_version": commit.version,
            "key_snapshot": snapshot,
            "read_path": read_path,
        },
    )
