"""One Airflow DAG per flow (`pipezone_<flow>`), plus a paused placeholder DAG per invalid metadata file.

`build_dags()` is what `dags/pipezone_dags.py` calls. It never raises: a bad flow file becomes a
placeholder DAG (`pipezone_invalid_<file stem>`, paused, unscheduled) whose docs list the file's
problems as `FILE:LINE:COL: key.path: message` and whose one task fails with them; every valid flow
keeps its DAG. (An exception escaping a DAG file would drop every DAG of that file.)

Parse cost: the DAGs come from the YAML files alone. No database, Variable, Connection, secret or
network access; the profile is not even read (the Spark master and the lake are resolved by the
operator when the task runs). Output is deterministic: fixed start date, sorted collections, paths
relative to the project root, no timestamps. When Airflow runs a task it sets the parsing context, and
only that task's DAG is built.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Asset, BaseOperator, CronTriggerTimetable, get_parsing_context
from airflow.sdk.exceptions import AirflowFailException

from pipezone.core.airflow.assets import TableRef, schedule_inputs, step_outputs
from pipezone.core.airflow.docs import flow_doc, invalid_doc, step_text
from pipezone.core.airflow.operator import SparkStepOperator
from pipezone.core.airflow.pool import POOL
from pipezone.core.spec.airflow_names import DAG_PREFIX, INVALID_PREFIX, flow_dag_id, key_problem, placeholder_dag_id
from pipezone.core.spec.catalog import Catalog, load_catalog
from pipezone.core.spec.connection import ConnectionSpec
from pipezone.core.spec.flow import FlowSpec
from pipezone.core.spec.problems import Problem
from pipezone.core.spec.secret_scan import scrub
from pipezone.core.spec.settings import Settings, load_settings

START_DATE = datetime(2024, 1, 1, tzinfo=UTC)
TAG = "pipezone"
INVALID_TAG = "pipezone-invalid"
BACKOFF = 2.0  # retry delays: d, 2d, 4d, ... capped at MAX_RETRY_DELAY (or retry_delay if longer)
MAX_RETRY_DELAY = timedelta(hours=1)
UTC_ZONE = "UTC"


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class FlowPlan:
    """A DAG to build for a valid flow; `notes` are problems it inherits from another broken file."""

    dag_id: str
    flow: FlowSpec
    file: str
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class InvalidPlan:
    """A placeholder DAG for a file with problems of its own."""

    dag_id: str
    file: str
    kind: str
    problems: tuple[str, ...]


@dataclass
class DagPlan:
    flows: list[FlowPlan] = field(default_factory=list)
    invalid: list[InvalidPlan] = field(default_factory=list)

    @property
    def dag_ids(self) -> list[str]:
        return sorted([p.dag_id for p in self.flows] + [p.dag_id for p in self.invalid])


def project_file(file: str, root: Path) -> str:
    """A problem's file relative to the project root: the same text whatever the working directory."""
    path = Path(file)
    path = Path(os.path.normpath(path if path.is_absolute() else _cwd() / path))  # no symlink lookups per file
    try:
        return path.relative_to(_resolved(root)).as_posix()
    except ValueError:
        return path.as_posix()


@functools.cache
def _resolved(path: Path) -> Path:
    return path.resolve()


def _cwd() -> Path:
    return _resolved(Path.cwd())


def _invalid_dag_id(file: str, kind: str, taken: set[str]) -> str:
    base = placeholder_dag_id(Path(file).stem, kind)
    dag_id, n = base, 1
    while dag_id in taken:
        n += 1
        dag_id = placeholder_dag_id(f"{Path(file).stem}_{n}", kind)
    taken.add(dag_id)
    return dag_id


