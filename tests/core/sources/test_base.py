"""Shared adapter logic: registry, errors, literals, windows, reader options, credentials."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from pipezone.core.sources.jdbc.dialect import timestamp_text, utc_naive
from pipezone.core.sources.jdbc.mysql import MySqlAdapter
from pipezone.core.sources.jdbc.oracle import OracleAdapter
from pipezone.core.sources.jdbc.postgres import PostgresAdapter
from pipezone.core.sources.jdbc.source import JdbcAdapter
from pipezone.core.sources.jdbc.sqlite import SqliteAdapter
from pipezone.core.sources.jdbc.sqlserver import SqlServerAdapter
from pipezone.core.sources.registry import SOURCE_ADAPTERS, SourceError, source_adapter
from pipezone.core.spec.connection import (
    CONNECTION_TYPES,
    ROLE_SOURCE,
    JdbcConnection,
    LocalLakeConnection,
    SqliteConnection,
)
from pipezone.core.spec.secrets import SecretResolver
from pipezone.core.spec.source import SourceSpec

PG = PostgresAdapter()
SECRET = "s3cr3t-pw-value"


def source(**fields: Any) -> SourceSpec:
    return SourceSpec.model_validate({"connection": "crm", **fields})


def jdbc(kind: str, **fields: Any) -> JdbcConnection:
    base = {"name": "crm", "type": kind, "host": "db.internal", "database": "shop", "user": "reader"}
    return JdbcConnection.model_validate({**base, "password": "${env:DB_PW}", **fields})


def resolver(tmp_path: Path) -> SecretResolver:
    return SecretResolver({"DB_PW": SECRET, "DB_USER": "svc_user", "KS_PW": "keystore-pw"}, tmp_path)


# ---------------------------------------------------------------------- registry


@pytest.mark.parametrize(
    ("kind", "adapter_type"),
    [
        ("mysql", MySqlAdapter),
        ("mariadb", MySqlAdapter),
        ("postgres", PostgresAdapter),
        ("sqlserver", SqlServerAdapter),
        ("oracle", OracleAdapter),
    ],
)
def test_registry_maps_every_jdbc_type(kind: str, adapter_type: type[JdbcAdapter]) -> None:
    assert isinstance(source_adapter(jdbc(kind)), adapter_type)


def test_registry_covers_sqlite_and_every_server_type() -> None:
    sources = {kind for kind, model in CONNECTION_TYPES.items() if ROLE_SOURCE in model.roles}
    assert set(SOURCE_ADAPTERS) == sources == {*JdbcConnection.default_ports, "sqlite", "mongodb", "rest"}
    assert isinstance(source_adapter(SqliteConnection(name="demo", type="sqlite", path="d.db")), SqliteAdapter)


def test_lake_connection_is_not_a_source() -> None:
    with pytest.raises(SourceError) as err:
        source_adapter(LocalLakeConnection(name="lake", type="local", path="lake"))
    assert str(err.value) == (
        "connection 'lake': type 'local' is not a source database "
        "(source types: mariadb, mongodb, mysql, oracle, postgres, rest, sqlite, sqlserver)"
    )


def test_adapter_refuses_a_connection_of_another_type(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="a postgres connection cannot be read by the mysql adapter"):
        MySqlAdapter().jdbc_url(jdbc("postgres"), tmp_path)


def test_source_error_is_one_line() -> None:
    err = SourceError("first line\n  second line").at("crm")
    assert str(err) == "connection 'crm': first line second line"
    assert err.at("other") is err


# ---------------------------------------------------------------------- literals


def test_utc_naive_converts_aware_and_keeps_naive() -> None:
    plus2 = timezone(timedelta(hours=2))
    assert utc_naive(datetime(2024, 1, 2, 5, 4, 5, tzinfo=plus2)) == datetime(2024, 1, 2, 3, 4, 5)
    assert utc_naive(datetime(2024, 1, 2, 3, 4, 5)) == datetime(2024, 1, 2, 3, 4, 5)
    assert timestamp_text(datetime(2024, 1, 2, 3, 4, 5, 120, tzinfo=UTC)) == "2024-01-02 03:04:05.000120"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (42, "42"),
        (-7, "-7"),
        (10**20, "100000000000000000000"),
        (Decimal("12.50"), "12.50"),
        (Decimal("1E+3"), "1000"),
        (Decimal("1E-7"), "0.0000001"),
        (1.5, "1.5"),
        ("abc", "'abc'"),
        ("O'Brien", "'O''Brien'"),
        ("'; DROP TABLE t; --", "'''; DROP TABLE t; --'"),
        (date(2024, 1, 2), "DATE '2024-01-02'"),
        (datetime(2024, 1, 2, 3, 4, 5), "TIMESTAMP '2024-01-02 03:04:05'"),
        (datetime(2024, 1, 2, 3, 4, 5, 123456), "TIMESTAMP '2024-01-02 03:04:05.123456'"),
        (datetime(2024, 1, 1, 22, 4, 5, tzinfo=timezone(timedelta(hours=-5))), "TIMESTAMP '2024-01-02 03:04:05'"),
    ],
)
def test_shared_literals(value: Any, expected: str) -> None:
    assert PG.literal(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "a boolean is not a cursor value"),
        (float("nan"), "is not a finite number"),
        (Decimal("Infinity"), "is not a finite number"),
        ("a\x00b", "NUL"),
        (b"bytes", "unsupported cursor value of type bytes"),
    ],
)
def test_unrenderable_literals_are_refused(value: Any, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        PG.literal(value)


def test_literal_error_in_a_window_names_the_connection() -> None:
    with pytest.raises(SourceError, match=r"^connection 'crm': a boolean is not a cursor value$"):
        PG.window_query(source(table="t", incremental={"cursor": "id"}), True, None)


# ---------------------------------------------------------------------- relations and windows


def test_relation_table_schema_and_query() -> None:
    assert PG.relation(source(table="orders")) == '"orders"'
    assert PG.relation(source(table="orders", schema="sales")) == '"sales"."orders"'
    assert PG.relation(source(query="SELECT * FROM t -- all")) == "(SELECT * FROM t -- all\n) pz_src"


def test_window_query_both_bounds() -> None:
    spec = source(table="orders", schema="sales", incremental={"cursor": "updated_at"})
    assert PG.window_query(spec, datetime(2024, 1, 1), datetime(2024, 1, 2, 0, 0, 0, 500)) == (
        '(SELECT * FROM "sales"."orders" WHERE "updated_at" > TIMESTAMP \'2024-01-01 00:00:00\''
        " AND \"updated_at\" <= TIMESTAMP '2024-01-02 00:00:00.000500') pz_window"
    )


def test_window_query_open_ends() -> None:
    spec = source(table="orders", incremental={"cursor": "id"})
    assert PG.window_query(spec, None, 100) == '(SELECT * FROM "orders" WHERE "id" <= 100) pz_window'
    assert PG.window_query(spec, 100, None) == '(SELECT * FROM "orders" WHERE "id" > 100) pz_window'
    assert PG.window_query(spec, None, None) == '"orders"'


def test_window_query_over_a_query_source() -> None:
    spec = source(query="SELECT id, ts FROM events WHERE kind = 'x'", incremental={"cursor": "ts"})
    assert PG.window_query(spec, 5, 9) == (
        '(SELECT * FROM (SELECT id, ts FROM events WHERE kind = \'x\'\n) pz_src WHERE "ts" > 5 AND "ts" <= 9) pz_window'
    )


def test_no_cursor_is_a_full_refresh() -> None:
    assert PG.window_query(source(table="orders", schema="sales"), 1, 2) == '"sales"."orders"'


def test_bounds_query_needs_a_cursor() -> None:
    with pytest.raises(SourceError, match="^connection 'crm': bounds need an incremental cursor"):
        PG.bounds_query(source(table="orders"))


def test_partition_bounds_query_defaults_to_the_primary_key() -> None:
    spec = source(table="orders", primary_key=["order_id"])
    assert PG.partition_bounds_query(spec, None, '"orders"') == (
        'SELECT MIN("order_id") AS "pz_lo", MAX("order_id") AS "pz_hi" FROM "orders"'
    )
    assert PG.partition_bounds_query(spec, "created", "w").startswith('SELECT MIN("created")')
    with pytest.raises(SourceError, match="no partition column"):
        PG.partition_bounds_query(source(table="t", primary_key=["a", "b"]), None, "w")


# ---------------------------------------------------------------------- reader options


def test_read_options_single_partition() -> None:
    spec = source(table="orders", primary_key=["id"], read={"fetch_size": 500})
    assert PG.read_options(spec, '"orders"', (1, 1000)) == {
        "dbtable": '"orders"',
        "fetchsize": "500",
        "pushDownPredicate": "true",
    }


def test_read_options_four_partitions_on_the_primary_key() -> None:
    spec = source(table="orders", primary_key=["id"], read={"num_partitions": 4})
    options = PG.read_options(spec, "(SELECT 1) pz_window", (Decimal("1.000000000000000000"), 1000))
    assert options == {
        "dbtable": "(SELECT 1) pz_window",
        "fetchsize": "10000",
        "pushDownPredicate": "true",
        "partitionColumn": "id",
        "lowerBound": "1",
        "upperBound": "1000",
        "numPartitions": "4",
    }
    assert "query" not in options  # Spark cannot combine `query` with partitionColumn


def test_partition_bounds_widen_outwards_and_format_time() -> None:
    spec = source(table="t", read={"num_partitions": 4, "partition_column": "ts"})
    numeric = PG.read_options(spec, "t", (Decimal("1.5"), 9.2))
    assert (numeric["lowerBound"], numeric["upperBound"]) == ("1", "10")
    stamps = PG.read_options(spec, "t", (datetime(2024, 1, 1), datetime(2024, 1, 2, 1, tzinfo=UTC)))
    assert (stamps["lowerBound"], stamps["upperBound"]) == ("2024-01-01 00:00:00", "2024-01-02 01:00:00")
    days = PG.read_options(spec, "t", (date(2024, 1, 1), date(2024, 2, 1)))
    assert (days["lowerBound"], days["upperBound"]) == ("2024-01-01", "2024-02-01")


def test_empty_window_reads_in_one_partition() -> None:
    spec = source(table="t", primary_key=["id"], read={"num_partitions": 4})
    assert "partitionColumn" not in PG.read_options(spec, "t", (None, None))
    assert "partitionColumn" not in PG.read_options(spec, "t", None)


def test_partitions_without_a_column_are_an_error() -> None:
    spec = source(table="t", primary_key=["a", "b"], read={"num_partitions": 4})
    with pytest.raises(SourceError, match="^connection 'crm': read.num_partitions is 4 but there is no column"):
        PG.read_options(spec, "t", (1, 2))


# ---------------------------------------------------------------------- options and credentials


def test_user_options_win_and_empty_drops_a_default() -> None:
    conn = jdbc("mysql", options={"tinyInt1isBit": True, "zeroDateTimeBehavior": "", "useSSL": False})
    options = MySqlAdapter().url_options(conn)
    assert options["tinyInt1isBit"] == "true"
    assert options["useSSL"] == "false"
    assert "zeroDateTimeBehavior" not in options


def unchecked(kind: str, **fields: Any) -> JdbcConnection:
    """A connection the spec would refuse, built without validation: the adapter's own guard must hold."""
    return JdbcConnection.model_construct(**{**jdbc(kind).model_dump(), **fields})


