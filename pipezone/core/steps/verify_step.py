"""The `verify` step of a flow's DAG (`verify: daily` in the flow YAML): reconciliation as a task.

It runs after the flow's other steps, at most as often as the flow says (the newest successful verify in
the run history is the clock), and fails the task with verify's one-line summary on any difference, so
Airflow shows a red task and its retry policy applies. `pipezone verify` is the same comparison on demand.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pipezone.core.steps.context import StepContext, StepResult
from pipezone.core.steps.verify import verify_flow


class VerifyFailed(Exception):
    """Silver and the source differ (or could not be compared): the summary line says how."""


def run_verify_step(ctx: StepContext) -> StepResult:
    every = ctx.flow.verify
    if every is None:
        return StepResult(skipped=True, note="the flow sets no verify")
    last = ctx.state.last_success(ctx.flow.name, "verify")
    if every and last is not None and last.finished_at is not None:
        age = datetime.now(UTC) - last.finished_at.astimezone(UTC)
        if age < every:
            return StepResult(skipped=True, note=f"verified {int(age.total_seconds())} s ago (verify: every {every})")
    report = verify_flow(ctx.runtime, ctx.spark, ctx.flow)
    if not report.ok:
        raise VerifyFailed(report.summary())
    return StepResult(rows_read=report.source_rows, note=report.summary(), details=report.state_details())
