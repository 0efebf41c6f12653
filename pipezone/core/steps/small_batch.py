"""Small batches without Spark: bronze's append and silver's MERGE of a few thousand changed rows, read
and written by delta-rs on Arrow (lake/arrow_merge.py), with the Spark path's rules.

Why: an incremental run moves a few thousand rows, and Spark's fixed cost per action (a plan, a Delta
snapshot, a job; over Spark Connect a round trip each) was most of its time: 1,000 changes to a 10M-row
table took bronze 3-4 s and silver 6-7.5 s through a warm server (docs/benchmarks.md). Here each reads the
pending batches' files and writes one commit in well under a second.

When: the layer's table exists (a first load is Spark's, or bronze's bulk path), the pending batches'
append commits say they hold at most SMALL_BATCH_ROWS rows, and the write is one this path does exactly:
- bronze in append mode, no pending batch a complete read (its inferred tombstones are Spark's);
- silver in merge mode without row checks (Great Expectations); its transforms, Spark SQL expressions,
  are Spark's, applied to the batch alone in one job on rows sent from here (no Delta read or write);
- no partitioning, no schema drift (a new column, another type: the flow's policy applies in Spark).
Silver's batch is merged by delta-rs when its keys' range meets at most RANGE_ROWS of the table's rows;
keys spread wider go to Spark's MERGE, which marks a few rows per file with deletion vectors where
delta-rs would copy every file, as rows prepared here (write path "arrow+spark"). Bronze only reads its
table in that range, so its range may meet up to SCAN_ROWS.
Anything else, or anything delta-rs cannot read, finds that out before a commit: the step says so in one
line and Spark writes the batches, as before. The commits are the Spark path's (txnAppId/txnVersion,
userMetadata, the layer's position after the commit), so the two paths take turns on one table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pipezone.core.lake import arrow_merge, delta_log, row_hash
from pipezone.core.lake import delta_merge as dm
from pipezone.core.lake import delta_tables as dt
from pipezone.core.lake.arrow_tables import ArrowUnsupported
from pipezone.core.steps.arrow_events import as_events, latest_events, latest_per_key, with_column
from pipezone.core.steps.bronze import extract_of, is_complete, reads_one_table
from pipezone.core.steps.context import StepContext, StepResult
from pipezone.core.steps.events import order_columns
from pipezone.core.steps.layer_writes import (
    RANGE_ROWS,
    RECENT,
    appended_rows,
    commit_layer,
    consumed_batch,
    dropped_columns,
    layer_keys,
)
from pipezone.core.steps.row_checks import row_checks
from pipezone.core.steps.standardize import snake_case
from pipezone.core.steps.transforms import apply_transforms, renamed

if TYPE_CHECKING:
    import pyarrow as pa

SMALL_BATCH_ROWS = 100_000  # pending rows at most: more, and Spark's parallel scan and write pay off
# bronze's rows in the files its key range meets, at most: it reads five columns of them and keeps the
# batch's keys' rows (1,000 keys spread over 10M rows: 0.65 s, measured 2026-12-06); silver's range meets
# at most RANGE_ROWS, which delta-rs's MERGE copies
SCAN_ROWS = 20_000_000


def run_small_bronze(ctx: StepContext) -> StepResult | None:
    """Bronze's pending raw batches appended by delta-rs, or None: Spark writes them (`run_bronze`)."""
    settings = ctx.flow.layers.bronze
    if ctx.full_refresh or settings.write_mode != "append" or settings.partition_by:
        return None
    raw = ctx.runtime.lake.raw(ctx.flow)
    try:
        pending = _pending(ctx, raw, "bronze")
        if pending is None or any(is_complete(c) for c in pending.commits if pending.holds(c)):
            return None
        rows = arrow_merge.read_batches(raw, ctx.runtime.lake_options(), pending.batches)
        rows = _snake_case(rows)
        rows = as_events(_without_dropped(ctx, rows, pending.batches, raw_recent=pending.commits))
        rows = rows.drop_columns([c for c in (dt.INGEST_DATE,) if c in rows.column_names])
        keys, cursor = layer_keys(ctx)
        if keys and not _one_table_read(ctx, pending):
            rows = latest_events(rows, keys, cursor)
        rows = _hashed(_loaded_now(rows))
        path = ctx.runtime.lake.bronze(ctx.flow.name)
        new, narrowed_by = _new_versions(rows, path, ctx.runtime.lake_options(), keys, cursor)
    except ArrowUnsupported as err:
        return _not_used(ctx, "bronze", err)

    def write() -> tuple[dt.CommitInfo, str]:
        commit = arrow_merge.append(new, path, ctx.runtime.lake_options(), **_commit(ctx, "bronze", pending.newest))
        return dataclasses.replace(commit, narrowed_by=narrowed_by), "arrow"

    return _committed(ctx, "bronze", pending, write)


