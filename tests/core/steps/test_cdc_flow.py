"""A CDC flow end to end on live MariaDB and PostgreSQL: the snapshot, then inserts, updates of non-cursor columns, key
updates, deletes and re-inserts from the binlog, through raw, bronze and silver (merge and scd2), each run
bounded; silver equals the source after every run and `pipezone verify` finds it clean."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pipezone.core.cli.main import main
from pipezone.core.lake import delta_tables as dt
from pipezone.core.runs.flow_runner import run_flows
from pipezone.core.spec.settings import load_settings
from pipezone.core.steps.runtime import Runtime, load_runtime
from pipezone.core.steps.verify import verify_flow

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = [pytest.mark.spark, pytest.mark.services]

REPO_ROOT = Path(__file__).resolve().parents[3]
# The same table, rows and changes in each server's SQL: TIME with fractions, a SET (MariaDB) or text,
# BIT(1) or boolean, a decimal; the select renders them as silver holds them.
SQL = {
    "mariadb": {
        "ddl": "CREATE TABLE {t} (id INT PRIMARY KEY, val VARCHAR(40), n INT, tm TIME(3), tags SET('a','b','c'), "
        "flag BIT(1), amount DECIMAL(12,2))",
        "rows": "INSERT INTO {t} VALUES (1, 'one', 1, '-12:34:56.789', 'a,c', 1, 10.50), "
        "(2, 'two', 2, '838:59:59', '', 0, NULL), (3, 'three', 3, NULL, 'b', NULL, 3.25)",
        "select": "SELECT id, val, n, CAST(tm AS CHAR), tags, flag <> 0, amount FROM {t}",
        "reinsert": "INSERT INTO {t} VALUES (3, 'three again', 33, '00:00:01.5', 'a,b,c', 1, 0.01)",
        "insert": "INSERT INTO {t} VALUES (4, 'four', 4, '-00:00:00.001', 'c', 0, 99.99)",
    },
    "postgres": {
        "ddl": "CREATE TABLE {t} (id integer PRIMARY KEY, val varchar(40), n integer, tm time(3), tags text, "
        "flag boolean, amount numeric(12,2))",
        "rows": "INSERT INTO {t} VALUES (1, 'one', 1, '12:34:56.789', 'a,c', true, 10.50), "
        "(2, 'two', 2, '23:59:59', '', false, NULL), (3, 'three', 3, NULL, 'b', NULL, 3.25)",
        "select": "SELECT id, val, n, tm::text, tags, flag, amount FROM {t}",
        "reinsert": "INSERT INTO {t} VALUES (3, 'three again', 33, '00:00:01.5', 'a,b,c', true, 0.01)",
        "insert": "INSERT INTO {t} VALUES (4, 'four', 4, '00:00:00.001', 'c', false, 99.99)",
    },
}
FLOW = """\
name: {name}
source:
  connection: src
  table: {name}
  primary_key: [id]
  cdc:
    max_changes: {max_changes}
layers:
  silver:
    write_mode: {mode}