def test_bad_option_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="an option name uses letters, digits"):
        jdbc("mysql", options={"a&b": 1})
    with pytest.raises(SourceError, match=r"^connection 'crm': invalid option name 'a&b'"):
        MySqlAdapter().jdbc_url(unchecked("mysql", options={"a&b": 1}), tmp_path)


def test_connection_properties_reveal_secrets_only_there(tmp_path: Path) -> None:
    conn = jdbc("mysql", user="${env:DB_USER}", options={"trustCertificateKeyStorePassword": "${env:KS_PW}"})
    props = MySqlAdapter().connection_properties(conn, resolver(tmp_path))
    assert props == {
        "driver": "com.mysql.cj.jdbc.Driver",
        "user": "svc_user",
        "password": SECRET,
        "trustCertificateKeyStorePassword": "keystore-pw",
    }
    url = MySqlAdapter().jdbc_url(conn, tmp_path)
    assert "keystore-pw" not in url and "KS_PW" not in url and "trustCertificateKeyStorePassword" not in url


def test_unresolvable_secret_names_the_connection_not_a_value(tmp_path: Path) -> None:
    conn = jdbc("postgres", password="${env:MISSING}")
    with pytest.raises(SourceError, match=r"^connection 'crm': \$\{env:MISSING\}: environment variable MISSING"):
        PG.connection_properties(conn, resolver(tmp_path))


