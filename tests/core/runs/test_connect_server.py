"""Steps as Spark Connect clients: a real server started by `pipezone spark-server start` from the profile,
every flow of the demo run through it (the full load by one client for the whole run; then an incremental
run of MERGEs and SCD2 with each step its own Python process, as Airflow runs them), and the lake compared
with the source."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipezone.core.cli.main import main
from pipezone.core.cli.tables import layer_rows
from pipezone.core.demo import shop as demo_source
from pipezone.core.runs import connect_server as spark_connect_server
from pipezone.core.runs.flow_runner import child_env, run_flows, submit_command
from pipezone.core.spark.session import ConnectUnavailable, connect_session
from pipezone.core.steps.runner import job_main

SAME_SESSION = """
from pipezone.core.spark.session import connect_session
held = connect_session("{url}")
assert connect_session("{url}") is held
held.stop()
assert connect_session("{url}") is not held
print("one session")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def use_connect(project: Any, port: int) -> None:
    profile = project.root / "metadata" / "profiles" / "default.yaml"
    spec = yaml.safe_load(profile.read_text())
    spec["spark"]["connect_url"] = f"sc://127.0.0.1:{port}"
    profile.write_text(yaml.safe_dump(spec))
    project.reload()


def test_connect_session_names_the_remedy_when_nothing_listens() -> None:
    started = time.monotonic()
    with pytest.raises(
        ConnectUnavailable, match=r"sc://127\.0\.0\.1:\d+ does not answer .*pipezone spark-server start"
    ):
        connect_session(f"sc://127.0.0.1:{free_port()}")
    assert time.monotonic() - started < 10  # no minutes of client retries


def test_connect_session_fails_fast_on_a_port_that_is_not_a_spark_connect_server() -> None:
    """A program that accepts TCP but never speaks gRPC (a port mix-up): the client would retry for
    minutes; the handshake probe gives up within its 10 s."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen(8)  # accepts connections (the kernel's backlog) and never answers
        port = other.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(ConnectUnavailable, match=rf":{port} does not answer as a Spark Connect server .*status"):
            connect_session(f"sc://127.0.0.1:{port}")
        assert time.monotonic() - started < 20


def test_a_step_against_a_stopped_server_fails_with_one_line(
    project: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_connect(project, free_port())
    monkeypatch.chdir(project.root)
    for name in ("PIPEZONE_HOME", "PIPEZONE_METADATA", "PIPEZONE_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    assert job_main("extract", ["--flow", "retail_products", "--run-id", "r1"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pipezone spark-server start" in err, err
    assert main(["spark-server", "status"]) == 1
    assert "not running" in capsys.readouterr().out


def test_profile_without_a_server_url_is_refused(project: Any) -> None:
    with pytest.raises(spark_connect_server.RunError, match="has no spark.connect_url"):
        spark_connect_server.start(project.runtime)


def test_flows_run_through_a_spark_connect_server(project: Any, same_rows: Any, tmp_path: Path) -> None:
    use_connect(project, free_port())
    command = submit_command(project.runtime, "retail_products", "silver", "x", False)
    assert command[0] == sys.executable and "spark-submit" not in " ".join(command)  # a client: no JVM
    flows = sorted(project.runtime.catalog.flows)
    sources = [f for f in flows if project.runtime.flow(f).source is not None]
    try:
        assert "running at" in spark_connect_server.start(project.runtime)
        assert "already running" in spark_connect_server.start(project.runtime)
        ok, line = spark_connect_server.status(project.runtime)
        assert ok, line

        # Full load with one client for the whole run (`pipezone run --in-process`; its own process: this one
        # holds a local session, and a process has one kind): its steps share one session, GX's import runs
        # beside them.
        url = project.runtime.profile.spark.connect_url
        done = subprocess.run([sys.executable, "-c", SAME_SESSION.format(url=url)], capture_output=True, text=True)
        assert done.returncode == 0 and done.stdout.strip() == "one session", done.stderr[-2000:]
        cli = str(Path(sys.executable).parent / "pipezone")
        env = child_env(project.runtime)
        full = subprocess.run(
            [cli, "run", "--in-process", "--all"], env=env, cwd=project.root, text=True, capture_output=True
        )
        assert full.returncode == 0 and "retail_customers: quality ok" in full.stdout, full.stdout + full.stderr
        # Incremental: every step of every flow is its own Python process, a client of the server, as Airflow
        # runs them; silver MERGEs (and SCD2 where a flow asks for it) over Connect.
        demo_source.apply_change_batch(project.db, batch=1)
        incremental = run_flows(project.runtime, flows, in_process=False, progress=lambda _: None)
        assert incremental.ok, [o.line for o in incremental.outcomes if not o.ok]
        merged = [o for o in incremental.outcomes if o.step == "silver"]
        assert merged and all("rows out 0," not in o.line for o in merged if o.flow in sources)
        for flow in (f for f in sources if f != "retail_reviews"):  # reviews: row checks hold some back
            same_rows(project.silver_rows(flow), project.expected_silver(flow), f"silver {flow}")
        # Row checks over Connect (GX on a Connect DataFrame, the quarantine write): held back + silver = source.
        (reviews,) = [row for row in layer_rows(project.runtime, project.spark) if row[0] == "retail_reviews"]
        assert reviews[-1] == "yes*" and int(reviews[6]) > 0, reviews
        same_rows(project.gold_rows(), project.expected_gold(), "gold", key=lambda row: (row[0], row[1]))
    finally:
        stopped = spark_connect_server.stop(project.runtime)
    assert stopped.startswith("stopped")
    assert spark_connect_server.status(project.runtime)[0] is False
