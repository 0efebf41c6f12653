"""End to end on a real database server, MariaDB (setup/local/mariadb.sh) and PostgreSQL
(setup/local/postgres.sh): the demo shop loaded into a scratch database with the server's own types, a
scratch project whose flow reads `orders` from it over JDBC (MySQL Connector/J, pgjdbc), all steps run in
this process's Spark session. On MariaDB the state store is MariaDB too; PostgreSQL is not a state store
type, so its project keeps state in SQLite.

Every test runs once per server (the `server` fixture's params). The scratch databases (`pz_test_<hex>` for
the shop, `pz_test_<hex>_state` for a MariaDB state store) are dropped at the end.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pipezone.core.demo.shop import as_money, create_retail_db
from pipezone.core.runs.flow_runner import RunReport, run_flows
from pipezone.core.spec.settings import load_settings
from pipezone.core.steps.runtime import Runtime, load_runtime

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from services import MariaDB, Postgres

pytestmark = [pytest.mark.services, pytest.mark.spark]

REPO_ROOT = Path(__file__).resolve().parents[3]
LOOKBACK = timedelta(days=1)  # the flow's `lookback: 1d`
ORDER_COLUMNS = ("order_id", "customer_id", "order_date", "status", "total_amount", "updated_at")
WRONG_PASSWORD = "wrong-password-5d1e"

# The demo tables in each server's own types. Columns are NOT NULL unless marked NULL; the first is the
# primary key; every table has an index on its cursor (order_items on order_id too).
TABLES = {
    "customers": "customer_id int, first_name varchar(50), last_name varchar(50), email varchar(120) NULL, "
    "country varchar(8) NULL, created_at stamp_tz, updated_at stamp",
    "products": "product_id int, sku varchar(20) UNIQUE, name varchar(100), category varchar(50), "
    "unit_price money, active bool, updated_at stamp",
    "orders": "order_id int, customer_id int, order_date stamp_tz, status varchar(20), total_amount money, "
    "updated_at stamp",
    "order_items": "order_item_id int, order_id int, product_id int, quantity int, unit_price money, updated_at stamp",
}
CURSOR_INDEX = ("updated_at",)
INDEXES = {
    "customers": CURSOR_INDEX,
    "products": CURSOR_INDEX,
    "orders": CURSOR_INDEX,
    "order_items": (*CURSOR_INDEX, "order_id"),
}
# MariaDB: DATETIME(6), DECIMAL(12,2). PostgreSQL: timestamp(6) cursors, a timestamptz order date and
# customer creation time, numeric(12,2), a real boolean.
TYPES = {
    "mariadb": {
        "int": "INT",
        "stamp": "DATETIME(6)",
        "stamp_tz": "DATETIME(6)",
        "money": "DECIMAL(12,2)",
        "bool": "BOOLEAN",
    },
    "postgres": {
        "int": "integer",
        "stamp": "timestamp(6)",
        "stamp_tz": "timestamptz(6)",
        "money": "numeric(12,2)",
        "bool": "boolean",
    },
}


def create_statements(kind: str, table: str) -> list[str]:
    """CREATE TABLE and CREATE INDEX for a demo table in `kind`'s types (varchar(n) is the same in both)."""
    columns = []
    for number, column in enumerate(TABLES[table].split(", ")):
        name, type_name, *flags = column.split()
        null = "NULL" if "NULL" in flags else "NOT NULL"
        extra = " PRIMARY KEY" if number == 0 else " UNIQUE" if "UNIQUE" in flags else ""
        columns.append(f"{name} {TYPES[kind].get(type_name, type_name)} {null}{extra}")
    indexes = [f"CREATE INDEX ix_{table}_{c} ON {table} ({c})" for c in INDEXES[table]]
    return [f"CREATE TABLE {table} ({', '.join(columns)})", *indexes]


MONEY_COLUMNS = {"products": (4,), "orders": (4,), "order_items": (4,)}
BOOLEAN_COLUMNS = {"products": (5,)}  # SQLite's 0/1; PostgreSQL wants a real boolean


@dataclass(frozen=True)
class Dialect:
    """What differs between the servers (besides their types): whether they hold the state store, their
    error texts."""

    state_store: bool
    access_denied: tuple[str, ...]  # fragments of a wrong-password line (the user may be redacted)
    missing_table: str  # the missing-table error, formatted with the shop's database name


