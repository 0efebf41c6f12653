"""A CDC flow end to end on live MariaDB: the snapshot, then inserts, updates of non-cursor columns, key
updates, deletes and re-inserts from the binlog, through raw, bronze and silver (merge and scd2), each run
bounded; silver equals the source after every run and `pipezone verify` finds it clean."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pipezone.core.lake import delta_tables as dt
from pipezone.core.runs.flow_runner import run_flows
from pipezone.core.spec.settings import load_settings
from pipezone.core.steps.runtime import Runtime, load_runtime
from pipezone.core.steps.verify import verify_flow

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from services import MariaDB

pytestmark = [pytest.mark.spark, pytest.mark.services]

REPO_ROOT = Path(__file__).resolve().parents[3]
TABLE_DDL = (
    "CREATE TABLE {name} (id INT PRIMARY KEY, val VARCHAR(40), n INT, tm TIME(3), tags SET('a','b','c'), "
    "flag BIT(1), amount DECIMAL(12,2))"
)
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


@pytest.fixture
def source(mariadb: MariaDB) -> Iterator[tuple[MariaDB, str, Any]]:
    database = f"pz_cdc_{uuid.uuid4().hex[:10]}"
    mariadb.create_database(database)
    conn = mariadb.connect(database)
    try:
        yield mariadb, database, conn
    finally:
        conn.close()
        mariadb.drop_database(database)


def execute(conn: Any, *statements: str) -> None:
    with conn.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
    conn.commit()


def project(root: Path, server: MariaDB, database: str, flows: dict[str, tuple[str, int]]) -> Runtime:
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


def source_rows(conn: Any, table: str) -> dict[int, tuple[Any, ...]]:
    with conn.cursor() as cursor:
        cursor.execute(
            f"SELECT id, val, n, CAST(tm AS CHAR), tags, flag <> 0, amount FROM {table}"  # noqa: S608
        )
        return {row[0]: (row[1], row[2], row[3], row[4], bool(row[5]), row[6]) for row in cursor.fetchall()}


def silver_rows(spark: SparkSession, runtime: Runtime, flow: str, current: str) -> dict[int, tuple[Any, ...]]:
    rows = spark.read.format("delta").load(runtime.lake.silver(flow)).filter(current).collect()
    return {r["id"]: (r["val"], r["n"], r["tm"], r["tags"], r["flag"], r["amount"]) for r in rows}


def run(runtime: Runtime, flows: list[str], run_id: str) -> None:
    report = run_flows(runtime, flows, in_process=True, run_id=run_id, progress=lambda _: None)
    assert report.ok, [o.line for o in report.outcomes if not o.ok]


def test_snapshot_then_log_changes_keep_silver_equal_to_the_source(
    spark: SparkSession, source: tuple[MariaDB, str, Any], tmp_path: Path
) -> None:
    server, database, conn = source
    execute(conn, TABLE_DDL.format(name="items"), TABLE_DDL.format(name="hist"))
    for table in ("items", "hist"):
        execute(
            conn,
            f"INSERT INTO {table} VALUES (1, 'one', 1, '-12:34:56.789', 'a,c', 1, 10.50), "
            "(2, 'two', 2, '838:59:59', '', 0, NULL), (3, 'three', 3, NULL, 'b', NULL, 3.25)",
        )
    runtime = project(tmp_path, server, database, {"items": ("merge", 3), "hist": ("scd2", 1000)})
    flows = ["items", "hist"]
    try:
        run(runtime, flows, "r1")  # the snapshot
        changes = [
            "UPDATE {t} SET n = n + 10 WHERE id = 1",  # a non-key column, no cursor anywhere
            "UPDATE {t} SET id = 20 WHERE id = 2",  # a key update: delete 2, insert 20
            "DELETE FROM {t} WHERE id = 3",
            "INSERT INTO {t} VALUES (3, 'three again', 33, '00:00:01.5', 'a,b,c', 1, 0.01)",  # re-inserted
            "INSERT INTO {t} VALUES (4, 'four', 4, '-00:00:00.001', 'c', 0, 99.99)",
            "UPDATE {t} SET tags = 'b', tm = '01:02:03' WHERE id = 4",
        ]
        for statement in changes:
            execute(conn, statement.format(t="items"), statement.format(t="hist"))
        for number in range(2, 6):  # items reads at most 3 changes per run: a few runs drain the log
            run(runtime, flows, f"r{number}")
        for flow in flows:
            current = f"NOT `{dt.DELETED}`" if flow == "items" else f"`{dt.IS_CURRENT}`"
            assert silver_rows(spark, runtime, flow, current) == source_rows(conn, flow), flow
        history = spark.read.format("delta").load(runtime.lake.silver("hist")).filter("id = 3").collect()
        assert sorted((r["val"], r[dt.IS_CURRENT]) for r in history) == [("three", False), ("three again", True)]
        reports = [verify_flow(runtime, spark, runtime.flow(flow)) for flow in flows]
        assert [r.summary() for r in reports if r.status != "clean"] == []
        positions = {w.flow: str(w.value) for w in runtime.state.watermarks()}
        assert positions["items"].startswith("mariadb-bin.") and positions["items"] == positions["hist"]
    finally:
        runtime.state.close()
