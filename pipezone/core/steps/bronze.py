"""Bronze: raw's new batches with snake_case columns, each row version once (see layer_writes for the
protocol). A first load of one table read is written by Arrow (bronze_bulk) instead of Spark.

Deletes of full-read flows are inferred here. Extract marks a read of the whole relation `complete` in
raw's commit; bronze then adds a tombstone for each key that was live before such a batch and is missing
from it (`_complete_read_tombstones`), and the tombstones travel up exactly as the key snapshot's do
(silver `merge` flags the row, `scd2` closes the version). Why here, and not in extract or silver:
- extract would have to keep the whole read (memory or disk) to compare it, or scan the source twice;
  the batch already in raw is that read, immutable, so the comparison is a Delta anti-join on keys;
- it is a function of raw alone (its batches and their commit metadata), not of bronze's table or write
  mode: a step killed before its commit recomputes the same tombstones, and they commit atomically with
  the batches they belong to (txnVersion = the newest batch), so none is lost or written twice;
- silver's transforms may rename or filter the key; bronze holds the source's keys, and every layer
  above bronze already carries tombstones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipezone.core.lake import delta_merge as dm
from pipezone.core.lake import delta_tables as dt
from pipezone.core.lake.arrow_tables import ArrowUnsupported
from pipezone.core.steps import bronze_bulk
from pipezone.core.steps.context import StepContext, StepResult
from pipezone.core.steps.events import as_events, inferred_tombstones, latest_events
from pipezone.core.steps.layer_writes import (
    batch_key_ranges,
    commit_layer,
    layer_keys,
    pending,
    pending_rows,
    without_dropped_columns,
    write_layer,
)
from pipezone.core.steps.standardize import snake_case, snake_case_columns

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
    completes = _complete_reads(ctx, raw, batches)
    tombstones = _complete_read_tombstones(ctx, raw, completes, batches)
    if tombstones is not None:
        df = df.unionByName(tombstones, allowMissingColumns=True)
        if ctx.flow.source is not None and ctx.flow.source.cdc is not None:
            df = _in_change_order(df)
    df = as_events(without_dropped_columns(ctx, snake_case_columns(df), batches)).drop(dt.INGEST_DATE)
    keys, cursor = layer_keys(ctx)
    mode = ctx.flow.layers.bronze.write_mode
    # inferred tombstones are of keys the read does not hold: a one-table read still holds each key once
    one_read = mode != "scd2" and _one_table_read(ctx, batches)
    if mode != "scd2" and keys and not one_read:
        df = latest_events(df, keys, cursor)
    df = df.withColumn(dt.LOADED_AT, F.current_timestamp())
    # inferred tombstones hold keys of older batches: the pending files' key ranges do not cover them
    within = None if tombstones is not None else batch_key_ranges(ctx, raw, batches, _raw_keys(ctx))

    def write() -> tuple[dt.CommitInfo, str]:
        # the bulk path copies raw's files: only when there is no inferred tombstone to add
        bulk = one_read and tombstones is None
        if bulk and not dt.table_exists(ctx.spark, ctx.runtime.lake.bronze(ctx.flow.name)):
            try:
                return _bulkwrite_layer(ctx, df, keys, cursor, newest), "arrow"
            except ArrowUnsupported as err:  # nothing written: Spark writes it
                print(f"pipezone: flow {ctx.flow.name}: bronze bulk path not used ({err}); writing with Spark")
        return write_layer(ctx, df, "bronze", keys, cursor, newest, rows_in, within=within), "spark"

    result = commit_layer(ctx, "bronze", batches, rows_in, write)
    if completes:
        result.details["complete_reads"] = [c["batch"] for c in completes if c["batch"] > previous]
    return result


def _raw_keys(ctx: StepContext) -> dict[str, str]:
    """Each bronze key -> raw's column (the source's name, before snake_case)."""
    source = ctx.flow.source
    assert source is not None
    return {snake_case(k): k for k in source.primary_key}


def _in_change_order(df: DataFrame) -> DataFrame:
    """A CDC flow's re-snapshot after `pipezone state reset` tombstones the keys it no longer holds: each
    tombstone takes its snapshot's change order and time, so it ranks after every change before it."""
    from pyspark.sql import functions as F

    snapshots = df.filter(F.col(dt.OPERATION) == "r").groupBy(dt.BATCH)
    at = snapshots.agg(F.max(dt.CHANGE_ORDER).alias("_pz_o"), F.max(dt.COMMIT_TS).alias("_pz_t"))
    df = df.join(F.broadcast(at), on=dt.BATCH, how="left")
    filled = {
        dt.CHANGE_ORDER: F.coalesce(F.col(dt.CHANGE_ORDER), F.col("_pz_o")),
        dt.COMMIT_TS: F.coalesce(F.col(dt.COMMIT_TS), F.col("_pz_t")),
        dt.OPERATION: F.coalesce(F.col(dt.OPERATION), F.lit("d")),
    }
    return df.withColumns(filled).drop("_pz_o", "_pz_t")


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
    return reads_one_table(dt.newest_commit(ctx.spark, raw, lambda m: extract_of(m, newest)))


