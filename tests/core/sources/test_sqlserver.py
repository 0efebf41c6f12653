"""SQL Server adapter: property-style URL, brackets, DATETIME2 literals."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from pipezone.core.sources.jdbc.sqlserver import SqlServerAdapter, property_value
from pipezone.core.spec.connection import JdbcConnection
from pipezone.core.spec.source import SourceSpec

MSSQL = SqlServerAdapter()


def conn(**fields: Any) -> JdbcConnection:
    base = {"name": "erp", "type": "sqlserver", "host": "mssql", "database": "Sales", "user": "reader"}
    return JdbcConnection.model_validate({**base, "password": "${env:PW}", **fields})


def source(**fields: Any) -> SourceSpec:
    return SourceSpec.model_validate({"connection": "erp", **fields})


def test_url_defaults_encrypt_and_verify(tmp_path: Path) -> None:
    assert MSSQL.jdbc_url(conn(), tmp_path) == (
        "jdbc:sqlserver://mssql:1433;databaseName=Sales;encrypt=true;trustServerCertificate=false;"
        "applicationName=pipezone"
    )
    assert MSSQL.driver_class == "com.microsoft.sqlserver.jdbc.SQLServerDriver"


def test_user_options_override_and_escape(tmp_path: Path) -> None:
    options = {"trustServerCertificate": True, "instanceName": "SQLEXPRESS", "weird": "a;b}c"}
    assert MSSQL.jdbc_url(conn(database="My;Db", options=options), tmp_path) == (
        "jdbc:sqlserver://mssql:1433;databaseName={My;Db};encrypt=true;trustServerCertificate=true;"
        "applicationName=pipezone;instanceName=SQLEXPRESS;weird={a;b}}c}"
    )


def test_ipv6_host_goes_to_server_name(tmp_path: Path) -> None:
    assert MSSQL.jdbc_url(conn(host="::1"), tmp_path).startswith(
        "jdbc:sqlserver://;serverName=::1;portNumber=1433;databaseName=Sales;"
    )


def test_property_value() -> None:
    assert property_value("plain") == "plain"
    assert property_value("a=b") == "{a=b}"


def test_quote_brackets() -> None:
    assert MSSQL.quote("order") == "[order]"
    assert MSSQL.quote("odd]name") == "[odd]]name]"
    assert MSSQL.relation(source(table="Orders", schema="dbo")) == "[dbo].[Orders]"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (5, "5"),
        ("O'Brien", "'O''Brien'"),
        ("back\\slash", "'back\\slash'"),
        (date(2024, 1, 2), "CAST('2024-01-02' AS DATE)"),
        (datetime(2024, 1, 2, 3, 4, 5), "CAST('2024-01-02T03:04:05' AS DATETIME2)"),
        (datetime(2024, 1, 2, 3, 4, 5, 1), "CAST('2024-01-02T03:04:05.000001' AS DATETIME2)"),
        (
            datetime(2024, 1, 2, 12, 4, 5, tzinfo=timezone(timedelta(hours=9))),
            "CAST('2024-01-02T03:04:05' AS DATETIME2)",
        ),
    ],
)
def test_literals(value: Any, expected: str) -> None:
    assert MSSQL.literal(value) == expected


def test_window_bounds_and_read_options() -> None:
    spec = source(table="Orders", schema="dbo", primary_key=["OrderID"], incremental={"cursor": "ModifiedAt"})
    window = MSSQL.window_query(spec, datetime(2024, 1, 1), None)
    assert (
        window
        == "(SELECT * FROM [dbo].[Orders] WHERE [ModifiedAt] > CAST('2024-01-01T00:00:00' AS DATETIME2)) pz_window"
    )
    assert MSSQL.bounds_query(spec) == (
        "SELECT MAX([ModifiedAt]) AS [pz_hi], SYSUTCDATETIME() AS [pz_now] FROM [dbo].[Orders]"
    )
    assert MSSQL.read_options(spec, window) == {"dbtable": window, "fetchsize": "10000", "pushDownPredicate": "true"}
    partitioned = source(table="Orders", primary_key=["OrderID"], read={"num_partitions": 4})
    assert MSSQL.read_options(partitioned, "w", (1, 400))["partitionColumn"] == "OrderID"