DIALECTS = {
    "mariadb": Dialect(
        state_store=True,
        access_denied=("Access denied for user '", "'@'127.0.0.1' (using password: YES)"),
        missing_table="Table '{database}.orders_archive' doesn't exist",
    ),
    "postgres": Dialect(
        state_store=False,
        access_denied=('password authentication failed for user "',),
        missing_table='relation "orders_archive" does not exist',
    ),
}

FLOWS = {
    "orders": """\
name: orders
source:
  connection: shop
  table: orders
  primary_key: [order_id]
  incremental:
    cursor: updated_at
    lookback: 1d
  read:
    num_partitions: 2
""",
    # A table that does not exist on the server.
    "ghost_orders": """\
name: ghost_orders
source:
  connection: shop
  table: orders_archive
  primary_key: [order_id]
  incremental:
    cursor: updated_at
""",
}


@dataclass
class Shop:
    """The scratch databases and the scratch project reading them."""

    server: MariaDB | Postgres
    database: str
    state_database: str | None  # None: state in the project's SQLite
    root: Path
    environ: dict[str, str] = field(repr=False)
    runtimes: list[Runtime] = field(default_factory=list, repr=False)

    def runtime(self, **overrides: str) -> Runtime:
        """A fresh runtime (settings from an explicit environment, as a new process would build them)."""
        runtime = load_runtime(load_settings(environ={**self.environ, **overrides}, cwd=self.root))
        self.runtimes.append(runtime)
        return runtime

    def run(self, flows: list[str], steps: list[str] | None = None, **overrides: str) -> RunReport:
        return run_flows(self.runtime(**overrides), flows, steps=steps, in_process=True, progress=lambda _: None)

    @property
    def dialect(self) -> Dialect:
        return DIALECTS[self.server.kind]

    def query(self, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
        from services import query

        conn = self.server.connect(self.database)
        try:
            return query(conn, sql, args)
        finally:
            conn.close()

    def close(self) -> None:
        for runtime in self.runtimes:
            if "state" in runtime.__dict__:  # the cached StateStore, if this runtime opened one
                runtime.state.close()


def _load_demo_tables(server: MariaDB | Postgres, database: str, demo_db: Path) -> None:
    source = sqlite3.connect(demo_db)
    conn = server.connect(database)
    try:
        with conn.cursor() as cursor:
            for table in TABLES:
                for statement in create_statements(server.kind, table):
                    cursor.execute(statement)
                rows = [list(r) for r in source.execute(f"SELECT * FROM {table} ORDER BY 1")]
                for row in rows:
                    for i in MONEY_COLUMNS.get(table, ()):
                        row[i] = as_money(row[i])
                    for i in BOOLEAN_COLUMNS.get(table, ()):
                        row[i] = bool(row[i])
                marks = ", ".join(["%s"] * len(rows[0]))
                cursor.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
    finally:
        conn.close()
        source.close()


def _write_project(root: Path, server: MariaDB | Postgres, database: str, state_database: str | None) -> None:
    meta = root / "metadata"
    for sub in ("connections", "flows", "profiles"):
        (meta / sub).mkdir(parents=True)
    connections = meta / "connections"
    (connections / "shop.yaml").write_text(
        server.connection_yaml("shop", database, "${env:PZ_TEST_DB_USER}", "${env:PZ_TEST_DB_PASSWORD}")
    )
    state = (
        server.connection_yaml("state", state_database, "${env:PZ_TEST_STATE_USER}", "${env:PZ_TEST_STATE_PASSWORD}")
        if state_database
        else "name: state\ntype: sqlite\npath: state.db\n"
    )
    (connections / "state.yaml").write_text(state)
    (connections / "lake.yaml").write_text("name: lake\ntype: local\npath: lake\n")
    (meta / "profiles" / "default.yaml").write_text(
        "name: default\nlake: lake\nstate_store: state\nspark:\n  master: local[2]\n  shuffle_partitions: 2\n"
    )
    for name, text in FLOWS.items():
        (meta / "flows" / f"{name}.yaml").write_text(text)


@pytest.fixture(scope="module", params=sorted(DIALECTS))
def server(request: pytest.FixtureRequest) -> MariaDB | Postgres:
    """Each server in turn (the session fixture of that name: started on demand, a failure in CI)."""
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="module")
def shop(server: MariaDB | Postgres, spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    """Scratch databases holding the demo shop, and a scratch project over them (nothing run yet)."""
    database = f"pz_test_{uuid.uuid4().hex[:10]}"
    state_database = f"{database}_state" if DIALECTS[server.kind].state_store else None
    created = [name for name in (database, state_database) if name]
    root = tmp_path_factory.mktemp(f"{server.kind}-project")
    try:
        for name in created:
            server.create_database(name)
        demo_db = root / "retail.db"
        create_retail_db(demo_db)
        _load_demo_tables(server, database, demo_db)
        _write_project(root, server, database, state_database)
        environ = {
            "PIPEZONE_JAR_CACHE": str(REPO_ROOT / ".pipezone" / "jars"),
            "PZ_TEST_DB_USER": server.user,
            "PZ_TEST_DB_PASSWORD": server.password,
            "PZ_TEST_STATE_USER": server.user,
            "PZ_TEST_STATE_PASSWORD": server.password,
        }
        shop = Shop(server, database, state_database, root, environ)
        try:
            yield shop
        finally:
            shop.close()
    finally:
        for name in created:
            server.drop_database(name)


@dataclass(frozen=True)
class FirstRun:
    report: RunReport
    hi: datetime  # MAX(updated_at) of the table when it ran


@pytest.fixture(scope="module")
def first_run(shop: Shop) -> FirstRun:
    """Every step of `orders` once: a full load (no watermark yet)."""
    (hi,) = shop.query("SELECT MAX(updated_at) FROM orders")[0]
    return FirstRun(shop.run(["orders"]), hi.replace(tzinfo=UTC))


# ---------------------------------------------------------------------------------------------------------
# helpers


def _table_rows(shop: Shop) -> list[tuple[Any, ...]]:
    rows = shop.query(f"SELECT {', '.join(ORDER_COLUMNS)} FROM orders ORDER BY order_id")
    return [tuple(v.replace(tzinfo=UTC) if isinstance(v, datetime) else v for v in row) for row in rows]


def _silver_rows(spark: SparkSession, shop: Shop) -> list[tuple[Any, ...]]:
    path = shop.runtime().lake.silver("orders")
    rows = spark.read.format("delta").load(path).select(*ORDER_COLUMNS).orderBy("order_id").collect()
    return [tuple(v.astimezone(UTC) if isinstance(v, datetime) else v for v in row) for row in rows]


def _raw_batch_ids(spark: SparkSession, shop: Shop, batch: int) -> list[int]:
    from pyspark.sql import functions as F

    runtime = shop.runtime()
    df = spark.read.format("delta").load(runtime.lake.raw(runtime.flow("orders")))
    return sorted(r.order_id for r in df.filter(F.col("_pz_batch") == batch).select("order_id").collect())


def _assert_ok(report: RunReport, steps: list[str]) -> None:
    assert report.ok, "\n".join(f"{o.flow} {o.step}: {o.line}" for o in report.outcomes)
    assert [o.step for o in report.outcomes] == steps


# ---------------------------------------------------------------------------------------------------------
# tests


def test_full_load_silver_equals_the_source_table(spark: SparkSession, shop: Shop, first_run: FirstRun) -> None:
    _assert_ok(first_run.report, ["extract", "bronze", "silver"])
    assert "rows in 1000, rows out 1000" in first_run.report.outcomes[0].line
    table = _table_rows(shop)
    assert len(table) == 1000
    silver = _silver_rows(spark, shop)
    assert silver == table
    assert isinstance(silver[0][4], Decimal) and silver[0][4] == table[0][4]  # DECIMAL(12,2) stays exact
    watermark = shop.runtime().state.get_watermark("orders")
    assert watermark is not None and watermark.value == first_run.hi
    assert watermark.last_run_id == first_run.report.run_id


def test_incremental_run_reads_only_changed_and_lookback_rows(
    spark: SparkSession, shop: Shop, first_run: FirstRun
) -> None:
    _assert_ok(first_run.report, ["extract", "bronze", "silver"])
    hi1 = first_run.hi
    (max_id,) = shop.query("SELECT MAX(order_id) FROM orders")[0]
    base = hi1.replace(tzinfo=None)
    updated = {5: 1, 50: 2, 500: 3}  # order_id -> seconds after the old maximum
    for order_id, seconds in updated.items():
        shop.query(
            "UPDATE orders SET status = 'shipped', total_amount = total_amount + 1.25, updated_at = %s"
            " WHERE order_id = %s",
            (base + timedelta(seconds=seconds, microseconds=1), order_id),
        )
    inserted = [max_id + 1, max_id + 2, max_id + 3]
    for n, order_id in enumerate(inserted, start=1):
        stamp = base + timedelta(seconds=10 + n, microseconds=999_999 if n == 3 else 123_456)
        shop.query(
            "INSERT INTO orders VALUES (%s, 7, %s, 'pending', %s, %s)",
            (order_id, stamp, Decimal("1234567890.99") if n == 1 else Decimal("0.01"), stamp),
        )
    hi2 = hi1 + timedelta(seconds=13, microseconds=999_999)
    assert shop.query("SELECT MAX(updated_at) FROM orders")[0][0].replace(tzinfo=UTC) == hi2

    report = shop.run(["orders"])

    _assert_ok(report, ["extract", "bronze", "silver"])
    lo = hi1 - LOOKBACK
    expected = sorted(
        r[0]
        for r in shop.query(
            "SELECT order_id FROM orders WHERE updated_at > %s AND updated_at <= %s",
            (lo.replace(tzinfo=None), hi2.replace(tzinfo=None)),
        )
    )
    lookback_only = sorted(set(expected) - set(updated) - set(inserted))
    assert lookback_only, "the lookback window should re-read at least the row at the old watermark"
    assert expected == sorted([*updated, *inserted, *lookback_only])
    assert _raw_batch_ids(spark, shop, 2) == expected
    assert f"rows in {len(expected)}, rows out {len(expected)}" in report.outcomes[0].line
    assert _silver_rows(spark, shop) == _table_rows(shop)
    watermark = shop.runtime().state.get_watermark("orders")
    assert watermark is not None and watermark.value == hi2  # microseconds kept
    assert watermark.last_run_id == report.run_id


def test_wrong_password_fails_extract_in_one_line_and_keeps_the_watermark(
    spark: SparkSession, shop: Shop, first_run: FirstRun
) -> None:
    _assert_ok(first_run.report, ["extract", "bronze", "silver"])
    state = shop.runtime().state
    before = state.get_watermark("orders")
    raw_rows = spark.read.format("delta").load(shop.runtime().lake.raw(shop.runtime().flow("orders"))).count()

    report = shop.run(["orders"], PZ_TEST_DB_PASSWORD=WRONG_PASSWORD)

    assert not report.ok
    assert [o.step for o in report.outcomes] == ["extract"]  # the flow stops at its first failed step
    line = report.outcomes[0].line
    assert "\n" not in line
    assert line.startswith("flow orders, step extract (connection shop): ")
    # The user came from a secret reference, so the redactor masks it too: 'pipezone' or '***'.
    assert all(fragment in line for fragment in shop.dialect.access_denied), line
    assert WRONG_PASSWORD not in line and shop.server.password not in line
    logged = state.recent_runs("orders", limit=1)[0]
    assert (logged.run_id, logged.step, logged.status, logged.error) == (report.run_id, "extract", "failed", line)
    assert state.get_watermark("orders") == before
    assert spark.read.format("delta").load(shop.runtime().lake.raw(shop.runtime().flow("orders"))).count() == raw_rows


def test_missing_table_fails_extract_in_one_line_and_keeps_the_watermark(shop: Shop) -> None:
    state = shop.runtime().state
    seeded = datetime(2024, 6, 1, 12, 0, 0, 250_000, tzinfo=UTC)
    state.set_watermark("ghost_orders", "updated_at", seeded, "seed-run")
    before = state.get_watermark("ghost_orders")

    report = shop.run(["ghost_orders"])

    assert not report.ok
    assert [o.step for o in report.outcomes] == ["extract"]
    line = report.outcomes[0].line
    assert "\n" not in line
    assert line.startswith("flow ghost_orders, step extract (connection shop): ")
    assert shop.dialect.missing_table.format(database=shop.database) in line, line
    logged = state.recent_runs("ghost_orders", limit=1)[0]
    assert (logged.run_id, logged.status, logged.error) == (report.run_id, "failed", line)
    assert state.get_watermark("ghost_orders") == before
    assert before is not None and before.value == seeded
    assert not (shop.root / "lake" / "raw" / "shop" / "orders_archive").exists()
