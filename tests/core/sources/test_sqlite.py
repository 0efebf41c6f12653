"""SQLite adapter, including a real run of the generated SQL against sqlite3 (no Spark)."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from pipezone.core.sources.contract import CursorValue
from pipezone.core.sources.jdbc.mysql import MySqlAdapter
from pipezone.core.sources.jdbc.sqlite import SqliteAdapter
from pipezone.core.sources.registry import SourceError
from pipezone.core.spec.connection import SqliteConnection
from pipezone.core.spec.secrets import SecretResolver
from pipezone.core.spec.source import SourceSpec

LITE = SqliteAdapter()


def conn(path: str) -> SqliteConnection:
    return SqliteConnection(name="demo", type="sqlite", path=path)


def source(**fields: Any) -> SourceSpec:
    return SourceSpec.model_validate({"connection": "demo", **fields})


# ---------------------------------------------------------------------- unit


def test_url_resolves_relative_paths_against_the_project(tmp_path: Path) -> None:
    assert LITE.jdbc_url(conn("data/demo.db"), tmp_path) == f"jdbc:sqlite:{tmp_path.resolve()}/data/demo.db?open_mode=1"
    assert LITE.jdbc_url(conn("/srv/x.db"), tmp_path) == "jdbc:sqlite:/srv/x.db?open_mode=1"
    assert LITE.driver_class == "org.sqlite.JDBC"


def test_url_refuses_parameters_in_the_path(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="^connection 'demo': database path 'x.db\\?open_mode=1'"):
        LITE.jdbc_url(conn("x.db?open_mode=1"), tmp_path)


def test_server_adapters_refuse_a_sqlite_connection(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="a sqlite connection cannot be read by the mysql adapter"):
        MySqlAdapter().jdbc_url(conn("x.db"), tmp_path)


def test_connection_properties_are_just_the_driver(tmp_path: Path) -> None:
    assert LITE.connection_properties(conn("x.db"), SecretResolver({}, tmp_path)) == {"driver": "org.sqlite.JDBC"}


def test_quote() -> None:
    assert LITE.quote("group") == '"group"'
    assert LITE.quote('say "hi"') == '"say ""hi"""'
    assert LITE.relation(source(table="events", schema="main")) == '"main"."events"'


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (9, "9"),
        ("O'Brien", "'O''Brien'"),
        (date(2024, 1, 2), "'2024-01-02'"),
        (datetime(2024, 1, 2, 3, 4, 5), "'2024-01-02 03:04:05'"),
        (datetime(2024, 1, 2, 3, 4, 5, 120000), "'2024-01-02 03:04:05.120000'"),
        (datetime(2024, 1, 2, 4, 4, 5, tzinfo=timezone(timedelta(hours=1))), "'2024-01-02 03:04:05'"),
    ],
)
def test_literals_are_text_in_current_timestamp_form(value: Any, expected: str) -> None:
    assert LITE.literal(value) == expected


def test_time_and_number_columns_are_read_as_stored_text_then_cast_with_a_check() -> None:
    inferred = {"id": "int", "ts": "timestamp", "d": "date", "odd`name": "timestamp", "name": "string"}
    assert LITE.custom_schema(inferred) == "`id` STRING, `ts` STRING, `d` STRING, `odd``name` STRING"
    casts = LITE.post_read_casts(inferred)
    assert set(casts) == {"id", "ts", "d", "odd`name"}
    assert casts["ts"].startswith(
        "CASE WHEN `ts` IS NOT NULL AND try_cast(`ts` AS TIMESTAMP) IS NULL THEN raise_error("
    )
    assert "set column_types: {ts: string}" in casts["ts"]
    assert casts["d"].endswith("ELSE try_cast(`d` AS DATE) END")
    assert LITE.custom_schema({"name": "string", "blob": "binary"}) is None


def test_bounds_columns_are_read_as_text() -> None:
    spec = source(table="events", incremental={"cursor": "ts"}, primary_key=["id"])
    assert LITE.bounds_read_options(spec) == {
        "dbtable": '(SELECT MAX("ts") AS "pz_hi", strftime(\'%Y-%m-%d %H:%M:%S\',\'now\') AS "pz_now"'
        ' FROM "events") pz_bounds',
        "customSchema": "`pz_hi` STRING, `pz_now` STRING",
    }
    assert LITE.partition_bounds_read_options(spec, None, '"events"')["customSchema"] == (
        "`pz_lo` STRING, `pz_hi` STRING"
    )


def test_read_options_one_and_four_partitions() -> None:
    spec = source(table="events", primary_key=["id"])
    assert LITE.read_options(spec, '"events"') == {
        "dbtable": '"events"',
        "fetchsize": "10000",
        "pushDownPredicate": "true",
    }
    four = LITE.read_options(source(table="events", primary_key=["id"], read={"num_partitions": 4}), "w", ("1", "9"))
    assert (four["partitionColumn"], four["lowerBound"], four["upperBound"]) == ("id", "1", "9")


# ---------------------------------------------------------------------- real sqlite3


