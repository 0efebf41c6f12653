"""Delta Lake writes with the guarantees the layers rely on: metadata columns, table properties, commit
history, idempotent appends and counts. Keyed writes (forward-only MERGE, soft deletes, SCD2, the row
hash) build on these in delta_merge.

- Appends are idempotent: each writer has a fixed `txnAppId` and a monotonically increasing
  `txnVersion` (the batch number), so Delta itself skips a retried commit.
- Every commit carries `userMetadata` (run id, batch, window) for reconciliation and debugging.
- Soft-deleted rows and closed SCD2 versions stay in the table; `read_live` and `live_count` skip them.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipezone.core.lake import delta_log

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# Metadata columns every row carries from raw onward.
RUN_ID = "_pz_run_id"
BATCH = "_pz_batch"
EXTRACTED_AT = "_pz_extracted_at"
INGEST_DATE = "_pz_ingest_date"
LOADED_AT = "_pz_loaded_at"
DELETED = "_pz_deleted"
DELETED_AT = "_pz_deleted_at"
ROW_HASH = "_pz_row_hash"
VALID_FROM = "_pz_valid_from"
VALID_TO = "_pz_valid_to"
IS_CURRENT = "_pz_is_current"
# A change-data-capture flow's raw rows also say which change they are (sources/cdc/contract.py); bronze and
# silver order a key's changes by CHANGE_ORDER, the log's own order, instead of a cursor.
OPERATION = "_pz_op"  # c (insert), u (update), d (delete), r (read by the initial snapshot)
LOG_POSITION = "_pz_log_pos"  # the change's commit position in the server's notation
COMMIT_TS = "_pz_commit_ts"  # when the source committed it
CHANGE_ORDER = "_pz_change_order"  # decimal(38,0): commit position * ORDER_SPAN + index in the transaction
CHANGE_COLUMNS = (OPERATION, LOG_POSITION, COMMIT_TS, CHANGE_ORDER)
METADATA_COLUMNS = (
    RUN_ID,
    BATCH,
    EXTRACTED_AT,
    INGEST_DATE,
    LOADED_AT,
    DELETED,
    DELETED_AT,
    ROW_HASH,
    VALID_FROM,
    VALID_TO,
    IS_CURRENT,
    *CHANGE_COLUMNS,
)

# Keep Delta's record of applied (appId, version) pairs bounded; retries happen within minutes.
TABLE_PROPERTIES = {"delta.setTransactionRetentionDuration": "interval 30 days"}


def table_properties(columns: dict[str, str], stats_on: list[str] | None, merged: bool = False) -> dict[str, str]:
    """Properties of a new table (`columns`: name -> Spark type name).

    File statistics only on the columns reads filter or merge on (the batch, the keys, the cursor): Delta
    keeps none for booleans, binary or nested types. A table that MERGE updates (`merged`) gets deletion
    vectors: updating 1,000 keys spread over a 10M-row table then marks the old rows instead of
    rewriting every file that holds one. It also records its change data feed (a MERGE writes the changed
    rows' old and new images beside its files), so the quality step counts its checks on the changes
    (quality/change_counts.py) and an export sends them, instead of reading the whole table."""
    properties = dict(TABLE_PROPERTIES)
    if merged:
        properties["delta.enableDeletionVectors"] = "true"
        properties["delta.enableChangeDataFeed"] = "true"
    if stats_on:
        no_stats = ("boolean", "binary", "array", "map", "struct")
        wanted = [c for c in dict.fromkeys([BATCH, *stats_on]) if c in columns and not columns[c].startswith(no_stats)]
        properties["delta.dataSkippingStatsColumns"] = ",".join(f"`{c}`" for c in wanted)
    return properties


@dataclass(frozen=True)
class CommitInfo:
    """What a commit did, from the Delta log (no second pass over the data)."""

    version: int | None
    rows_written: int
    bytes_written: int
    skipped: bool = False
    files: dict[str, int] | None = None  # a MERGE's file counts (delta_merge.merge_files)
    narrowed_by: str | None = None  # how the write narrowed the table it read: "key range", "key list"


def table_exists(spark: SparkSession, path: str) -> bool:
    try:
        return delta_log.exists(spark, path)
    except delta_log.LogUnavailable:
        return bool(_history(spark, path, 1))


RECENT_COMMITS = 50  # commits read first when looking for one of ours
HistoryReader = Callable[[int | None], list[dict[str, Any]]]  # a table's commits, newest first, up to a limit
CONTENT_HISTORY = 50  # commits read for the content version; past 50 empty ones in a row, quality judges again


def _history(spark: SparkSession, path: str, limit: int | None) -> list[dict[str, Any]]:
    """Commits newest first (version, timestamp aware UTC, operationMetrics, userMetadata); [] for no table."""
    try:
        return delta_log.history(spark, path, limit)
    except delta_log.LogUnavailable:
        return _spark_history(spark, path, limit)


def _spark_history(spark: SparkSession, path: str, limit: int | None) -> list[dict[str, Any]]:
    """The history as Spark reads it, for a log delta-rs cannot: SQL, so it also runs over Spark Connect."""
    from pyspark.errors import AnalysisException

    try:
        rows = spark.sql(f"DESCRIBE HISTORY {sql_table(path)}" + (f" LIMIT {int(limit)}" if limit else "")).collect()
    except AnalysisException as err:
        if "DELTA_MISSING_DELTA_TABLE" in str(err) or "PATH_NOT_FOUND" in str(err):
            return []
        raise
    return [{**row.asDict(recursive=True), "timestamp": row["timestamp"].astimezone(datetime.UTC)} for row in rows]


def content_version(spark: SparkSession, path: str) -> int | None:
    """The version holding the table's current rows (empty MERGE commits skipped), None for a missing table."""
    return delta_log.content_version(_history(spark, path, CONTENT_HISTORY))


def history_of(
    path: str, options: dict[str, str], limit: int | None, spark: Callable[[], SparkSession]
) -> list[dict[str, Any]]:
    """`history` read by delta-rs with the lake's `options`, so no session is needed; through Spark (`spark`
    opens it) only when delta-rs cannot read the log."""
    try:
        return delta_log.history_with(path, limit, options)
    except delta_log.LogUnavailable:
        return _spark_history(spark(), path, limit)


def content_version_of(path: str, options: dict[str, str], spark: Callable[[], SparkSession]) -> int | None:
    """`content_version` without a session where delta-rs reads the log (`history_of`)."""
    return delta_log.content_version(history_of(path, options, CONTENT_HISTORY, spark))


def history(spark: SparkSession, path: str, limit: int | None) -> list[dict[str, Any]]:
    """The newest `limit` commits (all with None), newest first, as Spark's history names them; [] for no table."""
    return _history(spark, path, limit)


def last_commit(spark: SparkSession, path: str) -> dict[str, Any] | None:
    """The newest history entry as a dict, or None for a missing table."""
    commits = _history(spark, path, 1)
    return commits[0] if commits else None


def commits_with_metadata(spark: SparkSession, path: str, limit: int | None = 50) -> list[dict[str, Any]]:
    """Recent commits (all with limit None) whose userMetadata is ours (parsed), newest first, with the
    commit's `version`, `timestamp` (aware UTC), `operation` and `operationMetrics`."""
    return our_commits(_history(spark, path, limit))


def our_commits(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The commits of `history` whose userMetadata is ours, parsed (see commits_with_metadata)."""
    found = []
    for commit in history:
        try:
            meta = json.loads(commit.get("userMetadata") or "")
        except ValueError:
            continue
        if isinstance(meta, dict):
            found.append(
                {
                    **meta,
                    "version": commit["version"],
                    "timestamp": commit["timestamp"],
                    "operation": commit.get("operation"),
                    "operationMetrics": commit.get("operationMetrics"),
                }
            )
    return found


def newest_commit(spark: SparkSession, path: str, matches: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    """The newest of our commits that `matches`: the recent ones first, the whole history only if needed."""
    return newest_matching(lambda limit: _history(spark, path, limit), matches)


def newest_matching(history: HistoryReader, matches: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    """`newest_commit` over a history reader (`history(limit)`, newest first; None: all)."""
    recent = history(RECENT_COMMITS)
    found = next((c for c in our_commits(recent) if matches(c)), None)
    if found is not None or len(recent) < RECENT_COMMITS:  # the recent commits were every commit
        return found
    return next((c for c in our_commits(history(None)) if matches(c)), None)


def appended_rows(commit: dict[str, Any]) -> int | None:
    """Rows an append commit added (Spark's and delta-rs's metric names), None for any other commit."""
    if commit.get("operation") != "WRITE" and "operation" in commit:
        return None
    metrics = commit.get("operationMetrics") or {}
    value = metrics.get("numOutputRows", metrics.get("num_added_rows"))
    return int(value) if value is not None else None


def _metrics(commit: dict[str, Any] | None, rows_key: str, bytes_key: str) -> tuple[int, int]:
    metrics = (commit or {}).get("operationMetrics") or {}
    return int(metrics.get(rows_key, 0) or 0), int(metrics.get(bytes_key, 0) or 0)


def append(
    df: DataFrame,
    path: str,
    *,
    app_id: str,
    version: int,
    metadata: dict[str, Any],
    partition_by: list[str] | None = None,
    overwrite: bool = False,
    stats_on: list[str] | None = None,
    merged: bool = False,
    rows_per_file: int | None = None,
) -> CommitInfo:
    """Append (or overwrite) idempotently: a second call with the same app_id/version writes nothing.
    `stats_on`: the columns worth file statistics, for a table this call creates; `rows_per_file`: at
    most this many rows per data file."""
    spark = df.sparkSession
    before = last_commit(spark, path)
    writer = (
        df.write.format("delta")
        .mode("overwrite" if overwrite else "append")
        .option("txnAppId", app_id)
        .option("txnVersion", str(version))
        .option("userMetadata", json.dumps(metadata, sort_keys=True, default=str))
        .option("mergeSchema", "true")
    )
    if overwrite:
        writer = writer.option("overwriteSchema", "true")
    if rows_per_file:
        writer = writer.option("maxRecordsPerFile", str(rows_per_file))
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    if before is None:
        kinds = {f.name: f.dataType.simpleString() for f in df.schema.fields}
        for key, value in table_properties(kinds, stats_on, merged).items():
            writer = writer.option(key, value)
    writer.save(path)
    after = last_commit(spark, path)
    if after is None or (before is not None and after["version"] == before["version"]):
        return CommitInfo(version=before["version"] if before else None, rows_written=0, bytes_written=0, skipped=True)
    rows, size = _metrics(after, "numOutputRows", "numOutputBytes")
    return CommitInfo(version=after["version"], rows_written=rows, bytes_written=size)


def sql_table(path: str) -> str:
    """The Delta table at `path` as a SQL table name."""
    return "delta.`" + path.replace("`", "``") + "`"


def committed_batch(spark: SparkSession, path: str) -> int:
    """The newest batch our commits to this table say they consumed (0 for none): the position a layer
    reached even if the state update after its commit was lost."""
    return max(batches_of(commits_with_metadata(spark, path)), default=0)


def batches_of(commits: list[dict[str, Any]]) -> list[int]:
    """The batch numbers our commits name."""
    return [int(c["batch"]) for c in commits if "batch" in c]


def newest_batch(spark: SparkSession, path: str) -> int:
    """The newest batch number in a table: from our commit metadata, else a scan (0 for no table)."""
    batches = batches_of(commits_with_metadata(spark, path))
    if batches:
        return max(batches)
    if not table_exists(spark, path):
        return 0
    row = spark.read.format("delta").load(path).agg({BATCH: "max"}).collect()[0]
    return int(row[0] or 0)


def row_count(spark: SparkSession, path: str) -> int:
    return spark.read.format("delta").load(path).count() if table_exists(spark, path) else 0


def live_condition(columns: list[str]) -> str | None:
    """SQL keeping the rows that stand for the source now: not soft-deleted, the current SCD2 version."""
    parts = [f"NOT coalesce(`{DELETED}`, false)"] if DELETED in columns else []
    parts += [f"coalesce(`{IS_CURRENT}`, true)"] if IS_CURRENT in columns else []
    return " AND ".join(parts) or None


def read_live(spark: SparkSession, path: str) -> DataFrame:
    """The table's live rows (see `live_condition`): what gold, quality checks and counts look at."""
    df = spark.read.format("delta").load(path)
    condition = live_condition(df.columns)
    return df.filter(condition) if condition else df


def live_count(spark: SparkSession, path: str) -> int:
    return read_live(spark, path).count() if table_exists(spark, path) else 0
