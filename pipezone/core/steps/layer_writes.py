"""What bronze and silver share: take the batches the layer has not consumed, write them in the layer's
write mode, then record the position.

Each layer remembers (in the state store) the last batch it consumed. A run takes the batches after
it, up to the newest batch below, writes them with txnVersion = that newest batch (a retry is a Delta
no-op), and only then records the new position. If the process dies between the commit and the state
update, the position is recovered from the table's own commit metadata, so the batches are not taken
twice. Nothing depends on the run id being new.

Rows are events: live row versions and tombstones (`_pz_deleted`: a key snapshot's, from raw, or inferred
by bronze from complete reads; both the same rows from there on). Write modes:
- append: the table keeps every distinct version of a row, once (a re-read version is not appended);
- merge: one row per key, forward-only by cursor; tombstones flag the row and keep its data;
- scd2: every version with `_pz_valid_from` / `_pz_valid_to` / `_pz_is_current`;
- overwrite: the table becomes the latest live rows of the new batches.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pipezone.core import failpoints
from pipezone.core.lake import delta_merge as dm
from pipezone.core.lake import delta_tables as dt
from pipezone.core.lake.key_filters import NARROW_KEYS, KeyRanges, key_ranges
from pipezone.core.lake.schema_drift import conform_to_table
from pipezone.core.steps.context import StepContext, StepResult
from pipezone.core.steps.events import latest_events, order_columns
from pipezone.core.steps.standardize import snake_case
from pipezone.core.steps.transforms import latest_per_key

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def pending(ctx: StepContext, below: str, layer: str) -> tuple[DataFrame | None, int, int]:
    """Rows of batches not yet consumed by `layer`, with the (previous, newest) batch numbers."""
    target = ctx.runtime.lake.table(layer, ctx.flow.name)
    with ctx.timed("delta_log"):
        committed = dt.committed_batch(ctx.spark, target)
    previous = consumed_batch(ctx, layer, committed)
    with ctx.timed("delta_log"):
        newest = dt.newest_batch(ctx.spark, below)
    if newest <= previous:
        return None, previous, newest
    df = ctx.spark.read.format("delta").load(below)
    return df.filter((df[dt.BATCH] > previous) & (df[dt.BATCH] <= newest)), previous, newest


def consumed_batch(ctx: StepContext, layer: str, committed: int) -> int:
    """The last batch `layer` consumed: the state store's position, or the newest batch the layer's own
    commits name (`committed`) when the state update after its last commit was lost (repaired here)."""
    with ctx.timed("state"):
        stored = ctx.state.get_progress(ctx.flow.name, layer)
    if committed > stored:
        ctx.state.set_progress(ctx.flow.name, layer, committed, ctx.run_id)
    return max(stored, committed)


def pending_rows(ctx: StepContext, below: str, df: DataFrame, batches: tuple[int, int]) -> int:
    """Rows of the pending batches: from their append commits' metrics when the recent log has them all
    (no pass over the data), else counted."""
    rows = appended_rows(dt.commits_with_metadata(ctx.spark, below), batches)
    return rows if rows is not None else df.count()


def appended_rows(commits: list[dict[str, Any]], batches: tuple[int, int]) -> int | None:
    """Rows of batches (previous, newest] by their append commits' metrics among `commits` (ours), or None
    when a batch's commit or metric is not there."""
    previous, newest = batches
    wanted = set(range(previous + 1, newest + 1))
    rows = {}
    for commit in commits:
        if commit.get("batch") in wanted:
            rows[commit["batch"]] = dt.appended_rows(commit)
    if set(rows) == wanted and None not in rows.values():
        return sum(rows.values())
    return None


RECENT = 50  # commits read first from a log: the pending batches' are among them unless the log is unusual


def without_dropped_columns(ctx: StepContext, df: DataFrame, batches: tuple[int, int]) -> DataFrame:
    """`df` without the columns no consumed batch read from the source (`dropped_columns`)."""
    raw = ctx.runtime.lake.raw(ctx.flow)
    dropped = dropped_columns(lambda limit: dt.commits_with_metadata(ctx.spark, raw, limit=limit), df.columns, batches)
    return df.drop(*dropped) if dropped else df


