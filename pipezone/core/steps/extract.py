"""Extract: read the source's window (through the source contract) and append it to raw as one immutable batch.

Order of events, so that nothing is lost or duplicated:
1. If a raw commit for this run id exists, the step already wrote its data: only the watermark is
   brought up to date from that commit's metadata (a crash between the two is repaired here).
2. The window's upper bound `hi` is captured before reading (partitions are separate transactions).
3. The batch is appended with txnAppId/txnVersion = batch number, so a retried write is a no-op.
4. Only then does the watermark move to `hi`.

A flow without `incremental` reads the whole relation every run: its commit says `complete: true`, and
bronze infers the source's deletes from it (keys live before and missing from the newest complete read),
so the source is scanned once per run and no key snapshot is taken (see `is_complete_read`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from itertools import chain
from typing import TYPE_CHECKING, Any

from pipezone.core import failpoints
from pipezone.core.lake import arrow_tables
from pipezone.core.lake import delta_tables as dt
from pipezone.core.lake.arrow_tables import ArrowUnsupported, conform
from pipezone.core.lake.schema_drift import conform_to_table
from pipezone.core.sources.contract import ArrowRead, ArrowUnavailable, CursorBounds, ReadPlan, Source
from pipezone.core.spec.cursor_values import CursorValue, capped, later, minus_lookback, normalize, parse_cursor_text
from pipezone.core.spec.source import DeleteDetection
from pipezone.core.steps.context import StepContext, StepResult
from pipezone.core.steps.events import as_events, latest_events

if TYPE_CHECKING:
    from pyspark.sql import DataFrame
    from pyspark.sql.types import StructType


Window = tuple[CursorValue | None, CursorValue | None, CursorValue | None]  # (watermark, lo, hi)


def window(ctx: StepContext, source: Source, bounds: Callable[[CursorValue | None], CursorBounds]) -> Window:
    """(watermark, lo, hi) for this run, `bounds(lo)` asking the source; lo/hi None means unbounded."""
    incremental = source.spec.incremental
    if incremental is None:
        return None, None, None
    stored = None if ctx.full_refresh else ctx.state.get_watermark(ctx.flow.name)
    watermark = normalize(stored.value if stored else incremental.initial_value)
    lo = minus_lookback(watermark, incremental.lookback) if watermark is not None else None
    with ctx.timed("bounds"):
        found = bounds(lo)
    hi = capped(normalize(found.hi), normalize(found.now), incremental.safety_buffer)
    return watermark, lo, hi


def nothing_new(source: Source, found: Window) -> bool:
    """Whether the window holds no row to read: an empty source, or a cursor that has not moved (and no
    lookback asks to read the last stretch again)."""
    incremental = source.spec.incremental
    watermark, _, hi = found
    return incremental is not None and (
        hi is None or (watermark is not None and not later(hi, watermark) and not incremental.lookback)
    )


def raw_history(ctx: StepContext, raw_path: str) -> dt.HistoryReader:
    """raw's history reader: delta-rs with the lake's options, the session only where delta-rs can't."""
    return lambda limit: dt.history_of(raw_path, ctx.runtime.lake_options(), limit, lambda: ctx.spark)


def is_live_extract(meta: dict[str, Any]) -> bool:
    """Whether a raw commit is a live (not a backfill) extract's."""
    return meta.get("step") == "extract" and not meta.get("backfill")


def reconcile(ctx: StepContext, raw_path: str, history: dt.HistoryReader | None = None) -> StepResult | None:
    """Repair a watermark update lost after raw's commit, then skip if this run id already extracted.

    The newest live (non-backfill) extract commit in raw is the truth: its `hi` is where the watermark
    must be unless the watermark was changed after that commit (`pipezone state reset`). `history`:
    raw's history reader when the caller has one (`raw_history` otherwise).
    """
    commit = dt.newest_matching(history or raw_history(ctx, raw_path), is_live_extract)
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


def window_details(found: Window) -> dict[str, Any]:
    watermark, lo, hi = found
    return {"watermark": watermark, "lo": lo, "hi": hi}


def no_new_rows(found: Window) -> StepResult:
    return StepResult(
        note="source table is empty" if found[2] is None else "no new rows", details=window_details(found)
    )


def moved(found: Window) -> CursorValue | None:
    """The watermark after reading the window: its `hi`, unless that is behind the watermark."""
    watermark, _, hi = found
    return hi if watermark is None or (hi is not None and later(hi, watermark)) else watermark


def next_batch(ctx: StepContext, raw_path: str) -> int:
    """One more than the newest batch in raw (batches number the flow's extracts: 1, 2, 3, ...)."""
    return dt.newest_batch(ctx.spark, raw_path) + 1


