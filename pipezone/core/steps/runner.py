"""Run one step of one flow: log it in the state store, make a re-run with the same run id a no-op,
and turn any failure into one line naming the flow, the step, the connection and the cause.

`job_main` is what the spark-submit entry points in spark/jobs/ call.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from pipezone.core import failpoints
from pipezone.core.spark.errors import summarize_error
from pipezone.core.spark.session import build_session
from pipezone.core.spec.connection import S3LakeConnection
from pipezone.core.spec.export import ExportSpec
from pipezone.core.spec.flow import FlowSpec
from pipezone.core.spec.settings import load_settings
from pipezone.core.state.table_lease import LeaseHeld, hold_tables, step_tables, this_process
from pipezone.core.steps.bronze import run_bronze
from pipezone.core.steps.cdc_extract import run_cdc_extract
from pipezone.core.steps.context import SessionUnavailable, StepContext, StepResult
from pipezone.core.steps.export import run_export
from pipezone.core.steps.extract import run_extract
from pipezone.core.steps.gold import run_gold
from pipezone.core.steps.quality import run_quality
from pipezone.core.steps.runtime import Runtime, load_runtime
from pipezone.core.steps.silver import run_silver
from pipezone.core.steps.small_batch import run_small_bronze, run_small_silver
from pipezone.core.steps.small_window import run_small_extract
from pipezone.core.steps.verify_step import run_verify_step

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


STEPS = ("extract", "bronze", "silver", "gold", "quality", "export", "verify")  # export: every export_* step


class StepFailed(RuntimeError):
    """A step failed; the message is the one line users see (and the one stored in the run log)."""


STEP_FUNCTIONS: dict[str, Callable[[StepContext], StepResult]] = {
    # a window typed as an earlier Spark read typed it is read and written without Spark (steps/small_window.py)
    "extract": lambda ctx: (
        run_cdc_extract(ctx) if ctx.flow.source and ctx.flow.source.cdc else run_small_extract(ctx) or run_extract(ctx)
    ),
    # a small batch into an existing table is written by delta-rs when it can be exactly (steps/small_batch.py)
    "bronze": lambda ctx: run_small_bronze(ctx) or run_bronze(ctx),
    "silver": lambda ctx: run_small_silver(ctx) or run_silver(ctx),
    "gold": run_gold,
    "quality": run_quality,
    "verify": run_verify_step,
}


def step_function(flow: FlowSpec, step: str) -> Callable[[StepContext], StepResult]:
    """What runs `step`: a fixed step, or one of the flow's exports (`export_<name>`)."""
    if step in STEP_FUNCTIONS:
        return STEP_FUNCTIONS[step]
    export = find_export(flow, step)
    return lambda ctx: run_export(ctx, export)


def find_export(flow: FlowSpec, step: str) -> ExportSpec:
    export = flow.export_of(step)
    if export is not None:
        return export
    steps = ", ".join(flow.steps())
    raise KeyError(f"flow {flow.name} has no step {step} (its steps: {steps})")


def failpoint_step(step: str) -> str:
    """The failpoints' name of a step: every export step is `export`."""
    return "export" if step.startswith("export_") else step


LAKE_ERROR_MARKERS = ("org.apache.hadoop.fs.s3a.", "software.amazon.awssdk.", "s3a://")


def _failure_line(ctx: StepContext, step: str, err: BaseException) -> str:
    """Names what failed: the lake (its connection and endpoint) when the error came from s3a, else the
    source connection for extract."""
    if isinstance(err, SessionUnavailable):  # opened inside the step (StepContext.spark): no connection to name
        return f"flow {ctx.flow.name}, step {step}: {summarize_error(err.__cause__ or err)}"
    source = ctx.flow.source
    where = f" (connection {source.connection})" if source is not None and step == "extract" else ""
    if step.startswith("export_"):
        where = f" (connection {find_export(ctx.flow, step).connection})"
    lake = ctx.runtime.connection(ctx.runtime.profile.lake)
    if isinstance(lake, S3LakeConnection) and any(marker in str(err) for marker in LAKE_ERROR_MARKERS):
        where = f" (lake {lake.name} at {lake.effective_endpoint})"
    return f"flow {ctx.flow.name}, step {step}{where}: {summarize_error(err)}"


def _spec_hash(spec: object) -> str:
    import hashlib

    return hashlib.sha256(spec.model_dump_json().encode()).hexdigest()  # type: ignore[attr-defined]


def register_specs(ctx: StepContext) -> None:
    """Keep flows_registry / connections_registry current with what actually runs (never secrets)."""
    flow = ctx.flow
    connection = flow.source.connection if flow.source else "-"
    schedule = flow.schedule.describe() if flow.schedule else None
    ctx.state.register_flow(
        flow.name, connection, _spec_hash(flow), schedule=schedule, layers=flow.steps(), owner=flow.owner
    )
    if flow.source is not None:
        conn = ctx.runtime.connection(flow.source.connection)
        host = getattr(conn, "host", None) or getattr(conn, "path", None)
        ctx.state.register_connection(
            conn.name, conn.type, _spec_hash(conn), host=host, description=conn.description or None
        )


def _hold_tables(ctx: StepContext, step: str, stack: ExitStack) -> None:
    """Hold the lake tables `step` writes; when another writer keeps one, log a failed attempt saying who."""
    holder = this_process(ctx.run_id, ctx.flow.name, step)
    try:
        stack.enter_context(hold_tables(ctx.state, step_tables(ctx.flow, step), holder))
    except LeaseHeld as err:
        line = f"flow {ctx.flow.name}, step {step}: {err}"
        log_id = ctx.state.start_step(ctx.run_id, ctx.flow.name, step)
        ctx.state.finish_step(log_id, "failed", error=line)
        raise StepFailed(line) from err


