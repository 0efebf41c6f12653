"""An incremental window read and written without Spark: the source's own Arrow reader (connectorx) into
raw's next batch, appended by delta-rs, for a window typed as an earlier Spark read typed it.

Why: an incremental run of a small table spent most of its extract in Spark's fixed costs (a session, the
JDBC schema resolution, a Delta snapshot, a write job), 9 s a task in the 50-flow estate
(docs/benchmarks.md) for a few thousand rows. Here the step asks the database for its bounds and reads the
window on the database's own clients, and delta-rs writes one commit.

What makes it exact: a Spark read resolves how each column is read (the driver's types, the dialect's
expressions: sources/jdbc/column_types.py). The extract commit keeps that resolution (`typing`) with a
fingerprint of the source's catalog. A later window whose catalog fingerprint is the same is read with
the same SELECT and typed to the same Spark types; raw must hold exactly those columns and types plus its
stamps. Anything else goes to Spark, which resolves again (and applies the flow's schema-drift policy):
- a source kind or connection without such a reader (`Source.read_typed` is None), a query source;
- a first load (no typing kept yet; the bulk path), a backfill, a full refresh, delete detection due;
- another catalog fingerprint, raw's columns not the read's, a stream delta-rs or connectorx refuses.
The commit is the Spark path's: the same batch number, txn, metadata, stamps and watermark order.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from pipezone.core import failpoints
from pipezone.core.lake import arrow_merge, delta_log
from pipezone.core.lake import delta_tables as dt
from pipezone.core.lake.arrow_tables import ArrowUnsupported, conform
from pipezone.core.sources.contract import ArrowRead, ArrowUnavailable, ReadPlan, Source
from pipezone.core.steps.context import StepContext, StepResult
from pipezone.core.steps.extract import (
    Window,
    is_live_extract,
    moved,
    no_new_rows,
    nothing_new,
    reconcile,
    snapshot_due,
    window,
    window_details,
)

if TYPE_CHECKING:
    import pyarrow as pa
    from deltalake import DeltaTable

STAMPS = (dt.RUN_ID, dt.BATCH, dt.EXTRACTED_AT, dt.INGEST_DATE, dt.DELETED)
NO_KEPT_TYPING = (
    "the table's catalog or the flow's column_types changed since the last Spark read, "
    "or the connection has no Arrow reader"
)


def run_small_extract(ctx: StepContext) -> StepResult | None:
    """The window appended to raw without Spark, or None: the Spark path extracts (`run_extract`)."""
    spec = ctx.flow.source
    if spec is None or spec.cdc is not None or spec.incremental is None or ctx.backfill or ctx.full_refresh:
        return None
    raw = ctx.runtime.lake.raw(ctx.flow)
    options = ctx.runtime.lake_options()
    # raw's log, read once for the last extract, the reconcile, the key snapshot and the newest batch
    history = cache(lambda limit: delta_log.history_with(raw, limit, options))
    try:
        with ctx.timed("delta_log"):
            last = dt.newest_matching(history, is_live_extract)
            if last is None or not last.get("typing"):
                return None
            done = reconcile(ctx, raw, history)
            due = done is None and snapshot_due(ctx, raw, history)
    except delta_log.LogUnavailable:
        return None
    if done is not None or due:
        return done
    source = ctx.runtime.source(ctx.flow)
    with ctx.timed("bounds"):
        bounds = source.bounds_without_spark()
    if bounds is None:
        return None
    found = window(ctx, source, lambda _lo: bounds)
    if nothing_new(source, found):
        return no_new_rows(found)
    try:
        read = source.read_typed(ReadPlan.window(found[1], found[2]), last["typing"])
        if read is None:
            return _not_used(ctx, NO_KEPT_TYPING)
        return _appended(ctx, source, found, read, (last, history))
    except (ArrowUnavailable, ArrowUnsupported) as err:  # raised before delta-rs committed: nothing written
        return _not_used(ctx, str(err))


def _appended(
    ctx: StepContext,
    source: Source,
    found: Window,
    read: tuple[ArrowRead, dict[str, str]],
    log: tuple[dict[str, Any], dt.HistoryReader],
) -> StepResult:
    """Append the window to raw as its next batch, then move the watermark (extract's order of events).
    `log`: the last live extract commit, and raw's history reader."""
    arrow, types = read
    last, history = log
    raw = ctx.runtime.lake.raw(ctx.flow)
    options = ctx.runtime.lake_options()
    with ctx.timed("delta_log"):
        newest = dt.newest_matching(history, lambda m: "batch" in m)
    batch = 1 + (int(newest["batch"]) if newest is not None else 0)
    table = arrow_merge.open_table(raw, options)  # one snapshot: the columns checked are those appended to
    _check_columns(table, types)
    new_watermark = moved(found)
    meta = ctx.metadata(
        "extract",
        batch=batch,
        lo=found[1],
        hi=new_watermark,
        read_hi=found[2],
        key_snapshot=False,
        complete=False,
        columns=[c for c in types if not c.startswith("_pz_")],
        typing=last["typing"],
    )
    now = datetime.now(UTC)
    stamps = {dt.RUN_ID: ctx.run_id, dt.BATCH: batch, dt.EXTRACTED_AT: now, dt.INGEST_DATE: now.date()}
    if dt.DELETED not in types:
        stamps[dt.DELETED] = False

    def batches(target: pa.Schema) -> Iterator[pa.RecordBatch]:
        return (conform(record_batch, target, stamps) for record_batch in arrow.batches)

    failpoints.reach("extract.before_commit")
    with ctx.timed("read_write"):
        commit = arrow_merge.append_stream(
            batches, raw, options, app_id=ctx.app_id("raw"), version=batch, metadata=meta, table=table
        )
    failpoints.reach("extract.after_commit")
    incremental = source.spec.incremental
    with ctx.timed("state"):
        if incremental is not None and new_watermark is not None:
            ctx.state.set_watermark(ctx.flow.name, incremental.cursor, new_watermark, ctx.run_id)
    details = {
        **window_details(found),
        "batch": batch,
        "delta_version": commit.version,
        "key_snapshot": False,
        "complete": False,
        "read_path": "arrow",
    }
    return StepResult(
        rows_read=commit.rows_written,
        rows_written=commit.rows_written,
        bytes_written=commit.bytes_written,
        details=details,
    )


def _check_columns(raw: DeltaTable, types: dict[str, str]) -> None:
    """raw must hold exactly the read's columns, of the read's Spark types, and its stamps: any other
    shape is schema drift, which the Spark path handles by the flow's policy."""
    fields = delta_log.spark_fields(raw)
    if fields is None:
        raise ArrowUnsupported("raw holds a nested column")
    held = dict(fields)
    expected = {**{stamp: held.get(stamp) for stamp in STAMPS}, **types}
    if held != expected:
        changed = sorted(c for c in {*held, *expected} if held.get(c) != expected.get(c))
        raise ArrowUnsupported(f"raw's columns differ from the read's: {', '.join(changed)}")


def _not_used(ctx: StepContext, why: str) -> None:
    print(f"pipezone: flow {ctx.flow.name}: extract without Spark not used ({why}); reading with Spark", flush=True)
