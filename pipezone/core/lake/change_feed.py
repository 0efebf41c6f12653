"""What changed in a lake table between two of its versions, by key: Delta's change data feed, reduced to
the newest image of each key.

An export (steps/export.py) sends a destination only what changed since the version it exported last. Delta
records row-level changes when the table has `delta.enableChangeDataFeed` (set by `enable_change_feed` on
the first export; the feed starts at that commit). The feed holds every image a commit wrote: inserts,
update pre- and post-images, deletes; a gold `overwrite` is a delete of every old row and an insert of every
new one. Reduced per key:

- the newest commit's image wins; within one commit a live image (not soft-deleted, the current SCD2
  version) wins over a non-live one (an SCD2 merge closes the old version and inserts the new one in one
  commit; an overwrite deletes and re-inserts a key);
- a key whose winning image is live is upserted with it; otherwise (a delete, a soft-delete tombstone, an
  SCD2 version closed with no current one) the key is deleted.

A version range the feed does not cover (the feed enabled later, or its files vacuumed) is
`ChangeFeedUnavailable`: the caller reads the table whole instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipezone.core.lake.delta_tables import last_commit, live_condition, sql_table

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

CHANGE_FEED_PROPERTY = "delta.enableChangeDataFeed"
FEED_COLUMNS = ("_change_type", "_commit_version", "_commit_timestamp")
_LIVE, _RANK = "_pz_feed_live", "_pz_feed_rank"
ROWS = "_pz_live_rows"  # net_counts' count of live rows


class ChangeFeedUnavailable(Exception):
    """The table's change data feed does not cover the asked versions: read the table whole."""


@dataclass(frozen=True)
class KeyedChanges:
    """The newest image of every key changed in (start, end]: rows to upsert, keys to delete."""

    upserts: DataFrame
    deletes: DataFrame  # the key columns only


def current_version(spark: SparkSession, path: str) -> int:
    """The table's newest version (what an export pins its read to). From the log, not delta-spark's
    DeltaTable: that needs a Delta plugin on a Spark Connect server."""
    commit = last_commit(spark, path)
    if commit is None:
        raise ValueError(f"no Delta table at {path}")
    return int(commit["version"])


def has_change_feed(spark: SparkSession, path: str) -> bool:
    rows = spark.sql(f"SHOW TBLPROPERTIES {sql_table(path)} ('{CHANGE_FEED_PROPERTY}')").collect()
    return bool(rows) and str(rows[0]["value"]).lower() == "true"


def enable_change_feed(spark: SparkSession, path: str) -> bool:
    """Turn the feed on (one metadata commit) unless it is on; True when this call turned it on."""
    if has_change_feed(spark, path):
        return False
    spark.sql(f"ALTER TABLE {sql_table(path)} SET TBLPROPERTIES ('{CHANGE_FEED_PROPERTY}' = 'true')")
    return True


def read_version(spark: SparkSession, path: str, version: int) -> DataFrame:
    """The table's live rows as of `version` (a full export, pinned so later commits wait for the next one)."""
    df = spark.read.format("delta").option("versionAsOf", version).load(path)
    condition = live_condition(df.columns)
    return df.filter(condition) if condition else df


def keyed_changes(spark: SparkSession, path: str, start: int, end: int, keys: list[str]) -> KeyedChanges:
    """The changes of versions start..end (inclusive) reduced per key (module docstring)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F  # noqa: N812

    feed = feed_of(spark, path, start, end).filter(F.col("_change_type") != "update_preimage")
    live = live_condition(feed.columns)
    feed = feed.withColumn(_LIVE, F.expr(live) if live else F.lit(True))
    feed = feed.withColumn(_LIVE, F.col(_LIVE) & (F.col("_change_type") != "delete"))
    order = Window.partitionBy(*keys).orderBy(F.col("_commit_version").desc(), F.col(_LIVE).desc())
    newest = feed.withColumn(_RANK, F.row_number().over(order)).filter(F.col(_RANK) == 1)
    table_columns = [c for c in feed.columns if c not in (*FEED_COLUMNS, _LIVE)]
    upserts = newest.filter(F.col(_LIVE)).select(*table_columns)
    deletes = newest.filter(~F.col(_LIVE)).select(*keys)
    return KeyedChanges(upserts=upserts, deletes=deletes)


def new_rows(spark: SparkSession, path: str, start: int, end: int) -> DataFrame:
    """For an `append` export: every live image inserted or updated in versions start..end, oldest first."""
    from pyspark.sql import functions as F  # noqa: N812

    feed = feed_of(spark, path, start, end).filter(F.col("_change_type").isin("insert", "update_postimage"))
    live = live_condition(feed.columns)
    rows = feed.filter(live) if live else feed
    return rows.orderBy("_commit_version").drop(*FEED_COLUMNS)


def net_counts(feed: DataFrame, conditions: dict[str, str]) -> dict[str, int]:
    """How many more live rows meet each SQL condition after the `feed`'s versions (`feed_of`) than before them, and
    (`ROWS`) how many more live rows there are: one aggregate over the feed, where an inserted row or
    post-image counts +1 and a deleted row or pre-image -1 (a row a commit copied unchanged is not in the
    feed). A condition the feed's columns cannot evaluate is ChangeFeedUnavailable too."""
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as F  # noqa: N812

    live = live_condition(feed.columns) or "true"
    sign = F.when(F.col("_change_type").isin("insert", "update_postimage"), 1).otherwise(-1)
    sums = [F.sum(F.when(F.expr(live), sign).otherwise(0)).alias(ROWS)]
    sums += [
        F.sum(F.when(F.expr(f"({live}) AND ({condition})"), sign).otherwise(0)).alias(f"c{i}")
        for i, condition in enumerate(conditions.values())
    ]
    try:
        row = feed.agg(*sums).collect()[0]
    except AnalysisException as err:
        raise ChangeFeedUnavailable(" ".join(str(err).split())[:300]) from None
    counts = {name: int(row[f"c{i}"] or 0) for i, name in enumerate(conditions)}
    return {ROWS: int(row[ROWS] or 0), **counts}


def feed_of(spark: SparkSession, path: str, start: int, end: int) -> DataFrame:
    """The raw change feed of versions start..end; ChangeFeedUnavailable when the table didn't record it."""
    from pyspark.errors import AnalysisException

    reader = spark.read.format("delta").option("readChangeFeed", "true")
    try:
        df = reader.option("startingVersion", start).option("endingVersion", end).load(path)
        df.schema  # noqa: B018 - resolving the plan is what checks the versions' feed
    except AnalysisException as err:
        raise ChangeFeedUnavailable(" ".join(str(err).split())[:300]) from None
    return df
