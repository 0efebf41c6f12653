"""The operator behind every PipeZone task: one step of one flow as its own `spark-submit`.

Everything about *how* to run (Spark master, memory, jars, lake, state store, secrets) comes from the
runtime at execution time (settings from the environment, the profile from `PIPEZONE_PROFILE`), never at
parse time, so a DAG parses without touching configuration services and the same DAG runs embedded or
on the cluster. The command is `flow_runner.submit_command` (the one `pipezone run` uses). With a
profile's `spark.connect_url` there is no command: the task's own process is the client of the Spark
Connect server (no JVM, no second Python per task). The run id is Airflow's run id, so a retry re-runs
the step with the same id, which the step makes a no-op once it succeeded. The job's output streams into
the task log; a failure fails the task with the job's one-line error. Not the Spark provider's
SparkSubmitOperator: it needs a `spark_default` connection (a DB read) and silently falls back to master
`yarn` without one.

The engine (runs/, steps/, the state store, SQLAlchemy) is imported inside the methods that run a task,
not at module level: the dag-processor imports this module for every DAG file it parses, and parsing
stays as light as the DAG factory alone (bench/dag_parse.py).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from pipezone.core.airflow.links import SPARK_UI, DataDocsLink, LakeLocationLink, SparkUiLink

if TYPE_CHECKING:
    from pipezone.core.spec.flow import FlowSpec
    from pipezone.core.steps.runtime import Runtime

ERROR_PREFIX = "pipezone: error: "
SPARK_UI_LINE = re.compile(r"(?:Spark web UI|SparkUI).*?(https?://\S+)")
KILL_GRACE_S = 15


class SparkStepOperator(BaseOperator):
    """Run `spark/jobs/<step>.py --flow FLOW --run-id <Airflow run id>` through spark-submit."""

    template_fields: Sequence[str] = ()
    ui_color = "#fdebd0"
    operator_extra_links = (SparkUiLink(), LakeLocationLink(), DataDocsLink())

    def __init__(self, *, flow: str, step: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.flow = flow
        self.step = step
        self.links: dict[str, str] = {}
        self._proc: subprocess.Popen[str] | None = None
        self._in_process = False

    # ------------------------------------------------------------------ execution

    def execute(self, context: Any) -> str:
        from pipezone.core.airflow.links import task_links
        from pipezone.core.runs.flow_runner import submit_command
        from pipezone.core.spark.session import printable_args

        runtime = self._runtime()
        flow = runtime.flow(self.flow)
        run_id = str(context["run_id"])
        full_refresh = wants_full_refresh(context)
        backfill = backfill_window(context)
        self.links = task_links(runtime, flow, self.step)
        self._skip_when_idle(runtime, flow, run_id, full_refresh, backfill)
        try:
            launcher = runtime.settings.require_launcher()
        except ValueError as err:  # a bad PIPEZONE_SPARK_LAUNCHER fails the tasks it affects, with one line
            raise AirflowFailException(f"flow {self.flow}, step {self.step}: {err}") from None
        if launcher == "in-process" or runtime.profile.spark.connect_url:
            return self._run_in_process(runtime, run_id, full_refresh, backfill)
        try:
            command = submit_command(runtime, self.flow, self.step, run_id, full_refresh, backfill)
        except Exception as err:  # noqa: BLE001 - e.g. a secret that does not resolve: one line
            raise AirflowException(f"flow {self.flow}, step {self.step}: {err}") from None
        _mask_secrets(command)
        self.log.info("flow %s, step %s, run id %s", self.flow, self.step, run_id)
        self.log.info("$ %s", printable_args(command))
        return self._run(command, runtime)

    def _skip_when_idle(
        self, runtime: Runtime, flow: FlowSpec, run_id: str, full_refresh: bool, backfill: tuple[str, str] | None
    ) -> None:
        """Skip the task (no process, no Asset event downstream DAGs would wake on) when the step can prove
        it has nothing to do (steps/idle.py); the run history records it as skipped."""
        from pipezone.core.steps.idle import idle_reason, record_idle

        reason = idle_reason(runtime, flow, self.step, full_refresh=full_refresh, backfill=backfill)
        if reason is not None:
            record_idle(runtime, self.flow, self.step, run_id, reason)
            self.log.info("flow %s, step %s: skipped, %s", self.flow, self.step, reason)
            raise AirflowSkipException(f"flow {self.flow}, step {self.step}: {reason}")

    def _runtime(self) -> Runtime:
        from pipezone.core.spec.settings import load_settings
        from pipezone.core.steps.runtime import RunError, load_runtime

        try:
            runtime = load_runtime(load_settings())
            runtime.flow(self.flow)
        except RunError as err:  # the flow became invalid after the DAG was parsed
            raise AirflowFailException(str(err)) from None
        except Exception as err:  # noqa: BLE001 - SpecError (profile), anything else: one line, no retry
            raise AirflowFailException(f"flow {self.flow}, step {self.step}: {err}") from None
        return runtime

    def _run_in_process(
        self, runtime: Runtime, run_id: str, full_refresh: bool, backfill: tuple[str, str] | None
    ) -> str:
        """The step in the task's own process: a Spark Connect client when the profile has `connect_url` (the
        task is already the step's process: a second Python, its imports and its session would only add
        seconds of CPU per task, bench/many_flows.py), or with PIPEZONE_SPARK_LAUNCHER=in-process a local
        session (kept across tasks when they share the process, as under `dag.test()`)."""
        from pipezone.core.runs.flow_runner import run_in_process

        self._in_process = True
        how = "Spark Connect client" if runtime.profile.spark.connect_url else "in-process Spark session"
        self.log.info("flow %s, step %s, run id %s (%s)", self.flow, self.step, run_id, how)
        ok, line = run_in_process(runtime, self.flow, self.step, run_id, full_refresh, backfill)
        self.log.info("%s", line)
        if not ok:
            raise AirflowException(line)
        return line

    def _run(self, command: list[str], runtime: Runtime) -> str:
        from pipezone.core.runs.flow_runner import child_env

        summary, error, seen_ui, tail = "", "", "", []
        self._proc = proc = subprocess.Popen(
            command,
            cwd=runtime.settings.project_root,
            env=child_env(runtime),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            bufsize=1,
            start_new_session=True,  # its own process group: a kill reaches the JVM and the Python workers
        )
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.rstrip("\n")
                self.log.info("%s", line)
                if line.startswith(ERROR_PREFIX):
                    error = line.removeprefix(ERROR_PREFIX)
                elif line.startswith("pipezone "):
                    summary = line
                elif not seen_ui and (match := SPARK_UI_LINE.search(line)):
                    seen_ui = match.group(1)
                if line.strip():
                    tail = [*tail[-2:], line.strip()]
            code = proc.wait()
        finally:
            self._terminate()
        if seen_ui and not self.links.get(SPARK_UI):
            self.links[SPARK_UI] = seen_ui
        if code != 0:
            raise AirflowException(error or f"the step's process exited with {code}: {' | '.join(tail)}")
        return summary or f"pipezone {self.step} {self.flow}: done"

    def on_kill(self) -> None:
        if self._in_process:
            _interrupt_connect_session()
        self._terminate()

    def _terminate(self) -> None:
        """Stop the job's whole process group (SIGTERM, then SIGKILL after a grace period)."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(timeout=wait)
                return
            except ProcessLookupError:
                return
            except subprocess.TimeoutExpired:
                continue


