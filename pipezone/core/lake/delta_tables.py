"""Delta Lake writes with the guarantees the layers rely on.

- Appends are idempotent: each writer has a fixed `txnAppId` and a monotonically increasing
  `txnVersion` (the batch number), so Delta itself skips a retried commit.
- MERGE is forward-only: a target row changes only when the incoming row is newer by cursor (or by
  batch on a cursor tie), so re-reading a window or replaying a batch changes nothing.
- Each row version carries a hash of its source columns (`_pz_row_hash`), so bronze can append only the
  versions that differ from a key's latest one: a lookback re-read adds nothing.
- Deletes are soft: a tombstone row (`_pz_deleted`) flags the target row and keeps its data.
- SCD2 keeps every version with `_pz_valid_from` / `_pz_valid_to` / `_pz_is_current`.
- Every commit carries `userMetadata` (run id, batch, window) for reconciliation and debugging.
"""

from __future__ import annotations

import datetime
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
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
)
_ACTION = "_pz_action"  # staging only, never written

# Keep Delta's record of applied (appId, version) pairs bounded; retries happen within minutes.
TABLE_PROPERTIES = {"delta.setTransactionRetentionDuration": "interval 30 days"}


def table_properties(columns: dict[str, str], stats_on: list[str] | None, merged: bool = False) -> dict[str, str]:
    """Properties of a new table (`columns`: name -> Spark type name).

    File statistics only on the columns reads filter or merge on (the batch, the keys, the cursor): Delta
    keeps none for booleans, binary or nested types. A table that MERGE updates (`merged`) gets deletion
    vectors: updating 1,000 keys spread over a 10M-row table then marks the old rows instead of
    rewriting every file that holds one."""
    properties = dict(TABLE_PROPERTIES)
    if merged:
        properties["delta.enableDeletionVectors"] = "true"
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


def table_exists(spark: SparkSession, path: str) -> bool:
    try:
        return delta_log.exists(spark, path)
    except delta_log.LogUnavailable:
        return bool(_history(spark, path, 1))


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


def last_commit(spark: SparkSession, path: str) -> dict[str, Any] | None:
    """The newest history entry as a dict, or None for a missing table."""
    commits = _history(spark, path, 1)
    return commits[0] if commits else None


def commits_with_metadata(spark: SparkSession, path: str, limit: int | None = 50) -> list[dict[str, Any]]:
    """Recent commits (all with limit None) whose userMetadata is ours (parsed), newest first, with the
    commit's `version`, `timestamp` (aware UTC), `operation` and `operationMetrics`."""
    found = []
    for commit in _history(spark, path, limit):
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
    recent = commits_with_metadata(spark, path)
    for commit in recent:
        if matches(commit):
            return commit
    newest = last_commit(spark, path)
    if newest is None or newest["version"] < 50:  # history(50) held every commit
        return None
    return next((c for c in commits_with_metadata(spark, path, limit=None) if matches(c)), None)


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
) -> CommitInfo:
    """Append (or overwrite) idempotently: a second call with the same app_id/version writes nothing.
    `stats_on`: the columns worth file statistics, for a table this call creates."""
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


def forward_only_condition(cursor: str | None) -> str:
    """Update a matched row only when the incoming one is newer: by cursor, then by batch on a tie."""
    newer_batch = f"s.`{BATCH}` > t.`{BATCH}`"
    if cursor is None:
        return newer_batch
    c = f"`{cursor}`"
    return (
        f"(t.{c} IS NULL AND s.{c} IS NOT NULL) OR s.{c} > t.{c} "
        f"OR ((s.{c} = t.{c} OR (s.{c} IS NULL AND t.{c} IS NULL)) AND {newer_batch})"
    )


