"""`pipezone run`: a flow's steps run locally, each as its own spark-submit (as Airflow runs them),
or all in this process's Spark session with --in-process (one JVM start instead of one per step).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from pipezone.core import failpoints
from pipezone.core.quality.change_counts import carriable
from pipezone.core.quality.checked_tables import table_checks
from pipezone.core.quality.validation import import_ahead, import_done
from pipezone.core.spark.errors import summarize_error
from pipezone.core.spark.session import find_spark_submit, jvm_env, submit_args
from pipezone.core.spec.cross_checks import find_cycles
from pipezone.core.steps.context import StepContext
from pipezone.core.steps.idle import idle_reason, record_idle
from pipezone.core.steps.runner import STEPS, StepFailed, open_session, run_step, summary_line
from pipezone.core.steps.runtime import RunError, Runtime

REPO_JOBS = Path(__file__).resolve().parents[3] / "spark" / "jobs"


@dataclass
class StepOutcome:
    flow: str
    step: str
    ok: bool
    seconds: float
    line: str


@dataclass
class RunReport:
    run_id: str
    outcomes: list[StepOutcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outcomes)


def blocked_outcome(flow: str, blocked: set[str]) -> StepOutcome:
    """A flow left unrun because an upstream flow failed."""
    return StepOutcome(flow, "-", False, 0.0, f"not run: upstream {', '.join(sorted(blocked))} failed")


def new_run_id() -> str:
    """Sortable and unique: 20261123T104512Z-1a2b3c4d."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def jobs_dir(runtime: Runtime) -> Path:
    """spark/jobs of the project (falls back to the one beside this package)."""
    local = runtime.settings.project_root / "spark" / "jobs"
    return local if local.is_dir() else REPO_JOBS


def flow_order(runtime: Runtime, names: Sequence[str]) -> list[str]:
    """`names` in dependency order (upstream flows first)."""
    graph = {n: {d for d in runtime.flow(n).upstream_flows() if d in names} for n in names}
    if find_cycles(graph):
        raise RunError(f"dependency cycle among {', '.join(names)}")
    ordered: list[str] = []
    while len(ordered) < len(names):
        ready = sorted(n for n in names if n not in ordered and graph[n] <= set(ordered))
        ordered += ready
    return ordered


def select_steps(runtime: Runtime, flow: str, wanted: Sequence[str] | None) -> list[str]:
    steps = runtime.flow(flow).steps()
    if not wanted:
        return steps
    unknown = [s for s in wanted if s not in STEPS and s not in steps]
    if unknown:
        raise RunError(f"unknown step {', '.join(unknown)} (steps: {', '.join([*STEPS, *steps])})")
    # `export` names every export_<name> step of the flow
    return [s for s in steps if s in wanted or (s.startswith("export_") and "export" in wanted)]


Backfill = tuple[str, str]  # [start, end) cursor values as the user wrote them


def submit_command(
    runtime: Runtime, flow: str, step: str, run_id: str, full_refresh: bool, backfill: Backfill | None = None
) -> list[str]:
    settings = runtime.spark_settings(f"pipezone-{flow}-{step}")
    export = step.startswith("export_")  # one job runs every export step: spark/jobs/export.py --step
    job = str(jobs_dir(runtime) / f"{'export' if export else step}.py")
    # A Spark Connect profile's job is a plain Python client of the server: no spark-submit, no JVM.
    args = [sys.executable, job] if settings.connect_url else [str(find_spark_submit()), *submit_args(settings), job]
    args += ["--flow", flow, "--run-id", run_id] + (["--step", step] if export else [])
    if backfill is not None:
        args += ["--backfill-start", backfill[0], "--backfill-end", backfill[1]]
    return args + (["--full-refresh"] if full_refresh else [])


SYSTEM_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
JVM_DIR = Path("/usr/lib/jvm")


def child_env(runtime: Runtime) -> dict[str, str]:
    """The environment of a spark-submit child: the parent's, completed so Spark can start anywhere.

    Decisions, in order:
    - base: the parent's environment as the config layer captured it (`Settings.environ`; `load_settings()`
      takes the whole of `os.environ`), so nothing here reads the environment itself;
    - PATH: the parent's, with this interpreter's bin dir (the venv's: spark-submit, python) put first and
      the standard system dirs appended when missing: an empty or minimal environment (some Airflow
      executors) still finds `bash`, `java` and the venv's scripts;
    - JAVA_HOME: the parent's if set, else found (see `find_java_home`); its bin/ is appended to PATH when
      no `java` is on PATH; left unset when no JDK is found (spark-submit then reports it);
    - PYSPARK_PYTHON: the parent's if set (executors may use another interpreter), else this one;
      PYSPARK_DRIVER_PYTHON: always this interpreter (the driver imports pipezone);
    - SPARK_LOCAL_IP: the parent's if set, else 127.0.0.1 for a local master (`jvm_env`: the driver binds the
      loopback address instead of warning that the hostname resolves to it);
    - PIPEZONE_HOME / PIPEZONE_METADATA / PIPEZONE_PROFILE from the runtime, TZ=UTC: always.
    """
    env = dict(runtime.settings.environ)
    env["PATH"] = child_path(env.get("PATH", ""))
    java_home = env.get("JAVA_HOME") or find_java_home(env["PATH"])
    if java_home:
        env["JAVA_HOME"] = java_home
        if shutil.which("java", path=env["PATH"]) is None:
            env["PATH"] += os.pathsep + str(Path(java_home) / "bin")
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    for key, value in jvm_env(runtime.profile.spark.master).items():
        env.setdefault(key, value)
    env.update(
        {
            "PIPEZONE_HOME": str(runtime.settings.project_root),
            "PIPEZONE_METADATA": str(runtime.settings.metadata_dir),
            "PIPEZONE_PROFILE": runtime.profile.name,
            "PYSPARK_DRIVER_PYTHON": sys.executable,
            "TZ": "UTC",
        }
    )
    return env