def _interrupt_connect_session() -> None:
    """A killed task's Spark Connect operations stop on the server too, instead of running on for a client
    that is gone (a rerun would repair their commit anyway: this frees the server's cores sooner)."""
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    try:
        session = ConnectSession.getActiveSession()
        if session is not None:
            session.interruptAll()
    except Exception:  # noqa: BLE001, S110 - best effort while the task dies: the server ends them on disconnect
        pass


def wants_full_refresh(context: Any) -> bool:
    """A run triggered with config `{"full_refresh": true}` (or such a param) re-reads everything."""
    conf = getattr(context.get("dag_run"), "conf", None) or {}
    params = context.get("params") or {}
    return bool(conf.get("full_refresh") or params.get("full_refresh"))


def backfill_window(context: Any) -> tuple[str, str] | None:
    """A run triggered with config `{"backfill": {"start": S, "end": E}}` reads the window [S, E) instead
    of the incremental one (as `pipezone backfill`); anything malformed fails the task in one line."""
    conf = getattr(context.get("dag_run"), "conf", None) or {}
    window = conf.get("backfill")
    if window is None:
        return None
    if not isinstance(window, dict) or not window.get("start") or not window.get("end"):
        raise AirflowFailException(f'backfill config {window!r}: expected {{"start": "...", "end": "..."}}')
    return str(window["start"]), str(window["end"])


def _mask_secrets(command: Sequence[str]) -> None:
    """Register the secret values of `--conf key=value` pairs with Airflow's log masker."""
    from airflow.sdk.log import mask_secret

    from pipezone.core.spark.session import is_sensitive

    for previous, arg in zip(command, command[1:], strict=False):
        if previous == "--conf":
            key, _, value = arg.partition("=")
            if value and is_sensitive(key):
                mask_secret(value)
