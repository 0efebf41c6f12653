"""MySQL/MariaDB change data capture (the row-format binlog through python-mysql-replication) on the
project's MariaDB.

Each test reads its own table of a scratch database (dropped after the module); each stream registers with
a replica server id of its own (from its flow name), and every stream is closed after its test.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pipezone.core.sources.cdc.contract import Change, ChangeLimits, LogPosition, LogUnavailable
from pipezone.core.sources.cdc.mysql_log import MySqlChangeStream
from pipezone.core.spec.connection import JdbcConnection
from pipezone.core.spec.secrets import SecretResolver
from pipezone.core.spec.source import SourceSpec

if TYPE_CHECKING:
    from services import MariaDB

pytestmark = pytest.mark.services

SCRATCH = f"pz_cdc_my_{os.getpid()}"
PASSWORD_ENV = "PZ_CDC_MY_PASSWORD"
ALL = ChangeLimits(max_changes=100_000, max_seconds=30)


@pytest.fixture(scope="module")
def scratch(mariadb: MariaDB) -> Iterator[MariaDB]:
    mariadb.drop_database(SCRATCH)
    mariadb.create_database(SCRATCH)
    yield mariadb
    mariadb.drop_database(SCRATCH)


class Harness:
    """Streams over the scratch database and a connection to change its tables, closed after the test."""

    def __init__(self, mariadb: MariaDB, tmp_path: Path) -> None:
        self.mariadb = mariadb
        self.resolver = SecretResolver({PASSWORD_ENV: mariadb.password}, tmp_path)
        self.db = mariadb.connect(SCRATCH)
        self.streams: list[MySqlChangeStream] = []

    def connection(self, **fields: Any) -> JdbcConnection:
        base = {"name": "scratch", "type": "mariadb", "host": self.mariadb.host, "port": self.mariadb.port}
        base |= {"database": SCRATCH, "user": self.mariadb.user, "password": f"${{env:{PASSWORD_ENV}}}"}
        return JdbcConnection.model_validate(base | fields)

    def stream(
        self, table: str, types: dict[str, str], select: str | None = None, key: tuple[str, ...] = ("id",)
    ) -> MySqlChangeStream:
        spec = SourceSpec.model_validate({"connection": "scratch", "table": table, "primary_key": list(key), "cdc": {}})
        columns = ", ".join(f"`{c}`" for c in types)
        select_sql = select or f"SELECT {columns} FROM `{SCRATCH}`.`{table}`"
        flow = f"{table}_{os.getpid()}"
        stream = MySqlChangeStream(self.connection(), self.resolver, spec, flow, select_sql, types)
        self.streams.append(stream)
        return stream

    def sql(self, *statements: str) -> None:
        with self.db.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)

    def table(self, name: str, select: str) -> list[dict[str, Any]]:
        with self.db.cursor() as cursor:
            cursor.execute(select)
            names = [d[0] for d in cursor.description]
            rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        return sorted(rows, key=lambda r: r["id"])

    def close(self) -> None:
        for stream in self.streams:
            stream.close()
        self.db.close()


@pytest.fixture
def my(scratch: MariaDB, tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(scratch, tmp_path)
    yield harness
    harness.close()


def read_all(stream: MySqlChangeStream, after: LogPosition) -> tuple[list[Change], LogPosition]:
    changes: list[Change] = []
    while True:
        batch = stream.changes(after, ALL)
        if not batch.changes and batch.end == after:
            return changes, after
        changes += batch.changes
        after = batch.end


def replay(rows: list[dict[str, Any]], changes: list[Change]) -> list[dict[str, Any]]:
    """`rows` with `changes` applied in order; strict, so a change the rows already hold (an insert of a key
    they have) or one they miss a change before (an update or delete of a key they lack) fails."""
    table = {row["id"]: dict(row) for row in rows}
    for change in sorted(changes, key=lambda c: c.order):
        key = change.row["id"]
        held = key in table
        assert held == (change.op != "c"), f"{change.op} of key {key} at {change.position.text}"
        if change.op == "d":
            del table[key]
        else:
            table[key] = dict(change.row)
    return [table[k] for k in sorted(table)]


def snapshot_rows(stream: MySqlChangeStream) -> tuple[LogPosition, list[dict[str, Any]]]:
    snap = stream.snapshot()
    try:
        return snap.position, [dict(row) for batch in snap.rows for row in batch]
    finally:
        snap.close()


# ---------------------------------------------------------------------------------------------- consistency


@pytest.mark.parametrize("isolation", ["REPEATABLE READ", "READ COMMITTED"])
def test_snapshot_is_consistent_with_its_position_under_concurrent_writes(
    my: Harness, isolation: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Also with READ COMMITTED as the server's (here: the session's) default isolation, under which MariaDB
    ignores WITH CONSISTENT SNAPSHOT: each statement would see what was committed when it started."""
    connect = MySqlChangeStream._connect

    def session_default(stream: MySqlChangeStream) -> Any:
        conn = connect(stream)
        with conn.cursor() as cursor:
            cursor.execute(f"SET SESSION TRANSACTION ISOLATION LEVEL {isolation}")
        return conn

    monkeypatch.setattr(MySqlChangeStream, "_connect", session_default)
    table = f"busy_{isolation[:4].lower()}"
    my.sql(
        f"CREATE TABLE {table} (id int PRIMARY KEY, v int NOT NULL, note varchar(20))",
        f"INSERT INTO {table} SELECT seq, seq, CONCAT('n', seq) FROM seq_1_to_30000",
    )
    stop = threading.Event()
    writes = [0]

    def writer() -> None:
        conn = my.mariadb.connect(SCRATCH)
        try:
            n = 30000
            with conn.cursor() as cursor:
                while not stop.is_set():
                    n += 1
                    conn.begin()
                    cursor.execute(f"INSERT INTO {table} VALUES (%s, %s, 'new')", [n, n])
                    cursor.execute(f"UPDATE {table} SET v = v + 1 WHERE id = %s", [n % 30000 + 1])
                    cursor.execute(f"DELETE FROM {table} WHERE id = %s", [(n * 7) % 30000 + 1])
                    conn.commit()
                    writes[0] += 1
        finally:
            conn.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.3)
        stream = my.stream(table, {"id": "int", "v": "int", "note": "string"})
        before = writes[0]
        snap = stream.snapshot()
        rows = []
        for batch in snap.rows:  # the writer goes on while the snapshot is read in batches
            rows += [dict(r) for r in batch]
            time.sleep(0.05)
        snap.close()
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join()
    assert writes[0] - before > 10  # transactions committed while the snapshot was read
    changes, end = read_all(stream, snap.position)
    assert writes[0] > 10 and len(changes) > 30
    assert all(c.position > snap.position for c in changes)
    assert len({c.order for c in changes}) == len(changes)  # nothing doubled
    assert replay(rows, changes) == my.table(table, f"SELECT id, v, note FROM {table}")
    assert end >= max(c.position for c in changes)


