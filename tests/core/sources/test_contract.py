"""The source contract, on the JDBC family: read plans, the registry, and a real source read through the
contract alone (SQLite with real Spark; the physical references run the databases' own clients)."""

from __future__ import annotations

import sqlite3
import subprocess
import uuid
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pipezone.core.sources.contract import ReadPlan, SourceError
from pipezone.core.sources.jdbc.source import JdbcSource
from pipezone.core.sources.registry import open_source
from pipezone.core.spec.connection import JdbcConnection, LocalLakeConnection, SqliteConnection
from pipezone.core.spec.secrets import SecretResolver
from pipezone.core.spec.source import SourceSpec

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from services import MariaDB

SECRET = "s3cr3t-pw-value"
ROWS = [(1, "ada", "2024-01-01 10:00:00"), (2, "bob", "2024-01-02 10:00:00"), (3, "cy", "2024-01-03 10:00:00")]


def spec(**fields: Any) -> SourceSpec:
    base = {"connection": "shop", "table": "customers", "primary_key": ["id"]}
    return SourceSpec.model_validate({**base, "incremental": {"cursor": "updated_at"}, **fields})


def server(kind: str, **fields: Any) -> JdbcConnection:
    base = {"name": "shop", "type": kind, "host": "127.0.0.1", "database": "shop", "user": "reader"}
    return JdbcConnection.model_validate({**base, "password": "${env:DB_PW}", **fields})


def resolver(root: Path) -> SecretResolver:
    return SecretResolver({"DB_PW": SECRET}, root)


@pytest.fixture
def shop_file(tmp_path: Path) -> Path:
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, updated_at TIMESTAMP)")
        db.executemany("INSERT INTO customers VALUES (?, ?, ?)", ROWS)
    return path


def sqlite_source(path: Path, **fields: Any) -> JdbcSource:
    conn = SqliteConnection(name="shop", type="sqlite", path=str(path))
    source = open_source(spec(**fields), conn, resolver(path.parent), path.parent)
    assert isinstance(source, JdbcSource)
    return source


# ---------------------------------------------------------------------- plans and the registry


def test_read_plans_say_what_they_read() -> None:
    assert ReadPlan.full().is_whole and ReadPlan.window(None, None).is_whole
    assert not ReadPlan.window(1, 5).is_whole and not ReadPlan.key_snapshot().is_whole
    assert ReadPlan.backfill(1, 5) == ReadPlan("backfill", 1, 5)


def test_each_plan_becomes_its_own_jdbc_relation(shop_file: Path) -> None:
    source = sqlite_source(shop_file)
    assert source.dbtable(ReadPlan.full()) == '"customers"'
    assert source.dbtable(ReadPlan.window(3, 7)).endswith(
        '(SELECT * FROM "customers" WHERE "updated_at" > 3 AND "updated_at" <= 7) pz_window'
    )
    assert '"updated_at" >= 3 AND "updated_at" < 7' in source.dbtable(ReadPlan.backfill(3, 7))
    assert source.dbtable(ReadPlan.key_snapshot()) == '(SELECT "id" FROM "customers") pz_window'


def test_a_plan_the_source_cannot_serve_is_one_line_naming_it(shop_file: Path) -> None:
    with pytest.raises(SourceError, match=r"^connection 'shop': a sqlite source cannot serve a log_range read$"):
        sqlite_source(shop_file).dbtable(ReadPlan.log_range(1, 2))


def test_a_connection_no_source_serves_is_refused(tmp_path: Path) -> None:
    lake = LocalLakeConnection(name="lake", type="local", path="lake")
    with pytest.raises(SourceError, match=r"^connection 'lake': type 'local' is not a source database"):
        open_source(spec(), lake, resolver(tmp_path), tmp_path)


# ---------------------------------------------------------------------- physical references


def test_mysql_reference_is_the_client_with_its_password_in_the_environment(tmp_path: Path) -> None:
    source = open_source(spec(), server("mariadb", port=3307), resolver(tmp_path), tmp_path)
    ref = source.physical_reference(ReadPlan.full())
    assert ref is not None and ref.env == {"MYSQL_PWD": SECRET}
    assert SECRET not in " ".join(ref.argv)
    assert ref.argv[1:] == [
        "--no-defaults",
        "--host=127.0.0.1",
        "--port=3307",
        "--user=reader",
        "--quick",
        "--batch",
        "--skip-column-names",
        "shop",
        "-e",
        "SELECT * FROM `customers`",
    ]


def test_postgres_reference_is_psql_copy_to_dev_null(tmp_path: Path) -> None:
    source = open_source(spec(), server("postgres"), resolver(tmp_path), tmp_path)
    ref = source.physical_reference(ReadPlan.window(None, datetime(2024, 1, 2)))
    assert ref is not None and ref.name == "psql \\copy" and ref.env == {"PGPASSWORD": SECRET}
    command = ref.argv[-1]
    assert command.startswith('\\copy (SELECT * FROM (SELECT * FROM "customers" WHERE "updated_at" <= ')
    assert command.endswith(") TO '/dev/null'") and "\n" not in command


def test_sqlite_reference_reads_the_same_rows(shop_file: Path) -> None:
    ref = sqlite_source(shop_file).physical_reference(ReadPlan.window("2024-01-01 12:00:00", None))
    assert ref is not None
    out = subprocess.run(ref.argv, capture_output=True, text=True, check=True, env=dict(ref.env) or None)
    assert [line.split("|")[0] for line in out.stdout.splitlines()] == ["2", "3"]


@pytest.mark.services
def test_mysql_reference_runs_against_mariadb(mariadb: MariaDB, tmp_path: Path) -> None:
    database = f"pz_ref_{uuid.uuid4().hex[:8]}"
    admin = mariadb.connect()
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE {database}")
            cur.execute(f"CREATE TABLE {database}.customers (id INT PRIMARY KEY, name TEXT, updated_at DATETIME)")
            cur.executemany(f"INSERT INTO {database}.customers VALUES (%s, %s, %s)", ROWS)
        conn = JdbcConnection.model_validate(
            {"name": "shop", "type": "mariadb", "host": mariadb.host, "port": mariadb.port, "database": database}
            | {"user": mariadb.user, "password": "${env:DB_PW}"}
        )
        env = SecretResolver({"DB_PW": mariadb.password}, tmp_path)
        ref = open_source(spec(), conn, env, tmp_path).physical_reference(ReadPlan.full())
        assert ref is not None
        out = subprocess.run(ref.argv, capture_output=True, text=True, check=True, env=dict(ref.env))
        assert [line.split("\t")[1] for line in out.stdout.splitlines()] == ["ada", "bob", "cy"]
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {database}")
        admin.close()


# ---------------------------------------------------------------------- a real read through the contract


@pytest.mark.spark
def test_a_sqlite_source_describes_bounds_reads_and_counts(spark: SparkSession, shop_file: Path) -> None:
    source = sqlite_source(shop_file)
    assert [f.name for f in source.describe(spark).fields] == ["id", "name", "updated_at"]
    bounds = source.cursor_bounds(spark)
    assert str(bounds.hi) == "2024-01-03 10:00:00" and bounds.now is not None
    window = source.read(spark, ReadPlan.window("2024-01-01 10:00:00", "2024-01-02 10:00:00"))
    assert [r["name"] for r in window.collect()] == ["bob"]
    assert sorted(r["id"] for r in source.read(spark, ReadPlan.key_snapshot()).collect()) == [1, 2, 3]
    assert source.count(spark) == 3
    assert source.read_arrow(spark, ReadPlan.full(), window.schema) is None  # no Arrow reader for SQLite
