"""Oracle adapter: thin service URL, options as properties, upper-case folding, session time zone."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from pipezone.core.sources.jdbc.oracle import OracleAdapter
from pipezone.core.sources.registry import SourceError
from pipezone.core.spec.connection import JdbcConnection
from pipezone.core.spec.secrets import SecretResolver
from pipezone.core.spec.source import SourceSpec

ORA = OracleAdapter()


def conn(**fields: Any) -> JdbcConnection:
    base = {"name": "ledger", "type": "oracle", "host": "ora", "database": "ORCLPDB1", "user": "reader"}
    return JdbcConnection.model_validate({**base, "password": "${env:PW}", **fields})


def source(**fields: Any) -> SourceSpec:
    return SourceSpec.model_validate({"connection": "ledger", **fields})


def test_thin_url_with_service_name(tmp_path: Path) -> None:
    assert ORA.jdbc_url(conn(options={"oracle.net.CONNECT_TIMEOUT": 5000}), tmp_path) == (
        "jdbc:oracle:thin:@//ora:1521/ORCLPDB1"
    )
    assert ORA.driver_class == "oracle.jdbc.OracleDriver"


def test_bad_service_name(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="^connection 'ledger': invalid service name"):
        ORA.jdbc_url(conn(database="svc?x=1"), tmp_path)


def test_options_become_connection_properties(tmp_path: Path) -> None:
    props = ORA.connection_properties(
        conn(options={"oracle.net.CONNECT_TIMEOUT": 5000, "user": "spoof"}),
        SecretResolver({"PW": "pw-123"}, tmp_path),
    )
    assert props == {
        "oracle.jdbc.timezoneAsRegion": "false",
        "oracle.net.CONNECT_TIMEOUT": "5000",
        "driver": "oracle.jdbc.OracleDriver",
        "user": "reader",  # the connection's credentials always win over options
        "password": "pw-123",
    }


def test_identifiers_fold_like_unquoted_names() -> None:
    assert ORA.ident("orders") == '"ORDERS"'
    assert ORA.ident("OrderLines") == '"OrderLines"'
    assert ORA.quote("pz_hi") == '"pz_hi"'  # aliases stay lower case so Spark columns are pz_hi
    assert ORA.relation(source(table="orders", schema="sales")) == '"SALES"."ORDERS"'
    with pytest.raises(SourceError, match="cannot contain"):
        ORA.quote('a"b')


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3, "3"),
        ("O'Brien", "'O''Brien'"),
        (date(2024, 1, 2), "DATE '2024-01-02'"),
        (datetime(2024, 1, 2, 3, 4, 5, 123456), "TIMESTAMP '2024-01-02 03:04:05.123456'"),
        (datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-3))), "TIMESTAMP '2024-01-02 06:04:05'"),
    ],
)
def test_literals(value: Any, expected: str) -> None:
    assert ORA.literal(value) == expected


def test_empty_string_cursor_is_refused() -> None:
    with pytest.raises(SourceError, match="NULL in Oracle"):
        ORA.literal("")


def test_window_bounds_and_read_options() -> None:
    spec = source(table="gl_entries", primary_key=["entry_id"], incremental={"cursor": "posted_at"})
    window = ORA.window_query(spec, None, datetime(2024, 3, 1))
    assert window == ('(SELECT * FROM "GL_ENTRIES" WHERE "POSTED_AT" <= TIMESTAMP \'2024-03-01 00:00:00\') pz_window')
    assert ORA.bounds_query(spec) == (
        'SELECT MAX("POSTED_AT") AS "pz_hi", SYS_EXTRACT_UTC(SYSTIMESTAMP) AS "pz_now" FROM "GL_ENTRIES"'
    )
    single = ORA.read_options(spec, window)
    assert single == {
        "dbtable": window,
        "fetchsize": "10000",
        "pushDownPredicate": "true",
        "sessionInitStatement": "ALTER SESSION SET TIME_ZONE = '+00:00'",
    }
    four = ORA.read_options(source(table="t", primary_key=["entry_id"], read={"num_partitions": 4}), "w", (1, 8))
    assert (four["partitionColumn"], four["numPartitions"]) == ("ENTRY_ID", "4")
    assert ORA.bounds_read_options(spec)["sessionInitStatement"] == "ALTER SESSION SET TIME_ZONE = '+00:00'"