def test_interleaved_transactions_come_in_commit_order(my: Harness) -> None:
    my.sql("CREATE TABLE orders (id int PRIMARY KEY, who varchar(5))")
    stream = my.stream("orders", {"id": "int", "who": "string"})
    position, rows = snapshot_rows(stream)
    assert rows == []
    a, b = my.mariadb.connect(SCRATCH), my.mariadb.connect(SCRATCH)
    try:
        with a.cursor() as ca, b.cursor() as cb:
            a.begin()
            ca.execute("INSERT INTO orders VALUES (1, 'a')")
            b.begin()
            cb.execute("INSERT INTO orders VALUES (2, 'b')")
            ca.execute("INSERT INTO orders VALUES (3, 'a')")
            cb.execute("INSERT INTO orders VALUES (4, 'b')")
            b.commit()
            a.commit()
    finally:
        a.close()
        b.close()
    batch = stream.changes(position, ALL)
    assert [(c.op, c.row["id"], c.row["who"], c.index) for c in batch.changes] == [
        ("c", 2, "b", 0),
        ("c", 4, "b", 1),
        ("c", 1, "a", 0),
        ("c", 3, "a", 1),
    ]
    first, second = batch.changes[0].position, batch.changes[2].position
    assert position < first < second <= batch.end
    assert batch.changes[1].position == first and batch.changes[3].position == second
    assert [c.order for c in batch.changes] == sorted(c.order for c in batch.changes)
    assert batch.columns == ["id", "who"]
    assert batch.lag.bytes_behind is not None and batch.lag.bytes_behind >= 0
    assert batch.lag.seconds_behind is not None and 0 <= batch.lag.seconds_behind < 60
    assert all(c.committed_at is not None and c.committed_at.tzinfo is not None for c in batch.changes)
    assert stream.parse_position(batch.end.text) == batch.end


