"""Output hygiene: a Spark session prints PipeZone's own lines; Spark's full log goes to a file the line names.

The real tests start a session in a child process (a JVM of their own, never the shared `spark` fixture's)
from a scratch folder, and compare everything the child printed with the lines it is expected to print.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipezone.core.runs.flow_runner import child_env
from pipezone.core.spark.session import (
    LOG4J2_CONFIG,
    PYSPARK_LOGGERS,
    SparkSettings,
    find_spark_submit,
    jvm_env,
    python_log_to,
    spark_conf,
    spark_log_file,
    submit_args,
)
from pipezone.core.spec.settings import load_settings
from pipezone.core.steps.runtime import load_runtime

REPO_ROOT = Path(__file__).resolve().parents[3]
JAR_CACHE = REPO_ROOT / ".pipezone" / "jars"
FAKE_JARS = [Path("/cache/lib/delta-spark.jar")]
# What Spark, log4j, the JVM and pyspark printed on a `pipezone` command's console before.
NOISE = (
    "WARN Utils",
    "log4j",
    "Using Spark's default",
    "Setting default log level",
    "Setting Spark log level",
    "To adjust logging level",
    "FutureWarning",
    "NativeCodeLoader",
    "SQLQueryContextLogger",
)

# A step's worth of Spark: a query, a DataFrame from pandas (pyspark checks the pandas version there), and an
# error the caller catches (pyspark's Python side logs those, query context and all).
SESSION_WORK = """
import pandas
from pyspark.errors import AnalysisException
print("ROWS", spark.range(3).count(), flush=True)
print("PANDAS", spark.createDataFrame(pandas.DataFrame({"a": [1, 2]})).count(), flush=True)
try:
    spark.sql("SELECT * FROM no_such_table").collect()
except AnalysisException as err:
    print("CAUGHT", err.getCondition(), flush=True)
spark.stop()
"""
EXPECTED_WORK_LINES = {"ROWS 3", "PANDAS 2", "CAUGHT TABLE_OR_VIEW_NOT_FOUND"}


def _java_options(conf: dict[str, str]) -> list[str]:
    return shlex.split(conf["spark.driver.extraJavaOptions"])


def _child_environ() -> dict[str, str]:
    """This environment without what the code under test must set itself (or would print itself)."""
    drop = ("SPARK_LOCAL_IP", "PYSPARK_GATEWAY_PORT", "PYSPARK_GATEWAY_SECRET", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS")
    return {k: v for k, v in os.environ.items() if k not in drop}


def _assert_quiet(output: str) -> None:
    for noise in NOISE:
        assert noise not in output, f"{noise!r} on the console:\n{output}"


def _run_quietly(argv: list[str], cwd: Path, env: dict[str, str]) -> str:
    """Run a Spark process to its end; it must succeed and print none of Spark's noise. Returns its output."""
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=180, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    _assert_quiet(output)
    return output


def _assert_full_log(log_file: Path) -> str:
    assert log_file.is_file(), f"no Spark log at {log_file}"
    text = log_file.read_text()
    assert " INFO SparkContext: Running Spark version " in text
    assert " INFO SparkContext: Successfully stopped SparkContext" in text
    assert "resolves to a loopback address" not in text  # SPARK_LOCAL_IP was set before the JVM started
    return text


# --------------------------------------------------------------------------- configuration (no JVM)


def test_a_log_folder_adds_the_log4j2_configuration_to_the_utc_option(tmp_path: Path) -> None:
    settings = SparkSettings(
        jar_cache=Path("/cache"),
        app_name="pipezone-orders/bronze",
        log_dir=tmp_path / "my logs",
        extra_conf={"spark.driver.extraJavaOptions": "-Dfoo=bar"},
    )
    log_file = tmp_path / "my logs" / "spark-pipezone-orders_bronze.log"
    assert spark_log_file(settings) == log_file
    conf = spark_conf(settings, FAKE_JARS)
    assert _java_options(conf) == [  # UTC first, the profile's own options last (a later -D wins)
        "-Duser.timezone=UTC",
        f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
        f"-Dpipezone.spark.log={log_file}",  # quoted in the option string: the folder has a blank
        "-Dfoo=bar",
    ]
    assert LOG4J2_CONFIG.is_file()
    assert "spark.log.level" not in conf  # it would cut the file down to WARN
    assert conf["spark.executor.extraJavaOptions"] == "-Duser.timezone=UTC"

    args = submit_args(settings, jars=FAKE_JARS)
    pairs = dict(args[i + 1].split("=", 1) for i, a in enumerate(args) if a == "--conf")
    assert pairs["spark.driver.extraJavaOptions"] == conf["spark.driver.extraJavaOptions"]


def test_without_a_log_folder_spark_logs_as_before() -> None:
    conf = spark_conf(SparkSettings(jar_cache=Path("/cache")), FAKE_JARS)
    assert conf["spark.driver.extraJavaOptions"] == "-Duser.timezone=UTC"
    assert conf["spark.log.level"] == "WARN"


