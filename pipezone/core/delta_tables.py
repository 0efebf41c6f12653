"""Delta Lake writes with the guarantees the layers rely on.

- Appends are idempotent: each writer has a fixed `txnAppId` and a monotonically increasing
  `txnVersion` (the batch number), so Delta itself skips a retried commit.
- MERGE is forward-only: a target row changes only when the incoming row is newer by cursor (or by
  batch on a cursor tie), so re-reading a window or replaying a batch changes nothing.
- Every commit carries `userMetadata` (run id, batch, window) for reconciliation and debugging.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# Metadata columns every row carries from raw onward.
RUN_ID = "_pz_run_id"
BATCH = "_pz_batch"
EXTRACTED_AT = "_pz_extracted_at"
INGEST_DATE = "_pz_ingest_date"
LOADED_AT = "_pz_loaded_at"
METADATA_COLUMNS = (RUN_ID, BATCH, EXTRACTED_AT, INGEST_DATE, LOADED_AT)

# Keep Delta's record of applied (appId, version) pairs bounded; retries happen within minutes.
TABLE_PROPERTIES = {"delta.setTransactionRetentionDuration": "interval 30 days"}


@dataclass(frozen=True)
class CommitInfo:
    """What a commit did, from the Delta log (no second pass over the data)."""

    version: int | None
    rows_written: int
    bytes_written: int
    skipped: bool = False


def table_exists(spark: SparkSession, path: str) -> bool:
    from delta.tables import DeltaTable

    return DeltaTable.isDeltaTable(spark, path)


def last_commit(spark: SparkSession, path: str) -> dict[str, Any] | None:
    """The newest history entry as a dict, or None for a missing table."""
    if not table_exists(spark, path):
        return None
    from delta.tables import DeltaTable

    row = DeltaTable.forPath(spark, path).history(1).collect()[0]
    return row.asDict(recursive=True)


def commits_with_metadata(spark: SparkSession, path: str, limit: int = 50) -> list[dict[str, Any]]:
    """Recent commits whose userMetadata is ours (parsed), newest first."""
    if not table_exists(spark, path):
        return []
    from delta.tables import DeltaTable

    rows = DeltaTable.forPath(spark, path).history(limit).select("version", "userMetadata").collect()
    found = []
    for row in rows:
        try:
            meta = json.loads(row["userMetadata"] or "")
        except ValueError:
            continue
        if isinstance(meta, dict):
            found.append({"version": row["version"], **meta})
    return found


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
) -> CommitInfo:
    """Append (or overwrite) idempotently: a second call with the same app_id/version writes nothing."""
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
        for key, value in TABLE_PROPERTIES.items():
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
) -> CommitInfo:
    """Upsert by `keys`, forward-only; creates the table from `df` on the first run."""
    from delta.tables import DeltaTable

    spark = df.sparkSession
    if not table_exists(spark, path):
        return append(df, path, app_id=app_id, version=version, metadata=metadata, partition_by=partition_by)
    before = last_commit(spark, path)
    on = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in keys)
    conf = {
        "spark.databricks.delta.write.txnAppId": app_id,
        "spark.databricks.delta.write.txnVersion": str(version),
        "spark.databricks.delta.commitInfo.userMetadata": json.dumps(metadata, sort_keys=True, default=str),
    }
    for key, value in conf.items():
        spark.conf.set(key, value)
    try:
        (
            DeltaTable.forPath(spark, path)
            .alias("t")
            .merge(df.alias("s"), on)
            .withSchemaEvolution()
            .whenMatchedUpdateAll(condition=forward_only_condition(cursor))
            .whenNotMatchedInsertAll()
            .execute()
        )
    finally:
        for key in conf:
            spark.conf.unset(key)
    after = last_commit(spark, path)
    if after is None or (before is not None and after["version"] == before["version"]):
        return CommitInfo(version=before["version"] if before else None, rows_written=0, bytes_written=0, skipped=True)
    metrics = after.get("operationMetrics") or {}
    rows = int(metrics.get("numTargetRowsInserted", 0) or 0) + int(metrics.get("numTargetRowsUpdated", 0) or 0)
    return CommitInfo(
        version=after["version"], rows_written=rows, bytes_written=int(metrics.get("numTargetBytesAdded", 0) or 0)
    )


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
