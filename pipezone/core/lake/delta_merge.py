"""Keyed writes to Delta tables: forward-only MERGE, soft deletes, SCD2 and the row hash they compare.

Split from delta_tables, which keeps the metadata columns, the commit history and the idempotent appends
these writes build on (a first MERGE or SCD2 creates its table with `delta_tables.append`).

- MERGE is forward-only: a target row changes only when the incoming row is newer by cursor (or by
  batch on a cursor tie), so re-reading a window or replaying a batch changes nothing.
- Each row version carries a hash of its source columns (`_pz_row_hash`), so bronze can append only the
  versions that differ from a key's latest one: a lookback re-read adds nothing.
- Deletes are soft: a tombstone row (`_pz_deleted`) flags the target row and keeps its data.
- SCD2 keeps every version with `_pz_valid_from` / `_pz_valid_to` / `_pz_is_current`.
- Each MERGE is one idempotent commit (txnAppId / txnVersion) carrying `userMetadata`, as appends are.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from typing import TYPE_CHECKING, Any

from pipezone.core.lake import delta_log
from pipezone.core.lake.delta_tables import (
    BATCH,
    DELETED,
    DELETED_AT,
    IS_CURRENT,
    ROW_HASH,
    VALID_FROM,
    VALID_TO,
    CommitInfo,
    append,
    last_commit,
    sql_table,
    table_exists,
)
from pipezone.core.lake.key_filters import key_filter
from pipezone.core.lake.merge_clauses import forward_only_condition, key_match, upsert_clauses

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

_ACTION = "_pz_action"  # staging only, never written


def merge_commit(
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
        version=after["version"],
        rows_written=rows,
        bytes_written=int(metrics.get("numTargetBytesAdded", 0) or 0),
        files=merge_files(metrics, _files_before(spark, path, before)),
    )


def _files_before(spark: SparkSession, path: str, before: dict[str, Any] | None) -> int | None:
    if before is None:
        return None
    try:
        return delta_log.file_count(spark, path, int(before["version"]))
    except delta_log.LogUnavailable:
        return None


def merge_files(metrics: dict[str, Any], in_table: int | None) -> dict[str, int]:
    """What a MERGE did to the table's files, from its commit metrics: how many the table had before
    (`in_table`, when the log says), rewrote (`rewritten`), marked with a deletion vector (`marked`) and
    added. Few keys in a table clustered by its key touch few files."""

    def metric(name: str) -> int:
        return int(metrics.get(name, 0) or 0)

    files = {
        "rewritten": metric("numTargetFilesRemoved"),
        # a file already marked gets a new vector too: Delta counts it in Added *and* Updated (measured on
        # Delta 4.4: 41 files marked again read Added 41, Updated 41, Removed 41), so Added alone counts files
        "marked": metric("numTargetDeletionVectorsAdded"),
        "added": metric("numTargetFilesAdded"),
    }
    return {**({"in_table": in_table} if in_table is not None else {}), **files}


ROWS_PER_FILE = 250_000  # a merged table's first load: files of contiguous key ranges, this many rows at most


def clustered(df: DataFrame, keys: list[str]) -> DataFrame:
    """`df` range-partitioned and sorted by `keys`: each file then holds a narrow key range, so a MERGE
    filtered to a few keys (`key_filter`) reads and marks the few files whose key statistics match, not
    every file of the table."""
    if not keys:
        return df
    columns = [f"`{k}`" for k in keys]
    return df.repartitionByRange(*columns).sortWithinPartitions(*columns)


def differs(df: DataFrame, path: str, keys: list[str]) -> str:
    """A MERGE condition true where the incoming row's values (not keys, not our metadata) differ from the
    target's; always true when `df` brings a column the table lacks (the update adds it)."""
    target = {c.lower() for c in df.sparkSession.read.format("delta").load(path).columns}
    values = [c for c in df.columns if not c.startswith("_pz_") and c not in keys]
    if any(c.lower() not in target for c in values):
        return "true"
    if not values:
        return "false"
    return "NOT (" + " AND ".join(f"s.`{c}` <=> t.`{c}`" for c in values) + ")"