def _merge_commit(
    df: DataFrame,
    path: str,
    on: str,
    clauses: list[str],
    *,
    app_id: str,
    version: int,
    metadata: dict[str, Any],
) -> CommitInfo:
    """`MERGE INTO` the table at `path` (alias t) from `df` (alias s) `on` a condition, with `clauses`, as one
    idempotent, annotated commit.

    SQL rather than delta-spark's DeltaTable builder: the statement runs the same in a local session and
    over Spark Connect, where the builder needs a Delta plugin on the server that Maven Central does not
    carry for this Delta line.
    """
    spark = df.sparkSession
    before = last_commit(spark, path)
    view = f"_pz_merge_source_{uuid.uuid4().hex}"
    conf = {
        "spark.databricks.delta.write.txnAppId": app_id,
        "spark.databricks.delta.write.txnVersion": str(version),
        "spark.databricks.delta.commitInfo.userMetadata": json.dumps(metadata, sort_keys=True, default=str),
    }
    df.createOrReplaceTempView(view)
    for key, value in conf.items():
        spark.conf.set(key, value)
    try:
        spark.sql(
            f"MERGE WITH SCHEMA EVOLUTION INTO {sql_table(path)} AS t USING {view} AS s ON {on} {' '.join(clauses)}"
        )
    finally:
        for key in conf:
            spark.conf.unset(key)
        spark.catalog.dropTempView(view)
    after = last_commit(spark, path)
    if after is None or (before is not None and after["version"] == before["version"]):
        return CommitInfo(version=before["version"] if before else None, rows_written=0, bytes_written=0, skipped=True)
    metrics = after.get("operationMetrics") or {}
    rows = int(metrics.get("numTargetRowsInserted", 0) or 0) + int(metrics.get("numTargetRowsUpdated", 0) or 0)
    return CommitInfo(
        version=after["version"], rows_written=rows, bytes_written=int(metrics.get("numTargetBytesAdded", 0) or 0)
    )


def sql_table(path: str) -> str:
    """The Delta table at `path` as a SQL table name."""
    return "delta.`" + path.replace("`", "``") + "`"


def _on(keys: list[str]) -> str:
    return " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in keys)


def _assign(values: dict[str, str]) -> str:
    return ", ".join(f"`{column}` = {value}" for column, value in values.items())


NARROW_KEYS = 10_000  # a batch of at most this many keys filters the table to them before joining it


def sql_literal(value: Any) -> str | None:
    """`value` as a Spark SQL literal of its own type, or None for a type this does not spell exactly."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}L" if not -(2**31) <= value < 2**31 else str(value)
    if isinstance(value, Decimal):
        return f"{value}BD" if value.is_finite() else None
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, datetime.datetime):
        return None  # a collected timestamp's zone depends on the session: no narrowing, never a wrong one
    if isinstance(value, datetime.date):
        return f"DATE'{value.isoformat()}'"
    return None


def key_filter(df: DataFrame, keys: list[str], alias: str = "") -> str | None:
    """A SQL filter that keeps the rows whose key values all occur in `df` (per column: a superset of the
    rows a key join matches), or None when `df` holds more than NARROW_KEYS keys or a key of a type
    `sql_literal` does not spell.

    Joined with a small batch, a table is otherwise shuffled whole; filtered first, only the few rows that
    can match move. Nulls are kept, as the null-safe key join matches them.
    """
    from pyspark.sql import functions as F

    rows = df.select(*[F.col(f"`{k}`") for k in keys]).distinct().limit(NARROW_KEYS + 1).collect()
    if len(rows) > NARROW_KEYS:
        return None
    terms = []
    for i, key in enumerate(keys):
        column = f"{alias}`{key}`"
        values = {row[i] for row in rows}
        literals = [sql_literal(v) for v in sorted(values - {None}, key=repr)]
        if None in literals:
            return None
        kept = f"{column} IN ({', '.join(literals)})" if literals else "false"
        terms.append(f"({kept} OR {column} IS NULL)" if None in values else kept)
    return " AND ".join(terms) if terms else None


def merge(
    df: DataFrame,
    path: str,
    *,
    keys: list[str],
    cursor: str | None,
    app_id: str,
    version: int,
    metadata: dict[str, Any],
    partition_by: list[str] | None = None,
    narrow: bool = False,
) -> CommitInfo:
    """Upsert by `keys`, forward-only; creates the table from `df` on the first run (statistics on the keys
    and the cursor). `narrow`: `df` is small, filter the table to its keys first (`key_filter`).

    With a `_pz_deleted` column, tombstones (one per key at most) flag the matched row as deleted and keep
    its data; a later live row of that key (a re-insert) clears the flag.
    """
    common = {"app_id": app_id, "version": version, "metadata": metadata}
    tombstones = DELETED in df.columns
    if not table_exists(df.sparkSession, path):
        live = df.filter(f"NOT `{DELETED}`") if tombstones else df
        stats_on = [*keys, *([cursor] if cursor else [])]
        return append(live, path, partition_by=partition_by, stats_on=stats_on, merged=True, **common)
    newer = forward_only_condition(cursor)
    flagged = f"coalesce(t.`{DELETED}`, false)"
    on = _on(keys)
    only = key_filter(df, keys, alias="t.") if narrow else None
    if only is not None:  # a target-only term of the ON clause: Spark filters the table before the join
        on = f"{on} AND {only}"
    if not tombstones:
        clauses = [f"WHEN MATCHED AND ({newer}) THEN UPDATE SET *", "WHEN NOT MATCHED THEN INSERT *"]
    else:
        tombstone = {DELETED: "true", DELETED_AT: f"s.`{DELETED_AT}`", BATCH: f"s.`{BATCH}`", RUN_ID: f"s.`{RUN_ID}`"}
        clauses = [
            f"WHEN MATCHED AND s.`{DELETED}` AND NOT {flagged} AND s.`{BATCH}` >= t.`{BATCH}` "
            f"THEN UPDATE SET {_assign(tombstone)}",
            f"WHEN MATCHED AND NOT s.`{DELETED}` AND (({newer}) OR ({flagged} AND s.`{BATCH}` > t.`{BATCH}`)) "
            "THEN UPDATE SET *",
            f"WHEN NOT MATCHED AND NOT s.`{DELETED}` THEN INSERT *",
        ]
    return _merge_commit(df, path, on, clauses, **common)


def with_row_hash(df: DataFrame) -> DataFrame:
    """ROW_HASH: a 64-bit hash of the source's columns and the deleted flag (not our other metadata), which
    identifies a row version whatever run read it."""
    from pyspark.sql import functions as F

    return df.withColumn(ROW_HASH, F.xxhash64(*[F.col(f"`{c}`") for c in row_hash_columns(df.columns)]))


def row_hash_columns(columns: list[str]) -> list[str]:
    """What ROW_HASH hashes, in order: the source's columns, then the deleted flag."""
    return [c for c in columns if not c.startswith("_pz_")] + ([DELETED] if DELETED in columns else [])