def test_update_key_update_and_delete(my: Harness) -> None:
    my.sql(
        "CREATE TABLE items (id int PRIMARY KEY, name varchar(10), qty int)",
        "INSERT INTO items VALUES (1, 'one', 1), (2, 'two', 2), (3, 'three', 3)",
    )
    stream = my.stream("items", {"id": "int", "name": "string", "qty": "int"})
    position, rows = snapshot_rows(stream)
    my.sql(
        "UPDATE items SET qty = 10 WHERE id = 1",
        "UPDATE items SET id = 20, name = 'twenty' WHERE id = 2",
        "DELETE FROM items WHERE id = 3",
    )
    my.db.begin()  # one transaction: a key update among other changes keeps its place
    my.sql("UPDATE items SET qty = 11 WHERE id = 1", "UPDATE items SET id = 21 WHERE id = 20")
    my.db.commit()
    changes = stream.changes(position, ALL).changes
    assert [(c.op, dict(c.row), c.index) for c in changes] == [
        ("u", {"id": 1, "name": "one", "qty": 10}, 0),
        ("d", {"id": 2, "name": "two", "qty": 2}, 0),  # the whole row before: binlog_row_image=FULL
        ("c", {"id": 20, "name": "twenty", "qty": 2}, 1),
        ("d", {"id": 3, "name": "three", "qty": 3}, 0),
        ("u", {"id": 1, "name": "one", "qty": 11}, 0),
        ("d", {"id": 20, "name": "twenty", "qty": 2}, 1),
        ("c", {"id": 21, "name": "twenty", "qty": 2}, 2),
    ]
    assert changes[1].position == changes[2].position  # one transaction: the key update
    assert len({c.position for c in changes}) == 4
    assert changes[4].position == changes[5].position == changes[6].position
    assert [c.order for c in changes] == sorted({c.order for c in changes})
    assert replay(rows, changes) == my.table("items", "SELECT * FROM items")


# ---------------------------------------------------------------------------------------------- limits, purge


def test_max_changes_ends_at_a_transaction_boundary_and_the_next_read_continues(my: Harness) -> None:
    my.sql("CREATE TABLE steps (id int PRIMARY KEY)")
    stream = my.stream("steps", {"id": "int"})
    start, _ = snapshot_rows(stream)
    for t in range(5):  # five transactions of three rows
        my.sql(f"INSERT INTO steps SELECT seq FROM seq_{t * 3 + 1}_to_{t * 3 + 3}")
    my.sql("INSERT INTO steps SELECT seq FROM seq_16_to_25")  # one transaction of ten rows
    limits = ChangeLimits(max_changes=4, max_seconds=30)
    first = stream.changes(start, limits)
    assert [c.row["id"] for c in first.changes] == [1, 2, 3, 4, 5, 6]  # over 4 only to finish the transaction
    assert first.end == first.changes[-1].position
    second = stream.changes(first.end, limits)
    assert [c.row["id"] for c in second.changes] == [7, 8, 9, 10, 11, 12]
    third = stream.changes(second.end, limits)
    assert [c.row["id"] for c in third.changes] == [13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25]
    assert {c.position for c in third.changes[3:]} == {third.end}  # the ten-row transaction whole
    again = stream.changes(second.end, limits)  # a run that died before storing `end` reads the same again
    assert [(c.row["id"], c.order) for c in again.changes] == [(c.row["id"], c.order) for c in third.changes]
    rest = stream.changes(third.end, ALL)
    assert rest.changes == [] and rest.end >= third.end
    assert rest.lag.seconds_behind is None


