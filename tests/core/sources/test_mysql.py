"""MySQL / MariaDB adapter: Connector/J URL, backticks, backslash-safe strings, streaming fetch."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from pipezone.core.sources.jdbc.mysql import STREAMING_FETCH_SIZE, MySqlAdapter
from pipezone.core.sources.registry import SourceError, source_adapter
from pipezone.core.spec.connection import JdbcConnection
from pipezone.core.spec.source import SourceSpec

MYSQL = MySqlAdapter()
UTC_DEFAULTS = (
    "connectionTimeZone=UTC&forceConnectionTimeZoneToSession=true&zeroDateTimeBehavior=CONVERT_TO_NULL"
    "&tinyInt1isBit=false&yearIsDateType=false"
)


def conn(**fields: Any) -> JdbcConnection:
    base = {"name": "shop", "type": "mysql", "host": "db.internal", "database": "shop", "user": "reader"}
    return JdbcConnection.model_validate({**base, "password": "${env:PW}", **fields})


def source(**fields: Any) -> SourceSpec:
    return SourceSpec.model_validate({"connection": "shop", **fields})


def test_url_defaults_pin_utc(tmp_path: Path) -> None:
    assert MYSQL.jdbc_url(conn(), tmp_path) == f"jdbc:mysql://db.internal:3306/shop?{UTC_DEFAULTS}"


def test_mariadb_uses_the_mysql_scheme_and_connector_j(tmp_path: Path) -> None:
    maria = conn(type="mariadb", port=3307)
    assert source_adapter(maria) is source_adapter(conn())
    assert MYSQL.jdbc_url(maria, tmp_path).startswith("jdbc:mysql://db.internal:3307/shop?")
    assert MYSQL.driver_class == "com.mysql.cj.jdbc.Driver"


def test_user_options_are_appended_encoded_and_win(tmp_path: Path) -> None:
    url = MYSQL.jdbc_url(conn(options={"sslMode": "REQUIRED", "tinyInt1isBit": True, "x": "a b&c"}), tmp_path)
    assert url == (
        "jdbc:mysql://db.internal:3306/shop?connectionTimeZone=UTC&forceConnectionTimeZoneToSession=true"
        "&zeroDateTimeBehavior=CONVERT_TO_NULL&tinyInt1isBit=true&yearIsDateType=false&sslMode=REQUIRED&x=a%20b%26c"
    )


def test_database_name_is_encoded(tmp_path: Path) -> None:
    assert MYSQL.jdbc_url(conn(database="my db/1"), tmp_path).startswith("jdbc:mysql://db.internal:3306/my%20db%2F1?")


def test_quote_backticks_and_escapes() -> None:
    assert MYSQL.quote("order") == "`order`"
    assert MYSQL.quote("my column") == "`my column`"
    assert MYSQL.quote("we`ird") == "`we``ird`"
    with pytest.raises(SourceError):
        MYSQL.quote("")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (7, "7"),
        (Decimal("3.10"), "3.10"),
        (0.25, "0.25"),
        ("O'Brien", "'O''Brien'"),
        ("back\\slash", "'back\\\\slash'"),
        ("\\' OR 1=1 -- ", "'\\\\'' OR 1=1 -- '"),
        (date(2024, 1, 2), "DATE '2024-01-02'"),
        (datetime(2024, 1, 2, 3, 4, 5, 123456), "TIMESTAMP '2024-01-02 03:04:05.123456'"),
        (datetime(2024, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2))), "TIMESTAMP '2024-01-02 03:04:05'"),
    ],
)
def test_literals(value: Any, expected: str) -> None:
    assert MYSQL.literal(value) == expected


def test_window_query_table_and_query() -> None:
    table = source(table="orders", schema="sales", incremental={"cursor": "updated_at"})
    assert MYSQL.window_query(table, datetime(2024, 1, 1), datetime(2024, 1, 2)) == (
        "(SELECT * FROM `sales`.`orders` WHERE `updated_at` > TIMESTAMP '2024-01-01 00:00:00'"
        " AND `updated_at` <= TIMESTAMP '2024-01-02 00:00:00') pz_window"
    )
    query = source(query="SELECT * FROM orders", incremental={"cursor": "id"})
    assert MYSQL.window_query(query, 10, None) == (
        "(SELECT * FROM (SELECT * FROM orders\n) pz_src WHERE `id` > 10) pz_window"
    )
    assert MYSQL.window_query(source(table="orders"), None, None) == "`orders`"


def test_bounds_query_uses_utc_now() -> None:
    assert MYSQL.bounds_query(source(table="orders", incremental={"cursor": "updated_at"})) == (
        "SELECT MAX(`updated_at`) AS `pz_hi`, UTC_TIMESTAMP(6) AS `pz_now` FROM `orders`"
    )


def test_read_options_stream_row_by_row() -> None:
    options = MYSQL.read_options(source(table="orders", read={"fetch_size": 5000}), "`orders`")
    assert options == {"dbtable": "`orders`", "fetchsize": "-2147483648", "pushDownPredicate": "true"}
    assert STREAMING_FETCH_SIZE == -(2**31)


def test_read_options_four_partitions() -> None:
    spec = source(table="orders", primary_key=["id"], read={"num_partitions": 4, "partition_column": "order_no"})
    assert MYSQL.read_options(spec, "w", (10, 20)) == {
        "dbtable": "w",
        "fetchsize": "-2147483648",
        "pushDownPredicate": "true",
        "partitionColumn": "order_no",
        "lowerBound": "10",
        "upperBound": "20",
        "numPartitions": "4",
    }


def test_no_custom_schema() -> None:
    assert MYSQL.custom_schema({"d": "date", "ts": "timestamp"}) is None
