"""`init-flow --all` end to end: on the 20-table schemas (tests/fixtures/discovery/shop20_*.sql) filled with a
few rows each, every written flow runs green through silver, silver holds the source's rows, and
`verify` finds every keyed flow clean."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from test_init_flow import FIXTURES

from pipezone.core.cli.main import main
from pipezone.core.runs.flow_runner import run_flows
from pipezone.core.spec.settings import load_settings
from pipezone.core.steps.runtime import load_runtime
from pipezone.core.steps.verify import verify_flow

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from services import MariaDB, Postgres

pytestmark = [pytest.mark.services, pytest.mark.spark]

DATABASE = f"pz_init_runs_{os.getpid()}"
ROWS = 3
COLUMNS_SQL = {
    "mariadb": "SELECT table_name, column_name, data_type, character_maximum_length, column_type "
    "FROM information_schema.columns JOIN information_schema.tables USING (table_schema, table_name) "
    "WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE' ORDER BY table_name, ordinal_position",
    "postgres": "SELECT c.table_name, c.column_name, c.data_type, c.character_maximum_length, c.udt_name "
    "FROM information_schema.columns c JOIN pg_class k ON k.relname = c.table_name "
    "WHERE c.table_schema = 'public' AND k.relkind IN ('r', 'p') AND NOT k.relispartition "
    "ORDER BY c.table_name, c.ordinal_position",
}


def value(i: int, column: str, kind: str, length: int | None, full_type: str) -> Any:
    """Row i's value for a column of this type: distinct per row (unique keys), inside every partition range."""
    kind = kind.lower()
    if kind in ("tinyint", "smallint", "mediumint", "int", "integer", "bigint"):
        return i
    if kind in ("decimal", "numeric"):
        return Decimal(i) + Decimal("0.25")
    if kind in ("float", "double", "real", "double precision"):
        return i + 0.5
    if kind == "date":
        return date(2024, 1, i)
    if kind.startswith(("datetime", "timestamp")):
        return datetime(2024, 1, i, 10, 0, 0)
    if kind == "boolean":
        return i % 2 == 0
    if kind == "enum":
        return full_type.split("'")[1]
    return f"{i}{column}"[: length or 40]


@pytest.fixture(params=["mariadb", "postgres"])
def filled(request: pytest.FixtureRequest) -> Iterator[tuple[MariaDB | Postgres, dict[str, int]]]:
    """The 20-table schema with ROWS rows in each base table; table -> rows."""
    server = request.getfixturevalue(request.param)
    server.load_sql(DATABASE, FIXTURES / f"shop20_{request.param}.sql")
    conn = server.connect(DATABASE)
    counts: dict[str, int] = {}
    try:
        with conn.cursor() as cursor:
            cursor.execute(COLUMNS_SQL[request.param])
            tables: dict[str, list[tuple[Any, ...]]] = {}
            for table, *column in cursor.fetchall():
                tables.setdefault(table, []).append(tuple(column))
            quote = '"' if request.param == "postgres" else "`"
            for table, columns in tables.items():
                names = ", ".join(f"{quote}{c[0]}{quote}" for c in columns)
                marks = ", ".join(["%s"] * len(columns))
                for i in range(1, ROWS + 1):
                    row = [value(i, *c) for c in columns]
                    cursor.execute(f"INSERT INTO {quote}{table}{quote} ({names}) VALUES ({marks})", row)
                counts[table] = ROWS
        yield server, counts
    finally:
        conn.close()
        server.drop_database(DATABASE)


def test_every_flow_init_flow_writes_runs_green_through_silver(
    spark: SparkSession, filled: tuple[MariaDB | Postgres, dict[str, int]], tmp_path: Path, monkeypatch: Any
) -> None:
    server, counts = filled
    meta = tmp_path / "metadata"
    for sub in ("connections", "flows", "profiles"):
        (meta / sub).mkdir(parents=True)
    (meta / "connections" / "lake.yaml").write_text("name: lake\ntype: local\npath: lake\n")
    (meta / "connections" / "state.yaml").write_text("name: state\ntype: sqlite\npath: state.db\n")
    (meta / "profiles" / "default.yaml").write_text(
        "name: default\nlake: lake\nstate_store: state\nspark:\n  master: local[2]\n  shuffle_partitions: 2\n"
    )
    (meta / "connections" / "shop.yaml").write_text(
        server.connection_yaml("shop", DATABASE, server.user, "${env:PZ_INIT_RUNS_PASSWORD}")
    )
    (tmp_path / ".pipezone").mkdir()
    (tmp_path / ".pipezone" / "jars").symlink_to(Path(__file__).resolve().parents[3] / ".pipezone" / "jars")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PZ_INIT_RUNS_PASSWORD", server.password)
    for name in ("PIPEZONE_HOME", "PIPEZONE_METADATA", "PIPEZONE_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    assert main(["init-flow", "shop", "--all"]) == 0
    flows = sorted(p.stem for p in (meta / "flows").glob("*.yaml"))
    assert len(flows) == len(counts)

    runtime = load_runtime(load_settings(environ={"PZ_INIT_RUNS_PASSWORD": server.password}, cwd=tmp_path))
    try:
        report = run_flows(runtime, flows, in_process=True, progress=lambda _: None)
        assert report.ok, [o.line for o in report.outcomes if not o.ok]
        for flow in flows:
            live = spark.read.format("delta").load(runtime.lake.silver(flow))
            assert live.count() == ROWS, flow
        reports = [verify_flow(runtime, spark, runtime.flow(flow)) for flow in flows]
        keyed = [r for r in reports if r.status != "not_verifiable"]  # keyless tables append: nothing to match
        assert [r.summary() for r in keyed if r.status != "clean"] == []
        assert len(keyed) >= len(flows) - 2
    finally:
        runtime.state.close()