def purge(my: Harness) -> str:
    """The binlog files before the newest purged; MariaDB keeps a file until its binlog checkpoint (InnoDB
    has its commits durable), written a moment after the rotation, so the purge is repeated until done."""
    deadline = time.monotonic() + 20
    with my.db.cursor() as cursor:
        while True:
            cursor.execute("SHOW BINARY LOGS")
            files = [row[0] for row in cursor.fetchall()]
            if len(files) == 1 or time.monotonic() > deadline:
                return files[0]
            cursor.execute(f"PURGE BINARY LOGS TO '{files[-1]}'")
            time.sleep(0.1)


def test_a_purged_binlog_is_log_unavailable_naming_the_file(my: Harness) -> None:
    my.sql("CREATE TABLE purged (id int PRIMARY KEY)")
    stream = my.stream("purged", {"id": "int"})
    position, _ = snapshot_rows(stream)
    my.sql("INSERT INTO purged VALUES (1)")
    assert [c.row["id"] for c in stream.changes(position, ALL).changes] == [1]
    for _ in range(3):
        my.sql("FLUSH BINARY LOGS")
    file, newest = position.text.split(":")[0], purge(my)
    assert newest != file
    expected = f"binlog {file} .*is no longer on the server.*pipezone state reset purged_{os.getpid()}"
    with pytest.raises(LogUnavailable, match=expected):
        stream.changes(position, ALL)
    position, _ = snapshot_rows(stream)  # after `pipezone state reset`: a new snapshot, in a file still there
    assert position > stream.parse_position(f"{newest}:4")
    my.sql("INSERT INTO purged VALUES (2)")
    assert [c.row["id"] for c in stream.changes(position, ALL).changes] == [2]


def test_a_non_transactional_table_and_a_truncate(my: Harness) -> None:
    other = f"{SCRATCH}_other"  # a table of the same name in another database is another table
    my.mariadb.drop_database(other)
    my.mariadb.create_database(other)
    try:
        my.sql(
            "CREATE TABLE plain (id int PRIMARY KEY) ENGINE=MyISAM",  # commits with a COMMIT statement, no Xid
            f"CREATE TABLE `{other}`.plain (id int PRIMARY KEY)",
        )
        stream = my.stream("plain", {"id": "int"})
        position, _ = snapshot_rows(stream)
        my.sql(
            "INSERT INTO plain VALUES (1), (2)",
            "INSERT INTO plain VALUES (3)",
            f"INSERT INTO `{other}`.plain VALUES (4)",
            f"TRUNCATE `{other}`.plain",
        )
        batch = stream.changes(position, ALL)
        assert [(c.row["id"], c.index) for c in batch.changes] == [(1, 0), (2, 1), (3, 0)]
        assert position < batch.changes[1].position < batch.changes[2].position <= batch.end
        my.sql("INSERT INTO plain VALUES (5)", "TRUNCATE plain")
        expected = f"TRUNCATE of `{SCRATCH}`.`plain` at .*pipezone state reset plain_{os.getpid()}"
        with pytest.raises(LogUnavailable, match=expected):
            stream.changes(batch.end, ALL)
        position, _ = snapshot_rows(stream)  # `pipezone state reset`: a new snapshot after the TRUNCATE
        elsewhere = my.mariadb.connect(other)
        try:
            with elsewhere.cursor() as cursor:
                cursor.execute(f"TRUNCATE TABLE `{SCRATCH}`.`plain`")
        finally:
            elsewhere.close()
        with pytest.raises(LogUnavailable, match=expected):
            stream.changes(position, ALL)
    finally:
        my.mariadb.drop_database(other)


