"""The SQL export destinations (PostgreSQL, MariaDB, SQLite) against real databases: types read back exactly
with plain SQL, describe round-trips, replace / append / upsert with the export marker in the same
transaction, additive evolution, and one-line errors without secrets.

Each server gets a scratch database for the module (dropped after it), SQLite a file in a temporary folder;
every test uses its own tables.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pytest
from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    BooleanType,
    ByteType,
    DataType,
    DateType,
    DecimalType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    MapType,
    ShortType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from pipezone.core.destinations.contract import (
    DestinationError,
    ExportBatch,
    ExportMarker,
    TableChanges,
    TableName,
    WriteMode,
)
from pipezone.core.destinations.mysql import MySqlDestination
from pipezone.core.destinations.registry import open_destination
from pipezone.core.destinations.sql_destination import SqlDestination, open_engine
from pipezone.core.sources.jdbc.mysql import MySqlAdapter
from pipezone.core.spec.connection import ConnectionSpec, JdbcConnection, SqliteConnection
from pipezone.core.spec.secrets import SecretResolver

if TYPE_CHECKING:
    from services import Server

SCRATCH = f"pz_dest_{os.getpid()}"
PG_SCHEMA = "mart"
PASSWORD_ENV = "PZ_DEST_PASSWORD"

Spec = list[tuple[str, DataType, pa.DataType]]


@dataclass
class Target:
    """One destination under test and a plain-SQL way to look at what it wrote."""

    kind: str
    dest: SqlDestination
    schema: str | None
    connect: Callable[[], Any]

    def table(self, name: str) -> TableName:
        return TableName(name, self.schema)

    def sql_name(self, name: str) -> str:
        quote = "`" if self.kind == "mariadb" else '"'
        return ".".join(f"{quote}{part}{quote}" for part in (self.schema, name) if part)

    def query(self, statement: str) -> list[tuple[Any, ...]]:
        conn = self.connect()
        try:
            cursor = conn.cursor()
            cursor.execute(statement)
            return [tuple(row) for row in cursor.fetchall()]
        finally:
            conn.close()

    def ids(self, name: str) -> list[int]:
        return [row[0] for row in self.query(f"SELECT id FROM {self.sql_name(name)} ORDER BY id")]

    def staging_tables(self) -> list[str]:
        catalog = {
            "postgres": "SELECT tablename FROM pg_tables",
            "mariadb": f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{SCRATCH}'",
            "sqlite": "SELECT name FROM sqlite_master WHERE type = 'table'",
        }[self.kind]
        return [name for (name,) in self.query(catalog) if name.startswith("pz_stage")]


def server_connection(server: Server, name: str = "mart", **fields: Any) -> JdbcConnection:
    base = {"name": name, "type": server.kind, "host": server.host, "port": server.port, "database": SCRATCH}
    base |= {"user": server.user, "password": f"${{env:{PASSWORD_ENV}}}"}
    return JdbcConnection.model_validate(base | fields)


def open_on(conn: ConnectionSpec, password: str, root: Path) -> SqlDestination:
    dest = open_destination(conn, SecretResolver({PASSWORD_ENV: password}, root), root)
    assert isinstance(dest, SqlDestination)
    return dest


def scratch(server: Server) -> Iterator[Server]:
    """A fresh database for the module (PostgreSQL: with the schema `mart` the tests write into)."""
    server.drop_database(SCRATCH)
    server.create_database(SCRATCH)
    if server.kind == "postgres":
        conn = server.connect(SCRATCH)
        conn.execute(f"CREATE SCHEMA {PG_SCHEMA}")
        conn.close()
    yield server
    server.drop_database(SCRATCH)


@pytest.fixture(scope="module")
def pg_scratch(postgres: Server) -> Iterator[Server]:
    yield from scratch(postgres)


@pytest.fixture(scope="module")
def maria_scratch(mariadb: Server) -> Iterator[Server]:
    yield from scratch(mariadb)


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("postgres", marks=pytest.mark.services),
        pytest.param("mariadb", marks=pytest.mark.services),
        "sqlite",
    ],
)
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    root = tmp_path_factory.mktemp(request.param)
    if request.param == "sqlite":
        dest = open_on(SqliteConnection(name="mart", type="sqlite", path="mart.db"), "", root)
        yield Target("sqlite", dest, None, partial(sqlite3.connect, root / "mart.db"))
        return
    server: Server = request.getfixturevalue("pg_scratch" if request.param == "postgres" else "maria_scratch")
    dest = open_on(server_connection(server), server.password, root)
    yield Target(
        request.param, dest, PG_SCHEMA if request.param == "postgres" else SCRATCH, partial(server.connect, SCRATCH)
    )
    dest.close()


# ---------------------------------------------------------------------------------------------- data


def schema_of(spec: Spec) -> StructType:
    return StructType([StructField(name, kind) for name, kind, _ in spec])


def batch_of(spec: Spec, rows: list[tuple[Any, ...]]) -> pa.RecordBatch:
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in spec]
    arrays = [pa.array(list(values), type=arrow) for (_, _, arrow), values in zip(spec, columns, strict=True)]
    return pa.record_batch(arrays, names=[name for name, _, _ in spec])


def export(
    spec: Spec, *batches: list[tuple[Any, ...]], deleted: Spec | None = None, keys: list[tuple] = ()
) -> ExportBatch:
    deleted_keys = iter([batch_of(deleted, list(keys))]) if deleted else None
    return ExportBatch(schema_of(spec), iter([batch_of(spec, rows) for rows in batches]), deleted_keys)


def write(target: Target, name: str, spec: Spec, rows: list[tuple], mode: WriteMode, key: list[str], version: int):
    marker = ExportMarker(f"flow.{name}->mart.{name}", version)
    return target.dest.write(target.table(name), export(spec, rows), mode, key, marker)


ALL_TYPES: Spec = [
    ("id", IntegerType(), pa.int32()),
    ("b", BooleanType(), pa.bool_()),
    ("i8", ByteType(), pa.int8()),
    ("i16", ShortType(), pa.int16()),
    ("i64", LongType(), pa.int64()),
    ("f32", FloatType(), pa.float32()),
    ("f64", DoubleType(), pa.float64()),
    ("d10", DecimalType(10, 2), pa.decimal128(10, 2)),
    ("d38", DecimalType(38, 18), pa.decimal128(38, 18)),
    ("s", StringType(), pa.string()),
    ("bin", BinaryType(), pa.binary()),
    ("day", DateType(), pa.date32()),
    ("ts", TimestampType(), pa.timestamp("us", tz="UTC")),
    ("tags", ArrayType(StringType()), pa.list_(pa.string())),
    ("counts", MapType(StringType(), IntegerType()), pa.map_(pa.string(), pa.int32())),
    (
        "point",
        StructType([StructField("a", IntegerType()), StructField("b", StringType())]),
        pa.struct([("a", pa.int32()), ("b", pa.string())]),
    ),
]
TRICKY = "tab\there\nnew line\r\\back\\slash 'single' \"double\" \\N %s"
ALL_ROWS = [
    (
        -(2**31),
        True,
        -128,
        -32768,
        -(2**63),
        1.5,
        1e308,
        Decimal("-99999999.99"),
        Decimal("99999999999999999999.999999999999999999"),
        TRICKY,
        bytes(range(256)),
        date(1000, 1, 1),
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        ["a", None, 'tab\t"q"'],
        [("k", 1), ("ü", -2)],
        {"a": 1, "b": "x"},
    ),
    (
        2,
        False,
        127,
        32767,
        2**63 - 1,
        -0.25,
        -2.2250738585072014e-308,
        Decimal("0.01"),
        Decimal("-0.000000000000000001"),
        "",
        b"",
        date(9999, 12, 31),
        datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=UTC),
        [],
        [],
        {"a": None, "b": ""},
    ),
    (3, *([None] * 15)),
    (
        2**31 - 1,
        None,
        0,
        0,
        0,
        0.0,
        0.1,
        None,
        None,
        "ünïcødé 🎉 中文 \u2028",
        b"\x00\\\t\n",
        None,
        None,
        None,
        None,
        None,
    ),
]


def expected(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A written row as the tests read it back: maps as JSON objects."""
    return tuple(
        dict(v) if name == "counts" and v is not None else v for (name, _, _), v in zip(ALL_TYPES, row, strict=True)
    )


