"""Schema discovery (`init-flow --all`) on real databases: SQLite files, the project's MariaDB and PostgreSQL.

The MariaDB and PostgreSQL schemas are the 20-table fixtures under tests/fixtures/discovery/, whose
comments say what each table must come out as; the expectations below are the same list, as data.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pipezone.core.sources.contract import SourceError
from pipezone.core.sources.jdbc.discovery import (
    Column,
    SchemaDiscovery,
    TableNotFound,
    UniqueIndex,
    choose_cursor,
    choose_key,
    default_schema,
    discover,
    discover_table,
)
from pipezone.core.spec.connection import ConnectionSpec, JdbcConnection, SqliteConnection
from pipezone.core.spec.secrets import SecretResolver

if TYPE_CHECKING:
    from services import MariaDB, Postgres

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "discovery"
SCRATCH = f"pz_discovery_{os.getpid()}"
PASSWORD_ENV = "PZ_DISCOVERY_PASSWORD"
FULL_READ = "no cursor column: full read each run, deletes inferred"
KEYLESS_FULL_READ = "no cursor column: full read each run, no key, so deletes are not inferred"
NO_KEY = "no primary key or unique index over NOT NULL columns: silver appends"

# table -> (key, cursor), the same on both servers except where the override dicts say otherwise
EXPECTED: dict[str, tuple[tuple[str, ...], str | None]] = {
    "audit_log": ((), None),
    "counters": (("counter_id",), "updated"),
    "country_codes": (("code",), None),
    "customers": (("customer_id",), "updated_at"),
    "events": (("event_id",), "updated_at"),
    "film": (("film_id",), "last_update"),
    "film_actor": (("actor_id", "film_id"), "last_update"),
    "inventory": (("store_id", "sku"), "last_modified"),
    "ledger": (("entry_id",), "updated_at"),
    "notes": (("note_id",), None),
    "order-items": (("id",), None),
    "order_items": (("id",), "last_updated"),
    "order_lines": (("order_id", "line_no"), "modified_on"),
    "OrderItems": (("OrderId", "LineNo"), "UpdatedAt"),
    "payments": (("payment_id", "paid_at"), "changed_at"),
    "price_history": (("sku", "valid_from"), None),
    "rental": (("rental_id",), "changed"),
    "sessions": (("token",), None),
    "shipments": (("shipment_id",), "modified_at"),
    "tags": (("tag",), None),
}
POSTGRES_DIFFERS = {"rental": (("rental_id",), "updated_at")}  # no ON UPDATE: the name rule picks


def server_connection(server: MariaDB | Postgres, database: str, **fields: Any) -> JdbcConnection:
    base = {"name": "scratch", "type": server.kind, "host": server.host, "port": server.port}
    base |= {"database": database, "user": server.user, "password": f"${{env:{PASSWORD_ENV}}}"}
    return JdbcConnection.model_validate(base | fields)


def resolver(tmp_path: Path, password: str) -> SecretResolver:
    return SecretResolver({PASSWORD_ENV: password}, tmp_path)


def decisions(found: SchemaDiscovery) -> dict[str, tuple[tuple[str, ...], str | None]]:
    return {t.name: (t.primary_key, t.cursor) for t in found.tables}


def reasons(found: SchemaDiscovery) -> dict[str, tuple[str, str]]:
    return {t.name: (t.key_reason, t.cursor_reason) for t in found.tables}


# ---------------------------------------------------------------------------------------------- the rules


def test_cursor_rules_in_order_and_not_null_first() -> None:
    cols = [
        Column("modified_by_batch", "bigint", nullable=False),
        Column("last_update", "timestamp", nullable=False),
        Column("updated_at", "timestamp", nullable=True),
    ]
    assert choose_cursor(cols)[0] == "last_update"  # NOT NULL before a better name that is nullable
    cols[2] = Column("updated_at", "timestamp", nullable=False)
    assert choose_cursor(cols)[0] == "updated_at"  # the exact names in their order, before modified*/updated*
    stamped = [*cols, Column("stamp", "timestamp", nullable=True, on_update_now=True)]
    cursor, why = choose_cursor(stamped)
    assert (cursor, why) == (
        "stamp",
        "cursor stamp: ON UPDATE CURRENT_TIMESTAMP; nullable: rows with a NULL stamp are read only by a full read",
    )


def test_cursor_needs_a_time_or_integer_type_and_a_usable_name() -> None:
    cursor, why = choose_cursor([Column("updated_at", "time", False), Column("Updated At", "datetime", False)])
    assert cursor is None
    assert (
        why
        == f"no cursor column (updated_at is time, not a date/time or integer; 'Updated At' is not a name a flow can use): {FULL_READ.removeprefix('no cursor column: ')}"
    )
    assert choose_cursor([Column("UPDATED_ON", "INTEGER", False)])[0] == "UPDATED_ON"
    assert choose_cursor([Column("created_at", "timestamp", False)]) == (None, FULL_READ)


def test_key_prefers_primary_then_fewest_not_null_columns() -> None:
    cols = [Column("a", "int", False), Column("b", "int", False), Column("c", "int", True), Column("d", "int", False)]
    wide, narrow, nullable = UniqueIndex("ux_ab", ("a", "b")), UniqueIndex("ux_d", ("d",)), UniqueIndex("ux_c", ("c",))
    assert choose_key(cols, [wide, nullable, narrow]) == (("d",), "unique index ux_d (d): no primary key")
    assert choose_key(cols, [wide, UniqueIndex("PRIMARY", ("b", "a"), primary=True)]) == (
        ("b", "a"),
        "primary key (b, a)",
    )
    assert choose_key(cols, [nullable]) == ((), NO_KEY)
    spaced = [Column("my id", "int", False), *cols]
    key, why = choose_key(spaced, [UniqueIndex("PRIMARY", ("my id",), primary=True), narrow])
    assert (key, why) == (("d",), "unique index ux_d (d): primary key (my id) has a column name a flow cannot use")


# ---------------------------------------------------------------------------------------------- SQLite

SQLITE_DDL = """
CREATE TABLE film (film_id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT, last_update TIMESTAMP NOT NULL);
CREATE TABLE order_lines (line_no INT NOT NULL, order_id INT NOT NULL, modified_on DATETIME,
    PRIMARY KEY (order_id, line_no)) WITHOUT ROWID;