# ---------------------------------------------------------------------------------------------- values

ONES_64 = "b'" + "1" * 64 + "'"
HIGH_64 = "b'1" + "0" * 63 + "'"
CHAR = "CAST(`{c}` AS CHAR)"
UNSIGNED = "CAST(`{c}` AS UNSIGNED)"
WKT = "ST_AsText(`{c}`)"
# column, declared type, the batch read's expression (None: the column itself), Spark type, row 1, update
TYPES = [
    ("e", "ENUM('G','PG','PG-13','R','NC-17')", None, "string", "'PG'", "'NC-17'"),
    ("s", "SET('Trailers','Commentaries','Deleted Scenes')", None, "string", "'Trailers,Deleted Scenes'", "''"),
    ("s0", "SET('a','b''c')", None, "string", "''", "'b''c,a'"),
    ("c", "CHAR(5)", None, "string", "'ab'", "'abcde'"),
    ("vc", "VARCHAR(20)", None, "string", "'x  '", "''"),
    ("tx", "TEXT", None, "string", "'tëxt 😀'", "'line\\nnext'"),
    ("b", "BINARY(4)", None, "binary", "X'0102'", "X'00000000'"),
    ("vb", "VARBINARY(8)", None, "binary", "X'FF00'", "X''"),
    ("bl", "BLOB", None, "binary", "X'00FF'", "X'C328'"),
    ("y", "YEAR", None, "int", "2006", "0"),
    ("bit1", "BIT(1)", "(`{c}` <> 0)", "boolean", "b'1'", "b'0'"),
    ("bit5", "BIT(5)", UNSIGNED, "decimal(20,0)", "b'101'", "b'0'"),
    ("bit64", "BIT(64)", UNSIGNED, "decimal(20,0)", ONES_64, HIGH_64),
    ("ti1", "TINYINT(1)", None, "tinyint", "1", "-128"),
    ("bo", "BOOL", None, "tinyint", "TRUE", "FALSE"),
    ("uti", "TINYINT UNSIGNED", None, "smallint", "255", "0"),
    ("usi", "SMALLINT UNSIGNED", None, "int", "65535", "1"),
    ("umi", "MEDIUMINT UNSIGNED", None, "int", "16777215", "2"),
    ("mi", "MEDIUMINT", None, "int", "-8388608", "8388607"),
    ("ui", "INT UNSIGNED", None, "bigint", "4294967295", "3"),
    ("bi", "BIGINT", None, "bigint", "-9223372036854775808", "9223372036854775807"),
    ("ubi", "BIGINT UNSIGNED", None, "decimal(20,0)", "18446744073709551615", "0"),
    (
        "dec65",
        "DECIMAL(65,30)",
        CHAR,
        "string",
        "12345678901234567890123456789012345.123456789012345678901234567890",
        "-0.000000000000000000000000000001",
    ),
    ("dec40", "DECIMAL(40,0)", CHAR, "string", "-1234567890123456789012345678901234567890", "0"),
    ("dec38", "DECIMAL(38,0)", CHAR, "string", "99999999999999999999999999999999999999", "-1"),
    ("dec12", "DECIMAL(12,2)", None, "decimal(12,2)", "1234.5", "-0.05"),
    ("dec18", "DECIMAL(18,9)", None, "decimal(18,9)", "-123456789.000000001", "0"),
    ("f", "FLOAT", None, "float", "1.5", "0.1"),
    ("f6", "FLOAT", None, "float", "123456.789", "-1.2345678"),  # the server prints 6 digits: 123457
    ("f103", "FLOAT(10,3)", None, "float", "1234567.125", "1.2345678"),
    ("d124", "DOUBLE(12,4)", None, "double", "1.23456", "-0.00005"),
    ("db", "DOUBLE", None, "double", "0.1", "-1e300"),
    ("d", "DATE", None, "date", "'1000-01-01'", "'9999-12-31'"),
    ("dt", "DATETIME", None, "timestamp", "'2024-01-02 03:04:05'", "'1970-01-01 00:00:00'"),
    ("dt6", "DATETIME(6)", None, "timestamp", "'2024-01-02 03:04:05.123456'", "'9999-12-31 23:59:59.999999'"),
    ("ts3", "TIMESTAMP(3) NULL", None, "timestamp", "'2024-01-02 03:04:05.120'", "'1970-01-01 00:00:01'"),
    ("ts6", "TIMESTAMP(6) NULL", None, "timestamp", "'2024-01-02 03:04:05.000120'", "'2038-01-19 03:14:07.999999'"),
    ("tm", "TIME", CHAR, "string", "'-838:59:59'", "'838:59:59'"),
    ("tm6", "TIME(6)", CHAR, "string", "'12:34:56.123456'", "'-00:00:00.000001'"),
    ("tm24", "TIME(6)", CHAR, "string", "'100:00:00.5'", "'-100:00:00.5'"),
    ("tmn", "TIME(6)", CHAR, "string", "'-12:34:56.789'", "'-00:00:01'"),
    ("tm2", "TIME(2)", CHAR, "string", "'-01:02:03.04'", "'00:00:00.99'"),
    ("tm3", "TIME(3)", CHAR, "string", "'-01:02:03.004'", "'-838:59:58.999'"),
    ("tm1", "TIME(1)", CHAR, "string", "'-00:00:01.5'", "'-00:00:00.1'"),
    ("tm4", "TIME(4)", CHAR, "string", "'-23:59:59.0001'", "'24:00:00.9999'"),
    ("tm5", "TIME(5)", CHAR, "string", "'-12:00:00.00001'", "'-00:00:00.12345'"),
    ("dt1", "DATETIME(1)", None, "timestamp", "'2024-01-02 03:04:05.9'", "'1000-01-01 00:00:00.1'"),
    ("j", "JSON", None, "string", """'{"a": [1, 2], "b": "x"}'""", """'[true, null, "é"]'"""),
    ("g", "GEOMETRY", WKT, "string", "ST_GeomFromText('POINT(1 2)')", "ST_GeomFromText('LINESTRING(0 0,1 1.5)', 4326)"),
    ("pt", "POINT", WKT, "string", "ST_GeomFromText('POINT(-1.25 2e10)')", "POINT(0, 0)"),
    (
        "pg",
        "POLYGON",
        WKT,
        "string",
        "ST_GeomFromText('POLYGON((0 0,1 0,1 1,0 0))')",
        "ST_GeomFromText('POLYGON EMPTY')",
    ),
    ("zd", "DATETIME NULL", None, "timestamp", "'0000-00-00 00:00:00'", "'2024-02-29 23:59:59'"),
    ("zdt", "DATE NULL", None, "date", "'0000-00-00'", "'2024-02-29'"),
    ("zts", "TIMESTAMP NULL", None, "timestamp", "'0000-00-00 00:00:00'", "'2024-02-29 23:59:59'"),
    ("zp", "DATE NULL", None, "date", "'2024-00-10'", "'2024-01-00'"),  # zero in date: NULL too
    ("zpt", "DATETIME(3) NULL", None, "timestamp", "'2024-02-00 10:00:00.5'", "'0000-01-01 00:00:00'"),
]
NAMES = ["id", *(name for name, *_ in TYPES)]