def run_small_silver(ctx: StepContext) -> StepResult | None:
    """Silver's MERGE of bronze's pending batches by delta-rs, or None: Spark writes them (`run_silver`)."""
    settings = ctx.flow.layers.silver
    if ctx.full_refresh or settings.write_mode != "merge" or settings.partition_by:
        return None
    if row_checks(ctx.flow.quality):
        return None
    bronze = ctx.runtime.lake.bronze(ctx.flow.name)
    try:
        pending = _pending(ctx, bronze, "silver")
        if pending is None:
            return None
        rows = arrow_merge.read_batches(bronze, ctx.runtime.lake_options(), pending.batches)
        scd2 = [dt.ROW_HASH, dt.VALID_FROM, dt.VALID_TO, dt.IS_CURRENT]
        rows = rows.drop_columns([c for c in scd2 if c in rows.column_names])
        rows = as_events(_without_dropped(ctx, rows, pending.batches))
        keys, cursor = layer_keys(ctx)
        rows = latest_events(rows, keys, cursor)
        if settings.transforms:
            rows, keys, cursor = _transformed(ctx, rows, keys, cursor)
        rows = _loaded_now(rows)
    except ArrowUnsupported as err:
        return _not_used(ctx, "silver", err)
    path = ctx.runtime.lake.silver(ctx.flow.name)

    def write() -> tuple[dt.CommitInfo, str]:
        common = _commit(ctx, "silver", pending.newest)
        options = ctx.runtime.lake_options()
        try:
            return arrow_merge.merge(rows, path, options, keys=keys, cursor=cursor, most=RANGE_ROWS, **common), "arrow"
        except arrow_merge.KeysSpread as spread:
            return _marked_by_spark(ctx, spread.rows, path, keys, cursor, common), "arrow+spark"

    return _committed(ctx, "silver", pending, write)


def _marked_by_spark(
    ctx: StepContext, rows: pa.Table, path: str, keys: list[str], cursor: str | None, common: dict[str, Any]
) -> dt.CommitInfo:
    """Keys spread over the table: Spark's MERGE marks the few rows of each file it meets with a deletion
    vector (delta-rs would copy nearly every file), on the batch prepared here (`rows`, conformed to the
    table by `arrow_merge.merge`), sent to it as rows. Spark then neither reads bronze, nor picks each
    key's latest event, nor copies its source before the MERGE: 1,000 keys spread over 10M rows took
    silver 15.5 and 13.4 s through a warm server, 13.5 and 11.2 s so (back to back on one table,
    2026-12-06). The write is `write_layer`'s: the same clauses, narrowed to the batch's keys."""
    return dm.merge(ctx.spark.createDataFrame(rows), path, keys=keys, cursor=cursor, narrow=True, **common)


def _transformed(
    ctx: StepContext, rows: pa.Table, keys: list[str], cursor: str | None
) -> tuple[pa.Table, list[str], str | None]:
    """The flow's silver transforms applied by Spark to the batch alone (one job on rows sent from here:
    Spark SQL expressions mean what they mean on the Spark path), then one event per key again by the
    renamed key and cursor, as `write_layer` does."""
    transforms = ctx.flow.layers.silver.transforms
    frame = apply_transforms(ctx.spark.createDataFrame(rows), transforms)
    keys = renamed(keys, transforms)
    cursor = renamed([cursor], transforms)[0] if cursor else None
    return latest_events(frame.toArrow(), keys, cursor), keys, cursor


class _Pending:
    """The batches (previous, newest] a layer has not consumed, their row count, and the layer below's
    recent commits (ours, newest first)."""

    def __init__(self, previous: int, newest: int, rows: int, commits: list[dict[str, Any]]) -> None:
        self.previous, self.newest, self.rows, self.commits = previous, newest, rows, commits
        self.batches = (previous, newest)

    def holds(self, commit: dict[str, Any]) -> bool:
        return isinstance(commit.get("batch"), int) and self.previous < commit["batch"] <= self.newest


def _history(ctx: StepContext, path: str, limit: int | None = RECENT) -> list[dict[str, Any]]:
    """Our commits to the table at `path`, newest first, read by delta-rs; ArrowUnsupported when it cannot."""
    try:
        return dt.our_commits(delta_log.history_with(path, limit, ctx.runtime.lake_options()))
    except delta_log.LogUnavailable as err:
        raise ArrowUnsupported(f"log of {path}: {str(err)[:200]}") from None


def _pending(ctx: StepContext, below: str, layer: str) -> _Pending | None:
    """What `layer` has to consume from `below`, when it is a small batch into an existing table; None
    when there is nothing (the Spark path says so) or more than SMALL_BATCH_ROWS rows, or no row count."""
    with ctx.timed("delta_log"):
        mine = _history(ctx, ctx.runtime.lake.table(layer, ctx.flow.name))
        commits = _history(ctx, below)
    if not mine:
        return None  # no table yet (a first load), or none of our commits among the recent ones
    previous = consumed_batch(ctx, layer, max(dt.batches_of(mine), default=0))
    newest = max(dt.batches_of(commits), default=0)
    if newest <= previous:
        return None
    rows = appended_rows(commits, (previous, newest))
    if rows is None or rows > SMALL_BATCH_ROWS:
        return None
    return _Pending(previous, newest, rows, commits)


