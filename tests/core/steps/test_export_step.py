"""Exports end to end, into live PostgreSQL and MariaDB and a SQLite file: a flow's silver table upserted
and a column selection of it appended (renamed), its gold table exported in each mode; the same SQL on the destination and on
the lake gives the same answer; after source changes only the changed keys travel; a run killed after the
destination's commit (before the state update) and run again leaves every destination table exact, the
append included (no row twice)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pipezone.core.cli.tables import export_rows
from pipezone.core.runs.flow_runner import RunReport, run_flows
from pipezone.core.spec.settings import load_settings
from pipezone.core.steps.runtime import Runtime, load_runtime

pytestmark = [pytest.mark.spark]

REPO_ROOT = Path(__file__).resolve().parents[3]
PIPEZONE = str(Path(sys.executable).with_name("pipezone"))
FLOW = """\
name: orders
source:
  connection: src
  table: orders
  primary_key: [id]
layers:
  silver:
    write_mode: merge
  gold:
    - name: revenue
      sql: SELECT customer, SUM(amount) AS revenue, COUNT(*) AS orders FROM silver.orders GROUP BY customer
      write_mode: merge
      primary_key: [customer]
exports:
  - connection: bi
    table: orders_log
    mode: append
    columns: [id, status]
    rename: {status: state}
  - connection: bi
    mode: upsert
  - from: gold.revenue
    connection: bi
    mode: replace
  - from: gold.revenue
    connection: bi
    table: revenue_upsert
    mode: upsert
  - from: gold.revenue
    connection: bi
    table: revenue_log
    mode: append
"""

Query = Callable[[str], list[tuple[Any, ...]]]


@pytest.fixture(params=["sqlite", "postgres", "mariadb"])
def bi(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, dict[str, str], Query]]:
    """The destination: its connection YAML, the environment holding its login, and a query function."""
    if request.param == "sqlite":
        path = tmp_path / "bi.db"

        def sqlite_query(sql: str) -> list[tuple[Any, ...]]:
            with sqlite3.connect(path) as db:
                return [tuple(r) for r in db.execute(sql).fetchall()]

        yield f"name: bi\ntype: sqlite\npath: {path}\n", {}, sqlite_query
        return
    server = request.getfixturevalue(request.param)
    database = f"pz_bi_{uuid.uuid4().hex[:10]}"
    server.create_database(database)
    conn = server.connect(database)

    def server_query(sql: str) -> list[tuple[Any, ...]]:
        with conn.cursor() as cursor:
            cursor.execute(sql)
            rows = [tuple(r) for r in cursor.fetchall()]
        conn.commit()
        return rows

    environ = {"PZ_BI_USER": server.user, "PZ_BI_PASSWORD": server.password}
    try:
        yield (
            server.connection_yaml("bi", database, "${env:PZ_BI_USER}", "${env:PZ_BI_PASSWORD}"),
            environ,
            server_query,
        )
    finally:
        conn.close()
        server.drop_database(database)


class Project:
    def __init__(self, root: Path, bi_yaml: str, environ: dict[str, str]) -> None:
        self.root, self.environ = root, environ
        meta = root / "metadata"
        for sub in ("connections", "flows", "profiles"):
            (meta / sub).mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(root / "source.db", isolation_level=None)
        self.db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, amount INTEGER, status TEXT)")
        (meta / "connections" / "src.yaml").write_text(f"name: src\ntype: sqlite\npath: {root / 'source.db'}\n")
        (meta / "connections" / "bi.yaml").write_text(bi_yaml)
        (meta / "connections" / "lake.yaml").write_text("name: lake\ntype: local\npath: lake\n")
        (meta / "connections" / "state.yaml").write_text("name: state\ntype: sqlite\npath: state.db\n")
        (meta / "profiles" / "default.yaml").write_text(
            "name: default\nlake: lake\nstate_store: state\nspark:\n  master: local[2]\n  shuffle_partitions: 2\n"
        )
        (meta / "flows" / "orders.yaml").write_text(FLOW)
        (root / ".pipezone").mkdir(exist_ok=True)
        (root / ".pipezone" / "jars").symlink_to(REPO_ROOT / ".pipezone" / "jars", target_is_directory=True)
        self.runtime: Runtime = load_runtime(load_settings(environ=environ, cwd=root))

    def run(self, run_id: str) -> RunReport:
        report = run_flows(self.runtime, ["orders"], in_process=True, run_id=run_id, progress=lambda _: None)
        assert report.ok, [o.line for o in report.outcomes if not o.ok]
        return report

    def source(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.db.execute(sql).fetchall()]


def exported(project: Project, run_id: str, step: str) -> Any:
    """The run history's record of one export step of a run."""
    logs = [r for r in project.runtime.state.recent_runs("orders", limit=100) if (r.run_id, r.step) == (run_id, step)]
    assert logs, f"no {step} in run {run_id}"
    return logs[0]


