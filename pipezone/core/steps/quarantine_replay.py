"""Replay a flow's quarantine: rows fixed where they wait (`UPDATE delta.`.../quarantine/<flow>` ...), or
held back by a check since relaxed, judged again and written to silver.

Each key's newest quarantined row is judged with the flow's row checks as they are now. A row that passes
every check with an action is written to silver in silver's write mode (merge: forward-only, so a newer
version silver took since, from the source, wins), then removed from quarantine with every older
quarantined row of its key. A row that still fails stays, untouched. Silver's write is idempotent for a
given quarantine version (Delta txnAppId `<flow>:silver_replay`, txnVersion = the quarantine table's version
read), so a replay killed between the two commits, run again, writes nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipezone.core.lake import delta_tables as dt
from pipezone.core.lake.delta_merge import merge_commit
from pipezone.core.quality.expectations import expectations
from pipezone.core.steps.context import StepContext
from pipezone.core.steps.layer_writes import layer_keys, write_layer
from pipezone.core.steps.row_checks import FAILED_CHECKS, QUARANTINED_AT, RUN_ID, row_checks
from pipezone.core.steps.transforms import latest_per_key, renamed

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

QUARANTINE_COLUMNS = (FAILED_CHECKS, RUN_ID, QUARANTINED_AT)


@dataclass(frozen=True)
class Replayed:
    waiting: int  # quarantined rows before the replay
    written: int  # rows written to silver
    still_failing: int  # keys whose newest row still fails a check


def replay(ctx: StepContext) -> Replayed:
    flow, lake = ctx.flow, ctx.runtime.lake
    path = lake.quarantine(flow.name)
    if not dt.table_exists(ctx.spark, path):
        return Replayed(0, 0, 0)
    if flow.layers.silver.write_mode == "overwrite":
        raise ValueError(
            f"flow {flow.name}: silver is rewritten from each run's batches (write_mode overwrite): fix the rows "
            "at the source; the next run judges them again"
        )
    keys, cursor = layer_keys(ctx)
    keys = renamed(keys, flow.layers.silver.transforms)
    cursor = renamed([cursor], flow.layers.silver.transforms)[0] if cursor else None
    version = int((dt.last_commit(ctx.spark, path) or {})["version"])
    held = ctx.spark.read.format("delta").option("versionAsOf", version).load(path).cache()
    try:
        waiting = held.count()
        newest = latest_per_key(held, keys, [QUARANTINED_AT])
        passing = _passing(ctx, newest.drop(*QUARANTINE_COLUMNS))
        replayed = passing.select(*keys).cache()
        try:
            written = replayed.count()
            if written:
                commit = write_layer(ctx, passing, "silver", keys, cursor, version, written, replay=True)
                written = commit.rows_written if commit.rows_written is not None else written
                _forget(ctx, path, replayed, keys, version)
            return Replayed(waiting, written, newest.count() - replayed.count())
        finally:  # a long-lived server (Spark Connect) would otherwise keep every run's keys cached
            replayed.unpersist()
    finally:
        held.unpersist()


def _passing(ctx: StepContext, rows: DataFrame) -> DataFrame:
    """The rows no check with an action fails now (a warn check does not hold a row back)."""
    judged = [e for e in expectations(row_checks(ctx.flow.quality), rows) if e.check.action != "warn"]  # type: ignore[union-attr]
    conditions = [e.failing for e in judged]
    return rows.filter(f"NOT ({' OR '.join(conditions)})") if conditions else rows


def _forget(ctx: StepContext, path: str, replayed: DataFrame, keys: list[str], version: int) -> None:
    """Remove the replayed keys' rows quarantined up to the version read (a row quarantined since stays);
    idempotent per version read, as silver's write."""
    as_of = ctx.spark.read.format("delta").option("versionAsOf", version).load(path)
    stamps = as_of.join(replayed, on=keys, how="left_semi").select(*keys, QUARANTINED_AT)
    on = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in [*keys, QUARANTINED_AT])
    metadata = ctx.metadata("quarantine_replay", quarantine_version=version)
    app_id = ctx.app_id("quarantine_replay")
    merge_commit(stamps, path, on, ["WHEN MATCHED THEN DELETE"], app_id=app_id, version=version, metadata=metadata)