def scd2(
    df: DataFrame,
    path: str,
    *,
    keys: list[str],
    app_id: str,
    version: int,
    metadata: dict[str, Any],
    partition_by: list[str] | None = None,
) -> CommitInfo:
    """Type-2 history. `df` holds events (live versions and tombstones, DELETED set) with VALID_FROM; a
    version not newer than its key's current row is a replay and changes nothing. One MERGE closes each
    touched key's current row and inserts the new versions, so a failure leaves the table as it was."""
    from pyspark.sql import functions as F

    spark = df.sparkSession
    common = {"app_id": app_id, "version": version, "metadata": metadata}
    current = None
    if table_exists(spark, path):
        target = spark.read.format("delta").load(path).filter(f"`{IS_CURRENT}`")
        hashed = F.col(ROW_HASH) if ROW_HASH in target.columns else F.lit(None).cast("long")
        current = target.select(*keys, F.col(VALID_FROM).alias("_pz_t_from"), hashed.alias("_pz_t_hash"))
    events = _scd2_events(with_row_hash(df), keys, current)
    inserts = events.filter(f"NOT `{DELETED}`").drop("_pz_first", "_pz_t_exists", DELETED)
    inserts = inserts.withColumnRenamed("_pz_ends_deleted", DELETED)
    if current is None:
        return append(inserts, path, partition_by=partition_by, stats_on=[*keys, VALID_FROM], merged=True, **common)
    closes = events.filter("_pz_first AND _pz_t_exists").select(
        *keys,
        F.col(VALID_FROM).alias("_pz_close_at"),
        F.col(DELETED).alias("_pz_close_deleted"),
        F.col(BATCH).alias("_pz_close_batch"),
        F.lit("close").alias(_ACTION),
    )
    ensure_columns(spark, path, inserts)
    columns = inserts.columns
    staged = inserts.withColumn(_ACTION, F.lit("insert")).unionByName(closes, allowMissingColumns=True)
    on = f"s.`{_ACTION}` = 'close' AND t.`{IS_CURRENT}` AND " + _on(keys)
    close = {
        VALID_TO: "s._pz_close_at",
        IS_CURRENT: "false",
        BATCH: "s._pz_close_batch",  # the layer above sees the closed version as news
        DELETED: "s._pz_close_deleted",
        DELETED_AT: "CASE WHEN s._pz_close_deleted THEN s._pz_close_at END",
    }
    insert = ", ".join(f"`{c}`" for c in columns), ", ".join(f"s.`{c}`" for c in columns)
    clauses = [
        f"WHEN MATCHED THEN UPDATE SET {_assign(close)}",
        f"WHEN NOT MATCHED AND s.`{_ACTION}` = 'insert' THEN INSERT ({insert[0]}) VALUES ({insert[1]})",
    ]
    return _merge_commit(staged, path, on, clauses, **common)


