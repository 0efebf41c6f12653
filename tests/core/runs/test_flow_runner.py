"""run_flows: the in-process run of every demo flow, a failing upstream, and one real spark-submit run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipezone.core.runs import flow_runner
from pipezone.core.runs.flow_runner import child_env, find_java_home, run_flows, submit_command
from pipezone.core.spec.settings import load_settings
from pipezone.core.steps.runtime import Runtime, load_runtime

pytestmark = pytest.mark.spark

SUMMARY = r"pipezone (?P<step>\w+) (?P<flow>\w+) run=(?P<run>\S+): rows in (?P<rows_in>\d+), rows out (?P<rows_out>\d+), \d+ bytes( \(.*\))? in [\d.]+ s"


def parse(line: str) -> re.Match[str]:
    match = re.fullmatch(SUMMARY, line)
    assert match, f"not a summary line: {line!r}"
    return match


def test_in_process_run_reports_every_step_in_dependency_order(demo: Any) -> None:
    report, runtime = demo.full.report, demo.project.runtime
    assert report.ok and report.run_id == demo.full.run_id
    flows = list(dict.fromkeys(o.flow for o in report.outcomes))
    assert sorted(flows) == sorted(demo.full.logs)  # every flow the scenario ran, each reported
    assert flows[-1] == "retail_daily_revenue"  # after the flows it reads
    for flow in flows:
        steps = [o.step for o in report.outcomes if o.flow == flow]
        assert steps == runtime.flow(flow).steps()
    for outcome in report.outcomes:
        match = parse(outcome.line)
        assert (match["step"], match["flow"], match["run"]) == (outcome.step, outcome.flow, report.run_id)


def test_summary_lines_show_the_rows_in_and_out(demo: Any) -> None:
    for phase, expected in ((demo.full, demo.full.source_counts), (demo.incremental, None)):
        for outcome in phase.report.outcomes:
            if outcome.step != "extract":
                continue
            rows = expected[outcome.flow] if expected else len(demo.window_keys[outcome.flow])
            match = parse(outcome.line)
            assert (int(match["rows_in"]), int(match["rows_out"])) == (rows, rows), outcome.line


def test_every_step_is_logged_once_as_a_success(demo: Any) -> None:
    for phase in (demo.full, demo.incremental):
        for outcome in phase.report.outcomes:
            record = phase.logs[outcome.flow][outcome.step]
            assert (record.status, record.attempt, record.error) == ("success", 1, None)
            assert record.finished_at is not None and record.duration_s is not None
        logged = {(f, s) for f, steps in phase.logs.items() for s in steps}
        assert logged == {(o.flow, o.step) for o in phase.report.outcomes}


def test_a_failed_flow_stops_at_its_failed_step_and_blocks_the_flows_after_it(project: Any) -> None:
    os.replace(project.db, project.db.with_name("retail.db.moved"))
    project.db.mkdir()
    report = project.run(["retail_daily_revenue", "retail_products"], "t-blocked")
    assert not report.ok
    got = [(o.flow, o.step, o.ok) for o in report.outcomes]
    assert got == [("retail_products", "extract", False), ("retail_daily_revenue", "-", False)]
    assert report.outcomes[0].line.startswith("flow retail_products, step extract (connection retail_demo): ")
    assert report.outcomes[1].line == "not run: upstream retail_products failed"


def test_one_flow_end_to_end_through_spark_submit(project: Any, same_rows: Any) -> None:
    """Each step is its own spark-submit process (as Airflow runs them); slow, so one small flow only.

    The scratch profile adds one JVM flag for the child processes: C1-only JIT, which nearly halves the time
    of a short-lived Spark job on a small machine and changes nothing else (the profile's conf reaching
    spark-submit is part of what this test covers).
    """
    profile = project.root / "metadata" / "profiles" / "default.yaml"
    spec = yaml.safe_load(profile.read_text())
    spec["spark"].setdefault("conf", {})["spark.driver.extraJavaOptions"] = "-XX:TieredStopAtLevel=1"
    profile.write_text(yaml.safe_dump(spec))
    project.reload()
    assert "-XX:TieredStopAtLevel=1" in " ".join(
        submit_command(project.runtime, "retail_products", "silver", "x", False)
    )

    progress: list[str] = []
    report = run_flows(project.runtime, ["retail_products"], in_process=False, progress=progress.append)
    assert report.ok, [o.line for o in report.outcomes]
    assert [o.step for o in report.outcomes] == ["extract", "bronze", "silver"]
    source_rows = project.source_count("retail_products")
    for outcome in report.outcomes:
        match = parse(outcome.line)
        assert (match["step"], match["flow"], match["run"]) == (outcome.step, "retail_products", report.run_id)
        assert (int(match["rows_in"]), int(match["rows_out"])) == (source_rows, source_rows), outcome.line
    assert any(line.endswith(report.outcomes[-1].line) for line in progress)

    logs = project.logs(report.run_id, "retail_products")
    assert {step: r.status for step, r in logs.items()} == dict.fromkeys(("extract", "bronze", "silver"), "success")
    same_rows(project.silver_rows("retail_products"), project.expected_silver("retail_products"), "silver")
    assert project.state.get_watermark("retail_products").value == project.source_max("retail_products")


# ------------------------------------------------------------------------------------------ child_env

REPO_METADATA = Path(__file__).resolve().parents[3] / "metadata"
VENV_BIN = os.path.dirname(os.path.abspath(sys.executable))


def bare_runtime(root: Path, environ: dict[str, str]) -> Runtime:
    """A runtime over a copy of the repo's metadata, its settings built from `environ` only (no Spark)."""
    if not (root / "metadata").exists():
        shutil.copytree(REPO_METADATA, root / "metadata")
    return load_runtime(load_settings(environ=environ, cwd=root))