def plan_dags(catalog: Catalog, root: Path) -> DagPlan:
    """Which DAGs to build: one per usable flow, one placeholder per file with problems of its own."""
    by_file = catalog.problems_by_file
    valid_files = {entry.doc.file for entry in catalog.flows.values()}
    plan = DagPlan()
    own: dict[str, list[Problem]] = {f: list(ps) for f, ps in by_file.items() if f not in valid_files}
    for name in sorted(catalog.flows):
        entry = catalog.flows[name]
        mine = by_file.get(entry.doc.file, [])
        if catalog.own_problems(name):
            own[entry.doc.file] = mine
            continue
        inherited = mine
        file = project_file(entry.doc.file, root)
        notes = tuple(str(replace(p, file=file)) for p in inherited)
        plan.flows.append(FlowPlan(flow_dag_id(name), entry.spec, file, notes))
    taken = {p.dag_id for p in plan.flows}
    for shown in sorted(own, key=lambda f: project_file(f, root)):
        file = project_file(shown, root)
        kind = catalog.file_kinds.get(shown, "flow")
        lines = tuple(str(replace(p, file=file)) for p in own[shown])
        plan.invalid.append(InvalidPlan(_invalid_dag_id(file, kind, taken), file, kind, lines))
    return plan


# --------------------------------------------------------------------------- DAG objects


