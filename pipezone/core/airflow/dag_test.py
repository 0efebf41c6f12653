"""`pipezone run --airflow`: run flows through their Airflow DAGs with `dag.test()`, no scheduler needed.

The DAGs are the ones the scheduler would run (built by the factory from the same metadata), and every
task runs its step through the same SparkStepOperator with Airflow's run id (one spark-submit per step, or
a Spark session shared by the tasks with PIPEZONE_SPARK_LAUNCHER=in-process).
Runs land in Airflow's metadata database (AIRFLOW_HOME), so `make airflow` later shows them in the UI.
Flows run in dependency order; a flow whose upstream failed is not run.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from pipezone.core.airflow.dag_factory import DAG_PREFIX, build_dags
from pipezone.core.runs.flow_runner import RunReport, StepOutcome, blocked_outcome, flow_order
from pipezone.core.steps.runtime import Runtime


def _task_outcomes(runtime: Runtime, flow: str, dag: Any, run: Any) -> list[StepOutcome]:
    """One outcome per task, in task order, with the step's summary line (its XCom) or its error."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = {
            ti.task_id: (str(ti.state), ti.duration or 0.0)
            for ti in session.query(TaskInstance).filter(
                TaskInstance.dag_id == dag.dag_id, TaskInstance.run_id == run.run_id
            )
        }
        xcoms = {
            x.task_id: x.value
            for x in session.query(XComModel).filter(
                XComModel.dag_id == dag.dag_id, XComModel.run_id == run.run_id, XComModel.key == "return_value"
            )
        }
    errors: dict[str, str | None] = {}
    if any(state != "success" for state, _ in tis.values()):
        errors = {r.step: r.error for r in runtime.state.recent_runs(flow, limit=50) if r.run_id == run.run_id}
    outcomes = []
    for task_id in [t.task_id for t in dag.topological_sort()]:
        state, seconds = tis.get(task_id, ("none", 0.0))
        ok = state == "success"
        line = str(xcoms.get(task_id) or "") if ok else (errors.get(task_id) or f"task {state}: see its log")
        outcomes.append(StepOutcome(flow, task_id, ok, float(seconds), line))
    return outcomes


def run_dags(
    runtime: Runtime, flows: Sequence[str], progress: Callable[[str], None] = print
) -> list[tuple[str, RunReport]]:
    """`dag.test()` each flow's DAG in dependency order; returns (dag id, report) per flow."""
    reports: list[tuple[str, RunReport]] = []
    failed: set[str] = set()
    for flow in flow_order(runtime, flows):
        dag_id = DAG_PREFIX + flow
        blocked = runtime.flow(flow).upstream_flows() & failed
        if blocked:
            failed.add(flow)
            report = RunReport("-", [blocked_outcome(flow, blocked)])
            reports.append((dag_id, report))
            progress(f"{dag_id}: not run, upstream {', '.join(sorted(blocked))} failed")
            continue
        dag = build_dags(runtime.settings, only=dag_id, use_context=False)[dag_id]
        progress(f"{dag_id}: dag.test() ...")
        started = time.perf_counter()
        with warnings.catch_warnings():
            # dag.test() serves the task API in-process through starlette's TestClient, which warns that httpx
            # is deprecated for it (httpx2 is a new major Airflow 3.3 does not pin): not the user's concern.
            warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
            run = dag.test()
        report = RunReport(run.run_id, _task_outcomes(runtime, flow, dag, run))
        reports.append((dag_id, report))
        progress(f"{dag_id}: {run.state} in {time.perf_counter() - started:.1f} s (run {run.run_id})")
        if not report.ok or str(run.state) != "success":
            failed.add(flow)
    return reports