@pytest.fixture
def empty_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process with no environment variables at all, as under a bare executor."""
    for name in list(os.environ):
        monkeypatch.delenv(name)


@pytest.mark.usefixtures("empty_environ")
def test_child_env_from_an_empty_environment_has_path_java_home_and_python(tmp_path: Path) -> None:
    runtime = bare_runtime(tmp_path, {})
    env = child_env(runtime)
    path = env["PATH"].split(os.pathsep)
    assert path[0] == VENV_BIN
    assert {"/usr/local/bin", "/usr/bin", "/bin"} <= set(path)
    assert (Path(env["JAVA_HOME"]) / "bin" / "java").is_file()
    assert env["PYSPARK_PYTHON"] == env["PYSPARK_DRIVER_PYTHON"] == sys.executable
    assert (env["PIPEZONE_HOME"], env["PIPEZONE_PROFILE"], env["TZ"]) == (str(tmp_path), "default", "UTC")


def test_child_env_keeps_the_parents_own_choices(tmp_path: Path) -> None:
    parent = {"PATH": "/opt/tools/bin:/usr/bin", "JAVA_HOME": "/opt/jdk", "PYSPARK_PYTHON": "/opt/py", "LANG": "C"}
    env = child_env(bare_runtime(tmp_path, parent))
    rest = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/sbin", "/bin"]
    assert env["PATH"].split(os.pathsep) == [VENV_BIN, "/opt/tools/bin", "/usr/bin", *rest]
    assert (env["JAVA_HOME"], env["PYSPARK_PYTHON"], env["LANG"]) == ("/opt/jdk", "/opt/py", "C")
    assert env["PYSPARK_DRIVER_PYTHON"] == sys.executable  # the driver imports pipezone: always this one


def fake_jdk(home: Path) -> Path:
    java = home / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text("#!/bin/sh\n")
    java.chmod(0o755)
    return java


def test_find_java_home_resolves_java_on_path_then_looks_in_the_jvm_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    java = fake_jdk(tmp_path / "jdks" / "jdk-17")
    links = tmp_path / "links"
    links.mkdir()
    (links / "java").symlink_to(java)  # as /usr/bin/java -> /etc/alternatives/java -> <home>/bin/java
    assert find_java_home(str(links)) == str(tmp_path / "jdks" / "jdk-17")

    jvm = tmp_path / "jvm"
    (jvm / "a-jre-without-java").mkdir(parents=True)
    fake_jdk(jvm / "b-jdk")
    monkeypatch.setattr(flow_runner, "JVM_DIR", jvm)
    assert find_java_home(str(tmp_path / "nothing")) == str(jvm / "b-jdk")
    fake_jdk(jvm / "default-java")
    assert find_java_home(str(tmp_path / "nothing")) == str(jvm / "default-java")
    monkeypatch.setattr(flow_runner, "JVM_DIR", tmp_path / "none")
    assert find_java_home(str(tmp_path / "nothing")) is None


@pytest.mark.usefixtures("empty_environ")
def test_a_child_started_from_an_empty_environment_finds_java_and_spark_submit(tmp_path: Path) -> None:
    """A non-login shell: `bash -l` would reset PATH from /etc/profile and hide what child_env gives."""
    env = child_env(bare_runtime(tmp_path, {}))
    script = 'command -v java && command -v spark-submit && "$JAVA_HOME/bin/java" -version'
    proc = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    java, spark_submit = proc.stdout.split()
    assert os.access(java, os.X_OK)
    assert spark_submit == os.path.join(VENV_BIN, "spark-submit")
    assert "version" in proc.stderr