# (id, updated_at as SQLite text, seq): ties on both cursors at the window's ends.
EVENTS = [
    (1, "2024-01-01 09:00:00", 1),
    (2, "2024-01-02 00:00:00", 2),  # == lo
    (3, "2024-01-02 00:00:00", 2),  # == lo (tie)
    (4, "2024-01-02 00:00:00.250", 3),  # millisecond text, just after lo
    (5, "2024-01-02 12:00:00.123456", 4),
    (6, "2024-01-03 00:00:00", 5),  # == hi
    (7, "2024-01-03 00:00:00", 5),  # == hi (tie)
    (8, "2024-01-03 00:00:00.000001", 9),  # just after hi
    (9, "2024-01-04 00:00:00", 10),
    (10, None, 10),
]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    con = sqlite3.connect(tmp_path / "demo.db")
    con.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, updated_at TIMESTAMP, seq INTEGER, name TEXT)")
    con.executemany("INSERT INTO events VALUES (?, ?, ?, ?)", [(*row, f"e{row[0]}") for row in EVENTS])
    con.commit()
    yield con
    con.close()


def run(con: sqlite3.Connection, dbtable: str) -> list[tuple[Any, ...]]:
    """Execute a `dbtable` text the way Spark would wrap it (alias stripped; SQLite doesn't need it)."""
    match = re.fullmatch(r"(\(.*\)) pz_\w+", dbtable, re.DOTALL)
    return con.execute(f"SELECT * FROM {match.group(1) if match else dbtable}").fetchall()


def ids(con: sqlite3.Connection, dbtable: str) -> set[int]:
    return {row[0] for row in run(con, dbtable)}


TS = source(table="events", schema="main", primary_key=["id"], incremental={"cursor": "updated_at"})
LO, HI = datetime(2024, 1, 2), datetime(2024, 1, 3)


def test_window_excludes_lo_ties_and_includes_hi_ties(db: sqlite3.Connection) -> None:
    assert ids(db, LITE.window_query(TS, LO, HI)) == {4, 5, 6, 7}


def test_aware_bounds_mean_the_same_instant(db: sqlite3.Connection) -> None:
    plus1 = timezone(timedelta(hours=1))
    lo, hi = datetime(2024, 1, 2, 1, tzinfo=plus1), datetime(2024, 1, 3, 1, tzinfo=plus1)
    assert ids(db, LITE.window_query(TS, lo, hi)) == {4, 5, 6, 7}


def test_consecutive_windows_cover_every_row_once(db: sqlite3.Connection) -> None:
    windows = [(None, LO), (LO, HI), (HI, None)]
    seen = [ids(db, LITE.window_query(TS, lo, hi)) for lo, hi in windows]
    assert seen == [{1, 2, 3}, {4, 5, 6, 7}, {8, 9}]  # row 10 has a NULL cursor: never in a window


def test_millisecond_text_at_a_microsecond_bound(db: sqlite3.Connection) -> None:
    at_row_4 = datetime(2024, 1, 2, 0, 0, 0, 250000)
    assert ids(db, LITE.window_query(TS, LO, at_row_4)) == {4}
    assert 4 not in ids(db, LITE.window_query(TS, at_row_4, HI))


@pytest.mark.parametrize(("lo", "hi"), [(2, 5), ("2", "5"), (2, "5")])
def test_integer_cursor_with_ties_and_text_bounds(db: sqlite3.Connection, lo: CursorValue, hi: CursorValue) -> None:
    spec = source(table="events", incremental={"cursor": "seq"})
    assert ids(db, LITE.window_query(spec, lo, hi)) == {4, 5, 6, 7}
    # Text bounds (how Spark returns SQLite bounds) still compare numerically: as text, '10' < '8'.
    assert ids(db, LITE.window_query(spec, "8", "10")) == {8, 9, 10}


def test_query_source_window(db: sqlite3.Connection) -> None:
    spec = source(
        query="SELECT id, updated_at FROM events WHERE name <> 'e5' -- skip e5", incremental={"cursor": "updated_at"}
    )
    assert ids(db, LITE.window_query(spec, LO, HI)) == {4, 6, 7}


def test_full_refresh_without_cursor(db: sqlite3.Connection) -> None:
    assert ids(db, LITE.window_query(source(table="events"), LO, HI)) == set(range(1, 11))


def test_bounds_query_returns_max_cursor_and_utc_now(db: sqlite3.Connection) -> None:
    before = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    [(hi, now)] = run(db, f"({LITE.bounds_query(TS)}) pz_bounds")
    after = datetime.now(UTC).replace(tzinfo=None)
    assert hi == "2024-01-04 00:00:00"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", now)
    assert before <= datetime.fromisoformat(now) <= after
    # hi read back as text is a valid bound: nothing lies beyond it.
    assert ids(db, LITE.window_query(TS, hi, None)) == set()


def test_partition_bounds_within_the_window(db: sqlite3.Connection) -> None:
    window = LITE.window_query(TS, LO, HI)
    assert run(db, f"({LITE.partition_bounds_query(TS, None, window)}) pz_bounds") == [(4, 7)]
