"""PostgreSQL adapter: UTC startup option, double quotes, E'' strings for backslashes."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from pipezone.core.sources.jdbc.postgres import PostgresAdapter
from pipezone.core.sources.registry import SourceError
from pipezone.core.spec.connection import JdbcConnection
from pipezone.core.spec.source import SourceSpec

PG = PostgresAdapter()


def conn(**fields: Any) -> JdbcConnection:
    base = {"name": "wh", "type": "postgres", "host": "pg", "database": "analytics", "user": "reader"}
    return JdbcConnection.model_validate({**base, "password": "${env:PW}", **fields})


def source(**fields: Any) -> SourceSpec:
    return SourceSpec.model_validate({"connection": "wh", **fields})


def test_url_defaults_pin_utc(tmp_path: Path) -> None:
    assert PG.jdbc_url(conn(), tmp_path) == (
        "jdbc:postgresql://pg:5432/analytics?options=-c%20TimeZone%3DUTC&ApplicationName=pipezone"
    )
    assert PG.driver_class == "org.postgresql.Driver"


def test_user_options_extend_the_utc_pin(tmp_path: Path) -> None:
    url = PG.jdbc_url(conn(port=6543, options={"options": "-c search_path=app", "sslmode": "require"}), tmp_path)
    assert url == (
        "jdbc:postgresql://pg:6543/analytics?options=-c%20TimeZone%3DUTC%20-c%20search_path%3Dapp"
        "&ApplicationName=pipezone&sslmode=require"
    )


def test_empty_options_drop_the_startup_parameter_for_pgbouncer(tmp_path: Path) -> None:
    url = PG.jdbc_url(conn(options={"options": "", "ApplicationName": "etl"}), tmp_path)
    assert url == "jdbc:postgresql://pg:5432/analytics?ApplicationName=etl"


def test_quote() -> None:
    assert PG.quote("user") == '"user"'
    assert PG.quote("Mixed Case") == '"Mixed Case"'
    assert PG.quote('a"b') == '"a""b"'
    assert PG.ident("CustomerId") == '"CustomerId"'  # quoted as written, no folding
    with pytest.raises(SourceError):
        PG.quote("a\x00b")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, "1"),
        ("O'Brien", "'O''Brien'"),
        ("C:\\tmp\\'x", "E'C:\\\\tmp\\\\''x'"),
        (date(2024, 2, 29), "DATE '2024-02-29'"),
        (datetime(2024, 1, 2, 3, 4, 5, 600), "TIMESTAMP '2024-01-02 03:04:05.000600'"),
        (datetime(2024, 1, 2, 0, 30, tzinfo=timezone(timedelta(hours=1))), "TIMESTAMP '2024-01-01 23:30:00'"),
    ],
)
def test_literals(value: Any, expected: str) -> None:
    assert PG.literal(value) == expected


def test_window_and_bounds_queries() -> None:
    spec = source(table="events", schema="public", incremental={"cursor": "seq"})
    assert PG.window_query(spec, 100, 200) == (
        '(SELECT * FROM "public"."events" WHERE "seq" > 100 AND "seq" <= 200) pz_window'
    )
    assert PG.bounds_query(spec) == (
        'SELECT MAX("seq") AS "pz_hi", (now() AT TIME ZONE \'UTC\') AS "pz_now" FROM "public"."events"'
    )


def test_read_options_stream_with_a_positive_fetch_size() -> None:
    one = PG.read_options(source(table="events", read={"fetch_size": 2000}), '"events"')
    assert one == {"dbtable": '"events"', "fetchsize": "2000", "pushDownPredicate": "true"}
    four = PG.read_options(source(table="events", primary_key=["id"], read={"num_partitions": 4}), "w", (1, 99))
    assert (four["partitionColumn"], four["lowerBound"], four["upperBound"], four["numPartitions"]) == (
        "id",
        "1",
        "99",
        "4",
    )