CREATE TABLE price_history (sku TEXT NOT NULL, valid_from DATE NOT NULL, note TEXT, UNIQUE (sku, valid_from));
CREATE UNIQUE INDEX ux_note ON price_history (note);
CREATE TABLE audit_log (logged_at DATETIME NOT NULL, message TEXT NOT NULL);
CREATE UNIQUE INDEX ux_partial ON audit_log (logged_at) WHERE message <> '';
CREATE UNIQUE INDEX ux_expr ON audit_log (lower(message));
CREATE TABLE "OrderItems" ("OrderId" INTEGER NOT NULL, "UpdatedAt" TIMESTAMP NOT NULL, PRIMARY KEY ("OrderId"));
CREATE TABLE events (event_id INTEGER PRIMARY KEY, updated_at TEXT);
CREATE TABLE customers (customer_id INTEGER PRIMARY KEY, updated_at DATETIME);
CREATE VIEW film_titles AS SELECT film_id, title FROM film;
"""


@pytest.fixture
def sqlite_source(tmp_path: Path) -> SqliteConnection:
    db = sqlite3.connect(tmp_path / "shop.db")
    db.executescript(SQLITE_DDL)
    db.execute("INSERT INTO film (title, last_update) VALUES ('x', '2024-01-01 00:00:00')")  # sqlite_sequence
    db.commit()
    db.close()
    return SqliteConnection(name="shop", type="sqlite", path="shop.db")


def test_sqlite_tables_keys_and_cursors(sqlite_source: SqliteConnection, tmp_path: Path) -> None:
    found = discover(sqlite_source, resolver(tmp_path, ""), tmp_path)
    assert (found.dialect, found.schema, default_schema(sqlite_source)) == ("sqlite", "main", "main")
    assert decisions(found) == {  # sqlite_sequence left out; the view only on request
        "audit_log": ((), None),
        "customers": (("customer_id",), "updated_at"),
        "events": (("event_id",), None),
        "film": (("film_id",), "last_update"),
        "order_lines": (("order_id", "line_no"), "modified_on"),
        "OrderItems": (("OrderId",), "UpdatedAt"),
        "price_history": (("sku", "valid_from"), None),
    }
    why = reasons(found)
    assert why["price_history"][0] == "unique index sqlite_autoindex_price_history_1 (sku, valid_from): no primary key"
    assert why["audit_log"] == (NO_KEY, KEYLESS_FULL_READ)  # a partial and an expression unique index do not count
    assert why["customers"][1].endswith("nullable: rows with a NULL updated_at are read only by a full read")
    assert why["events"][1] == f"no cursor column (updated_at is TEXT, not a date/time or integer): {FULL_READ[18:]}"
    assert found.views_left_out == ("film_titles",)
    film = next(t for t in found.tables if t.name == "film")
    assert [(c.name, c.native_type, c.nullable) for c in film.columns] == [
        ("film_id", "INTEGER", False),
        ("title", "TEXT", True),
        ("last_update", "TIMESTAMP", False),
    ]


def test_sqlite_views_on_request_and_one_table_by_name(sqlite_source: SqliteConnection, tmp_path: Path) -> None:
    found = discover(sqlite_source, resolver(tmp_path, ""), tmp_path, include_views=True)
    view = next(t for t in found.tables if t.name == "film_titles")
    assert (view.is_view, view.primary_key, view.key_reason) == (True, (), "a view: no primary key")
    one = discover_table(sqlite_source, resolver(tmp_path, ""), tmp_path, "orderitems")
    assert (one.name, one.primary_key, one.cursor) == ("OrderItems", ("OrderId",), "UpdatedAt")
    with pytest.raises(TableNotFound, match="^connection 'shop': table 'ghost' not found in schema 'main'$"):
        discover_table(sqlite_source, resolver(tmp_path, ""), tmp_path, "ghost")


def test_sqlite_missing_file_or_schema_is_one_line(tmp_path: Path) -> None:
    missing = SqliteConnection(name="gone", type="sqlite", path="nowhere/x.db")
    with pytest.raises(SourceError, match="^connection 'gone': cannot read the catalog: .*unable to open") as err:
        discover(missing, resolver(tmp_path, ""), tmp_path)
    assert "\n" not in str(err.value)
    sqlite3.connect(tmp_path / "x.db").close()
    there = SqliteConnection(name="x", type="sqlite", path="x.db")
    with pytest.raises(SourceError, match="^connection 'x': schema 'other' does not exist$"):
        discover(there, resolver(tmp_path, ""), tmp_path, "other")
    assert discover(there, resolver(tmp_path, ""), tmp_path).tables == ()


# ---------------------------------------------------------------------------------------------- MariaDB


@pytest.fixture(scope="module")
def maria_scratch(mariadb: MariaDB) -> Iterator[MariaDB]:
    mariadb.load_sql(SCRATCH, FIXTURES / "shop20_mariadb.sql")
    yield mariadb
    mariadb.drop_database(SCRATCH)


def test_mariadb_schema(maria_scratch: MariaDB, tmp_path: Path) -> None:
    source = server_connection(maria_scratch, SCRATCH)
    assert default_schema(source) == SCRATCH
    found = discover(source, resolver(tmp_path, maria_scratch.password), tmp_path)
    assert (found.dialect, found.schema) == ("mysql", SCRATCH)
    assert decisions(found) == EXPECTED
    assert [t.name for t in found.tables][:3] == ["audit_log", "counters", "country_codes"]  # case-blind order
    why = reasons(found)
    assert why["film"] == ("primary key (film_id)", "cursor last_update: ON UPDATE CURRENT_TIMESTAMP")
    assert why["rental"][1] == "cursor changed: ON UPDATE CURRENT_TIMESTAMP"  # rule (a) before the name rule
    assert why["payments"] == (
        "primary key (payment_id, paid_at)",
        "cursor changed_at: ON UPDATE CURRENT_TIMESTAMP; nullable: rows with a NULL changed_at are read only by a full read",
    )
    assert why["price_history"][0] == "unique index ux_price (sku, valid_from): no primary key"
    assert why["country_codes"][0] == "unique index ux_code (code): no primary key"
    assert why["audit_log"] == (NO_KEY, KEYLESS_FULL_READ)
    assert why["notes"][1].startswith("no cursor column (updated_at is varchar(30), not a date/time or integer)")
    assert why["order_items"][1] == "cursor last_updated: named like an update time"
    assert found.views_left_out == ("film_titles",) and found.partitions_left_out == ()
    film = next(t for t in found.tables if t.name == "film")
    film_id = film.columns[0]
    assert film_id.name == "film_id" and film_id.native_type.startswith("int") and "unsigned" in film_id.native_type
    assert film.columns[2].on_update_now and not film.columns[1].on_update_now


def test_mariadb_views_other_schema_and_failures(maria_scratch: MariaDB, tmp_path: Path) -> None:
    source = server_connection(maria_scratch, maria_scratch.database)  # connected elsewhere, reading SCRATCH
    found = discover(source, resolver(tmp_path, maria_scratch.password), tmp_path, SCRATCH, include_views=True)
    assert len(found.tables) == 21 and next(t for t in found.tables if t.name == "film_titles").is_view
    one = discover_table(source, resolver(tmp_path, maria_scratch.password), tmp_path, "OrderItems", SCRATCH)
    assert one.reason == "primary key (OrderId, LineNo); cursor UpdatedAt: named like an update time"
    with pytest.raises(SourceError, match=f"^connection 'scratch': schema '{SCRATCH}_nope' does not exist$"):
        discover(source, resolver(tmp_path, maria_scratch.password), tmp_path, f"{SCRATCH}_nope")
    with pytest.raises(SourceError, match="^connection 'scratch': cannot read the catalog: .*Access denied") as err:
        discover(source, resolver(tmp_path, "wrong-password-3e1"), tmp_path)
    assert "wrong-password-3e1" not in str(err.value)
    closed = server_connection(maria_scratch, SCRATCH, port=1)
    with pytest.raises(SourceError, match="^connection 'scratch': cannot read the catalog: .*connect"):
        discover(closed, resolver(tmp_path, maria_scratch.password), tmp_path)


# ---------------------------------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="module")
def pg_scratch(postgres: Postgres) -> Iterator[Postgres]:
    postgres.load_sql(SCRATCH, FIXTURES / "shop20_postgres.sql")
    conn = postgres.connect(SCRATCH)
    try:
        conn.execute('CREATE SCHEMA "Sales"')
        conn.execute('CREATE TABLE "Sales"."Orders" ("Id" INT PRIMARY KEY, modified TIMESTAMPTZ NOT NULL)')
    finally:
        conn.close()
    yield postgres
    postgres.drop_database(SCRATCH)


def test_postgres_schema(pg_scratch: Postgres, tmp_path: Path) -> None:
    source = server_connection(pg_scratch, SCRATCH)
    found = discover(source, resolver(tmp_path, pg_scratch.password), tmp_path)
    assert (found.dialect, found.schema, default_schema(source)) == ("postgres", "public", "public")
    assert decisions(found) == EXPECTED | POSTGRES_DIFFERS
    payments = next(t for t in found.tables if t.name == "payments")
    assert payments.partitions == ("payments_2024", "payments_2025")
    assert found.partitions_left_out == ("payments_2024", "payments_2025")
    assert payments.reason == (
        "primary key (payment_id, paid_at); cursor changed_at: named like an update time; nullable: rows with a "
        "NULL changed_at are read only by a full read; 2 partition(s) read through it"
    )
    why = reasons(found)
    assert why["price_history"][0] == "unique index ux_price (sku, valid_from): no primary key"  # INCLUDE left out
    assert why["country_codes"][0] == "unique index ux_code (code): no primary key"
    assert why["audit_log"] == (NO_KEY, KEYLESS_FULL_READ)  # a partial and an expression unique index do not count
    assert why["film"][1] == "cursor last_update: named like an update time"
    assert why["notes"][1].startswith("no cursor column (updated_at is character varying(30), not a date/time")
    assert found.views_left_out == ("film_titles",)
    rental = {c.name: c for c in next(t for t in found.tables if t.name == "rental").columns}
    assert rental["updated_at"].native_type == "timestamp(3) without time zone"
    actor = {c.name: c for c in next(t for t in found.tables if t.name == "film_actor").columns}
    assert (actor["last_update"].native_type, actor["last_update"].kind) == ("timestamp with time zone", "time")


def test_postgres_other_schema_partition_by_name_and_failures(pg_scratch: Postgres, tmp_path: Path) -> None:
    source = server_connection(pg_scratch, SCRATCH)
    login = resolver(tmp_path, pg_scratch.password)
    sales = discover(source, login, tmp_path, "Sales")
    assert decisions(sales) == {"Orders": (("Id",), "modified")}
    with_views = {t.name for t in discover(source, login, tmp_path, include_views=True).tables}
    assert "film_titles" in with_views and "payments_2024" not in with_views and len(with_views) == 21
    partition = discover_table(source, login, tmp_path, "payments_2024")  # named on purpose: still readable
    assert partition.primary_key == ("payment_id", "paid_at")
    with pytest.raises(SourceError, match="^connection 'scratch': schema 'sales' does not exist$"):
        discover(source, login, tmp_path, "sales")  # PostgreSQL names are case-sensitive once quoted
    with pytest.raises(SourceError, match="^connection 'scratch': cannot read the catalog: .*password authentication"):
        discover(source, resolver(tmp_path, "wrong-password-3e1"), tmp_path)
    with pytest.raises(SourceError, match="^connection 'scratch': cannot read the catalog: .*"):
        discover(server_connection(pg_scratch, SCRATCH, port=1), login, tmp_path)


def test_discovery_refuses_sources_without_a_python_driver(tmp_path: Path) -> None:
    oracle: ConnectionSpec = JdbcConnection.model_validate(
        {"name": "erp", "type": "oracle", "host": "db", "database": "ERP", "user": "u"}
    )
    with pytest.raises(SourceError, match="^connection 'erp': discovery is not available for type 'oracle'$"):
        discover(oracle, resolver(tmp_path, ""), tmp_path)
