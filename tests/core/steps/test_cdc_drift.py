"""DDL while a CDC flow streams follows its `schema_drift` policy, on live MariaDB and PostgreSQL.

evolve: a column added, a column widened (a value only the wider type holds) and a column dropped between
changes reach silver, which equals the source on the source's columns (the dropped column's old values stay).
freeze: the run fails with one line naming the new column, the stored log position does not move, and the
flow resumes from it, missing nothing, once the policy allows the change.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from test_cdc_flow import execute, project, run

from pipezone.core.lake import delta_tables as dt
from pipezone.core.runs.flow_runner import run_flows
from pipezone.core.spec.settings import load_settings
from pipezone.core.steps.runtime import load_runtime
from pipezone.core.steps.verify import verify_flow

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = [pytest.mark.spark, pytest.mark.services]

BIG = 5_000_000_000  # needs the widened column: more than INT holds
DDL = {
    "mariadb": {
        "create": "CREATE TABLE {t} (id INT PRIMARY KEY, val VARCHAR(40), n INT)",
        "add": "ALTER TABLE {t} ADD COLUMN extra VARCHAR(20)",
        "widen": "ALTER TABLE {t} MODIFY n BIGINT",
        "drop": "ALTER TABLE {t} DROP COLUMN val",
    },
    "postgres": {
        "create": "CREATE TABLE {t} (id integer PRIMARY KEY, val varchar(40), n integer)",
        "add": "ALTER TABLE {t} ADD COLUMN extra varchar(20)",
        "widen": "ALTER TABLE {t} ALTER COLUMN n TYPE bigint",
        "drop": "ALTER TABLE {t} DROP COLUMN val",
    },
}


def source_rows(conn: Any, table: str, columns: str) -> dict[int, tuple[Any, ...]]:
    with conn.cursor() as cursor:
        cursor.execute(f"SELECT id, {columns} FROM {table}")
        return {r[0]: tuple(r[1:]) for r in cursor.fetchall()}


def silver_rows(spark: SparkSession, runtime: Any, flow: str, columns: str) -> dict[int, tuple[Any, ...]]:
    names = [c.strip() for c in columns.split(",")]
    rows = spark.read.format("delta").load(runtime.lake.silver(flow)).filter(f"NOT `{dt.DELETED}`").collect()
    return {r["id"]: tuple(r[name] for name in names) for r in rows}


def test_added_widened_and_dropped_columns_evolve_into_silver(
    spark: SparkSession, cdc_source: tuple[Any, str, Any], tmp_path: Path
) -> None:
    server, database, conn = cdc_source
    ddl = DDL[server.kind]
    execute(conn, ddl["create"].format(t="items"), "INSERT INTO items VALUES (1, 'one', 1), (2, 'two', 2)")
    runtime = project(tmp_path, server, database, {"items": ("merge", 1000)})
    try:
        run(runtime, ["items"], "snapshot")
        execute(conn, ddl["add"].format(t="items"), "UPDATE items SET extra = 'x', n = 10 WHERE id = 1")
        execute(conn, ddl["widen"].format(t="items"), f"INSERT INTO items VALUES (3, 'three', {BIG}, 'big')")
        execute(conn, ddl["drop"].format(t="items"), "INSERT INTO items VALUES (4, 44, 'no val')")
        execute(conn, "UPDATE items SET n = n + 1 WHERE id = 2", "DELETE FROM items WHERE id = 1")
        run(runtime, ["items"], "after-ddl")
        assert silver_rows(spark, runtime, "items", "n, extra") == source_rows(conn, "items", "n, extra")
        assert silver_rows(spark, runtime, "items", "val")[3] == ("three",)  # a dropped column's data is kept
        assert silver_rows(spark, runtime, "items", "val")[4] == (None,)
        report = verify_flow(runtime, spark, runtime.flow("items"))
        assert report.status == "clean", report.summary()
    finally:
        runtime.state.close()


def test_freeze_fails_naming_the_new_column_and_keeps_the_position(
    spark: SparkSession, cdc_source: tuple[Any, str, Any], tmp_path: Path
) -> None:
    server, database, conn = cdc_source
    ddl = DDL[server.kind]
    execute(conn, ddl["create"].format(t="items"), "INSERT INTO items VALUES (1, 'one', 1)")
    runtime = project(tmp_path, server, database, {"items": ("merge", 1000)})
    flow_file = tmp_path / "metadata" / "flows" / "items.yaml"
    flow_file.write_text(flow_file.read_text() + "schema_drift: freeze\n")
    runtime = project_again(runtime, tmp_path, server, database)
    try:
        run(runtime, ["items"], "snapshot")
        position = str(runtime.state.get_watermark("items").value)
        execute(conn, "INSERT INTO items VALUES (2, 'two', 2)", ddl["add"].format(t="items"))
        execute(conn, "INSERT INTO items VALUES (3, 'three', 3, 'new')")
        report = run_flows(runtime, ["items"], in_process=True, run_id="frozen", progress=lambda _: None)
        failed = [o for o in report.outcomes if not o.ok]
        assert [o.step for o in failed] == ["extract"], report.outcomes
        line = failed[0].line
        assert "extra" in line and "\n" not in line, line
        assert str(runtime.state.get_watermark("items").value) == position  # nothing skipped

        flow_file.write_text(flow_file.read_text().replace("schema_drift: freeze", "schema_drift: evolve"))
        runtime = project_again(runtime, tmp_path, server, database)
        run(runtime, ["items"], "evolved")
        assert silver_rows(spark, runtime, "items", "val, n, extra") == source_rows(conn, "items", "val, n, extra")
    finally:
        runtime.state.close()


def project_again(runtime: Any, root: Path, server: Any, database: str) -> Any:
    """The runtime reloaded after the flow file changed (as the next scheduled run would)."""
    runtime.state.close()
    environ = {"PZ_CDC_USER": server.user, "PZ_CDC_PASSWORD": server.password}
    return load_runtime(load_settings(environ=environ, cwd=root))
