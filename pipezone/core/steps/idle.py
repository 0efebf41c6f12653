"""Steps that can prove they have nothing to do, checked without Spark.

A run with nothing new still paid, per step, a process, a Spark (or Spark Connect) session, state-store
round trips, a lease and Delta log reads, only for the step to find no pending batch: most of an idle
flow's run time (docs/benchmarks.md, "Incremental latency"). Bronze and silver consume the batches of
the layer below; when the state store says a layer has consumed the newest batch the layer below holds
(its Delta log's commit metadata, read with delta-rs in milliseconds) and the layer's own log names no
newer batch (a state update lost after a commit, which the step itself repairs), the step has nothing to
do, and `pipezone run` and the Airflow operator record it as skipped without starting it. Quality has
nothing to do when every table its checks judge is at the Delta version its last successful run judged,
with the same checks, and none of them ages with the clock (freshness): the step would only reuse those
outcomes, after paying for a session and Great Expectations' import (seconds of CPU on their own).

Extract has nothing to do when the source's newest cursor, asked through the source's own client
(PyMySQL, psycopg, sqlite3, pymongo: `Source.bounds_without_spark`), is not past the watermark and
nothing else would make it read (a lookback, a key snapshot due, a lost watermark update to repair): then
no step of an idle run opens a Spark session at all.

Anything not provable this way (a full refresh, a backfill, a log delta-rs cannot read, no batch metadata
in the recent log) is not idle: the step runs and decides for itself, as before.
"""

from __future__ import annotations

from typing import Any

from pipezone.core.lake import delta_log
from pipezone.core.lake import delta_tables as dt
from pipezone.core.quality.checked_tables import checked_path, judgement, table_checks
from pipezone.core.spec.cursor_values import later, normalize
from pipezone.core.spec.flow import FlowSpec
from pipezone.core.spec.quality import FreshnessCheck
from pipezone.core.spec.source import DeleteDetection
from pipezone.core.steps.extract import key_snapshot_due
from pipezone.core.steps.runtime import Runtime

IDLE_LAYERS = {"bronze": "raw", "silver": "bronze"}  # a layer, and the layer whose batches it consumes
RECENT = 50  # commits read from each log: the newest batch is among them unless the log is unusual


def idle_reason(
    runtime: Runtime, flow: FlowSpec, step: str, *, full_refresh: bool = False, backfill: Any = None
) -> str | None:
    """Why `step` has nothing to do in this run (one line), or None when it may have (then it runs)."""
    if full_refresh or backfill is not None or flow.source is None:
        return None
    if step == "quality":
        return _quality_idle(runtime, flow)
    if step == "extract":
        return _extract_idle(runtime, flow)
    below = IDLE_LAYERS.get(step)
    if below is None:
        return None
    lake = runtime.lake
    options = runtime.lake_options()
    source = lake.raw(flow) if below == "raw" else lake.table(below, flow.name)
    try:
        newest = dt.batches_of(dt.our_commits(delta_log.history_with(source, RECENT, options)))
        committed = dt.batches_of(dt.our_commits(delta_log.history_with(lake.table(step, flow.name), RECENT, options)))
        consumed = runtime.state.get_progress(flow.name, step) if newest else 0
    except Exception:  # noqa: BLE001 - an optimisation only: whatever failed here, the step meets it and says so
        return None
    if not newest:
        return None
    if max(newest) > consumed or max(committed, default=0) > consumed:
        return None
    return f"nothing new: {below} batch {max(newest)} already consumed"


def _extract_idle(runtime: Runtime, flow: FlowSpec) -> str | None:
    """Extract's reason to skip: the source's newest cursor, asked through its own client, is not past the
    watermark, so the window is empty. Only where nothing else would have the step read: no lookback (it
    re-reads rows behind the watermark), no key snapshot due, not a complete read or a log (CDC), and the
    watermark is the newest extract commit's (else the step repairs a lost update first)."""
    source = flow.source
    assert source is not None
    incremental = source.incremental
    if incremental is None or incremental.lookback or source.cdc is not None:
        return None
    try:
        stored = runtime.state.get_watermark(flow.name)
        commits = dt.our_commits(delta_log.history_with(runtime.lake.raw(flow), RECENT, runtime.lake_options()))
        live = next((c for c in commits if c.get("step") == "extract" and not c.get("backfill")), None)
        if stored is None or live is None or _snapshot_due(source.deletes, commits):
            return None
        if stored.last_run_id != live.get("run_id") and stored.updated_at < live["timestamp"]:
            return None  # the watermark update after raw's newest commit was lost: the step repairs it
        bounds = runtime.source(flow).bounds_without_spark()
        newest, watermark = normalize(bounds.hi) if bounds else None, normalize(stored.value)
        if newest is None or watermark is None or later(newest, watermark):
            return None
    except Exception:  # noqa: BLE001 - an optimisation only: the step meets the problem and says so
        return None
    return f"nothing new: the source's newest {incremental.cursor} is not past the watermark {watermark}"


def _snapshot_due(deletes: DeleteDetection | None, commits: list[dict[str, Any]]) -> bool:
    """Whether delete detection is due (`steps/extract._snapshot_due`), or may be: its last key snapshot is
    not among the recent commits."""
    if deletes is None:
        return False
    return key_snapshot_due(deletes, next((c for c in commits if c.get("key_snapshot")), None))


def _quality_idle(runtime: Runtime, flow: FlowSpec) -> str | None:
    """The quality step's reason to skip: its tables and checks are what its last success judged."""
    checks = table_checks(flow)
    if not checks or any(isinstance(check, FreshnessCheck) for _, check in checks):
        return None  # no checks: the step says so itself; freshness: the outcome changes with the clock
    try:
        options = runtime.lake_options()
        paths = dict(checked_path(runtime.lake, flow, check) for _, check in checks)
        versions = {
            name: delta_log.content_version(delta_log.history_with(path, dt.CONTENT_HISTORY, options))
            for name, path in paths.items()
        }
        last = runtime.state.last_success(flow.name, "quality")
    except Exception:  # noqa: BLE001 - an optimisation only: the step meets the problem and says so
        return None
    if last is None or last.details.get("seen") != judgement(checks, versions):
        return None
    return f"nothing new: the checked tables are unchanged since run {last.run_id}"


def record_idle(runtime: Runtime, flow: str, step: str, run_id: str, reason: str) -> None:
    """The skipped step in the run history, as a step that found nothing to do records itself."""
    log_id = runtime.state.start_step(run_id, flow, step)
    runtime.state.finish_step(log_id, "skipped", rows_read=0, rows_written=0, details={"note": reason, "idle": True})