def typed_select(table: str) -> str:
    """The batch read's SELECT (jdbc/mysql.py `read_expression`): TIME, BIT, wide DECIMAL and spatial by SQL."""
    exprs = [f"{expr.format(c=name)} AS `{name}`" if expr else f"`{name}`" for name, _, expr, *_ in TYPES]
    return f"SELECT `id`, {', '.join(exprs)} FROM `{SCRATCH}`.`{table}`"


def same(got: dict[str, Any], expected: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """The columns (id aside) whose value or Python type differs."""
    return [
        (name, got.get(name), expected.get(name))
        for name in NAMES[1:]
        if got.get(name) != expected.get(name) or type(got.get(name)) is not type(expected.get(name))
    ]


def test_values_carry_the_types_and_values_of_the_snapshot(my: Harness) -> None:
    columns = ", ".join(f"`{name}` {declared}" for name, declared, *_ in TYPES)
    my.sql(f"CREATE TABLE vals (id int PRIMARY KEY, {columns})")
    first = ", ".join(value for *_, value, _ in TYPES)
    second = ", ".join(f"`{name}` = {value}" for name, *_, value in TYPES)
    my.sql("SET SESSION sql_mode = ''")  # zero dates, as legacy schemas hold them
    my.sql(f"INSERT INTO vals VALUES (1, {first})", "INSERT INTO vals (id) VALUES (3)")
    types = {"id": "int"} | {name: spark for name, _, _, spark, *_ in TYPES}
    stream = my.stream("vals", types, select=typed_select("vals"))
    position, rows = snapshot_rows(stream)
    snap = {row["id"]: row for row in rows}
    my.sql(f"INSERT INTO vals VALUES (2, {first})", "INSERT INTO vals (id) VALUES (4)")
    my.sql(f"UPDATE vals SET {second} WHERE id = 1")
    _, fresh_rows = snapshot_rows(stream)
    fresh = {row["id"]: row for row in fresh_rows}
    my.sql("DELETE FROM vals WHERE id IN (2, 4)")
    changes = {(c.op, c.row["id"]): dict(c.row) for c in stream.changes(position, ALL).changes}
    assert sorted(changes) == [("c", 2), ("c", 4), ("d", 2), ("d", 4), ("u", 1)]
    assert list(snap[1]) == NAMES and all(list(row) == NAMES for row in changes.values())
    assert same(changes[("c", 2)], snap[1]) == []
    assert same(changes[("d", 2)], snap[1]) == []
    assert same(changes[("c", 4)], snap[3]) == []
    assert same(changes[("u", 1)], fresh[1]) == []
    assert same(fresh[2], snap[1]) == []
    assert all(v is None for k, v in snap[3].items() if k != "id")
    row = changes[("c", 2)]
    assert (row["e"], row["s"], row["s0"], row["c"], row["vc"], row["tx"]) == (
        "PG",
        "Trailers,Deleted Scenes",
        "",
        "ab",
        "x  ",
        "tëxt 😀",
    )
    assert (row["b"], row["vb"], row["bl"]) == (b"\x01\x02\x00\x00", b"\xff\x00", b"\x00\xff")
    assert (row["y"], row["bit1"], row["bit5"], row["bit64"]) == (2006, True, Decimal(5), Decimal(2**64 - 1))
    assert (row["ti1"], row["bo"], row["uti"], row["ubi"]) == (1, 1, 255, Decimal(2**64 - 1))
    assert row["dec65"] == "12345678901234567890123456789012345.123456789012345678901234567890"
    assert (row["dec40"], row["dec12"]) == ("-1234567890123456789012345678901234567890", Decimal("1234.50"))
    assert (row["f"], row["db"], row["d"]) == (1.5, 0.1, date(1000, 1, 1))
    assert row["dt6"] == datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    assert row["ts6"] == datetime(2024, 1, 2, 3, 4, 5, 120, tzinfo=UTC)
    assert (row["tm"], row["tm6"], row["tm24"]) == ("-838:59:59", "12:34:56.123456", "100:00:00.500000")
    assert (row["tmn"], row["tm2"], row["tm3"]) == ("-12:34:56.789000", "-01:02:03.04", "-01:02:03.004")
    assert (row["j"], row["g"], row["pt"]) == ('{"a": [1, 2], "b": "x"}', "POINT(1 2)", "POINT(-1.25 20000000000)")
    assert {row[c] for c in ("zd", "zdt", "zts", "zp", "zpt")} == {None}  # zero dates: NULL, as the read has them
    row = changes[("u", 1)]
    assert (row["s"], row["s0"], row["y"], row["bit1"], row["bit64"]) == ("", "a,b'c", 0, False, Decimal(2**63))
    assert (row["tm6"], row["tm24"], row["tmn"]) == ("-00:00:00.000001", "-100:00:00.500000", "-00:00:01.000000")
    assert (row["tm2"], row["tm3"], row["dec65"]) == ("00:00:00.99", "-838:59:58.999", "-0." + "0" * 29 + "1")
    assert (row["g"], row["pg"], row["zts"]) == (
        "LINESTRING(0 0,1 1.5)",
        None,
        datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC),
    )


