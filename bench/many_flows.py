"""Many small flows through the real Airflow scheduler: N flows on N MariaDB tables of R rows, first loaded,
then C rows changed in every table and all N DAGs triggered at once, as a schedule tick would start them.

The scheduler is `airflow standalone` (scheduler, dag-processor, API server, triggerer; LocalExecutor) that
this module starts with its own AIRFLOW_HOME, PipeZone's dags/ and the bench project, and stops after.
Every task runs in the pool `pipezone_spark` (`pipezone airflow-pool`: the profile's
`spark.parallel_steps`). The same estate runs twice, each with its own change: through the warm Spark
Connect server (each task a client) and with one spark-submit per task. Reported: wall time from the
trigger to the last DAG run's end, and per-flow p50/p95 (a DAG run's start to its end, pool waits
included). The physical reference is the estate's work done by one `pipezone run` of all N flows in one
Spark session (no scheduler, no process per step).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness import CONNECT_PORT, REPO, VENV_BIN, MariaDB, Project

CONNECT = "bench_many_connect"  # the profiles of this section: the harness's, with a MariaDB state store
SUBMIT = "bench_many_submit"
PROFILE = """\
name: {name}
lake: bench_local_lake
state_store: bench_many_state
spark:
  master: local[2]
  driver_memory: 2g
  shuffle_partitions: 4
  parallel_steps: {parallel}
"""
FLOW = """\
name: {name}
source:
  connection: bench_source
  table: {table}
  primary_key: [id]
  incremental:
    cursor: updated_at
layers:
  silver:
    write_mode: merge
quality:
  - check: not_null
    columns: [id]
"""  # no schedule: runs are the bench's triggers only
STATE_DB = "pipezone_bench_many_state"
STATE = """\
name: bench_many_state
type: mariadb
host: {host}
port: {port}
database: pipezone_bench_many_state
user: {user}
password: ${{env:PIPEZONE_BENCH_SOURCE_PASSWORD}}
"""
PORT = os.environ.get("PIPEZONE_BENCH_AIRFLOW_PORT") or "28080"  # not 8080 (a developer's Airflow), not 8793 (logs)
START_WAIT_S = 300  # airflow standalone: migrations, then every DAG parsed
# an estate still running after this is recorded as cut off (flows done by then): spark-submit per task took
# over an hour on 2 cores, so a shorter limit keeps `make bench` within an afternoon and still compares
RUN_WAIT_S = int(os.environ.get("PIPEZONE_BENCH_ESTATE_WAIT_S") or 3600)

# The mean wall time of each task (step) over the estate's DAG runs, from Airflow's own records.
TASKS = """
import json, sys
from airflow.models.taskinstance import TaskInstance
from airflow.utils.session import create_session
spans = {}
with create_session() as session:
    for ti in session.query(TaskInstance).filter(TaskInstance.run_id.like(sys.argv[1] + "__%")):
        if ti.start_date and ti.end_date:
            spans.setdefault(ti.task_id, []).append((ti.end_date - ti.start_date).total_seconds())
print(json.dumps({task: round(sum(s) / len(s), 1) for task, s in sorted(spans.items())}))
"""
# One Python process triggers every DAG run (an `airflow dags trigger` each would start 50 interpreters).
TRIGGER = """
import json, sys
from airflow.api.common.trigger_dag import trigger_dag
from airflow.utils.types import DagRunTriggeredByType
from airflow.models.dag import DagModel
from airflow.utils.session import create_session
dag_ids = sys.argv[2:]
with create_session() as session:
    found = {d.dag_id for d in session.query(DagModel).filter(DagModel.dag_id.in_(dag_ids))}
    if found != set(dag_ids):
        print(json.dumps({"missing": sorted(set(dag_ids) - found)}))
        sys.exit(0)
    session.query(DagModel).filter(DagModel.dag_id.in_(dag_ids)).update({"is_paused": False})
for dag_id in dag_ids:
    trigger_dag(dag_id, run_id=f"{sys.argv[1]}__{dag_id}", conf={}, triggered_by=DagRunTriggeredByType.CLI)
