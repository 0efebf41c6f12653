"""The destination contract's own logic (`prepare`: create, evolve additively, refuse a changed type, before
anything changes), on a minimal destination over a real SQLite file written here for the test."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from pyspark.sql.types import DataType, DoubleType, IntegerType, LongType, StringType, StructField, StructType

from pipezone.core.destinations.contract import (
    Destination,
    DestinationError,
    ExportBatch,
    ExportMarker,
    TableChanges,
    TableName,
    WriteMode,
    WriteReport,
)
from pipezone.core.destinations.registry import destination_adapter
from pipezone.core.spec.connection import LocalLakeConnection, SqliteConnection

TYPES: dict[str, DataType] = {
    "INTEGER": IntegerType(),
    "BIGINT": LongType(),
    "TEXT": StringType(),
    "REAL": DoubleType(),
}
NAMES = {type(kind): name for name, kind in TYPES.items()}


class SqliteFile(Destination):
    """Just enough of a destination to exercise the contract: DDL on a real SQLite file, no writes."""

    def __init__(self, path: Path) -> None:
        super().__init__(SqliteConnection(name="mart", type="sqlite", path=str(path)))
        self.db = sqlite3.connect(path)

    def describe(self, table: TableName) -> StructType | None:
        rows = self.db.execute(f"PRAGMA table_info({table.table})").fetchall()
        return StructType([StructField(name, TYPES[kind]) for _, name, kind, *_ in rows]) if rows else None

    def create(self, table: TableName, schema: StructType, primary_key: list[str]) -> None:
        columns = ", ".join(f"{f.name} {NAMES[type(f.dataType)]}" for f in schema.fields)
        self.db.execute(f"CREATE TABLE {table.table} ({columns}, PRIMARY KEY ({', '.join(primary_key)}))")

    def evolve(self, table: TableName, added: list[StructField], widened: list[StructField]) -> None:
        for f in added:
            self.db.execute(f"ALTER TABLE {table.table} ADD COLUMN {f.name} {NAMES[type(f.dataType)]}")
        assert not widened, "SQLite's columns take any integer: nothing to widen in this test"

    def write(
        self, table: TableName, batch: ExportBatch, mode: WriteMode, primary_key: list[str], marker: ExportMarker
    ) -> WriteReport:
        raise NotImplementedError("writes are the SQL destinations' (test_sql_destinations.py)")

    def exported_version(self, export: str) -> int | None:
        return None

    def count(self, table: TableName) -> int | None:
        return None


def schema(*fields: tuple[str, DataType]) -> StructType:
    return StructType([StructField(name, kind) for name, kind in fields])


def test_prepare_creates_then_evolves_additively(tmp_path: Path) -> None:
    mart, table = SqliteFile(tmp_path / "mart.db"), TableName("daily_revenue")
    first = schema(("day", StringType()), ("revenue", DoubleType()))
    assert mart.prepare(table, first, ["day"]) == TableChanges(created=True)
    assert mart.prepare(table, first, ["day"]) == TableChanges()
    wider = schema(("day", StringType()), ("revenue", DoubleType()), ("orders", LongType()))
    assert mart.prepare(table, wider, ["day"]) == TableChanges(added=("orders",))
    assert [f.name for f in mart.describe(table).fields] == ["day", "revenue", "orders"]
    # a column the lake dropped stays at the destination
    assert mart.prepare(table, schema(("day", StringType()), ("orders", LongType())), ["day"]) == TableChanges()


def test_prepare_refuses_a_changed_type_naming_the_column(tmp_path: Path) -> None:
    mart, table = SqliteFile(tmp_path / "mart.db"), TableName("daily_revenue")
    mart.prepare(table, schema(("day", StringType()), ("revenue", DoubleType())), ["day"])
    with pytest.raises(DestinationError, match=r"^connection 'mart': table daily_revenue: column revenue is double"):
        mart.prepare(table, schema(("day", StringType()), ("revenue", StringType())), ["day"])


def test_modes_are_checked_before_a_write(tmp_path: Path) -> None:
    mart = SqliteFile(tmp_path / "mart.db")
    with pytest.raises(DestinationError, match="an upsert needs the table's primary key"):
        mart.check_mode("upsert", [])
    mart.check_mode("replace", [])


def test_a_connection_no_adapter_writes_to_is_refused_naming_the_served_types(tmp_path: Path) -> None:
    conn = LocalLakeConnection(name="lake", type="local", path="lake")
    served = r"\(destination types: mariadb, mysql, postgres, sqlite\)"
    with pytest.raises(DestinationError, match=rf"^connection 'lake': type 'local' is not a destination {served}"):
        destination_adapter(conn)
    assert destination_adapter(SqliteConnection(name="mart", type="sqlite", path="mart.db")).name == "sqlite"
