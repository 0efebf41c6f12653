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
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Asset, BaseOperator, CronTriggerTimetable, get_parsing_context
from airflow.sdk.exceptions import AirflowFailException

from pipezone.core.catalog import Catalog, load_catalog
from pipezone.core.connection_spec import ConnectionSpec
from pipezone.core.dag_docs import STEP_TEXT, flow_doc, invalid_doc
from pipezone.core.flow_assets import TableRef, schedule_inputs, step_outputs
from pipezone.core.flow_spec import FlowSpec
from pipezone.core.problems import Problem
from pipezone.core.settings import Settings, load_settings
from pipezone.core.spark_step_operator import SparkStepOperator

DAG_PREFIX = "pipezone_"
INVALID_PREFIX = "pipezone_invalid_"
START_DATE = datetime(2024, 1, 1, tzinfo=UTC)
TAG = "pipezone"
INVALID_TAG = "pipezone-invalid"
BACKOFF = 2.0  # retry delays: d, 2d, 4d, ... capped at MAX_RETRY_DELAY (or retry_delay if longer)
MAX_RETRY_DELAY = timedelta(hours=1)
UTC_ZONE = "UTC"
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9_.-]")
_AFTER = re.compile(r"schedule\.after\[(\d+)\]")
_GOLD_SQL = re.compile(r"layers\.gold\[\d+\]\.sql")
_UNKNOWN_TABLE = re.compile(r"unknown table (silver|gold)\.([a-z][a-z0-9_]*)")


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


def _file_kind(file: str) -> str:
    parts = Path(file).parts
    for folder, kind in (("connections", "connection"), ("profiles", "profile"), ("flows", "flow")):
        if folder in parts[:-1]:
            return kind
    return "flow"


def _invalid_dag_id(file: str, kind: str, taken: set[str]) -> str:
    stem = _UNSAFE_ID.sub("_", Path(file).stem)
    base = INVALID_PREFIX + ("" if kind == "flow" else f"{kind}_") + stem
    dag_id, n = base, 1
    while dag_id in taken:
        n += 1
        dag_id = f"{base}_{n}"
    taken.add(dag_id)
    return dag_id


def _inherited(problem: Problem, flow: FlowSpec, catalog: Catalog, broken_flows: set[str]) -> bool:
    """Whether a flow's problem only says that *another* file it references is invalid.

    Such a flow keeps its DAG (its shape does not depend on the broken file): breaking retail_orders.yaml
    must not remove retail_daily_revenue's DAG. The broken file gets its own placeholder.
    """
    if problem.path == "source.connection":
        return flow.source is not None and flow.source.connection in catalog.broken_connections
    if (match := _AFTER.fullmatch(problem.path)) and flow.schedule and flow.schedule.after:
        index = int(match.group(1))
        return index < len(flow.schedule.after) and flow.schedule.after[index] in broken_flows
    if _GOLD_SQL.fullmatch(problem.path) and (match := _UNKNOWN_TABLE.search(problem.message)):
        layer, name = match.groups()
        return name in broken_flows if layer == "silver" else bool(broken_flows)
    return False


def plan_dags(catalog: Catalog, root: Path) -> DagPlan:
    """Which DAGs to build: one per usable flow, one placeholder per file with problems of its own."""
    by_file: dict[str, list[Problem]] = {}
    for problem in catalog.problems:
        by_file.setdefault(problem.file, []).append(problem)
    valid_files = {entry.doc.file for entry in catalog.flows.values()}
    broken_flows = {Path(f).stem for f in catalog.invalid_files if _file_kind(project_file(f, root)) == "flow"} - set(
        catalog.flows
    )
    plan = DagPlan()
    own: dict[str, list[Problem]] = {f: list(ps) for f, ps in by_file.items() if f not in valid_files}
    for name in sorted(catalog.flows):
        entry = catalog.flows[name]
        mine = by_file.get(entry.doc.file, [])
        inherited = [p for p in mine if _inherited(p, entry.spec, catalog, broken_flows)]
        if len(inherited) < len(mine):
            own[entry.doc.file] = mine
            continue
        file = project_file(entry.doc.file, root)
        notes = tuple(str(replace(p, file=file)) for p in inherited)
        plan.flows.append(FlowPlan(DAG_PREFIX + name, entry.spec, file, notes))
    taken = {p.dag_id for p in plan.flows}
    for shown in sorted(own, key=lambda f: project_file(f, root)):
        file = project_file(shown, root)
        kind = _file_kind(file)
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
    }
    previous: BaseOperator | None = None
    for step in flow.steps():
        task = SparkStepOperator(
            task_id=step,
            flow=flow.name,
            step=step,
            dag=dag,
            outlets=[assets(ref) for ref in step_outputs(flow, step)],
            doc_md=f"`{step}` of flow `{flow.name}`: {STEP_TEXT[step]}.",
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
    message = f"{file}:1:1: (internal): {type(err).__name__}: {err}".splitlines()[0]
    return InvalidPlan(dag_id, file, "flow", (message,))


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
        catalog = load_catalog(settings.metadata_dir)
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
            dags[flow_plan.dag_id] = flow_dag(flow_plan, flows, connection.spec if connection else None, assets)
        except Exception as err:  # noqa: BLE001 - one flow's bug must not take the others down
            fallback = _error_plan(flow_plan.dag_id, flow_plan.file, err)
            dags[flow_plan.dag_id] = invalid_dag(fallback)
    for invalid_plan in plan.invalid:
        if only is None or invalid_plan.dag_id == only:
            dags[invalid_plan.dag_id] = invalid_dag(invalid_plan)
    return dags