def extract_of(commit: dict[str, Any], batch: int) -> bool:
    """Whether `commit` (ours) is extract's commit of `batch` to raw."""
    return commit.get("step") == "extract" and commit.get("batch") == batch


def reads_one_table(commit: dict[str, Any] | None) -> bool:
    """Whether raw's commit of a batch (extract's) is one read of a source table without tombstones: not a
    change batch (it can hold a key many times), a key snapshot or a backfill."""
    if commit is None or commit.get("cdc") == "changes":
        return False
    return commit.get("key_snapshot") is False and not commit.get("backfill")


def is_complete(commit: dict[str, Any]) -> bool:
    return commit.get("step") == "extract" and commit.get("complete") is True and isinstance(commit.get("batch"), int)


def _complete_reads(ctx: StepContext, raw: str, batches: tuple[int, int]) -> list[dict[str, Any]]:
    """Raw's complete-read commits that matter to the pending batches, oldest first: the newest one at or
    before `previous` (the last state bronze has seen in full), when there is one, then every one in
    `(previous, newest]`; [] when no pending batch is a complete read (incremental flows: no more cost
    than reading the recent log). The whole log is read only when the recent one lacks them."""
    previous, newest = batches
    commits = dt.commits_with_metadata(ctx.spark, raw)
    newest_version = (dt.last_commit(ctx.spark, raw) or {}).get("version", 0)
    whole = newest_version < 50  # the recent history held every commit

    def seen(cs: list[dict[str, Any]]) -> bool:
        return any(c.get("step") == "extract" and c.get("batch") == previous + 1 for c in cs)

    if not whole and not seen(commits):
        commits, whole = dt.commits_with_metadata(ctx.spark, raw, limit=None), True
    pending = sorted((c for c in commits if is_complete(c) and previous < c["batch"] <= newest), key=_batch)
    if not pending:
        return []
    before = [c for c in commits if is_complete(c) and c["batch"] <= previous]
    if not before and not whole:
        before = [c for c in dt.commits_with_metadata(ctx.spark, raw, limit=None) if is_complete(c)]
        before = [c for c in before if c["batch"] <= previous]
    return [*([max(before, key=_batch)] if before else []), *pending]


def _batch(commit: dict[str, Any]) -> int:
    return int(commit["batch"])


def _complete_read_tombstones(
    ctx: StepContext, raw: str, completes: list[dict[str, Any]], batches: tuple[int, int]
) -> DataFrame | None:
    """Tombstones for the keys the pending complete reads no longer hold, as raw rows (raw's column names,
    `_pz_deleted` set; the batch's run id, and its commit time as `_pz_extracted_at`, so a rerun writes
    the same rows), or None when no key can be missing: no pending complete read, no primary key (no
    identity to compare), or nothing before the first complete read.

    Read from raw: keys, batch and flag of the batches from the newest complete read bronze consumed (all
    of raw when there is none, once) to the newest pending one; the data skipping statistics on
    `_pz_batch` keep the scan to those batches' files.
    """
    from pyspark.sql import functions as F

    source = ctx.flow.source
    previous, _ = batches
    judged = [c for c in completes if c["batch"] > previous]
    if source is None or not source.primary_key or not judged:
        return None
    seen = completes[0]["batch"] <= previous  # bronze consumed a complete read: the state from there on
    since = completes[0]["batch"] if seen else 0
    if not seen and judged[0]["batch"] == 1 and len(judged) == 1:
        return None  # the flow's first read: nothing was loaded before it
    keys = list(source.primary_key)
    rows = ctx.spark.read.format("delta").load(raw)
    flag = F.coalesce(F.col(dt.DELETED), F.lit(False)) if dt.DELETED in rows.columns else F.lit(False)
    upto = judged[-1]["batch"]
    events = rows.filter((F.col(dt.BATCH) >= since) & (F.col(dt.BATCH) <= upto)).select(
        *[F.col(f"`{k}`") for k in keys], F.col(dt.BATCH), flag.alias(dt.DELETED)
    )
    tombstones = inferred_tombstones(events, keys, [c["batch"] for c in judged], after=since if seen else None)
    at = run_id = None
    for commit in judged:
        when = F.col(dt.BATCH) == commit["batch"]
        at = (at.when if at is not None else F.when)(when, F.lit(commit["timestamp"]))
        run_id = (run_id.when if run_id is not None else F.when)(when, F.lit(commit.get("run_id")))
    return tombstones.withColumns({dt.EXTRACTED_AT: at.cast("timestamp"), dt.RUN_ID: run_id.cast("string")})