@pytest.mark.parametrize("kind", ["mysql", "mariadb", "postgres", "sqlserver", "oracle"])
def test_credentials_never_in_the_url(kind: str, tmp_path: Path) -> None:
    conn = jdbc(kind, database="ORCL" if kind == "oracle" else "shop")
    adapter = source_adapter(conn)
    url = adapter.jdbc_url(conn, tmp_path)
    props = adapter.connection_properties(conn, resolver(tmp_path))
    assert props["password"] == SECRET and props["user"] == "reader"
    assert props["driver"] == adapter.driver_class
    for forbidden in (SECRET, "reader", "DB_PW", "password", "user="):
        assert forbidden not in url


@pytest.mark.parametrize("host", ["db?allowLoadLocalInfile=true", "a/b", "user@db", "db;x=1", "db host", "-db"])
def test_hosts_that_could_inject_url_parameters_are_refused(host: str, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="not a host name or IP address"):
        jdbc("postgres", host=host)
    with pytest.raises(SourceError, match="invalid host"):
        PG.jdbc_url(unchecked("postgres", host=host), tmp_path)


def test_ipv6_hosts_are_bracketed(tmp_path: Path) -> None:
    assert PG.jdbc_url(jdbc("postgres", host="::1"), tmp_path).startswith("jdbc:postgresql://[::1]:5432/shop")
    assert PG.jdbc_url(jdbc("postgres", host="[fe80::1]"), tmp_path).startswith("jdbc:postgresql://[fe80::1]:5432/")