def test_local_masters_bind_the_loopback_address(tmp_path: Path) -> None:
    assert jvm_env("local[2]") == jvm_env("local") == {"SPARK_LOCAL_IP": "127.0.0.1"}
    assert jvm_env("spark://spark-master:7077") == {}

    shutil.copytree(REPO_ROOT / "metadata", tmp_path / "metadata")
    runtime = load_runtime(load_settings(environ={"PATH": os.environ["PATH"]}, cwd=tmp_path))
    assert runtime.profile.spark.master.startswith("local")
    assert child_env(runtime)["SPARK_LOCAL_IP"] == "127.0.0.1"
    assert runtime.settings.log_dir == tmp_path / ".pipezone" / "logs"
    own = load_runtime(load_settings(environ={"PATH": os.environ["PATH"], "SPARK_LOCAL_IP": "10.1.2.3"}, cwd=tmp_path))
    assert child_env(own)["SPARK_LOCAL_IP"] == "10.1.2.3"  # the parent's choice stands


def test_pysparks_python_side_error_records_go_to_the_log_file(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from pyspark.logger import PySparkLogger

    loggers = [PySparkLogger.getLogger(name) for name in PYSPARK_LOGGERS]
    saved = [(logger.handlers[:], logger.propagate) for logger in loggers]
    log_file = tmp_path / "logs" / "spark-pipezone.log"
    try:
        python_log_to(log_file)
        for logger in loggers:
            logger.error("query failed", errorClass="TABLE_OR_VIEW_NOT_FOUND")
    finally:
        for logger, (handlers, propagate) in zip(loggers, saved, strict=True):
            for handler in logger.handlers[:]:
                logger.removeHandler(handler)
                handler.close()
            for handler in handlers:
                logging.Logger.addHandler(logger, handler)  # as it was (PySparkLogger.addHandler resets formats)
            logger.propagate = propagate
    captured = capfd.readouterr()
    assert captured.out == captured.err == ""
    assert log_file.read_text().count('"errorClass": "TABLE_OR_VIEW_NOT_FOUND"') == len(PYSPARK_LOGGERS)


# --------------------------------------------------------------------------- real Spark, own process


@pytest.mark.spark
def test_an_in_process_session_prints_only_its_log_line(tmp_path: Path) -> None:
    """What `pipezone tables` or `pipezone run --in-process` gets: one line naming the log, then its own."""
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from pipezone.core.spark.session import SparkSettings, build_session
        settings = SparkSettings(
            jar_cache=Path({str(JAR_CACHE)!r}),
            app_name="pipezone-tables",
            shuffle_partitions=1,
            log_dir=Path.cwd() / ".pipezone" / "logs",
            extra_conf={{"spark.ui.enabled": "false"}},
        )
        spark = build_session(settings)
        """
    )
    output = _run_quietly([sys.executable, "-c", script + SESSION_WORK], tmp_path, _child_environ())
    lines = {line for line in output.splitlines() if line.strip()}
    assert lines == {"pipezone: Spark log: .pipezone/logs/spark-pipezone-tables.log", *EXPECTED_WORK_LINES}, output

    text = _assert_full_log(tmp_path / ".pipezone" / "logs" / "spark-pipezone-tables.log")
    assert '"logger": "SQLQueryContextLogger"' in text  # the caught error's record, off the console


@pytest.mark.spark
def test_a_spark_submit_job_keeps_spark_off_its_output(tmp_path: Path) -> None:
    """A step as Airflow and `pipezone run` launch it: spark-submit with submit_args and the child's environment."""
    job = tmp_path / "job.py"
    job.write_text(
        textwrap.dedent(
            f"""
            from pathlib import Path
            from pipezone.core.spark.session import SparkSettings, build_session
            spark = build_session(SparkSettings(jar_cache=Path({str(JAR_CACHE)!r}), app_name="pipezone-demo-bronze"))
            """
        )
        + SESSION_WORK
    )
    settings = SparkSettings(
        jar_cache=JAR_CACHE,
        master="local[1]",
        app_name="pipezone-demo-bronze",
        shuffle_partitions=1,
        python=sys.executable,
        log_dir=tmp_path / ".pipezone" / "logs",
        extra_conf={"spark.ui.enabled": "false"},
    )
    env = _child_environ() | jvm_env(settings.master)
    output = _run_quietly([str(find_spark_submit()), *submit_args(settings), str(job)], tmp_path, env)
    # The JVM's own start-up notice is the one line left: spark-submit's JVM writes it before anything runs.
    lines = {line for line in output.splitlines() if line.strip() and not line.startswith("WARNING: Using incubator")}
    assert lines == {"pipezone: Spark log: .pipezone/logs/spark-pipezone-demo-bronze.log", *EXPECTED_WORK_LINES}

    text = _assert_full_log(tmp_path / ".pipezone" / "logs" / "spark-pipezone-demo-bronze.log")
    assert " INFO SparkContext: Submitted application: pipezone-demo-bronze" in text