class InvalidMetadataOperator(BaseOperator):
    """The single task of a placeholder DAG: fails, without retrying, with the file's problems."""

    template_fields: Sequence[str] = ()
    ui_color = "#f5b7b1"

    def __init__(self, *, problems: Sequence[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.problems = list(problems)

    def execute(self, context: Any) -> None:
        for line in self.problems:
            self.log.error("%s", line)
        raise AirflowFailException("invalid metadata:\n" + "\n".join(self.problems))


class _Assets:
    """One Asset object per table, shared by the producing task and the consuming DAGs."""

    def __init__(self) -> None:
        self._made: dict[TableRef, Asset] = {}

    def __call__(self, ref: TableRef) -> Asset:
        asset = self._made.get(ref)
        if asset is None:
            asset = self._made[ref] = Asset(name=ref.asset_name, uri=ref.uri, group=f"pipezone-{ref.layer}")
        return asset


def _schedule(flow: FlowSpec, flows: dict[str, FlowSpec], assets: _Assets) -> Any:
    inputs = schedule_inputs(flow, flows)
    if inputs:
        return [assets(ref) for ref in inputs]
    if flow.schedule is None:
        return None
    if flow.schedule.preset == "@once":
        return "@once"
    # What Airflow builds from a cron string by default, made explicit: no config lookup per DAG, and
    # the same timetable whatever `[scheduler] create_cron_data_intervals` says.
    return CronTriggerTimetable(flow.schedule.cron or flow.schedule.preset, timezone=UTC_ZONE)


def _description(flow: FlowSpec) -> str:
    first = flow.description.strip().splitlines()[0] if flow.description.strip() else ""
    return first[:200] or f"PipeZone flow {flow.name}"


def flow_dag(
    plan: FlowPlan,
    flows: dict[str, FlowSpec],
    connection: ConnectionSpec | None,
    assets: _Assets | None = None,
) -> DAG:
    """The DAG of one flow: a spark-submit task per step, chained in step order."""
    flow = plan.flow
    assets = assets or _Assets()
    dag = DAG(
        dag_id=plan.dag_id,
        description=_description(flow),
        schedule=_schedule(flow, flows, assets),
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,  # Delta: one writer per table
        tags={TAG, *flow.tags},
        doc_md=flow_doc(flow, file=plan.file, flows=flows, connection=connection, notes=plan.notes),
    )
    task_args = {
        "owner": flow.owner,
        "retries": flow.retries,
        "retry_delay": flow.retry_delay,
        "retry_exponential_backoff": BACKOFF,
        "max_retry_delay": max(flow.retry_delay, MAX_RETRY_DELAY),
        "execution_timeout": flow.timeout,
        # A step skipped as idle (nothing new: steps/idle.py) lets the next one run and decide for itself.
        "trigger_rule": "none_failed",
        "pool": POOL,  # spark.parallel_steps slots across every flow (airflow/pool.py)
    }
    previous: BaseOperator | None = None
    for step in flow.steps():
        task = SparkStepOperator(
            task_id=step,
            flow=flow.name,
            step=step,
            dag=dag,
            outlets=[assets(ref) for ref in step_outputs(flow, step)],
            doc_md=f"`{step}` of flow `{flow.name}`: {step_text(flow, step, connection.type if connection else None)}.",
            **task_args,
        )
        if previous is not None:
            previous >> task
        previous = task
    return dag


def invalid_dag(plan: InvalidPlan) -> DAG:
    """A paused, unscheduled DAG that shows an invalid file's problems in the UI."""
    dag = DAG(
        dag_id=plan.dag_id,
        description=f"INVALID {plan.kind} file {plan.file}: {len(plan.problems)} problem(s)",
        schedule=None,
        start_date=START_DATE,
        catchup=False,
        is_paused_upon_creation=True,
        max_active_runs=1,
        tags={TAG, INVALID_TAG},
        doc_md=invalid_doc(plan.file, plan.kind, plan.problems),
        default_args={"owner": TAG, "retries": 0},
    )
    InvalidMetadataOperator(task_id="report_problems", problems=plan.problems, dag=dag, doc_md=dag.doc_md)
    return dag


def _error_plan(dag_id: str, file: str, err: BaseException) -> InvalidPlan:
    first = str(err).splitlines()[0] if str(err) else ""
    message = str(Problem(file, 1, 1, "(internal)", scrub(f"{type(err).__name__}: {first}")))
    return InvalidPlan(dag_id, file, "flow", (message,))


def _checked(make: Callable[[], DAG]) -> DAG:
    """A DAG Airflow will take: built, and through the checks DagBag runs before bagging it (an error
    there would become an import error of the whole DAG file)."""
    dag = make()
    problems = (key_problem(dag.dag_id), *(key_problem(t, "task id") for t in dag.task_ids))
    problem = next((p for p in problems if p), None)
    if problem:
        raise ValueError(problem)
    dag.validate()
    return dag


# --------------------------------------------------------------------------- entry point


def build_dags(
    settings: Settings | None = None, only: str | None = None, *, use_context: bool = True
) -> dict[str, DAG]:
    """Every PipeZone DAG by id (or only `only`, or only the DAG Airflow is running a task of). Never raises."""
    if use_context and only is None:
        only = get_parsing_context().dag_id
    if only is not None and not only.startswith(DAG_PREFIX):
        return {}  # Airflow is running a task of some other DAG file's DAG
    try:
        settings = settings or load_settings()
        catalog = load_catalog(settings.metadata_dir, file_roots=settings.file_roots)
        plan = plan_dags(catalog, settings.project_root)
    except Exception as err:  # noqa: BLE001 - a file that raises loses all its DAGs: show the error instead
        return {INVALID_PREFIX + "metadata": invalid_dag(_error_plan(INVALID_PREFIX + "metadata", "metadata", err))}
    flows = {name: entry.spec for name, entry in catalog.flows.items()}
    assets = _Assets()
    dags: dict[str, DAG] = {}
    for flow_plan in plan.flows:
        if only is not None and flow_plan.dag_id != only:
            continue
        source = flow_plan.flow.source
        connection = catalog.connections.get(source.connection) if source is not None else None
        try:
            spec = connection.spec if connection else None
            dags[flow_plan.dag_id] = _checked(lambda p=flow_plan, c=spec: flow_dag(p, flows, c, assets))
        except Exception as err:  # noqa: BLE001 - one flow's bug must not take the others down
            _add_placeholder(dags, _error_plan(flow_plan.dag_id, flow_plan.file, err))
    for invalid_plan in plan.invalid:
        if only is None or invalid_plan.dag_id == only:
            _add_placeholder(dags, invalid_plan)
    return dags


def _add_placeholder(dags: dict[str, DAG], plan: InvalidPlan) -> None:
    """A placeholder DAG; should even that fail, the file's problems move to a plain text placeholder."""
    try:
        dags[plan.dag_id] = _checked(lambda: invalid_dag(plan))
    except Exception as err:  # noqa: BLE001 - never let one file's placeholder take the others down
        fallback = _error_plan(INVALID_PREFIX + "metadata", "metadata", err)
        dags.setdefault(fallback.dag_id, invalid_dag(fallback))