"""
COLUMNS = ("id", "val", "n", "tm", "tags", "flag", "amount")


def execute(conn: Any, *statements: str) -> None:
    with conn.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
    conn.commit()


def project(root: Path, server: Any, database: str, flows: dict[str, tuple[str, int]]) -> Runtime:
    meta = root / "metadata"
    for sub in ("connections", "flows", "profiles"):
        (meta / sub).mkdir(parents=True, exist_ok=True)
    login = ("${env:PZ_CDC_USER}", "${env:PZ_CDC_PASSWORD}")
    (meta / "connections" / "src.yaml").write_text(server.connection_yaml("src", database, *login))
    (meta / "connections" / "lake.yaml").write_text("name: lake\ntype: local\npath: lake\n")
    (meta / "connections" / "state.yaml").write_text("name: state\ntype: sqlite\npath: state.db\n")
    (meta / "profiles" / "default.yaml").write_text(
        "name: default\nlake: lake\nstate_store: state\nspark:\n  master: local[2]\n  shuffle_partitions: 2\n"
    )
    for name, (mode, max_changes) in flows.items():
        (meta / "flows" / f"{name}.yaml").write_text(FLOW.format(name=name, mode=mode, max_changes=max_changes))
    (root / ".pipezone").mkdir(exist_ok=True)
    (root / ".pipezone" / "jars").symlink_to(REPO_ROOT / ".pipezone" / "jars", target_is_directory=True)
    environ = {"PZ_CDC_USER": server.user, "PZ_CDC_PASSWORD": server.password}
    return load_runtime(load_settings(environ=environ, cwd=root))


def source_rows(server: Any, conn: Any, table: str) -> dict[int, tuple[Any, ...]]:
    with conn.cursor() as cursor:
        cursor.execute(SQL[server.kind]["select"].format(t=table))
        return {r[0]: (r[1], r[2], r[3], r[4], None if r[5] is None else bool(r[5]), r[6]) for r in cursor.fetchall()}


def silver_rows(spark: SparkSession, runtime: Runtime, flow: str, current: str) -> dict[int, tuple[Any, ...]]:
    rows = spark.read.format("delta").load(runtime.lake.silver(flow)).filter(current).collect()
    return {r["id"]: (r["val"], r["n"], r["tm"], r["tags"], r["flag"], r["amount"]) for r in rows}


def run(runtime: Runtime, flows: list[str], run_id: str) -> None:
    report = run_flows(runtime, flows, in_process=True, run_id=run_id, progress=lambda _: None)
    assert report.ok, [o.line for o in report.outcomes if not o.ok]


def test_snapshot_then_log_changes_keep_silver_equal_to_the_source(
    spark: SparkSession,
    cdc_source: tuple[Any, str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, database, conn = cdc_source
    sql = SQL[server.kind]
    for table in ("items", "hist"):
        execute(conn, sql["ddl"].format(t=table), sql["rows"].format(t=table))
    runtime = project(tmp_path, server, database, {"items": ("merge", 3), "hist": ("scd2", 1000)})
    flows = ["items", "hist"]
    try:
        run(runtime, flows, "r1")  # the snapshot
        changes = [
            "UPDATE {t} SET n = n + 10 WHERE id = 1",  # a non-key column, no cursor anywhere
            "UPDATE {t} SET id = 20 WHERE id = 2",  # a key update: delete 2, insert 20
            "DELETE FROM {t} WHERE id = 3",
            sql["reinsert"],  # a deleted key back
            sql["insert"],
            "UPDATE {t} SET tags = 'b', tm = '01:02:03' WHERE id = 4",
        ]
        for statement in changes:
            execute(conn, statement.format(t="items"), statement.format(t="hist"))
        for number in range(2, 6):  # items reads at most 3 changes per run: a few runs drain the log
            run(runtime, flows, f"r{number}")
        for flow in flows:
            current = f"NOT `{dt.DELETED}`" if flow == "items" else f"`{dt.IS_CURRENT}`"
            assert silver_rows(spark, runtime, flow, current) == source_rows(server, conn, flow), flow
        history = spark.read.format("delta").load(runtime.lake.silver("hist")).filter("id = 3").collect()
        assert sorted((r["val"], r[dt.IS_CURRENT]) for r in history) == [("three", False), ("three again", True)]
        reports = [verify_flow(runtime, spark, runtime.flow(flow)) for flow in flows]
        assert [r.summary() for r in reports if r.status != "clean"] == []
        positions = {w.flow: str(w.value) for w in runtime.state.watermarks()}
        assert set(positions) == {"items", "hist"}, positions

        # `pipezone state reset`: the next run re-snapshots, and a key deleted meanwhile is marked deleted
        # though the stream that had its delete is skipped.
        execute(conn, "DELETE FROM items WHERE id = 1", sql["insert"].format(t="items").replace("(4,", "(5,"))
        monkeypatch.chdir(tmp_path)
        for name, value in (("PZ_CDC_USER", server.user), ("PZ_CDC_PASSWORD", server.password)):
            monkeypatch.setenv(name, value)
        assert main(["state", "reset", "items"]) == 0
        assert "log position" in capsys.readouterr().out
        run(runtime, ["items"], "after-reset")
        assert silver_rows(spark, runtime, "items", f"NOT `{dt.DELETED}`") == source_rows(server, conn, "items")
        assert main(["state", "items"]) == 0
        shown = capsys.readouterr().out
        assert "Change data capture" in shown and "ABANDONED" not in shown, shown
    finally:
        runtime.state.close()


PIPEZONE = str(Path(sys.executable).with_name("pipezone"))
# The extract's three points, and silver's commit-before-state (bronze's and silver's others are the same
# code for every flow, and tests/integration/test_fault_injection.py kills them).
KILL_POINTS = ("extract.before_commit", "extract.after_commit", "extract.state_update", "silver.after_commit")


def run_killed(root: Path, flow: str, env: dict[str, str], point: str) -> None:
    """`pipezone run FLOW` in its own process with `point` armed: it must die there (SIGKILL)."""
    killed = subprocess.run(
        [PIPEZONE, "run", flow, "--in-process"],
        cwd=root,
        env={**env, "PIPEZONE_FAILPOINTS": point},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, (killed.stdout + killed.stderr)[-2000:]


def test_a_run_killed_anywhere_then_rerun_applies_every_change_once(
    spark: SparkSession, cdc_source: tuple[Any, str, Any], tmp_path: Path
) -> None:
    server, database, conn = cdc_source
    execute(conn, SQL[server.kind]["ddl"].format(t="items"))
    execute(conn, "INSERT INTO items (id, val, n) VALUES (1, 'a', 1), (2, 'b', 2), (3, 'c', 3)")
    runtime = project(tmp_path, server, database, {"items": ("merge", 1000)})
    env = {**os.environ, "PZ_CDC_USER": server.user, "PZ_CDC_PASSWORD": server.password}
    try:
        run(runtime, ["items"], "load")
        for number, point in enumerate(KILL_POINTS):
            execute(
                conn,
                f"INSERT INTO items (id, val, n) VALUES ({10 + number}, 'new', {number})",
                f"UPDATE items SET n = n + 100 WHERE id = {1 + number % 3}",
                f"UPDATE items SET id = {100 + number} WHERE id = {10 + number}",  # the key just inserted
            )
            run_killed(tmp_path, "items", env, point)
            run(runtime, ["items"], f"rerun-{number}")
            assert silver_rows(spark, runtime, "items", f"NOT `{dt.DELETED}`") == source_rows(server, conn, "items"), (
                point
            )
            raw = spark.read.format("delta").load(runtime.lake.raw(runtime.flow("items")))
            changes = raw.groupBy("id", dt.CHANGE_ORDER).count().filter("count > 1").count()
            assert changes == 0, f"{point}: a change landed in raw twice"
    finally:
        runtime.state.close()