def _committed(
    ctx: StepContext, layer: str, pending: _Pending, write: Callable[[], tuple[dt.CommitInfo, str]]
) -> StepResult | None:
    try:
        return commit_layer(ctx, layer, pending.batches, pending.rows, write)
    except ArrowUnsupported as err:  # raised before delta-rs committed: nothing written
        return _not_used(ctx, layer, err)


def _not_used(ctx: StepContext, layer: str, err: Exception) -> None:
    print(f"pipezone: flow {ctx.flow.name}: {layer} small-batch path not used ({err}); writing with Spark")


def _commit(ctx: StepContext, layer: str, batch: int) -> dict[str, Any]:
    return {"app_id": ctx.app_id(layer), "version": batch, "metadata": ctx.metadata(layer, batch=batch)}


def _without_dropped(
    ctx: StepContext, rows: pa.Table, batches: tuple[int, int], raw_recent: list[dict[str, Any]] | None = None
) -> pa.Table:
    """`rows` without the columns no pending batch read (`dropped_columns`). `raw_recent`: raw's RECENT
    commits when the caller read them already (bronze's pending batches are raw's), not read again."""
    raw = ctx.runtime.lake.raw(ctx.flow)

    def raw_commits(limit: int | None) -> list[dict[str, Any]]:
        return raw_recent if raw_recent is not None and limit == RECENT else _history(ctx, raw, limit)

    dropped = dropped_columns(raw_commits, rows.column_names, batches)
    return rows.drop_columns(dropped) if dropped else rows


def _snake_case(rows: pa.Table) -> pa.Table:
    names = [snake_case(c) for c in rows.column_names]
    if len(set(names)) != len(names):  # the Spark path names the colliding columns
        raise ArrowUnsupported("two columns have one snake_case name")
    return rows.rename_columns(names)


def _one_table_read(ctx: StepContext, pending: _Pending) -> bool:
    """`bronze._one_table_read` on the commits already read: the pending rows hold each key once."""
    source = ctx.flow.source
    if pending.newest != pending.previous + 1 or source is None or source.table is None:
        return False
    return reads_one_table(next((c for c in pending.commits if extract_of(c, pending.newest)), None))


def _loaded_now(rows: pa.Table) -> pa.Table:
    import pyarrow as pa

    now = pa.scalar(datetime.now(UTC), pa.timestamp("us", tz="UTC"))
    return with_column(rows, dt.LOADED_AT, pa.repeat(now, rows.num_rows))


def _hashed(rows: pa.Table) -> pa.Table:
    """ROW_HASH as `delta_merge.with_row_hash` computes it, over the columns in the same order."""
    import pyarrow as pa

    columns = dm.row_hash_columns(rows.column_names)
    try:
        row_hash.check(rows.schema, columns)
    except row_hash.Unhashable as err:
        raise ArrowUnsupported(str(err)) from None
    hashes = [row_hash.row_hash(batch, columns) for batch in rows.to_batches()]
    return with_column(rows, dt.ROW_HASH, pa.chunked_array(hashes, pa.int64()))


def _new_versions(
    rows: pa.Table, path: str, options: dict[str, str], keys: list[str], cursor: str | None
) -> tuple[pa.Table, str | None]:
    """`layer_writes._new_versions` in Arrow: the rows that differ from their key's latest version in the
    table (a re-read version is not appended), the table read only in the batch's key range, and how it
    was narrowed ("key range", or None when it was not read)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = arrow_merge.open_table(path, options)
    if not keys or dt.ROW_HASH not in pa.schema(table.schema().to_arrow()).names or rows.num_rows == 0:
        return rows, None
    bounds = arrow_merge.narrowed(table, rows, keys, SCAN_ROWS)
    order = [dt.BATCH, *order_columns(cursor)]
    wanted = list(dict.fromkeys([*keys, *order, dt.ROW_HASH]))
    # the range prunes files and row groups; the key values keep only the batch's keys' rows in memory
    held_keys = arrow_merge.range_filter(bounds)
    for key in keys:
        held_keys = held_keys & pc.field(key).isin(pc.unique(rows[key]))
    try:
        reader = table.to_pyarrow_dataset().scanner(columns=wanted, filter=held_keys).to_reader()
        try:
            held = reader.read_all()
        finally:
            reader.close()
        touched = held.join(rows.select(keys), keys=keys, join_type="left semi")
        latest = latest_per_key(touched, keys, order).select([*keys, dt.ROW_HASH])
        return rows.join(latest, keys=[*keys, dt.ROW_HASH], join_type="left anti"), "key range"
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as err:
        raise ArrowUnsupported(f"comparing with {path}: {err}") from None