# ---------------------------------------------------------------------------------------------- DDL


def test_a_column_added_while_streaming_appears_in_later_changes(my: Harness) -> None:
    my.sql("CREATE TABLE grows (id int PRIMARY KEY, v int)")
    stream = my.stream("grows", {"id": "int", "v": "int"})
    position, _ = snapshot_rows(stream)
    my.sql("INSERT INTO grows VALUES (1, 1)")
    first = stream.changes(position, ALL)  # the table's columns as they were are known to the stream now
    assert [dict(c.row) for c in first.changes] == [{"id": 1, "v": 1}] and first.columns == ["id", "v"]
    my.sql(
        "INSERT INTO grows VALUES (2, 2)",
        "ALTER TABLE grows ADD COLUMN flag BIT(1), ADD COLUMN tm TIME(3), ADD COLUMN note varchar(10)",
        "INSERT INTO grows VALUES (3, 3, b'1', '-01:02:03.5', 'new')",
        "UPDATE grows SET note = 'old' WHERE id = 1",
    )
    batch = stream.changes(first.end, ALL)
    assert [(c.op, dict(c.row)) for c in batch.changes] == [
        ("c", {"id": 2, "v": 2}),
        ("c", {"id": 3, "v": 3, "flag": True, "tm": "-01:02:03.500", "note": "new"}),
        ("u", {"id": 1, "v": 1, "flag": None, "tm": None, "note": "old"}),
    ]
    assert batch.columns == ["id", "v", "flag", "tm", "note"]
    assert batch.changes[0].position < batch.changes[1].position < batch.changes[2].position