def _scd2_events(df: DataFrame, keys: list[str], current: DataFrame | None) -> DataFrame:
    """The events newer than each key's current row (a version with the same start but other values is
    newer too: two updates can share a cursor value), in order, each live one with its interval.

    Order per key: batch, then a batch's live rows before its tombstone, then VALID_FROM. A live version
    ends where the next event starts (VALID_TO); `_pz_ends_deleted` when that event is a tombstone.
    `_pz_first` marks the event that closes the key's current row (`_pz_t_exists`).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    df = df.dropDuplicates([*keys, VALID_FROM, ROW_HASH])
    if current is None:
        df = df.withColumn("_pz_t_exists", F.lit(False))
    else:
        df = df.join(current, on=keys, how="left")
        known = F.col("_pz_t_from").isNotNull()
        start, was = F.col(VALID_FROM), F.col("_pz_t_from")
        changed = (start == was) & ~F.col(ROW_HASH).eqNullSafe(F.col("_pz_t_hash"))
        df = df.filter(~known | (start > was) | changed | F.col(DELETED)).drop("_pz_t_hash")
        tombstone_at = F.greatest(F.col(VALID_FROM), F.coalesce(F.col("_pz_t_from"), F.col(VALID_FROM)))
        df = df.withColumn(VALID_FROM, F.when(F.col(DELETED), tombstone_at).otherwise(F.col(VALID_FROM)))
        df = df.withColumn("_pz_t_exists", known).drop("_pz_t_from")
    order = Window.partitionBy(*keys).orderBy(F.col(BATCH), F.col(DELETED).cast("int"), F.col(VALID_FROM))
    ends_deleted = F.coalesce(F.lead(DELETED).over(order), F.lit(False))
    df = df.withColumns(
        {
            VALID_TO: F.lead(VALID_FROM).over(order),
            "_pz_ends_deleted": ends_deleted,
            "_pz_first": F.row_number().over(order) == 1,
        }
    )
    # A tombstone with nothing before it (a key never loaded, or deleted twice) closes nothing.
    df = df.filter(~F.col(DELETED) | F.col("_pz_first") & F.col("_pz_t_exists") | ~F.col("_pz_first"))
    return df.withColumns(
        {
            IS_CURRENT: F.col(VALID_TO).isNull(),
            DELETED_AT: F.when(F.col("_pz_ends_deleted"), F.col(VALID_TO)),
        }
    )


def ensure_columns(spark: SparkSession, path: str, df: DataFrame) -> None:
    """Add `df`'s columns the table lacks (explicit MERGE assignments don't evolve the schema themselves)."""
    existing = {f.name.lower() for f in spark.read.format("delta").load(path).schema.fields}
    missing = [f for f in df.schema.fields if f.name.lower() not in existing]
    if missing:
        columns = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in missing)
        spark.sql(f"ALTER TABLE {sql_table(path)} ADD COLUMNS ({columns})")


def committed_batch(spark: SparkSession, path: str) -> int:
    """The newest batch our commits to this table say they consumed (0 for none): the position a layer
    reached even if the state update after its commit was lost."""
    batches = [int(c["batch"]) for c in commits_with_metadata(spark, path) if "batch" in c]
    return max(batches, default=0)


def newest_batch(spark: SparkSession, path: str) -> int:
    """The newest batch number in a table: from our commit metadata, else a scan (0 for no table)."""
    batches = [int(c["batch"]) for c in commits_with_metadata(spark, path) if "batch" in c]
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