def dropped_columns(raw_commits: dt.HistoryReader, columns: list[str], batches: tuple[int, int]) -> list[str]:
    """The `columns` no consumed batch read from the source (dropped there), to leave out: Delta then keeps
    the target's values for updated rows instead of overwriting them with NULL. Raw's commit metadata
    (`raw_commits(limit)`, ours, newest first) lists each batch's source columns (batch numbers are
    shared by every layer)."""
    previous, newest = batches
    wanted = set(range(previous + 1, newest + 1))
    commits: list[dict[str, Any]] = []
    for limit in (RECENT, None):  # the recent history first, all of it only when a batch is older
        commits = [c for c in raw_commits(limit) if c.get("batch") in wanted]
        if {c["batch"] for c in commits} == wanted:
            break
    if {c["batch"] for c in commits} != wanted or any("columns" not in c for c in commits):
        return []  # a batch's commit is gone from the log, or predates `columns`: keep everything
    reads = [c["columns"] for c in commits if c["columns"] is not None]  # None: tombstones only
    if not reads:
        return []
    read = {snake_case(name) for columns in reads for name in columns}
    return [c for c in columns if not c.startswith("_pz_") and snake_case(c) not in read]


def batch_key_ranges(
    ctx: StepContext, below: str, batches: tuple[int, int], columns: dict[str, str] | None
) -> KeyRanges | None:
    """The pending batches' key ranges from the statistics of `below`'s files (`columns`: the layer's name
    for each key -> `below`'s), or None when they cannot be exact (see lake/key_filters)."""
    if not columns:
        return None
    with ctx.timed("delta_log"):
        return key_ranges(ctx.spark, below, batches, columns)


def _with_valid_from(df: DataFrame, cursor: str | None) -> DataFrame:
    """SCD2 validity starts at the source's cursor when it is a time, else when the row was extracted; a
    CDC change's at its commit."""
    from pyspark.sql import functions as F

    if cursor == dt.CHANGE_ORDER:  # a change, deletes included, is valid from its commit
        return df.withColumn(dt.VALID_FROM, F.col(dt.COMMIT_TS))
    kinds = {f.name: f.dataType.typeName() for f in df.schema.fields}
    timed = cursor is not None and kinds.get(cursor) in ("timestamp", "timestamp_ntz", "date")
    start = F.col(f"`{cursor}`").cast("timestamp") if timed else F.col(dt.EXTRACTED_AT)
    return df.withColumn(dt.VALID_FROM, F.when(F.col(dt.DELETED), F.col(dt.EXTRACTED_AT)).otherwise(start))


def _new_versions(
    ctx: StepContext, df: DataFrame, path: str, keys: list[str], cursor: str | None, within: KeyRanges | None
) -> tuple[DataFrame, str | None]:
    """Rows that differ from their key's latest version in the table (re-read versions are dropped), and
    how the table was narrowed ("key range" or None).

    The table is filtered to the batch's key ranges (`within`, from raw's file statistics: no Spark job),
    never to a collected list of keys: that collect costs more than the semi join, which reads only the
    table's key, order and hash columns (measured in docs/benchmarks.md; again on 2026-12-05 for 1,000
    changes to a 10M-row bronze through Spark Connect: the list saved 0.7 s of the write and its collect
    cost 0.8-1.1 s; a broadcast of the batch's keys saved nothing).
    """
    df = dm.with_row_hash(df)
    if not keys or not dt.table_exists(ctx.spark, path):
        return df, None
    table = ctx.spark.read.format("delta").load(path)
    if dt.ROW_HASH not in table.columns:
        return df, None
    if within is not None:
        table = table.filter(within.sql())
    touched = table.join(df.select(*keys).distinct(), on=keys, how="left_semi")
    held = latest_per_key(touched, keys, [dt.BATCH, *order_columns(cursor)])
    new = df.join(held.select(*keys, dt.ROW_HASH), on=[*keys, dt.ROW_HASH], how="left_anti")
    return new, "key range" if within is not None else None