def _assign(values: dict[str, str]) -> str:
    return ", ".join(f"`{column}` = {value}" for column, value in values.items())


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
    within: str | None = None,
    changed_only: bool = False,
) -> CommitInfo:
    """Upsert by `keys`, forward-only; creates the table from `df` on the first run (statistics on the keys
    and the cursor). `narrow`: `df` is small, filter the table to its keys first (`key_filter`). `within`:
    a filter on the target (columns as `t.`) that keeps every row `df` can match (`KeyRanges.sql`).
    `changed_only`: a matched row whose values equal the target's is left alone (`differs`), so a table
    recomputed whole (gold) rewrites, and its change feed carries, only the rows that changed.

    With a `_pz_deleted` column, tombstones (one per key at most) flag the matched row as deleted and keep
    its data; a later live row of that key (a re-insert) clears the flag.
    """
    common = {"app_id": app_id, "version": version, "metadata": metadata}
    tombstones = DELETED in df.columns
    if not table_exists(df.sparkSession, path):
        live = clustered(df.filter(f"NOT `{DELETED}`") if tombstones else df, keys)
        stats_on = [*keys, *([cursor] if cursor else [])]
        return append(
            live, path, partition_by=partition_by, stats_on=stats_on, merged=True, rows_per_file=ROWS_PER_FILE, **common
        )
    newer = forward_only_condition(cursor)
    if changed_only:
        newer = f"({newer}) AND {differs(df, path, keys)}"
    on = key_match(keys)
    only = key_filter(df, keys, alias="t.") if narrow else None
    terms = {"key range": within, "key list": only}
    for term in terms.values():  # target-only terms of the ON clause: Spark filters the table first
        if term is not None:
            on = f"{on} AND ({term})"
    narrowed_by = " and ".join(name for name, term in terms.items() if term is not None) or None
    clauses = [clause.sql() for clause in upsert_clauses(newer, tombstones)]
    return dataclasses.replace(merge_commit(df, path, on, clauses, **common), narrowed_by=narrowed_by)


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
    order: str | None = None,
) -> CommitInfo:
    """Type-2 history. `df` holds events (live versions and tombstones, DELETED set) with VALID_FROM; a
    version not newer than its key's current row is a replay and changes nothing. One MERGE closes each
    touched key's current row and inserts the new versions, so a failure leaves the table as it was."""
    from pyspark.sql import functions as F

    spark = df.sparkSession
    common = {"app_id": app_id, "version": version, "metadata": metadata}
    current = ended = None
    if table_exists(spark, path):
        target = spark.read.format("delta").load(path)
        live = target.filter(f"`{IS_CURRENT}`")
        hashed = F.col(ROW_HASH) if ROW_HASH in target.columns else F.lit(None).cast("long")
        current = live.select(*keys, F.col(VALID_FROM).alias("_pz_t_from"), hashed.alias("_pz_t_hash"))
        # Where each touched key's closed history ends: a key with no current row (deleted) starts its
        # next version no earlier.
        closed = target.filter(f"NOT `{IS_CURRENT}`").join(df.select(*keys).distinct(), on=keys, how="left_semi")
        ended = closed.groupBy(*keys).agg(F.max(VALID_TO).alias("_pz_t_end"))
    events = _scd2_events(with_row_hash(df), keys, current, ended, order)
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
    on = f"s.`{_ACTION}` = 'close' AND t.`{IS_CURRENT}` AND " + key_match(keys)
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
    return merge_commit(staged, path, on, clauses, **common)


def _scd2_events(
    df: DataFrame,
    keys: list[str],
    current: DataFrame | None,
    ended: DataFrame | None = None,
    order_by: str | None = None,
) -> DataFrame:
    """The events newer than each key's current row (a version with the same start but other values is
    newer too: two updates can share a cursor value), in order, each live one with its interval.

    Order per key: batch, then a batch's live rows before its tombstone, then VALID_FROM (`order_by`, a
    change log's order, replaces both: a delete and a re-insert can share a batch). A live version
    ends where the next event starts (VALID_TO); `_pz_ends_deleted` when that event is a tombstone.
    `_pz_first` marks the event that closes the key's current row (`_pz_t_exists`).

    Starts never go backwards within a key: a tombstone is stamped when the delete is seen, and a key
    re-inserted afterwards can carry a cursor older than that (the source's clock or a value set by the
    application); its version then starts where the deleted one ended (`ended`, or an earlier event of
    this batch), so versions never overlap.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    df = df.dropDuplicates([*keys, VALID_FROM, ROW_HASH]).withColumn("_pz_at", F.col(VALID_FROM))
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
        if ended is not None:  # a key with no current row: after its last (deleted) version
            df = df.join(ended, on=keys, how="left")
            floor = F.greatest(F.col(VALID_FROM), F.coalesce(F.col("_pz_t_end"), F.col(VALID_FROM)))
            df = df.withColumn(VALID_FROM, F.when(known, F.col(VALID_FROM)).otherwise(floor)).drop("_pz_t_end")
        df = df.withColumn("_pz_t_exists", known).drop("_pz_t_from")
    ranks = [F.col(order_by)] if order_by else [F.col(DELETED).cast("int"), F.col("_pz_at")]
    order = Window.partitionBy(*keys).orderBy(F.col(BATCH), *ranks)
    so_far = order.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    df = df.withColumn(VALID_FROM, F.max(VALID_FROM).over(so_far))
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
    return df.drop("_pz_at").withColumns(
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
