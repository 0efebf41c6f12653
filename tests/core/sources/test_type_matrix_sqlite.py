"""The type matrix on SQLite (type_matrix.py): declared types as the README's "Type mappings" table says,
values as the `sqlite3` shell prints them, and SQLite's dynamic typing never coerced silently: a stored
value that is not of the declared type fails the read with one line naming the column, unless the flow
keeps the column as text (`column_types: {col: string}`)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pipezone.core.runs.flow_runner import run_flows
from pipezone.core.spec.settings import load_settings
from pipezone.core.steps.runtime import load_runtime

from .type_matrix import Case, client_output, load_through_silver, mismatches, write_project

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = [pytest.mark.spark]

CASES = [
    Case("i", "INTEGER", "-9223372036854775808", "-9223372036854775808"),
    Case("r", "REAL", "0.1", "0.1D"),
    Case("n", "NUMERIC(12,2)", "1234.5", "1234.50", "printf('%.2f', n)"),
    Case("t", "TEXT", "'tëxt 😀'", "'tëxt 😀'"),
    Case("vc", "VARCHAR(5)", "'x  '", "'x  '"),
    Case("b", "BLOB", "X'00FF'", "X'00FF'", "hex(b)", "hex(b)"),
    Case("dt", "DATETIME", "'2024-01-02 03:04:05'", "TIMESTAMP'2024-01-02 03:04:05'"),
    Case("d", "DATE", "'2024-01-02'", "DATE'2024-01-02'"),
    Case("bo", "BOOLEAN", "1", "true", "'true'"),
]


def _database(path: Path, extra: str = "") -> None:
    conn = sqlite3.connect(path)
    columns = ", ".join(f'"{c.column}" {c.source_type}' for c in CASES)
    conn.execute(f"CREATE TABLE matrix (id INTEGER PRIMARY KEY, {columns})")
    conn.execute(f"INSERT INTO matrix VALUES (1, {', '.join(c.value_sql for c in CASES)})")
    conn.execute("INSERT INTO matrix (id) VALUES (2)")
    if extra:
        conn.execute(extra)
    conn.commit()
    conn.close()


def test_every_sqlite_declared_type_lands_exactly(spark: SparkSession, tmp_path: Path) -> None:
    db = tmp_path / "src.db"
    _database(db)
    write_project(tmp_path, f"name: src\ntype: sqlite\npath: {db}\n", ["matrix"])
    silver, read_path = load_through_silver(spark, tmp_path, {}, ["matrix"])["matrix"]
    assert read_path == "jdbc"  # no Arrow reader for SQLite files

    def client_text(expr: str) -> str:
        return client_output(["sqlite3", "-readonly", str(db), f"SELECT {expr} FROM matrix WHERE id = 1"])

    assert mismatches(spark, silver, CASES, client_text) == []


def test_a_stored_value_of_another_type_fails_the_read_naming_the_column_unless_kept_as_text(
    spark: SparkSession, tmp_path: Path
) -> None:
    db = tmp_path / "src.db"
    _database(db, "INSERT INTO matrix (id, i) VALUES (3, 'abc')")  # SQLite accepts text in an INTEGER column
    write_project(tmp_path, f"name: src\ntype: sqlite\npath: {db}\n", ["matrix"])
    runtime = load_runtime(load_settings(environ={}, cwd=tmp_path))
    try:
        report = run_flows(runtime, ["matrix"], in_process=True, progress=lambda _: None)
    finally:
        runtime.state.close()
    assert not report.ok
    line = next(o.line for o in report.outcomes if not o.ok)
    assert "column i: SQLite holds abc where BIGINT was declared" in line, line
    assert "\n" not in line

    flow = tmp_path / "metadata" / "flows" / "matrix.yaml"
    flow.write_text(
        flow.read_text().replace("  primary_key: [id]\n", "  primary_key: [id]\n  column_types:\n    i: string\n")
    )
    silver, _ = load_through_silver(spark, tmp_path, {}, ["matrix"])["matrix"]
    values = spark.read.format("delta").load(silver).orderBy("id").select("i").collect()
    assert [r[0] for r in values] == ["-9223372036854775808", None, "abc"]
