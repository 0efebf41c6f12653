"""The type matrix on a live MariaDB (type_matrix.py): every MySQL/MariaDB type family of the README's
"Type mappings" table, on the Arrow bulk path and on JDBC, found in silver by its literal and printed as
the `mariadb` client prints it."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .type_matrix import READ_PATHS, Case, client_output, load_through_silver, mismatches, server_project

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from services import MariaDB

pytestmark = [pytest.mark.services, pytest.mark.spark]

ONES_64 = "b'" + "1" * 64 + "'"
MATRIX_TABLES = [f"matrix_{path}" for path in READ_PATHS]  # one flow (and table) per read path
CASES = [
    Case("e", "ENUM('G','PG','PG-13','R','NC-17')", "'PG'", "'PG'"),
    Case(
        "s", "SET('Trailers','Commentaries','Deleted Scenes')", "'Trailers,Deleted Scenes'", "'Trailers,Deleted Scenes'"
    ),
    Case("c", "CHAR(5)", "'ab'", "'ab'"),
    Case("vc", "VARCHAR(20)", "'x  '", "'x  '"),
    Case("tx", "TEXT", "'tëxt 😀'", "'tëxt 😀'"),
    Case("b", "BINARY(4)", "X'0102'", "X'01020000'", "HEX(b)", "hex(b)"),
    Case("vb", "VARBINARY(8)", "X'FF00'", "X'FF00'", "HEX(vb)", "hex(vb)"),
    Case("bl", "BLOB", "X'00FF'", "X'00FF'", "HEX(bl)", "hex(bl)"),
    Case("y", "YEAR", "2006", "2006"),
    Case("bit1", "BIT(1)", "b'1'", "true", "IF(bit1, 'true', 'false')"),
    Case("bit5", "BIT(5)", "b'101'", "5", "bit5 + 0"),
    Case("bit64", "BIT(64)", ONES_64, "18446744073709551615", "bit64 + 0"),
    Case("ti1", "TINYINT(1)", "1", "1"),
    Case("bo", "BOOL", "TRUE", "1"),
    Case("j", "JSON", """'{"a": [1, 2], "b": "x"}'""", """'{"a": [1, 2], "b": "x"}'"""),
    Case("g", "GEOMETRY", "ST_GeomFromText('POINT(1 2)')", "'POINT(1 2)'", "ST_AsText(g)"),
    Case("tm", "TIME", "'-838:59:59'", "'-838:59:59'"),
    Case("tm6", "TIME(6)", "'12:34:56.123456'", "'12:34:56.123456'"),
    Case("dt", "DATETIME", "'2024-01-02 03:04:05'", "TIMESTAMP'2024-01-02 03:04:05'"),
    Case("dt6", "DATETIME(6)", "'2024-01-02 03:04:05.123456'", "TIMESTAMP'2024-01-02 03:04:05.123456'"),
    Case(
        "ts3",
        "TIMESTAMP(3) NULL",
        "'2024-01-02 03:04:05.120'",
        "TIMESTAMP'2024-01-02 03:04:05.12'",
        "DATE_FORMAT(ts3, '%Y-%m-%d %H:%i:%s.%f')",
        "date_format(ts3, 'yyyy-MM-dd HH:mm:ss.SSSSSS')",
    ),
    Case("d", "DATE", "'1000-01-01'", "DATE'1000-01-01'"),
    Case("ubi", "BIGINT UNSIGNED", "18446744073709551615", "18446744073709551615"),
    Case("ui", "INT UNSIGNED", "4294967295", "4294967295"),
    Case("usi", "SMALLINT UNSIGNED", "65535", "65535"),
    Case("uti", "TINYINT UNSIGNED", "255", "255"),
    Case("mi", "MEDIUMINT", "-8388608", "-8388608"),
    Case("bi", "BIGINT", "-9223372036854775808", "-9223372036854775808"),
    Case(
        "dec65",
        "DECIMAL(65,30)",
        "12345678901234567890123456789012345.123456789012345678901234567890",
        "'12345678901234567890123456789012345.123456789012345678901234567890'",
    ),
    Case(
        "dec40",
        "DECIMAL(40,0)",
        "-1234567890123456789012345678901234567890",
        "'-1234567890123456789012345678901234567890'",
    ),
    Case("dec12", "DECIMAL(12,2)", "1234.5", "1234.50"),
    Case("f", "FLOAT", "1.5", "CAST(1.5 AS FLOAT)"),
    Case("db", "DOUBLE", "0.1", "0.1D"),
]


@pytest.fixture
def matrix_db(mariadb: MariaDB) -> Iterator[str]:
    database = f"pz_test_{uuid.uuid4().hex[:10]}"
    conn = mariadb.connect()
    columns = ", ".join(f"`{c.column}` {c.source_type}" for c in CASES)
    values = ", ".join(c.value_sql for c in CASES)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
            for table in MATRIX_TABLES:
                cur.execute(f"CREATE TABLE `{database}`.{table} (id INT PRIMARY KEY, {columns})")
                cur.execute(f"INSERT INTO `{database}`.{table} VALUES (1, {values})")
                cur.execute(f"INSERT INTO `{database}`.{table} (id) VALUES (2)")
            # Zero dates, as legacy schemas hold them: no timestamp has that value (README: lossy, NULL).
            cur.execute("SET SESSION sql_mode = ''")
            cur.execute(f"CREATE TABLE `{database}`.zero (id INT PRIMARY KEY, zd DATETIME NULL, zdt DATE NULL)")
            cur.execute(
                f"INSERT INTO `{database}`.zero VALUES (1, '0000-00-00 00:00:00', '0000-00-00'), (2, NULL, NULL)"
            )
        yield database
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
        conn.close()


def test_every_mysql_type_family_lands_exactly_on_both_read_paths(
    spark: SparkSession, mariadb: MariaDB, matrix_db: str, tmp_path: Path
) -> None:
    flows = list(MATRIX_TABLES)
    loaded = load_through_silver(spark, tmp_path, server_project(tmp_path, mariadb, matrix_db, flows), flows)
    client = shutil.which("mariadb") or "mysql"
    argv = [client, "--no-defaults", f"--host={mariadb.host}", f"--port={mariadb.port}", f"--user={mariadb.user}"]
    argv += [
        "--batch",
        "--skip-column-names",
        "--default-character-set=utf8mb4",
        "--init-command=SET time_zone = '+00:00'",
        matrix_db,
        "-e",
    ]

    def client_text(expr: str) -> str:
        return client_output([*argv, f"SELECT {expr} FROM matrix_jdbc WHERE id = 1"], {"MYSQL_PWD": mariadb.password})

    for path in READ_PATHS:
        silver, read_path = loaded[f"matrix_{path}"]
        assert read_path == path
        assert mismatches(spark, silver, CASES, client_text) == [], path
    arrow, jdbc = (spark.read.format("delta").load(loaded[f"matrix_{p}"][0]) for p in READ_PATHS)
    columns = ["id", *(c.column for c in CASES)]
    assert arrow.schema.simpleString() == jdbc.schema.simpleString()
    assert arrow.select(columns).exceptAll(jdbc.select(columns)).count() == 0


def test_zero_dates_become_null_and_the_bulk_load_falls_back_to_jdbc(
    spark: SparkSession, mariadb: MariaDB, matrix_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    environ = server_project(tmp_path, mariadb, matrix_db, ["zero", "zero_jdbc"])
    loaded = load_through_silver(spark, tmp_path, environ, ["zero"])
    silver, read_path = loaded["zero"]
    assert read_path == "jdbc"
    assert "bulk path not used (connectorx:" in capsys.readouterr().out
    rows = spark.read.format("delta").load(silver).orderBy("id").select("zd", "zdt").collect()
    assert [tuple(r) for r in rows] == [(None, None), (None, None)]
