"""Extract for a CDC flow (`source.cdc`): the table's changes from the replication log into raw, exactly once.

Order of events, so that no change is lost or applied twice (sources/cdc/contract.py has the stream's side):
1. Reconcile: the newest CDC commit in raw names the log position after its changes (`end`). If the state
   store is behind it (a crash between the commit and the state update), the state is repaired from it;
   if this run id already extracted, the step is done.
2. No stored position: the initial snapshot, read in one transaction consistent with a log position P0, is
   one raw batch (operation `r`), then P0 is stored. The stream starts at P0: every change before it is in
   the snapshot, every change after it comes from the log.
3. Else: whole transactions after the stored position, bounded by `cdc.max_changes` / `max_seconds`, are
   one raw batch (txnVersion = batch: a retried write is a no-op); only then does the position move, and
   only then is the server told it may free the log before it (a PostgreSQL slot).

Each raw row carries its operation, log position, commit time and CHANGE_ORDER (lake/delta_tables.py);
bronze and silver order a key's changes by CHANGE_ORDER, and a delete is a tombstone like any other.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pipezone.core import failpoints
from pipezone.core.lake import delta_tables as dt
from pipezone.core.lake.arrow_tables import arrow_schema
from pipezone.core.lake.schema_drift import conform_to_table
from pipezone.core.sources.cdc.contract import (
    ORDER_SPAN,
    Change,
    ChangeBatch,
    ChangeLimits,
    ChangeStream,
    LogPosition,
    LogUnavailable,
)
from pipezone.core.sources.cdc.registry import open_change_stream
from pipezone.core.sources.contract import ArrowRead, ReadPlan
from pipezone.core.steps.context import StepContext, StepResult
from pipezone.core.steps.extract import append_arrow, next_batch, stamped

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql.types import StructType

    from pipezone.core.sources.jdbc.source import JdbcSource

POSITION_COLUMN = dt.LOG_POSITION  # the state store's `cursor_column` of a CDC flow's position
RESNAPSHOT = "snapshot"  # the position `pipezone state reset` stores: the next run takes a new snapshot


def run_cdc_extract(ctx: StepContext) -> StepResult:
    raw_path = ctx.runtime.lake.raw(ctx.flow)
    done = _reconcile(ctx, raw_path)
    if done is not None:
        return done
    source: JdbcSource = ctx.runtime.source(ctx.flow)  # type: ignore[assignment]
    schema = source.describe(ctx.spark)
    stream = _open(ctx, source, schema)
    try:
        stored = None if ctx.full_refresh else ctx.state.get_watermark(ctx.flow.name)
        if stored is None or stored.value == RESNAPSHOT:
            return _snapshot(ctx, stream, schema, raw_path)
        try:
            after = stream.parse_position(str(stored.value))
        except ValueError as err:
            raise LogUnavailable(f"flow {ctx.flow.name}: stored position: {err}; `pipezone state reset`") from None
        return _changes(ctx, source, stream, schema, after, raw_path)
    finally:
        stream.close()


def _open(ctx: StepContext, source: JdbcSource, schema: StructType) -> ChangeStream:
    spec = ctx.flow.source
    assert spec is not None
    typed = source.typed(ctx.spark, source.dbtable(ReadPlan.full()))
    conn = ctx.runtime.connection(spec.connection)
    types = {f.name: f.dataType.simpleString() for f in schema.fields}
    root = ctx.runtime.settings.project_root
    return open_change_stream(
        conn, ctx.runtime.resolver, spec, ctx.flow.name, f"SELECT * FROM {typed.dbtable}", types, root
    )


def _reconcile(ctx: StepContext, raw_path: str) -> StepResult | None:
    """Repair a position update lost after raw's commit; skip when this run id already extracted."""
    commit = dt.newest_commit(ctx.spark, raw_path, lambda m: m.get("step") == "extract" and bool(m.get("cdc")))
    if commit is None:
        return None
    stored = ctx.state.get_watermark(ctx.flow.name)
    # A reset after the commit (newer than it) stands; a position older than the commit was lost after it.
    behind = stored is None or (stored.last_run_id != commit.get("run_id") and stored.updated_at < commit["timestamp"])
    if behind and commit.get("end") and not ctx.full_refresh:
        ctx.state.set_watermark(ctx.flow.name, POSITION_COLUMN, str(commit["end"]), commit.get("run_id"))
    if commit.get("run_id") == ctx.run_id:
        return StepResult(skipped=True, note=f"batch {commit.get('batch')} already in raw for this run id")
    return None


