"""Rows as events: live row versions and tombstones (`_pz_deleted`), and the newest event per key.

Shared by extract (which tombstones keys the source no longer has) and by bronze and silver (which carry
one event per key up a layer).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipezone.core.lake import delta_tables as dt
from pipezone.core.steps.transforms import latest_per_key

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def as_events(df: DataFrame) -> DataFrame:
    """`_pz_deleted` (false for raw written before delete detection existed) and `_pz_deleted_at`."""
    from pyspark.sql import functions as F

    deleted = F.coalesce(F.col(dt.DELETED), F.lit(False)) if dt.DELETED in df.columns else F.lit(False)
    df = df.withColumn(dt.DELETED, deleted)
    return df.withColumn(dt.DELETED_AT, F.when(F.col(dt.DELETED), F.col(dt.EXTRACTED_AT)))


def latest_events(df: DataFrame, keys: list[str], cursor: str | None) -> DataFrame:
    """One event per key: the newest live version (by cursor, then batch), unless a tombstone of the
    same or a later batch follows it (the key snapshot is taken after the batch's read)."""
    if not keys:
        return df
    live = latest_per_key(df.filter(f"NOT `{dt.DELETED}`"), keys, order_columns(cursor))
    tombstones = latest_per_key(df.filter(f"`{dt.DELETED}`"), keys, [dt.BATCH])
    return latest_per_key(live.unionByName(tombstones), keys, [dt.BATCH, dt.DELETED])


def order_columns(cursor: str | None) -> list[str]:
    return ([cursor] if cursor else []) + [dt.BATCH, dt.EXTRACTED_AT]