def normal(kind: str, value: Any) -> Any:
    """A value read with the database's own driver, in the Python form the batch had."""
    if value is None:
        return None
    if kind in ("array", "map", "struct"):
        return json.loads(value) if isinstance(value, str) else value
    conversions: dict[str, Callable[[Any], Any]] = {
        "boolean": bool,
        "decimal": lambda v: Decimal(str(v)),
        "binary": bytes,
        "date": lambda v: date.fromisoformat(v) if isinstance(v, str) else v,
        "timestamp": utc,
    }
    return conversions.get(kind, lambda v: v)(value)


def utc(value: datetime | str) -> datetime:
    """timestamptz (aware), DATETIME (naive UTC) or SQLite's text (UTC), as an aware UTC datetime."""
    stamp = datetime.fromisoformat(value) if isinstance(value, str) else value
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


# ---------------------------------------------------------------------------------------------- tests


def test_every_spark_type_is_written_exactly_and_describe_round_trips(target: Target) -> None:
    dest, table, schema = target.dest, target.table("all_types"), schema_of(ALL_TYPES)
    assert dest.prepare(table, schema, ["id"]) == TableChanges(created=True)
    described = dest.describe(table)
    assert [(f.name, f.dataType) for f in described] == [(f.name, f.dataType) for f in dest.stored_schema(schema)]
    assert dest.prepare(table, schema, ["id"]) == TableChanges()

    report = write(target, "all_types", ALL_TYPES, ALL_ROWS, "append", ["id"], 1)
    assert (report.rows_written, report.mode, report.bytes_written > 0) == (4, "append", True)

    columns = ", ".join(f"{q}{name}{q}" for name, _, _ in ALL_TYPES for q in ["`" if target.kind == "mariadb" else '"'])
    stored = target.query(f"SELECT {columns} FROM {target.sql_name('all_types')} ORDER BY id")
    kinds = [kind.typeName() for _, kind, _ in ALL_TYPES]
    assert [tuple(normal(k, v) for k, v in zip(kinds, row, strict=True)) for row in stored] == [
        expected(row) for row in ALL_ROWS
    ]
    if target.kind == "sqlite":  # decimals as their exact text, never a float
        assert target.query("SELECT typeof(d38), d38 FROM all_types WHERE id = 2") == [
            ("text", "-0.000000000000000001")
        ]