def test_default_custom_schema_hooks_are_empty() -> None:
    assert PG.custom_schema({"ts": "timestamp"}) is None
    assert PG.post_read_casts({"ts": "timestamp"}) == {}
    assert PG.bounds_read_options(source(table="t", incremental={"cursor": "id"})) == {
        "dbtable": '(SELECT MAX("id") AS "pz_hi", (now() AT TIME ZONE \'UTC\') AS "pz_now" FROM "t") pz_bounds'
    }


def test_backfill_query_is_closed_open() -> None:
    spec = source(table="orders", incremental={"cursor": "updated_at"})
    assert PG.backfill_query(spec, datetime(2024, 1, 1), datetime(2024, 2, 1)) == (
        '(SELECT * FROM "orders" WHERE "updated_at" >= TIMESTAMP \'2024-01-01 00:00:00\' '
        "AND \"updated_at\" < TIMESTAMP '2024-02-01 00:00:00') pz_window"
    )


def test_backfill_needs_a_cursor() -> None:
    with pytest.raises(SourceError, match="connection 'crm': a backfill needs an incremental cursor"):
        PG.backfill_query(source(table="orders"), 1, 2)


def test_key_snapshot_query_selects_the_primary_key() -> None:
    spec = source(table="order_items", primary_key=["order_id", "line"])
    assert PG.key_snapshot_query(spec) == '(SELECT "order_id", "line" FROM "order_items") pz_window'
    with pytest.raises(SourceError, match="needs a primary_key"):
        PG.key_snapshot_query(source(table="order_items"))