def stamped(df: DataFrame, ctx: StepContext, batch: int) -> DataFrame:
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
    ctx: StepContext, source: Source, df: DataFrame, plan: ReadPlan | None, raw_path: str, meta: dict[str, Any]
) -> tuple[dt.CommitInfo, str]:
    """Append the batch to raw and say how it was read: through the source's Arrow reader when `plan` (a
    first load) may take the bulk path and the source offers one, else with Spark."""
    batch = meta["batch"]
    if plan is not None:
        try:
            arrow = source.read_arrow(ctx.spark, plan, df.schema)
            if arrow is not None:
                return append_arrow(ctx, arrow, df.schema, raw_path, batch, meta), "arrow"
        except (ArrowUnavailable, ArrowUnsupported) as err:  # nothing written: Spark reads it instead
            line = f"pipezone: flow {ctx.flow.name}: bulk path not used ({err}); reading with {source.reader}"
            print(line, flush=True)
    commit = dt.append(
        df,
        raw_path,
        app_id=ctx.app_id("raw"),
        version=batch,
        metadata=meta,
        partition_by=[dt.INGEST_DATE],
        stats_on=raw_stats_columns(ctx),
    )
    return commit, source.reader.lower()


def append_arrow(
    ctx: StepContext, arrow: ArrowRead, schema: StructType, raw_path: str, batch: int, meta: dict[str, Any]
) -> dt.CommitInfo:
    """Write the Arrow stream to raw with delta-rs as the table the Spark write would have created: the
    stamped Spark schema `schema`, the same stamps, partitioning, properties, commit metadata and txn."""
    target = arrow_tables.arrow_schema(schema)
    now = datetime.now(UTC)
    stamps = {
        dt.RUN_ID: ctx.run_id,
        dt.BATCH: batch,
        dt.EXTRACTED_AT: now,
        dt.INGEST_DATE: now.date(),
        dt.DELETED: False,
    }
    batches = iter(arrow.batches)
    first = next(batches, None)
    # the first batch is conformed before anything is written: a type problem shows here
    head = [conform(first, target, stamps)] if first is not None else []
    conformed = chain(head, (conform(record_batch, target, stamps) for record_batch in batches))
    return arrow_tables.create_table(
        raw_path,
        ctx.runtime.lake_s3(),
        conformed,
        target=target,
        partition_by=[dt.INGEST_DATE],
        properties=dt.table_properties(
            {f.name: f.dataType.simpleString() for f in schema.fields}, raw_stats_columns(ctx)
        ),
        metadata=meta,
        transaction=(ctx.app_id("raw"), batch),
    )


def _bulk_plan(ctx: StepContext, plan: ReadPlan, raw_path: str) -> ReadPlan | None:
    """`plan` when this read may take the Arrow bulk path: a flow's first load (raw has no table yet; later
    windows are small), unless the flow asks for JDBC (`read.initial_load: jdbc`)."""
    source = ctx.flow.source
    if source is None or source.read.initial_load != "auto" or ctx.backfill is not None:
        return None
    return None if dt.table_exists(ctx.spark, raw_path) else plan


def raw_stats_columns(ctx: StepContext) -> list[str]:
    """The source columns worth file statistics in raw: the primary key and the cursor."""
    source = ctx.flow.source
    assert source is not None
    return [*source.primary_key, *([source.incremental.cursor] if source.incremental else [])]


def is_complete_read(ctx: StepContext) -> bool:
    """Whether this run reads the whole relation (a flow without `incremental`, not a backfill): its batch
    then says which keys the source holds, and bronze infers the deleted ones from it (steps/bronze.py).

    A full refresh of an incremental flow is not complete: it reads the window `(None, hi]`, which leaves
    out rows with a newer or NULL cursor, and a missing key there is not a deleted one."""
    source = ctx.flow.source
    return source is not None and source.incremental is None and ctx.backfill is None


def snapshot_due(ctx: StepContext, raw_path: str, history: dt.HistoryReader | None = None) -> bool:
    """Delete detection runs when the flow asks for it and its `every` has passed since the last one.

    Never on a complete read: its own rows already name every key the source holds, so a key snapshot
    would scan the source a second time for nothing (`source.deletes` is redundant there, and ignored).
    `history`: as `reconcile`'s."""
    source = ctx.flow.source
    if source is None or source.deletes is None or is_complete_read(ctx):
        return False
    if not source.deletes.every:
        return True
    last = dt.newest_matching(history or raw_history(ctx, raw_path), lambda m: bool(m.get("key_snapshot")))
    return key_snapshot_due(source.deletes, last)


def key_snapshot_due(deletes: DeleteDetection, last: dict[str, Any] | None) -> bool:
    """Whether delete detection is due: the flow asks for it every run, or `every` has passed since `last`,
    the raw commit of the newest key snapshot (None: there is none). steps/idle.py asks it too."""
    return not deletes.every or last is None or datetime.now(UTC) - last["timestamp"] >= deletes.every


