"""The type matrix on a live PostgreSQL (type_matrix.py): every PostgreSQL type family of the README's
"Type mappings" table, on the Arrow bulk path and on JDBC, found in silver by its literal and printed as
`psql` prints it; partitioned tables through their parent, and views."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .type_matrix import READ_PATHS, Case, client_output, load_through_silver, mismatches, server_project

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from services import Postgres

pytestmark = [pytest.mark.services, pytest.mark.spark]

MATRIX_TABLES = [f"matrix_{path}" for path in READ_PATHS]
SETUP = """
CREATE EXTENSION IF NOT EXISTS hstore;
CREATE EXTENSION IF NOT EXISTS citext;
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE DOMAIN email AS citext;
"""
ARRAY_TEXT = "concat('{', array_join(COL, ','), '}')"  # psql's {1,2,3} from a Spark array
CASES = [
    Case("en", "mood", "'happy'", "'happy'"),
    Case("dom", "posint", "5", "5"),
    Case("dem", "email", "'A@B.c'", "'A@B.c'"),
    Case("a1", "int[]", "'{1,2,3}'", "array(1, 2, 3)", spark_expr=ARRAY_TEXT.replace("COL", "a1")),
    Case("at", "text[]", "'{ab,c}'", "array('ab', 'c')", spark_expr=ARRAY_TEXT.replace("COL", "at")),
    Case("a2", "int[][]", "'{{1,2},{3,4}}'", "'{{1,2},{3,4}}'"),
    Case("au", "uuid[]", "'{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}'", "'{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}'"),
    Case("j", "json", """'{"b": 1,  "a": [1,2]}'""", """'{"b": 1,  "a": [1,2]}'"""),
    Case("jb", "jsonb", """'{"b": 1,  "a": [1,2]}'""", """'{"a": [1, 2], "b": 1}'"""),
    Case("u", "uuid", "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'"),
    Case("by", "bytea", "'\\x00ff'", "X'00FF'", "encode(by, 'hex')", "lower(hex(by))"),
    Case(
        "n",
        "numeric",
        "123456789012345678901234567890.123456789012345678901234567890",
        "'123456789012345678901234567890.123456789012345678901234567890'",
    ),
    Case(
        "nw",
        "numeric(50,20)",
        "123456789012345678901234567890.1234567890123456789",
        "'123456789012345678901234567890.12345678901234567890'",
    ),
    Case(
        "n40",
        "numeric(40,0)",
        "-1234567890123456789012345678901234567890",
        "'-1234567890123456789012345678901234567890'",
    ),
    Case("n12", "numeric(12,2)", "1234.5", "1234.50"),
    Case("m", "money", "1234.56", "1234.56", "m::numeric"),
    Case("iv", "interval", "'1 day 2 hours 3.5 seconds'", "'1 day 02:00:03.5'"),
    Case("tm", "time", "'12:34:56'", "'12:34:56'"),
    Case("tm6", "time(6)", "'23:59:59.999999'", "'23:59:59.999999'"),
    Case("ttz", "timetz", "'12:34:56+02'", "'12:34:56+02'"),
    Case("ts", "timestamp", "'2024-01-02 03:04:05'", "TIMESTAMP'2024-01-02 03:04:05'"),
    Case("ts6", "timestamp(6)", "'2024-01-02 03:04:05.123456'", "TIMESTAMP'2024-01-02 03:04:05.123456'"),
    Case(
        "tstz",
        "timestamptz",
        "'2024-01-02 03:04:05.123456+02'",
        "TIMESTAMP'2024-01-02 01:04:05.123456'",
        "to_char(tstz, 'YYYY-MM-DD HH24:MI:SS.US')",
        "date_format(tstz, 'yyyy-MM-dd HH:mm:ss.SSSSSS')",
    ),
    Case("ine", "inet", "'192.168.1.5/24'", "'192.168.1.5/24'"),
    Case("ci", "cidr", "'10.0.0.0/8'", "'10.0.0.0/8'"),
    Case("mac", "macaddr", "'08:00:2b:01:02:03'", "'08:00:2b:01:02:03'"),
    Case("tv", "tsvector", "'a fat cat'", """"'a' 'cat' 'fat'\""""),
    Case("bt", "bit(5)", "B'10101'", "'10101'"),
    Case("vbt", "varbit(10)", "B'101'", "'101'"),
    Case("ct", "citext", "'MiXed'", "'MiXed'"),
    Case("hs", "hstore", "'a=>1,b=>2'", """'"a"=>"1", "b"=>"2"'"""),
    Case("r", "int4range", "'[1,5)'", "'[1,5)'"),
    Case("c", "char(5)", "'ab'", "'ab'", "c::text"),
    Case("vc", "varchar(10)", "'x  '", "'x  '"),
    Case("tx", "text", "'tëxt 😀'", "'tëxt 😀'"),
    Case("bo", "boolean", "true", "true", "bo::text"),
    Case("f4", "real", "1.5", "CAST(1.5 AS FLOAT)"),
    Case("f8", "double precision", "0.1", "0.1D"),
    Case("d", "date", "'1000-01-01'", "DATE'1000-01-01'"),
    Case("i2", "smallint", "-32768", "-32768"),
    Case("i8", "bigint", "-9223372036854775808", "-9223372036854775808"),
    Case("xm", "xml", "'<a>1</a>'", "'<a>1</a>'"),
    Case("pt", "point", "'(1,2)'", "'(1,2)'"),
]