def failing(spec: Spec, rows: list[tuple]) -> Iterator[pa.RecordBatch]:
    yield batch_of(spec, rows)
    raise RuntimeError("the lake read broke mid-export")


SIMPLE: Spec = [("id", LongType(), pa.int64()), ("name", StringType(), pa.string())]


def test_replace_swaps_the_whole_table_and_a_failed_load_leaves_it_intact(target: Target) -> None:
    dest, table = target.dest, target.table("replaced")
    dest.prepare(table, schema_of(SIMPLE), ["id"])
    write(target, "replaced", SIMPLE, [(1, "a"), (2, "b"), (3, "c")], "replace", ["id"], 1)
    report = write(target, "replaced", SIMPLE, [(4, "d"), (5, None)], "replace", ["id"], 2)
    assert (report.rows_written, target.ids("replaced")) == (2, [4, 5])
    assert dest.exported_version("flow.replaced->mart.replaced") == 2

    broken = ExportBatch(schema_of(SIMPLE), failing(SIMPLE, [(6, "e")]))
    with pytest.raises(RuntimeError, match="mid-export"):
        dest.write(table, broken, "replace", ["id"], ExportMarker("flow.replaced->mart.replaced", 3))
    assert target.ids("replaced") == [4, 5]
    assert dest.exported_version("flow.replaced->mart.replaced") == 2
    assert target.staging_tables() == []
    assert dest.prepare(table, schema_of(SIMPLE), ["id"]) == TableChanges()  # the swapped table keeps its types