print(json.dumps({"triggered": len(dag_ids)}))
"""
RUNS = """
import json, sys
from airflow.models.dagrun import DagRun
from airflow.utils.session import create_session
with create_session() as session:
    runs = session.query(DagRun).filter(DagRun.run_id.like(sys.argv[1] + "__%")).all()
    print(json.dumps([[r.dag_id, str(r.state), r.start_date and r.start_date.timestamp(),
                       r.end_date and r.end_date.timestamp()] for r in runs]))
"""


def make_tables(source: MariaDB, base: str, count: int) -> list[str]:
    """`count` copies of the generated `base` table (kept between runs when their size matches)."""
    tables = []
    rows = source.execute(f"SELECT COUNT(*) FROM {base}")[0][0]
    for i in range(count):
        table = f"many_{i:03d}"
        if not source.has_table(table) or source.execute(f"SELECT COUNT(*) FROM {table}")[0][0] != rows:
            source.execute(f"DROP TABLE IF EXISTS {table}", f"CREATE TABLE {table} LIKE {base}")
            source.execute(f"INSERT INTO {table} SELECT * FROM {base}")
        tables.append(table)
    return tables


def change_all(source: MariaDB, tables: list[str], rows: int, count: int, round_: int) -> None:
    """`count` rows of each table updated, spread over the table, stamped a minute ago."""
    stride = max(1, rows // count)
    for table in tables:
        source.execute(
            f"UPDATE {table} SET status = 'paid', quantity = quantity + 1, "
            f"updated_at = UTC_TIMESTAMP(6) - INTERVAL 1 MINUTE WHERE id % {stride} = {round_ % stride} LIMIT {count}"
        )


class Airflow:
    """`airflow standalone` on the bench project, with its own home (SQLite metadata database)."""

    def __init__(self, project: Project, profile: str, home: Path) -> None:
        self.project, self.profile, self.home = project, profile, home
        self.env = project.env(profile) | {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__API__PORT": PORT,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{PORT}/execution/",
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        self.process: subprocess.Popen[bytes] | None = None

    def python(self, script: str, *args: str) -> Any:
        import json

        done = subprocess.run(  # noqa: S603 - this interpreter, our own script
            [sys.executable, "-c", script, *args], env=self.env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise SystemExit(f"bench: airflow script failed: {done.stderr.strip().splitlines()[-1:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    @contextmanager
    def running(self) -> Any:
        self.home.mkdir(parents=True, exist_ok=True)
        airflow = str(VENV_BIN / "airflow")
        subprocess.run([airflow, "db", "migrate"], env=self.env, capture_output=True, check=True)  # noqa: S603
        pool = subprocess.run(  # noqa: S603
            [str(VENV_BIN / "pipezone"), "airflow-pool"],
            env=self.env,
            cwd=self.project.root,
            capture_output=True,
            text=True,
        )
        print(f"bench: {pool.stdout.strip() or pool.stderr.strip()}", flush=True)
        with (self.home / "standalone.log").open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - the venv's airflow
                [airflow, "standalone"],
                env=self.env,
                cwd=self.project.root,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            yield self
        finally:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)

    def trigger(self, tag: str, dag_ids: list[str]) -> float:
        """Trigger every DAG once the dag-processor has stored them all; the trigger time."""
        deadline = time.monotonic() + START_WAIT_S
        while True:
            answer = self.python(TRIGGER, tag, *dag_ids)
            if "triggered" in answer:
                return time.time()
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"bench: Airflow never parsed {answer['missing'][:3]} (see {self.home}/standalone.log)"
                )
            time.sleep(5)

    def wait(self, tag: str, count: int) -> tuple[list[list[Any]], bool]:
        """The DAG runs once all ended, or as they stand after RUN_WAIT_S (False: the estate did not finish,
        which is a result too; the rest of the bench still runs)."""
        deadline = time.monotonic() + RUN_WAIT_S
        while True:
            runs = self.python(RUNS, tag)
            if len(runs) == count and all(state in ("success", "failed") for _, state, _, _ in runs):
                return runs, True
            if time.monotonic() > deadline:
                print(f"bench: the estate did not finish in {RUN_WAIT_S} s (see {self.home}/standalone.log)")
                return runs, False
            time.sleep(5)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def cpu_seconds(pid: int | None = None) -> tuple[float, float]:
    """CPU-seconds used so far by the whole machine (busy, all cores) and by process `pid` (0 without one),
    from /proc: where an estate's time goes when the machine is saturated."""
    ticks = os.sysconf("SC_CLK_TCK")
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = (sum(fields) - fields[3] - fields[4]) / ticks  # all but idle and iowait
    own = 0.0
    if pid:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            own = sum(int(v) for v in stat[11:15]) / ticks  # utime, stime and its reaped children's
        except OSError:
            pass
    return busy, own