def lake_gold(spark: Any, project: Project) -> list[tuple[Any, ...]]:
    path = project.runtime.lake.gold("revenue")
    return [
        tuple(r) for r in spark.sql(f"SELECT customer, revenue, orders FROM delta.`{path}` ORDER BY customer").collect()
    ]


def assert_gold_exports(spark: Any, project: Project, query: Query) -> None:
    """Gold in every mode: replace and upsert equal the lake's table; append holds every version once."""
    gold = lake_gold(spark, project)
    for table in ("revenue", "revenue_upsert"):
        assert query(f"SELECT customer, revenue, orders FROM {table} ORDER BY customer") == gold, table
    appended = query("SELECT customer, revenue, orders FROM revenue_log")
    assert len(appended) == len(set(appended)), "an appended gold row travelled twice"
    assert set(gold) <= set(appended)


def test_exports_travel_changes_only_and_survive_a_kill(
    spark: Any, bi: tuple[str, dict[str, str], Query], tmp_path: Path
) -> None:
    bi_yaml, environ, query = bi
    project = Project(tmp_path, bi_yaml, environ)
    rows = [(1, "ann", 100, "new"), (2, "bob", 250, "new"), (3, "ann", 75, "paid"), (4, "cy", 10, "new")]
    project.db.executemany("INSERT INTO orders VALUES (?, ?, ?, ?)", rows)
    try:
        project.run("first")
        orders_sql = "SELECT id, customer, amount, status FROM orders ORDER BY id"
        assert query(orders_sql) == project.source(orders_sql)
        revenue_sql = "SELECT customer, revenue, orders FROM revenue ORDER BY customer"
        assert query(revenue_sql) == lake_gold(spark, project)
        assert sorted(query("SELECT id, state FROM orders_log")) == [(i, s) for i, _, _, s in rows]
        assert_gold_exports(spark, project, query)

        # Two updates, a delete and an insert: four keys travel to the upsert, three rows to the append.
        project.db.execute("UPDATE orders SET status = 'paid' WHERE id IN (1, 2)")
        project.db.execute("DELETE FROM orders WHERE id = 4")
        project.db.execute("INSERT INTO orders VALUES (5, 'dee', 40, 'new')")
        project.run("second")
        upsert = exported(project, "second", "export_bi_orders")
        assert (upsert.rows_written, upsert.details["rows_deleted"]) == (3, 1), upsert
        assert upsert.details["read"] == "changes"
        assert query(orders_sql) == project.source(orders_sql)
        assert len(query("SELECT id FROM orders_log")) == 4 + 3

        # Killed after the append's commit, before its state update: the rerun appends nothing twice.
        project.db.execute("UPDATE orders SET amount = amount + 1 WHERE id = 3")
        env = {**os.environ, **environ, "PIPEZONE_FAILPOINTS": "export.after_commit"}
        killed = subprocess.run(
            [PIPEZONE, "run", "orders", "--in-process"], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert killed.returncode == -signal.SIGKILL, (killed.stdout + killed.stderr)[-2000:]
        project.run("after-kill")
        assert len(query("SELECT id FROM orders_log")) == 4 + 3 + 1
        assert query(orders_sql) == project.source(orders_sql)
        assert query(revenue_sql) == lake_gold(spark, project)
        assert ("ann", 176, 2) in query(revenue_sql)
        assert_gold_exports(spark, project, query)
        shown = {r[0]: r for r in export_rows(project.runtime, spark)[1:]}  # what `pipezone tables` prints
        assert shown["export_bi_orders"][4:] == ["4", "4", shown["export_bi_orders"][6], "yes"]
        assert shown["export_bi_orders_log"][5] == "8" and shown["export_bi_orders_log"][7] == "-"
    finally:
        project.runtime.state.close()