def write_layer(
    ctx: StepContext,
    df: DataFrame,
    layer: str,
    keys: list[str],
    cursor: str | None,
    batch: int,
    rows_in: int,
    *,
    replay: bool = False,
    within: KeyRanges | None = None,
) -> dt.CommitInfo:
    """`replay`: rows from the quarantine, `batch` the quarantine table's version (a writer of its own).
    `within`: the key ranges of `df` (`batch_key_ranges`), which narrow the table a keyed write reads."""
    settings = getattr(ctx.flow.layers, layer)
    path = ctx.runtime.lake.table(layer, ctx.flow.name)
    common = {
        "app_id": ctx.app_id(f"{layer}_replay" if replay else layer),
        "version": batch,
        # a replay's commit names no batch: the layer's position (committed_batch) is bronze's batches only
        "metadata": ctx.metadata(layer, quarantine_version=batch) if replay else ctx.metadata(layer, batch=batch),
        "partition_by": settings.partition_by,
    }
    mode = settings.write_mode
    df, _ = conform_to_table(
        df, path, ctx.flow.schema_drift, f"{layer}.{ctx.flow.name}", for_merge=mode in ("merge", "scd2")
    )
    stats_on = [*keys, *([cursor] if cursor else [])]
    if mode == "append":
        new, narrowed_by = _new_versions(ctx, df, path, keys, cursor, within)
        commit = dt.append(new, path, stats_on=stats_on, **common)
        return dataclasses.replace(commit, narrowed_by=narrowed_by)
    if mode == "scd2":
        order = dt.CHANGE_ORDER if cursor == dt.CHANGE_ORDER else None
        return dm.scd2(_with_valid_from(df, cursor), path, keys=keys, order=order, **common)
    events = latest_events(df, keys, cursor)
    if mode == "merge":
        narrow = _list_keys(ctx, path, rows_in, within)
        ranges = within.sql("t.") if within is not None else None
        return dm.merge(events, path, keys=keys, cursor=cursor, narrow=narrow, within=ranges, **common)
    return dt.append(events.filter(f"NOT `{dt.DELETED}`"), path, overwrite=True, stats_on=stats_on, **common)


RANGE_ROWS = 1_000_000  # a key range that meets at most this many of the table's rows needs no key list


def _list_keys(ctx: StepContext, path: str, rows_in: int, within: KeyRanges | None) -> bool:
    """Whether a MERGE of `rows_in` rows filters the table to a collected list of their keys: a few rows
    in, unless their key ranges already keep the table's side small (a Spark job saved)."""
    if rows_in > NARROW_KEYS:
        return False
    if within is None:
        return True
    meets = within.rows_within(ctx.spark, path)  # part of the write: inside commit_layer's read_write
    return meets is None or meets > RANGE_ROWS


def layer_keys(ctx: StepContext) -> tuple[list[str], str | None]:
    """Primary key and cursor as bronze names them (snake_case)."""
    source = ctx.flow.source
    assert source is not None
    if source.cdc is not None:
        cursor: str | None = dt.CHANGE_ORDER
    else:
        cursor = snake_case(source.incremental.cursor) if source.incremental else None
    return [snake_case(k) for k in source.primary_key], cursor


def commit_layer(
    ctx: StepContext,
    layer: str,
    batches: tuple[int, int],
    rows_in: int,
    write: Callable[[], tuple[dt.CommitInfo, str]],
) -> StepResult:
    """Write the layer (`write` says how: "spark" or "arrow"), then, only after the commit, record the
    batches it consumed."""
    previous, newest = batches
    failpoints.reach(f"{layer}.before_commit")
    with ctx.timed("read_write"):
        commit, how = write()
    failpoints.reach(f"{layer}.after_commit")
    with ctx.timed("state"):
        ctx.state.set_progress(ctx.flow.name, layer, newest, ctx.run_id)
    return StepResult(
        rows_read=rows_in,
        rows_written=commit.rows_written,
        bytes_written=commit.bytes_written,
        details={
            "batches": [previous + 1, newest],
            "delta_version": commit.version,
            "write_path": how,
            **({"files": commit.files} if commit.files else {}),
            **({"narrowed_by": commit.narrowed_by} if commit.narrowed_by else {}),
        },
    )