def test_an_alter_after_the_table_was_described_ends_the_batch_before_it(
    my: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    my.sql("CREATE TABLE widens (id int PRIMARY KEY, amount DECIMAL(6,2))")
    stream = my.stream("widens", {"id": "int", "amount": "decimal(6,2)"})
    position, _ = snapshot_rows(stream)
    my.sql("INSERT INTO widens VALUES (1, 1.25)")
    described = stream._head_now()  # the step's description of the table: before the ALTER below
    my.sql("ALTER TABLE widens MODIFY amount DECIMAL(12,4)", "INSERT INTO widens VALUES (2, 12345678.1234)")
    monkeypatch.setattr(stream, "_head_now", lambda: described)
    batch = stream.changes(position, ALL)  # the row after the ALTER would be cut to decimal(6,2): not read
    assert [dict(c.row) for c in batch.changes] == [{"id": 1, "amount": Decimal("1.25")}]
    again = stream.changes(batch.end, ALL)  # a run with nothing before the ALTER stops there too
    assert again.changes == [] and again.end == batch.end
    monkeypatch.undo()  # the next run describes the table after the ALTER: it reads on
    later = my.stream("widens", {"id": "int", "amount": "decimal(12,4)"}).changes(batch.end, ALL)
    assert [dict(c.row)["amount"] for c in later.changes] == [Decimal("12345678.1234")]