def test_append_writes_the_marker_so_a_rerun_of_the_same_version_is_skipped(target: Target) -> None:
    dest, table, export_id = target.dest, target.table("appended"), "flow.appended->mart.appended"
    dest.prepare(table, schema_of(SIMPLE), ["id"])
    assert dest.exported_version(export_id) is None
    write(target, "appended", SIMPLE, [(1, "a"), (2, "b")], "append", ["id"], 7)
    assert dest.exported_version(export_id) == 7

    # the caller's state update was lost: a rerun of version 7 asks the destination first and skips
    if (dest.exported_version(export_id) or -1) < 7:
        write(target, "appended", SIMPLE, [(1, "a"), (2, "b")], "append", ["id"], 7)
    assert target.ids("appended") == [1, 2]

    write(target, "appended", SIMPLE, [(3, "c")], "append", ["id"], 8)
    assert (dest.exported_version(export_id), target.ids("appended")) == (8, [1, 2, 3])
    markers = target.query(
        f"SELECT version, table_name, rows_written FROM pipezone_exports WHERE export_id = '{export_id}'"
    )
    assert markers == [(8, str(table), 1)]


def test_a_failed_append_leaves_neither_rows_nor_marker(target: Target) -> None:
    dest, table, export_id = target.dest, target.table("atomic"), "flow.atomic->mart.atomic"
    dest.prepare(table, schema_of(SIMPLE), ["id"])
    write(target, "atomic", SIMPLE, [(1, "a"), (2, "b")], "append", ["id"], 1)
    with pytest.raises(DestinationError) as refused:
        write(target, "atomic", SIMPLE, [(3, "c"), (1, "again")], "append", ["id"], 2)
    message = str(refused.value)
    assert message.startswith(f"connection 'mart': table {table}: ") and "\n" not in message
    assert "uplicate" in message or "UNIQUE" in message
    assert (dest.exported_version(export_id), target.ids("atomic")) == (1, [1, 2])


KEYED: Spec = [
    ("region", StringType(), pa.string()),
    ("day", DateType(), pa.date32()),
    ("amount", DecimalType(12, 2), pa.decimal128(12, 2)),
    ("note", StringType(), pa.string()),
]
KEY = ["region", "day"]


def test_upsert_updates_inserts_and_deletes_on_a_composite_key(target: Target) -> None:
    dest, table = target.dest, target.table("upserted")
    d1, d2, d9 = date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 9)
    dest.prepare(table, schema_of(KEYED), KEY)
    first = [("eu", d1, Decimal("1.00"), "a"), ("eu", d2, Decimal("2.00"), "b"), ("us", d1, Decimal("3.00"), "c")]
    first += [("EU", d1, Decimal("4.00"), "case"), ("eu ", d1, Decimal("5.00"), "space")]
    write(target, "upserted", KEYED, first, "upsert", KEY, 1)

    rows = [("eu", d1, Decimal("10.00"), "a2"), ("us", d2, Decimal("20.00"), None), ("us", d1, Decimal("30.00"), "c2")]
    gone = [("eu", d2), ("us", d1), ("zz", d9)]  # (us, d1) is back in the rows: the rows win
    batch = export(KEYED, rows, deleted=KEYED[:2], keys=gone)
    report = dest.write(table, batch, "upsert", KEY, ExportMarker("flow.upserted->mart.upserted", 2))
    assert (report.rows_written, report.rows_deleted) == (3, 2)

    stored = target.query(f"SELECT region, day, amount, note FROM {target.sql_name('upserted')}")
    found = sorted((r, normal("date", d), Decimal(str(a)), n) for r, d, a, n in stored)
    assert found == sorted(
        [
            ("EU", d1, Decimal("4.00"), "case"),
            ("eu", d1, Decimal("10.00"), "a2"),
            ("eu ", d1, Decimal("5.00"), "space"),
            ("us", d1, Decimal("30.00"), "c2"),
            ("us", d2, Decimal("20.00"), None),
        ]
    )
    assert dest.exported_version("flow.upserted->mart.upserted") == 2