def change_schema(schema: StructType) -> StructType:
    """Raw's columns for a CDC flow: the table's, then the change's own (before the stamps)."""
    from pyspark.sql.types import BooleanType, DecimalType, StringType, StructField, StructType, TimestampType

    own = {dt.OPERATION, dt.LOG_POSITION, dt.COMMIT_TS, dt.CHANGE_ORDER, dt.DELETED}
    fields = [f for f in schema.fields if f.name not in own]
    fields += [
        StructField(dt.OPERATION, StringType()),
        StructField(dt.LOG_POSITION, StringType()),
        StructField(dt.COMMIT_TS, TimestampType()),
        StructField(dt.CHANGE_ORDER, DecimalType(38, 0)),
        StructField(dt.DELETED, BooleanType()),
    ]
    return StructType(fields)


def _snapshot(ctx: StepContext, stream: ChangeStream, schema: StructType, raw_path: str) -> StepResult:
    """The first load: the table as of P0 in one raw batch, then P0 stored (the stream starts there)."""
    snap = stream.snapshot()
    batch = next_batch(ctx, raw_path)
    # complete: a snapshot names every key; after a reset, bronze tombstones the keys it no longer holds
    meta = ctx.metadata(
        "extract", batch=batch, cdc="snapshot", end=snap.position.text, key_snapshot=False, complete=True
    )
    columns = change_schema(schema)
    stamps_schema = _stamped_schema(columns)
    extra = {
        dt.OPERATION: "r",
        dt.LOG_POSITION: snap.position.text,
        dt.COMMIT_TS: datetime.now(UTC),  # as of the snapshot: scd2's first versions start here
        dt.CHANGE_ORDER: Decimal(snap.position.order * ORDER_SPAN),
        dt.DELETED: False,
    }
    target = arrow_schema(columns)
    try:
        with ctx.timed("read_write"):
            batches = (_record_batch([{**row, **extra} for row in rows], target) for rows in snap.rows)
            failpoints.reach("extract.before_commit")
            commit = append_arrow(ctx, ArrowRead(_non_empty(batches, target)), stamps_schema, raw_path, batch, meta)
    finally:
        if snap.close is not None:
            snap.close()
    failpoints.reach("extract.after_commit")
    with ctx.timed("state"):
        ctx.state.set_watermark(ctx.flow.name, POSITION_COLUMN, snap.position.text, ctx.run_id)
        stream.acknowledge(snap.position)
    details = {"batch": batch, "cdc": "snapshot", "position": snap.position.text, "delta_version": commit.version}
    return StepResult(
        rows_read=commit.rows_written,
        rows_written=commit.rows_written,
        bytes_written=commit.bytes_written,
        details={**details, "read_path": "snapshot"},
    )


def _changes(
    ctx: StepContext, source: JdbcSource, stream: ChangeStream, schema: StructType, after: LogPosition, raw_path: str
) -> StepResult:
    """One bounded read of the log after `after`, appended as one batch; then the position moves."""
    cdc = ctx.flow.source.cdc  # type: ignore[union-attr]
    assert cdc is not None
    limits = ChangeLimits(max_changes=cdc.max_changes, max_seconds=cdc.max_seconds.total_seconds())
    with ctx.timed("read_write"):
        read = stream.changes(after, limits)
    lag = {"head": read.lag.head, "bytes_behind": read.lag.bytes_behind, "seconds_behind": read.lag.seconds_behind}
    details: dict[str, Any] = {"cdc": "changes", "from": after.text, "position": read.end.text, "lag": lag}
    if not read.changes:
        if read.end != after:  # other tables' transactions: nothing to write, the position still moves
            ctx.state.set_watermark(ctx.flow.name, POSITION_COLUMN, read.end.text, ctx.run_id)
            stream.acknowledge(read.end)
        return StepResult(note=f"no new changes; {_position_note(read)}", details=details)
    schema = _batch_schema(ctx, source, read, schema, raw_path)
    batch = next_batch(ctx, raw_path)
    frame = ctx.spark.createDataFrame(_change_table(read.changes, change_schema(schema)))
    meta = ctx.metadata("extract", batch=batch, cdc="changes", start=after.text, end=read.end.text, key_snapshot=False)
    df, _ = conform_to_table(stamped(frame, ctx, batch), raw_path, ctx.flow.schema_drift, f"raw.{ctx.flow.name}")
    failpoints.reach("extract.before_commit")
    with ctx.timed("read_write"):
        commit = dt.append(
            df, raw_path, app_id=ctx.app_id("raw"), version=batch, metadata=meta, partition_by=[dt.INGEST_DATE]
        )
    failpoints.reach("extract.after_commit")
    with ctx.timed("state"):
        ctx.state.set_watermark(ctx.flow.name, POSITION_COLUMN, read.end.text, ctx.run_id)
        stream.acknowledge(read.end)
    return StepResult(
        rows_read=len(read.changes),
        rows_written=commit.rows_written,
        bytes_written=commit.bytes_written,
        note=_position_note(read),
        details={**details, "batch": batch, "delta_version": commit.version, "read_path": "log"},
    )