def server_pid(server: dict[str, Any]) -> int | None:
    """The Connect server's pid, from what `pipezone spark-server start` said ("... (pid N, log ...)")."""
    match = re.search(r"\(pid (\d+)", server.get("server", ""))
    return int(match.group(1)) if match else None


def heap_mb(pid: int | None) -> dict[str, int] | None:
    """The JVM's heap after a full GC (`jcmd GC.run`, then `GC.heap_info`): MB in use and committed, or None
    when jcmd cannot say. What a long-lived Connect server keeps (its DeltaLog cache) after an estate."""
    if not pid or not shutil.which("jcmd"):
        return None
    try:
        subprocess.run(["jcmd", str(pid), "GC.run"], capture_output=True, check=True, timeout=120)  # noqa: S603,S607
        command = ["jcmd", str(pid), "GC.heap_info"]
        info = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60).stdout  # noqa: S603
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"total (\d+)K, used (\d+)K", info)
    return {"committed": int(match.group(1)) // 1024, "used": int(match.group(2)) // 1024} if match else None


def estate(project: Project, profile: str, flows: list[str], tag: str, pid: int | None = None) -> dict[str, Any]:
    """Trigger every flow's DAG through the scheduler; the estate's wall time, per-flow p50/p95, and the CPU
    the machine and the Connect server (`pid`) used meanwhile."""
    with Airflow(project, profile, project.root / ".pipezone" / f"airflow-{tag}").running() as airflow:
        busy, server = cpu_seconds(pid)
        triggered = airflow.trigger(tag, [f"pipezone_{flow}" for flow in flows])
        runs, finished = airflow.wait(tag, len(flows))
        busy_after, server_after = cpu_seconds(pid)
        task_means = airflow.python(TASKS, tag)
    failed = [dag for dag, state, _, _ in runs if state == "failed"]  # a finished estate's runs are success or failed
    per_flow = [end - start for _, _, start, end in runs if start and end]
    if not finished:  # cut off: how far it got is the result; a run still going has not failed
        done = len([state for _, state, _, _ in runs if state == "success"])
        return {
            "launcher": "spark-connect" if profile == CONNECT else "spark-submit",
            "unfinished_after_s": RUN_WAIT_S,
            "flows_done": done,
            "failed": failed,
            "unfinished": [dag for dag, state, _, _ in runs if state not in ("success", "failed")],
            "estate_s": None,
        }
    return {
        "cpu_busy_s": round(busy_after - busy),
        "server_cpu_s": round(server_after - server) if pid else None,
        "launcher": "spark-connect" if profile == CONNECT else "spark-submit",
        "estate_s": round(max(end for _, _, _, end in runs if end) - triggered, 1),
        "flow_p50_s": round(percentile(per_flow, 0.5), 1),
        "flow_p95_s": round(percentile(per_flow, 0.95), 1),
        "flow_mean_s": round(statistics.fmean(per_flow), 1),
        "task_mean_s": task_means,
        "failed": failed,
    }


def setup(source: MariaDB, project: Project, base: str, count: int) -> tuple[list[str], list[str]]:
    """The section's state database (new), profiles and flows; the tables and flow names."""
    source.execute(f"DROP DATABASE IF EXISTS {STATE_DB}", f"CREATE DATABASE {STATE_DB}", database=None)
    meta = project.root / "metadata"
    (meta / "connections" / "bench_many_state.yaml").write_text(
        STATE.format(host=source.host, port=source.port, user=source.user)
    )
    connect = PROFILE.format(name=CONNECT, parallel=4) + f"  connect_url: sc://127.0.0.1:{CONNECT_PORT}\n"
    (meta / "profiles" / f"{CONNECT}.yaml").write_text(connect)
    (meta / "profiles" / f"{SUBMIT}.yaml").write_text(PROFILE.format(name=SUBMIT, parallel=2))
    tables = make_tables(source, base, count)
    flows = []
    for table in tables:
        flows.append(f"bench_{table}")
        (meta / "flows" / f"bench_{table}.yaml").write_text(FLOW.format(name=f"bench_{table}", table=table))
    return tables, flows


def run(source: MariaDB, project: Project, base: str, count: int, changed: int) -> list[dict[str, Any]]:
    """The estate through the Connect server and with spark-submit, against one in-process run of it."""
    rows = source.execute(f"SELECT COUNT(*) FROM {base}")[0][0]
    tables, flows = setup(source, project, base, count)
    results: list[dict[str, Any]] = []
    with project.connect_server() as server:  # the harness's server: same port, same local lake
        project.run(CONNECT, *flows, "--in-process").check("first load of the estate")  # setup: one client
        change_all(source, tables, rows, changed, 1)
        reference = project.run(CONNECT, *flows, "--in-process").check("the estate in one session")
        change_all(source, tables, rows, changed, 2)
        results.append({**server, **estate(project, CONNECT, flows, "connect", server_pid(server))})
        results[-1]["server_heap_mb"] = heap_mb(server_pid(server))
    change_all(source, tables, rows, changed, 3)
    results.append(estate(project, SUBMIT, flows, "submit"))
    common = {"bench": "many_flows", "flows": count, "rows": rows, "changed": changed}
    physical = {"reference": "the same estate in one pipezone run (one session, no scheduler)"}
    physical["reference_s"] = round(reference.seconds, 1)
    return [
        {
            **common,
            **physical,
            **r,
            "vs_reference": round(physical["reference_s"] / r["estate_s"], 2) if r["estate_s"] else None,
        }
        for r in results
    ]


def section(run: dict[str, Any]) -> list[str]:
    """The report's section: the estate's wall time and per-flow percentiles per launcher."""
    rows = [r for r in run["results"] if r["bench"] == "many_flows"]
    if not rows:
        return []
    first = rows[0]
    lines = [
        "## Many small flows through the Airflow scheduler",
        "",
        f"{first['flows']} flows on {first['flows']} MariaDB tables of {first['rows']:,} rows (extract > bronze > "
        f"silver merge > one quality check), loaded once; then {first['changed']:,} rows changed in every table and "
        "all DAGs triggered at once through `airflow standalone` (LocalExecutor, pool `pipezone_spark` sized by "
        "the profile's `spark.parallel_steps`). Estate: from the triggers to the last DAG run's end; per flow: a "
        "DAG run's start to its end, pool waits included. **Physical reference:** the same estate's work in "
        "one `pipezone run --in-process` (one session, no scheduler, no process per step).",
        "",
        "| launcher | pool slots | estate (s) | flow p50 (s) | flow p95 (s) | failed | reference (s) | vs reference "
        "| CPU busy (s) | of which the Spark server |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        slots = 4 if r["launcher"] == "spark-connect" else 2
        if r["estate_s"] is None:
            lines.append(
                f"| {r['launcher']} | {slots} | > {r['unfinished_after_s']} (cut off: {r['flows_done']} of "
                f"{r['flows']} flows done) | - | - | {len(r['failed']) if 'unfinished' in r else '-'} "
                f"| {r['reference_s']:.1f} | - | - | - |"
            )
            continue
        busy = r.get("cpu_busy_s")
        server = r.get("server_cpu_s")
        lines.append(
            f"| {r['launcher']} | {slots} | {r['estate_s']:.1f} | {r['flow_p50_s']:.1f} | {r['flow_p95_s']:.1f} "
            f"| {len(r['failed'])} | {r['reference_s']:.1f} | {r['vs_reference']:.2f}x "
            f"| {busy if busy is not None else '-'} | {server if server is not None else '-'} |"
        )
    for r in rows:
        if r.get("task_mean_s"):
            means = ", ".join(f"{task} {seconds:.1f} s" for task, seconds in r["task_mean_s"].items())
            lines += ["", f"Mean task wall time ({r['launcher']}, from Airflow's task instances): {means}."]
    heaps = [r["server_heap_mb"] for r in rows if r.get("server_heap_mb")]
    if heaps:
        lines += [
            "",
            f"The Spark Connect server's heap after the estate, after a full GC (`jcmd GC.run`, `GC.heap_info`): "
            f"{heaps[0]['used']} MB in use, {heaps[0]['committed']} MB committed.",
        ]
    return [*lines, ""]