def test_evolve_adds_and_widens_columns_and_refuses_a_narrowed_type(target: Target) -> None:
    dest, table = target.dest, target.table("evolved")
    v1: Spec = [("id", IntegerType(), pa.int32()), ("amount", DecimalType(10, 2), pa.decimal128(10, 2))]
    dest.prepare(table, schema_of(v1), ["id"])
    write(target, "evolved", v1, [(1, Decimal("12345678.90"))], "append", ["id"], 1)

    v2: Spec = [("id", LongType(), pa.int64()), ("amount", DecimalType(12, 2), pa.decimal128(12, 2))]
    v2.append(("note", StringType(), pa.string()))
    widened = ("id", "amount") if target.kind != "sqlite" else ("amount",)  # SQLite's INTEGER is 64-bit already
    assert dest.prepare(table, schema_of(v2), ["id"]) == TableChanges(added=("note",), widened=widened)
    described = {f.name: f.dataType for f in dest.describe(table)}
    assert described == {"id": LongType(), "amount": DecimalType(12, 2), "note": StringType()}
    write(target, "evolved", v2, [(2**40, Decimal("9999999999.99"), "n")], "append", ["id"], 2)
    stored = target.query(f"SELECT id, amount, note FROM {target.sql_name('evolved')} ORDER BY id")
    assert [(i, Decimal(str(a)), n) for i, a, n in stored] == [
        (1, Decimal("12345678.90"), None),
        (2**40, Decimal("9999999999.99"), "n"),
    ]

    v3: Spec = [("id", LongType(), pa.int64()), ("amount", DecimalType(12, 4), pa.decimal128(12, 4))]
    v3.append(("extra", StringType(), pa.string()))
    with pytest.raises(
        DestinationError, match=r"column amount is decimal\(12,2\) here and decimal\(12,4\) in the lake$"
    ):
        dest.prepare(table, schema_of(v3), ["id"])
    assert {f.name: f.dataType for f in dest.describe(table)} == described


@pytest.mark.services
def test_a_mariadb_refusing_local_loads_gets_multi_row_inserts(
    maria_scratch: Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    conn, resolver = server_connection(maria_scratch), SecretResolver({PASSWORD_ENV: maria_scratch.password}, tmp_path)
    url = partial(MySqlAdapter().native_url, conn, resolver, tmp_path)
    dest = MySqlDestination(conn, open_engine(conn, url))  # no local_infile on the client: LOCAL is refused
    table = TableName("inserted", SCRATCH)
    dest.prepare(table, schema_of(ALL_TYPES), ["id"])
    with caplog.at_level(logging.WARNING):
        report = dest.write(table, export(ALL_TYPES, ALL_ROWS), "append", ["id"], ExportMarker("inserted", 1))
    assert report.rows_written == 4 and "multi-row INSERTs" in caplog.text
    target = Target("mariadb", dest, SCRATCH, partial(maria_scratch.connect, SCRATCH))
    names = ", ".join(f"`{name}`" for name, _, _ in ALL_TYPES)
    stored = target.query(f"SELECT {names} FROM {target.sql_name('inserted')} ORDER BY id")
    kinds = [kind.typeName() for _, kind, _ in ALL_TYPES]
    assert [tuple(normal(k, v) for k, v in zip(kinds, row, strict=True)) for row in stored] == [
        expected(r) for r in ALL_ROWS
    ]


def test_refusals_are_one_line_naming_connection_and_table_without_the_password(
    target: Target, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    secret = "s3cret-Pw-42"
    if target.kind == "sqlite":
        (tmp_path / "folder.db").mkdir()
        dest = open_on(SqliteConnection(name="broken", type="sqlite", path="folder.db"), "", tmp_path)
    else:
        server: Server = request.getfixturevalue(target.kind)
        dest = open_on(server_connection(server, "broken", port=1), secret, tmp_path)  # nothing listens on port 1
        wrong = open_on(server_connection(server, "broken"), secret, tmp_path)  # a wrong password
        with pytest.raises(DestinationError) as denied:
            wrong.describe(TableName("orders", "mart"))
        assert str(denied.value).startswith("connection 'broken': table mart.orders: ")
        assert secret not in str(denied.value) and "\n" not in str(denied.value)
    with pytest.raises(DestinationError) as refused:
        dest.describe(TableName("orders", "mart"))
    message = str(refused.value)
    assert message.startswith("connection 'broken': table mart.orders: ") and "\n" not in message
    assert secret not in message and "Traceback" not in message


def test_exported_version_is_none_without_a_marker_table(tmp_path: Path) -> None:
    dest = open_on(SqliteConnection(name="mart", type="sqlite", path="fresh.db"), "", tmp_path)
    assert dest.exported_version("flow.t->mart.t") is None