@pytest.fixture
def matrix_db(postgres: Postgres) -> Iterator[str]:
    database = f"pz_test_{uuid.uuid4().hex[:10]}"
    admin = postgres.connect()
    admin.execute(f'CREATE DATABASE "{database}"')
    columns = ", ".join(f'"{c.column}" {c.source_type}' for c in CASES)
    values = ", ".join(c.value_sql for c in CASES)
    try:
        with postgres.connect(database) as conn:
            conn.execute(SETUP)
            for table in MATRIX_TABLES:
                conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, {columns})")
                conn.execute(f"INSERT INTO {table} VALUES (1, {values})")
                conn.execute(f"INSERT INTO {table} (id) VALUES (2)")
            conn.execute("CREATE TABLE parted (id int, k date, v text, PRIMARY KEY (id, k)) PARTITION BY RANGE (k)")
            conn.execute(
                "CREATE TABLE parted_2024 PARTITION OF parted FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')"
            )
            conn.execute(
                "CREATE TABLE parted_2025 PARTITION OF parted FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')"
            )
            conn.execute("INSERT INTO parted VALUES (1, '2024-05-05', 'a'), (2, '2025-05-05', 'b')")
            conn.execute("CREATE VIEW happy AS SELECT id, en, n FROM matrix_jdbc")
        yield database
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.close()


def test_every_postgres_type_family_lands_exactly_on_both_read_paths(
    spark: SparkSession, postgres: Postgres, matrix_db: str, tmp_path: Path
) -> None:
    environ = server_project(tmp_path, postgres, matrix_db, MATRIX_TABLES)
    loaded = load_through_silver(spark, tmp_path, environ, MATRIX_TABLES)
    argv = ["psql", "--no-psqlrc", "--tuples-only", "--no-align", f"--host={postgres.host}"]
    argv += [f"--port={postgres.port}", f"--username={postgres.user}", f"--dbname={matrix_db}", "--command"]

    def client_text(expr: str) -> str:
        sql = f"SELECT {expr} FROM matrix_jdbc WHERE id = 1"
        env = {"PGPASSWORD": postgres.password, "PGTZ": "UTC", "PATH": "/usr/bin:/bin"}
        return client_output([*argv, sql], env)

    for path in READ_PATHS:
        silver, read_path = loaded[f"matrix_{path}"]
        assert read_path == path
        assert mismatches(spark, silver, CASES, client_text) == [], path
    arrow, jdbc = (spark.read.format("delta").load(loaded[f"matrix_{p}"][0]) for p in READ_PATHS)
    columns = ["id", *(c.column for c in CASES)]
    assert arrow.schema.simpleString() == jdbc.schema.simpleString()
    assert arrow.select(columns).exceptAll(jdbc.select(columns)).count() == 0


def test_a_partitioned_table_is_read_through_its_parent_and_a_view_like_a_table(
    spark: SparkSession, postgres: Postgres, matrix_db: str, tmp_path: Path
) -> None:
    meta = tmp_path / "metadata" / "flows"
    environ = server_project(tmp_path, postgres, matrix_db, [])
    meta.joinpath("parted.yaml").write_text(
        "name: parted\nsource:\n  connection: src\n  table: parted\n  primary_key: [id, k]\n"
        "layers:\n  silver:\n    write_mode: merge\n"
    )
    meta.joinpath("happy.yaml").write_text(
        "name: happy\nsource:\n  connection: src\n  table: happy\n  primary_key: [id]\n"
        "  read:\n    initial_load: jdbc\nlayers:\n  silver:\n    write_mode: merge\n"
    )
    loaded = load_through_silver(spark, tmp_path, environ, ["parted", "happy"])
    parted = spark.read.format("delta").load(loaded["parted"][0]).orderBy("id").select("id", "v").collect()
    assert [tuple(r) for r in parted] == [(1, "a"), (2, "b")]
    happy = spark.read.format("delta").load(loaded["happy"][0])
    assert happy.filter("en = 'happy'").count() == 1
    assert dict(happy.dtypes)["n"] == "string"  # unconstrained numeric through a view: still exact text