def _position_note(read: ChangeBatch) -> str:
    """The run's summary line ends with this, so the Airflow task log (and its XCom) shows the lag."""
    lag = read.lag
    behind = [f"{lag.bytes_behind} bytes"] if lag.bytes_behind is not None else []
    behind += [f"{lag.seconds_behind:.1f} s"] if lag.seconds_behind is not None else []
    return f"position {read.end.text}, log head {lag.head}, behind: {', '.join(behind) or 'unknown'}"


def _batch_schema(
    ctx: StepContext, source: JdbcSource, read: ChangeBatch, schema: StructType, raw_path: str
) -> StructType:
    """The columns the batch's rows hold. After DDL while streaming: the table's columns described again,
    plus the columns that older row images still carry and the table has since dropped, typed as raw holds
    them, so their values are kept (schema_drift then decides). A column added and dropped again between
    two runs is in neither and is left out."""
    seen = {name for change in read.changes for name in change.row}
    if seen <= {f.name for f in schema.fields}:
        return schema
    schema = source.describe(ctx.spark)
    dropped = seen - {f.name for f in schema.fields}
    if not dropped:
        return schema
    from pyspark.sql.types import StructType

    in_raw = {f.name: f for f in ctx.spark.read.format("delta").load(raw_path).schema.fields}
    return StructType([*schema.fields, *(in_raw[name] for name in sorted(dropped) if name in in_raw)])


def _change_rows(changes: list[Change]) -> Iterator[dict[str, Any]]:
    for change in changes:
        yield {
            **change.row,
            dt.OPERATION: change.op,
            dt.LOG_POSITION: change.position.text,
            dt.COMMIT_TS: change.committed_at,
            dt.CHANGE_ORDER: Decimal(change.order),
            dt.DELETED: change.op == "d",
        }


def _change_table(changes: list[Change], columns: StructType) -> pa.Table:
    import pyarrow as pa

    return pa.Table.from_pylist(list(_change_rows(changes)), schema=arrow_schema(columns))


def _record_batch(rows: list[Mapping[str, Any]], target: pa.Schema) -> pa.RecordBatch:
    import pyarrow as pa

    return pa.RecordBatch.from_pylist(list(rows), schema=target)


def _non_empty(batches: Iterator[pa.RecordBatch], target: pa.Schema) -> Iterator[pa.RecordBatch]:
    """The batches, or one empty batch for an empty table (raw then exists with its schema)."""
    import pyarrow as pa

    seen = False
    for batch in batches:
        seen = True
        yield batch
    if not seen:
        yield pa.RecordBatch.from_pylist([], schema=target)


def _stamped_schema(columns: StructType) -> StructType:
    """`columns` plus the stamps every raw row gets (what `stamped` adds), as the table's schema."""
    from pyspark.sql.types import DateType, LongType, StringType, StructField, StructType, TimestampType

    stamps = [
        StructField(dt.RUN_ID, StringType()),
        StructField(dt.BATCH, LongType()),
        StructField(dt.EXTRACTED_AT, TimestampType()),
        StructField(dt.INGEST_DATE, DateType()),
    ]
    return StructType([*columns.fields, *stamps])