def child_path(path: str) -> str:
    """`path` with this interpreter's bin dir first and the standard system dirs last, each only if missing."""
    dirs = [d for d in path.split(os.pathsep) if d]
    venv_bin = os.path.dirname(os.path.abspath(sys.executable))  # not resolved: a venv's python is a symlink
    head = [] if venv_bin in dirs else [venv_bin]
    return os.pathsep.join([*head, *dirs, *(d for d in SYSTEM_PATH if d not in dirs)])


def find_java_home(path: str) -> str | None:
    """A JDK for a parent without JAVA_HOME: `java` on `path` resolved to <home>/bin/java, else
    /usr/lib/jvm/default-java, else the first (by name) /usr/lib/jvm/* holding bin/java."""
    java = shutil.which("java", path=path)
    if java:
        real = Path(os.path.realpath(java))
        if real.parent.name == "bin":
            return str(real.parent.parent)
    candidates = [JVM_DIR / "default-java", *sorted(JVM_DIR.glob("*"))] if JVM_DIR.is_dir() else []
    return next((str(home) for home in candidates if (home / "bin" / "java").is_file()), None)


def _submit(
    runtime: Runtime, flow: str, step: str, run_id: str, full_refresh: bool, backfill: Backfill | None = None
) -> tuple[bool, str]:
    cmd = submit_command(runtime, flow, step, run_id, full_refresh, backfill)
    proc = subprocess.run(
        cmd, cwd=runtime.settings.project_root, env=child_env(runtime), capture_output=True, text=True, check=False
    )
    lines = [ln for ln in (proc.stdout + "\n" + proc.stderr).splitlines() if ln.startswith("pipezone")]
    if proc.returncode == 0:
        return True, lines[-1] if lines else "done"
    errors = [ln for ln in lines if ln.startswith("pipezone: error:")]
    if errors:
        return False, errors[-1].removeprefix("pipezone: error: ")
    tail = [ln for ln in proc.stderr.splitlines() if ln.strip()][-3:]
    return False, f"spark-submit exited with {proc.returncode}: {' | '.join(tail)}"


def run_in_process(
    runtime: Runtime, flow: str, step: str, run_id: str, full_refresh: bool, backfill: Backfill | None = None
) -> tuple[bool, str]:
    """The step in this process's Spark session (created once, reused by later steps; with a Connect
    profile, this process is the server's client): no JVM start per step. Any failure, the session's
    included (a server that does not answer), is the one line a step's own process would print."""
    started = time.perf_counter()
    failpoints.arm(runtime.settings.failpoints)
    try:
        # opened when the step first needs it; ~0 s once this process holds a session
        session = partial(open_session, runtime, "pipezone")
        ctx = StepContext(runtime, session, runtime.flow(flow), run_id, full_refresh, backfill)
        with failpoints.in_step(step):
            result = run_step(ctx, step)
    except Exception as err:  # noqa: BLE001 - one line, never a traceback
        return False, str(err) if isinstance(err, StepFailed) else f"flow {flow}, step {step}: {summarize_error(err)}"
    return True, summary_line(flow, step, run_id, result, time.perf_counter() - started)


def run_flows(
    runtime: Runtime,
    flows: Sequence[str],
    *,
    steps: Sequence[str] | None = None,
    full_refresh: bool = False,
    in_process: bool = False,
    run_id: str | None = None,
    backfill: Backfill | None = None,
    progress: Callable[[str], None] = print,
) -> RunReport:
    """Run each flow's steps in order; stop a flow at its first failed step, skip flows depending on it.

    With `backfill`, extract reads the stateless window [start, end) instead of the incremental one."""
    report = RunReport(run_id or new_run_id())
    failed: set[str] = set()
    execute = run_in_process if in_process else _submit
    for flow in flow_order(runtime, flows):
        blocked = runtime.flow(flow).upstream_flows() & failed
        if blocked:
            failed.add(flow)
            report.outcomes.append(blocked_outcome(flow, blocked))
            progress(f"{flow}: not run, upstream {', '.join(sorted(blocked))} failed")
            continue
        chosen = select_steps(runtime, flow, steps)
        for step in chosen:
            progress(f"{flow}: {step} ...")
            started = time.perf_counter()
            idle = idle_reason(runtime, runtime.flow(flow), step, full_refresh=full_refresh, backfill=backfill)
            if idle is not None:  # provably nothing to do: no process, no session, no lease
                record_idle(runtime, flow, step, report.run_id, idle)
                ok, line = True, f"skipped ({idle})"
            else:
                if in_process and step != "quality" and "quality" in chosen and _validates(runtime, flow):
                    import_ahead()  # this process validates later: GX's import overlaps this step's Spark work
                ok, line = execute(runtime, flow, step, report.run_id, full_refresh, backfill)
            seconds = time.perf_counter() - started
            report.outcomes.append(StepOutcome(flow, step, ok, seconds, line))
            progress(f"{flow}: {step} {'ok' if ok else 'FAILED'} ({seconds:.1f} s) {line}")
            if not ok:
                failed.add(flow)
                break
    import_done()
    return report


def _validates(runtime: Runtime, flow: str) -> bool:
    """Whether the flow's quality step will likely validate with GX: it has table checks, and either one
    of them cannot be counted on the changes or no earlier run left counts to carry (steps/quality.py)."""
    checks = table_checks(runtime.flow(flow))
    if not checks:
        return False
    last = runtime.state.last_success(flow, "quality")
    return not all(carriable(c) for _, c in checks) or last is None or not last.details.get("tallies")