def run_step(ctx: StepContext, step: str) -> StepResult:
    """Run `step` for the context's flow and run id as the only writer of its tables, recording it in
    pipeline_execution_logs."""
    state = ctx.state
    started = time.perf_counter()
    with ctx.timed("register"):
        register_specs(ctx)
    done = StepResult(skipped=True, note="already succeeded for this run id")
    with ctx.timed("state"):
        if state.step_succeeded(ctx.run_id, ctx.flow.name, step):
            return done
    with ExitStack() as leases:
        with ctx.timed("lease"):
            _hold_tables(ctx, step, leases)
        with ctx.timed("state"):
            if state.step_succeeded(ctx.run_id, ctx.flow.name, step):  # the writer we waited for ran this step
                return done
            log_id = state.start_step(ctx.run_id, ctx.flow.name, step)
        try:
            result = step_function(ctx.flow, step)(ctx)
            with ctx.timed("lease"):
                leases.close()  # release before reporting success; raises LeaseLost if another writer took over
        except Exception as err:  # noqa: BLE001 - recorded, then re-raised as one line
            line = _failure_line(ctx, step, err)
            state.finish_step(log_id, "failed", error=line)
            raise StepFailed(line) from err
    duration = time.perf_counter() - started
    details = {
        **result.details,
        "note": result.note,
        "duration_s": round(duration, 3),
        "phases_s": _phases(ctx, duration),
    }
    state.finish_step(
        log_id,
        "skipped" if result.skipped else "success",
        rows_read=result.rows_read,
        rows_written=result.rows_written,
        bytes_written=result.bytes_written,
        details=json.loads(json.dumps(details, default=str)),
    )
    return result


def _phases(ctx: StepContext, duration: float) -> dict[str, float]:
    """Seconds per phase; `prepare` is the rest of the step (schema checks, planning, small reads).

    `process` (interpreter start and imports), `runtime` (settings and specs) and `session` (the Spark or
    Connect session's start) come before the step and are not part of `duration`.
    """
    outside = ("session", "runtime", "process")
    timed = {phase: seconds for phase, seconds in ctx.phases.items() if phase not in outside}
    # the session opens inside the step, when it first needs one (StepContext.spark)
    rest = max(0.0, duration - sum(timed.values()) - ctx.phases.get("session", 0.0))
    phases = {**ctx.phases, "prepare": ctx.phases.get("prepare", 0.0) + rest}
    return {phase: round(seconds, 3) for phase, seconds in phases.items()}


def summary_line(flow: str, step: str, run_id: str, result: StepResult, seconds: float) -> str:
    parts = [f"pipezone {step} {flow} run={run_id}:"]
    if result.skipped:
        parts.append(f"skipped ({result.note})")
    else:
        parts.append(f"rows in {result.rows_read}, rows out {result.rows_written}, {result.bytes_written} bytes")
        if result.note:
            parts.append(f"({result.note})")
    parts.append(f"in {seconds:.1f} s")
    return " ".join(parts)


def process_age_s() -> float | None:
    """Seconds since this process started (Linux: /proc), None where that is not known."""
    try:
        started_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, uptime - started_ticks / os.sysconf("SC_CLK_TCK"))


def open_session(runtime: Runtime, app_name: str) -> SparkSession:
    return build_session(runtime.spark_settings(app_name))


def job_main(step: str, argv: Sequence[str] | None = None) -> int:
    """Entry point of spark/jobs/<step>.py: `--flow NAME --run-id ID [--full-refresh]
    [--backfill-start S --backfill-end E]`; spark/jobs/export.py also takes `--step export_<name>`."""
    parser = argparse.ArgumentParser(prog=f"spark/jobs/{step}.py")
    parser.add_argument("--flow", required=True)
    parser.add_argument("--step", help="which export (spark/jobs/export.py runs one export_<name> step)")
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--full-refresh", action="store_true")
    parser.add_argument("--backfill-start")
    parser.add_argument("--backfill-end")
    args = parser.parse_args(argv)
    backfill = (args.backfill_start, args.backfill_end) if args.backfill_start or args.backfill_end else None
    step = args.step if step == "export" and args.step else step
    started = time.perf_counter()
    process = process_age_s()  # the interpreter's start and the imports, before this line
    try:
        settings = load_settings()
        failpoints.arm(settings.failpoints)
        runtime = load_runtime(settings)
        flow = runtime.flow(args.flow)
        session = partial(open_session, runtime, f"pipezone-{flow.name}-{step}")  # opened when the step needs it
        ctx = StepContext(runtime, session, flow, args.run_id, args.full_refresh, backfill)
        ctx.phases["runtime"] = time.perf_counter() - started  # settings, profile, connections, the flow's spec
        if process is not None:
            ctx.phases["process"] = process
        with failpoints.in_step(failpoint_step(step)):
            result = run_step(ctx, step)
    except Exception as err:  # noqa: BLE001 - one line, never a traceback
        message = str(err) if isinstance(err, StepFailed) else f"flow {args.flow}, step {step}: {summarize_error(err)}"
        print(f"pipezone: error: {message}", file=sys.stderr, flush=True)
        return 1
    print(summary_line(args.flow, step, args.run_id, result, time.perf_counter() - started), flush=True)
    return 0
