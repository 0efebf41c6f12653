"""PostgreSQL change data capture (wal2json through SQL functions) on the project's PostgreSQL.

Each test reads its own table of a scratch database through its own slot; the slots are dropped after each
test (a slot holds WAL) and the database after the module.
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
from pipezone.core.sources.cdc.postgres_log import PostgresChangeStream, abandoned_slots, slot_name
from pipezone.core.sources.cdc.wal_notation import parse_lsn
from pipezone.core.sources.contract import SourceError
from pipezone.core.spec.connection import JdbcConnection
from pipezone.core.spec.secrets import SecretResolver
from pipezone.core.spec.source import SourceSpec

if TYPE_CHECKING:
    from services import Postgres

pytestmark = pytest.mark.services

SCRATCH = f"pz_cdc_{os.getpid()}"
PASSWORD_ENV = "PZ_CDC_PASSWORD"
ALL = ChangeLimits(max_changes=100_000, max_seconds=30)


@pytest.fixture(scope="module")
def scratch(postgres: Postgres) -> Iterator[Postgres]:
    postgres.drop_database(SCRATCH)
    postgres.create_database(SCRATCH)
    yield postgres
    drop_slots(postgres)
    postgres.drop_database(SCRATCH)


def drop_slots(postgres: Postgres) -> None:
    with postgres.connect() as conn:
        conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = %s AND NOT active",
            [SCRATCH],
        )


class Harness:
    """Streams over the scratch database, closed (and their slots dropped) after the test."""

    def __init__(self, postgres: Postgres, tmp_path: Path) -> None:
        self.postgres = postgres
        self.resolver = SecretResolver({PASSWORD_ENV: postgres.password}, tmp_path)
        self.db = postgres.connect(SCRATCH)
        self.streams: list[PostgresChangeStream] = []

    def connection(self, **fields: Any) -> JdbcConnection:
        base = {"name": "scratch", "type": "postgres", "host": self.postgres.host, "port": self.postgres.port}
        base |= {"database": SCRATCH, "user": self.postgres.user, "password": f"${{env:{PASSWORD_ENV}}}"}
        return JdbcConnection.model_validate(base | fields)

    def stream(
        self, table: str, types: dict[str, str], select: str | None = None, key: tuple[str, ...] = ("id",)
    ) -> PostgresChangeStream:
        spec = SourceSpec.model_validate({"connection": "scratch", "table": table, "primary_key": list(key), "cdc": {}})
        columns = ", ".join(f'"{c}"' for c in types)
        select_sql = select or f'SELECT {columns} FROM "public"."{table}"'
        flow = f"{table}_{os.getpid()}"
        stream = PostgresChangeStream(self.connection(), self.resolver, spec, flow, select_sql, types)
        self.streams.append(stream)
        return stream

    def sql(self, *statements: str) -> None:
        for statement in statements:
            self.db.execute(statement)

    def table(self, name: str, select: str) -> list[dict[str, Any]]:
        cur = self.db.execute(select)
        names = [d.name for d in cur.description or []]
        return sorted((dict(zip(names, row, strict=True)) for row in cur.fetchall()), key=lambda r: r["id"])

    def close(self) -> None:
        for stream in self.streams:
            stream.close()
        self.db.close()
        drop_slots(self.postgres)


@pytest.fixture
def pg(scratch: Postgres, tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(scratch, tmp_path)
    yield harness
    harness.close()


def read_all(stream: PostgresChangeStream, after: LogPosition) -> tuple[list[Change], LogPosition]:
    changes: list[Change] = []
    while True:
        batch = stream.changes(after, ALL)
        if not batch.changes and batch.end == after:
            return changes, after
        changes += batch.changes
        after = batch.end


def replay(rows: list[dict[str, Any]], changes: list[Change]) -> list[dict[str, Any]]:
    table = {row["id"]: dict(row) for row in rows}
    for change in sorted(changes, key=lambda c: c.order):
        if change.op == "d":
            del table[change.row["id"]]
        else:
            table[change.row["id"]] = dict(change.row)
    return [table[k] for k in sorted(table)]


def snapshot_rows(stream: PostgresChangeStream) -> tuple[LogPosition, list[dict[str, Any]]]:
    snap = stream.snapshot()
    try:
        return snap.position, [dict(row) for batch in snap.rows for row in batch]
    finally:
        snap.close()


# ---------------------------------------------------------------------------------------------- consistency


def test_snapshot_is_consistent_with_its_position_under_concurrent_writes(pg: Harness) -> None:
    pg.sql(
        "CREATE TABLE busy (id int PRIMARY KEY, v int NOT NULL, note text)",
        "INSERT INTO busy SELECT g, g, 'n' || g FROM generate_series(1, 30000) g",
    )
    stop = threading.Event()
    writes = [0]

    def writer() -> None:
        with pg.postgres.connect(SCRATCH) as conn:
            n = 30000
            while not stop.is_set():
                with conn.transaction():
                    n += 1
                    conn.execute("INSERT INTO busy VALUES (%s, %s, 'new')", [n, n])
                    conn.execute("UPDATE busy SET v = v + 1 WHERE id = %s", [n % 30000 + 1])
                    conn.execute("DELETE FROM busy WHERE id = %s", [(n * 7) % 30000 + 1])
                writes[0] += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.3)
        stream = pg.stream("busy", {"id": "int", "v": "int", "note": "string"})
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
    changes, end = read_all(stream, snap.position)
    assert writes[0] > 10 and len(changes) > 30
    assert all(c.position > snap.position for c in changes)
    assert len({c.order for c in changes}) == len(changes)  # nothing doubled
    assert replay(rows, changes) == pg.table("busy", "SELECT id, v, note FROM busy")
    assert end == max(c.position for c in changes)


def test_interleaved_transactions_come_in_commit_order(pg: Harness) -> None:
    pg.sql("CREATE TABLE orders (id int PRIMARY KEY, who text)")
    stream = pg.stream("orders", {"id": "int", "who": "string"})
    position, rows = snapshot_rows(stream)
    assert rows == []
    with pg.postgres.connect(SCRATCH) as a, pg.postgres.connect(SCRATCH) as b:
        a.execute("BEGIN")
        a.execute("INSERT INTO orders VALUES (1, 'a')")
        b.execute("BEGIN")
        b.execute("INSERT INTO orders VALUES (2, 'b')")
        a.execute("INSERT INTO orders VALUES (3, 'a')")
        b.execute("INSERT INTO orders VALUES (4, 'b')")
        b.execute("COMMIT")
        a.execute("COMMIT")
    batch = stream.changes(position, ALL)
    assert [(c.row["id"], c.index) for c in batch.changes] == [(2, 0), (4, 1), (1, 0), (3, 1)]
    first, second = batch.changes[0].position, batch.changes[2].position
    assert position < first < second == batch.end
    assert [c.order for c in batch.changes] == sorted(c.order for c in batch.changes)
    assert batch.columns == ["id", "who"]
    assert batch.lag.bytes_behind is not None and batch.lag.bytes_behind >= 0
    assert batch.lag.seconds_behind is not None and 0 <= batch.lag.seconds_behind < 60
    assert all(c.committed_at is not None and c.committed_at.tzinfo is not None for c in batch.changes)


def test_update_key_update_and_delete(pg: Harness) -> None:
    pg.sql(
        "CREATE TABLE items (id int PRIMARY KEY, name text, qty int)",
        "INSERT INTO items VALUES (1, 'one', 1), (2, 'two', 2), (3, 'three', 3)",
    )
    stream = pg.stream("items", {"id": "int", "name": "string", "qty": "int"})
    position, _ = snapshot_rows(stream)
    pg.sql(
        "UPDATE items SET qty = 10 WHERE id = 1",
        "UPDATE items SET id = 20, name = 'twenty' WHERE id = 2",
        "DELETE FROM items WHERE id = 3",
    )
    changes = stream.changes(position, ALL).changes
    assert [(c.op, dict(c.row), c.index) for c in changes] == [
        ("u", {"id": 1, "name": "one", "qty": 10}, 0),
        ("d", {"id": 2, "name": None, "qty": None}, 0),
        ("c", {"id": 20, "name": "twenty", "qty": 2}, 1),
        ("d", {"id": 3, "name": None, "qty": None}, 0),
    ]
    assert changes[1].position == changes[2].position  # one transaction: the key update


# ---------------------------------------------------------------------------------------------- limits, acknowledge


def test_max_changes_ends_at_a_transaction_boundary_and_the_next_read_continues(pg: Harness) -> None:
    pg.sql("CREATE TABLE steps (id int PRIMARY KEY)")
    stream = pg.stream("steps", {"id": "int"})
    start, _ = snapshot_rows(stream)
    for t in range(5):  # five transactions of three rows
        pg.sql(f"INSERT INTO steps SELECT g FROM generate_series({t * 3 + 1}, {t * 3 + 3}) g")
    first = stream.changes(start, ChangeLimits(max_changes=4, max_seconds=30))
    assert [c.row["id"] for c in first.changes] == [1, 2, 3, 4, 5, 6]  # over 4 only to finish the transaction
    assert first.end == first.changes[-1].position
    second = stream.changes(first.end, ChangeLimits(max_changes=4, max_seconds=30))  # not acknowledged: skips
    assert [c.row["id"] for c in second.changes] == [7, 8, 9, 10, 11, 12]
    stream.acknowledge(second.end)
    assert stream.status(second.end)["confirmed_flush_lsn"] == second.end.text
    rest = stream.changes(second.end, ChangeLimits(max_changes=4, max_seconds=30))
    assert [c.row["id"] for c in rest.changes] == [13, 14, 15]
    assert stream.changes(rest.end, ALL).changes == []
    assert stream.changes(rest.end, ALL).end == rest.end


def test_acknowledge_moves_the_slot_and_a_read_after_a_crash_skips_what_the_lake_has(pg: Harness) -> None:
    pg.sql("CREATE TABLE ledger (id int PRIMARY KEY, amount int)")
    stream = pg.stream("ledger", {"id": "int", "amount": "int"})
    start, _ = snapshot_rows(stream)
    assert stream.status(start)["confirmed_flush_lsn"] == start.text
    pg.sql("INSERT INTO ledger VALUES (1, 10)", "INSERT INTO ledger VALUES (2, 20)")
    batch = stream.changes(start, ALL)
    stream.acknowledge(batch.changes[0].position)
    status = stream.status(batch.changes[0].position)
    assert status["confirmed_flush_lsn"] == batch.changes[0].position.text and status["exists"] is True
    assert {"slot", "active", "restart_lsn", "wal_status", "head", "bytes_behind"} <= status.keys()
    stream.acknowledge(start)  # behind the slot: nothing
    assert stream.status(None)["confirmed_flush_lsn"] == batch.changes[0].position.text
    # the run stored batch.end and died before acknowledging it: the slot is behind the stored position
    pg.sql("INSERT INTO ledger VALUES (3, 30)")
    after_crash = stream.changes(batch.end, ALL)
    assert [c.row["id"] for c in after_crash.changes] == [3]
    stream.acknowledge(after_crash.end)
    assert stream.status(None)["confirmed_flush_lsn"] == after_crash.end.text
    # the slot past the stored position: the changes between were consumed elsewhere
    with pytest.raises(LogUnavailable, match=f"slot '{stream.slot}' in database '{SCRATCH}'.*past the stored"):
        stream.changes(start, ALL)


def test_a_dropped_slot_is_log_unavailable_naming_it(pg: Harness) -> None:
    pg.sql("CREATE TABLE gone (id int PRIMARY KEY)")
    stream = pg.stream("gone", {"id": "int"})
    other = pg.stream("gone_too", {"id": "int"}, select='SELECT "id" FROM "public"."gone"')
    position, _ = snapshot_rows(stream)
    abandoned = abandoned_slots(pg.connection(), pg.resolver, known_slots={other.slot})
    assert [(s["slot"], s["active"]) for s in abandoned if s["slot"] == stream.slot] == [(stream.slot, False)]
    assert all(s["bytes_behind"] >= 0 for s in abandoned)
    others = abandoned_slots(pg.connection(), pg.resolver, known_slots={stream.slot})
    assert [s["slot"] for s in others] == [s["slot"] for s in abandoned if s["slot"] != stream.slot]
    pg.sql(f"SELECT pg_drop_replication_slot('{stream.slot}')")
    expected = f"replication slot '{stream.slot}' in database '{SCRATCH}' does not exist.*pipezone state reset gone_"
    with pytest.raises(LogUnavailable, match=expected):
        stream.changes(position, ALL)
    assert stream.status(position)["exists"] is False
    snapshot_rows(stream)  # a re-snapshot (after `pipezone state reset`) creates it again
    assert stream.status(None)["exists"] is True
    pg.sql("INSERT INTO gone VALUES (1)")
    snap = stream.snapshot()  # and replaces an existing one; closed before its rows are all read
    assert next(snap.rows) == [{"id": 1}]
    snap.close()


def test_positions_slot_names_and_connection_errors(pg: Harness) -> None:
    assert parse_lsn("0/D9E77228") == LogPosition(0xD9E77228, "0/D9E77228")
    assert parse_lsn("1A/0000ff").order == (0x1A << 32) + 0xFF and parse_lsn("1A/0000ff").text == "1A/FF"
    for bad in ("", "0/", "x/1", "1/2/3", "123456789/0"):
        with pytest.raises(ValueError, match="PostgreSQL log position"):
            pg.stream("x", {"id": "int"}).parse_position(bad)
    spec = SourceSpec.model_validate({"connection": "c", "table": "t", "primary_key": ["id"], "cdc": {}})
    assert slot_name(spec, "Shop.Orders-v2") == "pipezone_shop_orders_v2"
    long = slot_name(spec, "x" * 80)
    assert len(long) == 63 and long.startswith("pipezone_xxx") and long != slot_name(spec, "x" * 81)
    named = SourceSpec.model_validate({"connection": "c", "table": "t", "primary_key": ["id"], "cdc": {"slot": "mine"}})
    assert slot_name(named, "f") == "mine"
    spec = SourceSpec.model_validate({"connection": "c", "table": "t", "primary_key": ["id"], "cdc": {}})
    closed = PostgresChangeStream(pg.connection(port=1), pg.resolver, spec, "f", "SELECT 1", {})
    with pytest.raises(SourceError, match="^connection 'scratch': cannot connect: .*(refused|connect)"):
        closed.snapshot()
    role = f"pz_cdc_plain_{os.getpid()}"  # may read the table, may not replicate
    pg.db.execute(f"CREATE ROLE {role} LOGIN PASSWORD %s".replace("%s", "'" + pg.postgres.password + "'"))
    try:
        pg.sql("CREATE TABLE plain (id int PRIMARY KEY)", f"GRANT SELECT ON plain TO {role}")
        spec = SourceSpec.model_validate({"connection": "c", "table": "plain", "primary_key": ["id"], "cdc": {}})
        denied = PostgresChangeStream(pg.connection(user=role), pg.resolver, spec, "f", "SELECT 1", {})
        with pytest.raises(SourceError, match="^connection 'scratch': cannot .*(superuser|REPLICATION|replication)"):
            denied.snapshot()
        denied.close()
    finally:
        pg.sql(f"DROP OWNED BY {role}", f"DROP ROLE {role}")
    pg.sql("CREATE TABLE nothing (id int PRIMARY KEY)", "ALTER TABLE nothing REPLICA IDENTITY NOTHING")
    with pytest.raises(SourceError, match='"public"."nothing" has REPLICA IDENTITY NOTHING'):
        pg.stream("nothing", {"id": "int"}).snapshot()


# ---------------------------------------------------------------------------------------------- values

VALUE_COLUMNS = {
    "id": ("int", "int"),
    "i": ("int", "int"),
    "b": ("bigint", "bigint"),
    "n": ("numeric(12,2)", "decimal(12,2)"),
    "u": ("numeric", "string"),
    "t": ("text", "string"),
    "vc": ("varchar(20)", "string"),
    "tz": ("timestamptz", "timestamp"),
    "ts": ("timestamp", "timestamp"),
    "d": ("date", "date"),
    "f": ("boolean", "boolean"),
    "by": ("bytea", "binary"),
    "j": ("jsonb", "string"),
    "uu": ("uuid", "string"),
    "a": ("int[]", "array<int>"),
    "e": ("mood", "string"),
    "iv": ("interval", "string"),
    "s": ("smallint", "smallint"),
    "dbl": ("float8", "double"),
    "ch": ("char(5)", "string"),
    "ip": ("inet", "string"),
    "tm": ("time", "string"),
    "ta": ("text[]", "array<string>"),
}
TEXT_READ = {"u", "j", "uu", "e", "iv", "ch", "ip", "tm"}  # what the batch read selects as col::text
VALUES = (
    "123, 9000000000, 1234567890.12, 3.14159265358979323846264338327950288419716939937510, 'tëxt ''q''', 'vc',"
    " '2024-03-01 12:30:45.123456+02', '2024-03-01 12:30:45.5', '2024-02-29', true, '\\x00ff10',"
    " '{\"b\": [1, 2.50], \"a\": \"x\"}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{1,NULL,-3}', 'happy',"
    " '1 year 2 days 03:04:05.5', -7, 0.1, 'ab', '10.1.2.3', '23:59:59.25', '{x,\"y z\",NULL}'"
)


def test_values_carry_the_types_and_values_of_the_snapshot(pg: Harness) -> None:
    pg.sql("CREATE TYPE mood AS ENUM ('sad', 'happy')")
    columns = ", ".join(f"{name} {native}" for name, (native, _) in VALUE_COLUMNS.items())
    pg.sql(f"CREATE TABLE vals ({columns}, PRIMARY KEY (id))")
    names = list(VALUE_COLUMNS)
    pg.sql(f"INSERT INTO vals VALUES (1, {VALUES})", "INSERT INTO vals (id) VALUES (2)")
    select = ", ".join(f'"{c}"::text AS "{c}"' if c in TEXT_READ else f'"{c}"' for c in names)
    types = {name: spark for name, (_, spark) in VALUE_COLUMNS.items()}
    stream = pg.stream("vals", types, select=f'SELECT {select} FROM "public"."vals"')
    position, rows = snapshot_rows(stream)
    pg.sql(f"INSERT INTO vals VALUES (3, {VALUES})", "INSERT INTO vals (id) VALUES (4)")
    pg.sql("UPDATE vals SET i = i WHERE id = 1")
    changes = {(c.op, c.row["id"]): dict(c.row) for c in stream.changes(position, ALL).changes}
    snap = {row["id"]: row for row in rows}
    for op, key, like in (("c", 3, 1), ("c", 4, 2), ("u", 1, 1)):
        change = changes[(op, key)]
        assert list(change) == names
        for name in names[1:]:
            assert (name, change[name]) == (name, snap[like][name])
            assert type(change[name]) is type(snap[like][name]), name
    row = changes[("c", 3)]
    assert row["n"] == Decimal("1234567890.12") and row["u"] == "3.14159265358979323846264338327950288419716939937510"
    assert (
        row["tz"] == datetime(2024, 3, 1, 10, 30, 45, 123456, tzinfo=UTC) and row["tz"].utcoffset().total_seconds() == 0
    )
    assert row["ts"] == datetime(2024, 3, 1, 12, 30, 45, 500000) and row["ts"].tzinfo is None
    assert (row["d"], row["f"], row["by"], row["a"]) == (date(2024, 2, 29), True, b"\x00\xff\x10", [1, None, -3])
    assert (row["t"], row["j"], row["e"]) == ("tëxt 'q'", '{"a": "x", "b": [1, 2.50]}', "happy")
    assert (row["uu"], row["iv"]) == ("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "1 year 2 days 03:04:05.5")
    assert (row["s"], row["dbl"], row["ch"], row["ip"], row["tm"]) == (-7, 0.1, "ab", "10.1.2.3/32", "23:59:59.25")
    assert row["ta"] == ["x", "y z", None]
    assert all(v is None for k, v in changes[("c", 4)].items() if k != "id")


# ---------------------------------------------------------------------------------------------- TOAST

BIG = "".join(chr(65 + (i * 7919) % 58) for i in range(40_000))  # incompressible enough, beyond the TOAST threshold


def test_an_unchanged_toasted_column_needs_replica_identity_full(pg: Harness) -> None:
    pg.sql(
        "CREATE TABLE docs (id int PRIMARY KEY, title text, body text)",
        "ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL",
    )
    pg.db.execute("INSERT INTO docs VALUES (1, 'a', %s)", [BIG])
    stream = pg.stream("docs", {"id": "int", "title": "string", "body": "string"})
    position, rows = snapshot_rows(stream)
    assert rows[0]["body"] == BIG
    pg.sql("UPDATE docs SET title = 'b'")
    fix = 'column \'body\'.*ALTER TABLE "public"."docs" REPLICA IDENTITY FULL'
    with pytest.raises(SourceError, match=f'^connection \'scratch\': table "public"."docs": .*{fix}'):
        stream.changes(position, ALL)
    pg.sql("ALTER TABLE docs REPLICA IDENTITY FULL")
    position, _ = snapshot_rows(stream)  # `pipezone state reset`: a new slot and snapshot
    pg.sql("UPDATE docs SET title = 'c'")
    batch = stream.changes(position, ALL)
    assert [(c.op, c.row["title"], c.row["body"] == BIG) for c in batch.changes] == [("u", "c", True)]
    assert batch.columns == ["id", "title", "body"]


# ---------------------------------------------------------------------------------------------- names, truncate, time


def test_a_mixed_case_table_and_a_truncate(pg: Harness) -> None:
    odd = "OddItems"  # case matters: odditems is another table
    pg.sql(f'CREATE TABLE "{odd}" (id int PRIMARY KEY)', "CREATE TABLE odditems (id int PRIMARY KEY)")
    stream = pg.stream(odd, {"id": "int"})
    position, _ = snapshot_rows(stream)
    pg.sql(f'INSERT INTO "{odd}" VALUES (1)', "INSERT INTO odditems VALUES (2)", f'INSERT INTO "{odd}" VALUES (3)')
    batch = stream.changes(position, ALL)
    assert [c.row["id"] for c in batch.changes] == [1, 3]
    pg.sql(f'TRUNCATE "{odd}"')
    with pytest.raises(LogUnavailable, match=f'logged a TRUNCATE of "public"."{odd}".*pipezone state reset'):
        stream.changes(batch.end, ALL)


def test_a_read_slower_than_max_seconds_still_advances(pg: Harness) -> None:
    pg.sql("CREATE TABLE quick (id int PRIMARY KEY)", "CREATE TABLE bulk (id int PRIMARY KEY, pad text)")
    stream = pg.stream("quick", {"id": "int"})
    start, _ = snapshot_rows(stream)
    pg.sql(
        "INSERT INTO bulk SELECT g, repeat('x', 100) FROM generate_series(1, 200000) g", "INSERT INTO quick VALUES (1)"
    )
    hurried = ChangeLimits(max_changes=1000, max_seconds=0.001)
    first = stream.changes(start, hurried)  # the peek is cancelled: the next transaction alone (bulk's)
    assert first.changes == [] and first.end > start
    second = stream.changes(first.end, ALL)
    assert [c.row["id"] for c in second.changes] == [1]
