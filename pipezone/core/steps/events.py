"""Rows as events: live row versions and tombstones (`_pz_deleted`), and the newest event per key.

Shared by extract (which tombstones keys the source no longer has) and by bronze and silver (which carry
one event per key up a layer); bronze also infers tombstones from complete reads (`inferred_tombstones`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pipezone.core.lake import delta_tables as dt
from pipezone.core.steps.transforms import latest_per_key

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame


def as_events(df: DataFrame) -> DataFrame:
    """`_pz_deleted` (false for raw written before delete detection existed) and `_pz_deleted_at`."""
    from pyspark.sql import functions as F

    deleted = F.coalesce(F.col(dt.DELETED), F.lit(False)) if dt.DELETED in df.columns else F.lit(False)
    df = df.withColumn(dt.DELETED, deleted)
    return df.withColumn(dt.DELETED_AT, F.when(F.col(dt.DELETED), F.col(dt.EXTRACTED_AT)))


def latest_events(df: DataFrame, keys: list[str], cursor: str | None) -> DataFrame:
    """One event per key: the newest live version (by cursor, then batch), unless a tombstone of the
    same or a later batch follows it (the key snapshot is taken after the batch's read). A CDC flow's
    cursor is the log's change order, which ranks deletes with the other changes."""
    if not keys:
        return df
    if cursor == dt.CHANGE_ORDER:  # a change log: each key's last change wins, a delete as any other
        return latest_per_key(df, keys, [dt.CHANGE_ORDER, dt.BATCH])
    live = latest_per_key(df.filter(f"NOT `{dt.DELETED}`"), keys, order_columns(cursor))
    tombstones = latest_per_key(df.filter(f"`{dt.DELETED}`"), keys, [dt.BATCH])
    return latest_per_key(live.unionByName(tombstones), keys, [dt.BATCH, dt.DELETED])


def order_columns(cursor: str | None) -> list[str]:
    return ([cursor] if cursor else []) + [dt.BATCH, dt.EXTRACTED_AT]


_CLOSES = "_pz_closes"  # the complete read an event is judged against (a working column, never written)


def inferred_tombstones(
    events: DataFrame, keys: list[str], completes: Sequence[int], after: int | None = None
) -> DataFrame:
    """The tombstones complete reads imply: for each complete batch C, the keys live just before C and
    missing from C, as (keys, `_pz_batch` = C, `_pz_deleted` = true) rows, each once.

    `events` holds (keys, `_pz_batch`, `_pz_deleted`) rows from `after`, the complete batch before the
    first of `completes` (None: there is none, and `events` start at the first batch), up to the last of
    them. A key is live just before C when its newest event since the complete batch before C is live (a
    tombstone outranks a live row of its own batch, as in `latest_events`): a key that was live earlier and
    is missing from that complete batch was tombstoned there, by this same rule. So each complete batch is
    compared only with what came since the previous one, whichever batches are consumed together; a key
    that comes back in a later batch is live again there (events order by batch). Keys compare null-safe,
    as MERGE matches them.

    When every batch from `after` on is a complete read (a full-read flow's usual history), what came
    before C is the previous batch alone, all live: one anti-join of its keys (about half the time of the
    general aggregation on a million keys).
    """
    from pyspark.sql import functions as F

    ordered = sorted(completes)
    batch = F.col(dt.BATCH)
    chained = after is not None and ordered == list(range(after + 1, after + 1 + len(ordered)))
    if chained:
        live = (batch < ordered[-1]) & ~F.col(dt.DELETED)
        before = events.filter(live).select(*_keys(keys), (batch + 1).alias(_CLOSES))
    else:
        closes = F.when(batch < ordered[0], F.lit(ordered[0]))
        for complete in ordered[1:]:
            closes = closes.when(batch < complete, F.lit(complete))
        newest = F.max(F.struct(batch.alias("b"), F.col(dt.DELETED).alias("d")))
        before = (
            events.withColumn(_CLOSES, closes.cast("long"))
            .filter(F.col(_CLOSES).isNotNull())
            .groupBy(*_keys(keys), F.col(_CLOSES))
            .agg(newest.alias("_pz_newest"))
            .filter(~F.col("_pz_newest.d"))
            .drop("_pz_newest")
        )
    present = events.filter(batch.isin(ordered) & ~F.col(dt.DELETED)).select(
        *[F.col(f"`{k}`").alias(f"_pz_k{i}") for i, k in enumerate(keys)], batch.alias(f"_pz_k{len(keys)}")
    )
    condition = F.col(_CLOSES) == F.col(f"_pz_k{len(keys)}")
    for i, k in enumerate(keys):
        condition = condition & F.col(f"`{k}`").eqNullSafe(F.col(f"_pz_k{i}"))
    gone = before.join(present, on=condition, how="left_anti")
    if chained:  # a query's read may hold a key twice; the aggregation yields each key once anyway
        gone = gone.dropDuplicates([*keys, _CLOSES])
    return gone.select(*_keys(keys), F.col(_CLOSES).cast("long").alias(dt.BATCH), F.lit(True).alias(dt.DELETED))


def _keys(keys: list[str]) -> list[Column]:
    from pyspark.sql import functions as F

    return [F.col(f"`{k}`") for k in keys]