def _tombstones(ctx: StepContext, source: Source, raw_path: str) -> DataFrame | None:
    """Keys loaded and not deleted yet that the source no longer has, as `_pz_deleted` rows.

    The key snapshot is read after the batch's window, so a key read in this batch and deleted since
    is tombstoned too (a tombstone outranks the live row of its own batch downstream).
    """
    from pyspark.sql import functions as F

    if not dt.table_exists(ctx.spark, raw_path):
        return None  # nothing loaded yet: no key can have gone
    keys = list(source.spec.primary_key)
    in_source = source.read(ctx.spark, ReadPlan.key_snapshot())
    raw = as_events(ctx.spark.read.format("delta").load(raw_path))
    events = latest_events(raw.select(*keys, dt.BATCH, dt.EXTRACTED_AT, dt.DELETED), keys, None)
    live = events.filter(f"NOT `{dt.DELETED}`").select(*keys)
    return live.join(in_source, on=keys, how="left_anti").withColumn(dt.DELETED, F.lit(True))


def _backfill(ctx: StepContext, source: Source, raw_path: str) -> StepResult:
    """A stateless `[start, end)` read into raw; the live watermark is neither read nor moved."""
    assert ctx.backfill is not None
    start, end = (v if not isinstance(v, str) else parse_cursor_text(v) for v in ctx.backfill)
    if not later(end, start):
        raise ValueError(f"backfill window [{start}, {end}) is empty: --end must be after --start")
    batch = next_batch(ctx, raw_path)
    read = source.read(ctx.spark, ReadPlan.backfill(start, end))
    columns = [c for c in read.columns if not c.startswith("_pz_")]
    df = stamped(read, ctx, batch)
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
    with ctx.timed("delta_log"):
        done = reconcile(ctx, raw_path)
    if done is not None:
        return done
    source = ctx.runtime.source(ctx.flow)
    with ctx.timed("delta_log"):
        exists = dt.table_exists(ctx.spark, raw_path)
        source.type_like(ctx.spark.read.format("delta").load(raw_path).schema if exists else None)
    if ctx.backfill is not None:
        return _backfill(ctx, source, raw_path)
    return _extract_window(ctx, source, raw_path)


def _extract_window(ctx: StepContext, source: Source, raw_path: str) -> StepResult:
    """The live run: read the window (and the key snapshot when due), append it, then move the watermark."""
    found = window(ctx, source, lambda lo: source.cursor_bounds(ctx.spark, after=lo))
    watermark, lo, hi = found
    incremental = source.spec.incremental
    idle = nothing_new(source, found)
    with ctx.timed("delta_log"):
        snapshot = snapshot_due(ctx, raw_path)
    if idle and not snapshot:
        return no_new_rows(found)
    frames = []
    plan = ReadPlan.window(lo, hi)
    if not idle:
        frames.append(source.read(ctx.spark, plan))
    tombstones = _tombstones(ctx, source, raw_path) if snapshot else None
    if tombstones is not None and (frames or not tombstones.isEmpty()):
        frames.append(tombstones)
    if not frames:
        return StepResult(note="no new rows, no deleted keys", details=window_details(found))
    batch = next_batch(ctx, raw_path)
    df = frames[0] if len(frames) == 1 else frames[0].unionByName(frames[1], allowMissingColumns=True)
    new_watermark = moved(found)
    # The source's columns now, as this batch read them (None: a batch of tombstones only, which says nothing).
    columns = None if idle else [c for c in frames[0].columns if not c.startswith("_pz_")]
    complete = is_complete_read(ctx)
    meta = ctx.metadata(
        "extract",
        batch=batch,
        lo=lo,
        hi=new_watermark,
        read_hi=hi,
        key_snapshot=snapshot,
        complete=complete,
        columns=columns,
        typing=None if idle or complete else source.typing(ctx.spark, plan),
    )
    df, _ = conform_to_table(stamped(df, ctx, batch), raw_path, ctx.flow.schema_drift, f"raw.{ctx.flow.name}")
    failpoints.reach("extract.before_commit")
    with ctx.timed("read_write"):
        bulk = _bulk_plan(ctx, plan, raw_path) if len(frames) == 1 and not idle else None
        commit, read_path = _append_raw(ctx, source, df, bulk, raw_path, meta)
    failpoints.reach("extract.after_commit")
    with ctx.timed("state"):
        if incremental is not None and new_watermark is not None:
            ctx.state.set_watermark(ctx.flow.name, incremental.cursor, new_watermark, ctx.run_id)
    return StepResult(
        rows_read=commit.rows_written,
        rows_written=commit.rows_written,
        bytes_written=commit.bytes_written,
        details={
            **window_details(found),
            "batch": batch,
            "delta_version": commit.version,
            "key_snapshot": snapshot,
            "complete": complete,
            "read_path": read_path,
        },
    )
