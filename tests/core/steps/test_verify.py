"""`pipezone verify` on real sources (SQLite, MariaDB, PostgreSQL) and real silver tables: flows loaded
through the pipeline are clean; differences planted directly in silver (Delta UPDATE / DELETE / append,
a soft delete) and in the source after the load are each named in the right category; the narrowing
lists them without reading the source's rows (few keys fetched); composite and string keys, scd2 and a
query source."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pipezone.core.runs.flow_runner import run_flows
from pipezone.core.spec.flow import Transform
from pipezone.core.spec.settings import load_settings
from pipezone.core.steps.runtime import Runtime, load_runtime
from pipezone.core.steps.verify import VerifyLimits, VerifyReport, verify_flow
from pipezone.core.steps.verify_columns import NotVerifiable, plan_columns

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from services import MariaDB, Postgres

pytestmark = pytest.mark.spark

REPO_ROOT = Path(__file__).resolve().parents[3]
SMALL_LEAVES = VerifyLimits(leaf_rows=100)  # ranges are cut until 100 rows: narrowing on a few thousand rows


@dataclass
class Scratch:
    """A scratch project on one source connection: flows, their loads, verify, and planted differences."""

    root: Path
    spark: SparkSession
    environ: dict[str, str]

    @classmethod
    def create(cls, root: Path, spark: SparkSession, connection: str, environ: dict[str, str] | None = None) -> Scratch:
        meta = root / "metadata"
        for sub in ("connections", "flows", "profiles"):
            (meta / sub).mkdir(parents=True, exist_ok=True)
        (meta / "connections" / "src.yaml").write_text(connection)
        (meta / "connections" / "lake.yaml").write_text("name: lake\ntype: local\npath: lake\n")
        (meta / "connections" / "state.yaml").write_text("name: state\ntype: sqlite\npath: state.db\n")
        (meta / "profiles" / "default.yaml").write_text(
            "name: default\nlake: lake\nstate_store: state\nspark:\n  master: local[2]\n  shuffle_partitions: 2\n"
        )
        (root / ".pipezone").mkdir(exist_ok=True)
        (root / ".pipezone" / "jars").symlink_to(REPO_ROOT / ".pipezone" / "jars", target_is_directory=True)
        return cls(root, spark, environ or {})

    def flow(self, name: str, source: str, silver: str = "merge") -> None:
        """A flow file: `source` is the YAML under `source:` (connection src is added)."""
        body = "\n".join(f"  {line}" for line in source.strip().splitlines())
        (self.root / "metadata" / "flows" / f"{name}.yaml").write_text(
            f"name: {name}\nsource:\n  connection: src\n{body}\nlayers:\n  silver:\n    write_mode: {silver}\n"
        )
        self.__dict__.pop("runtime", None)

    @cached_property
    def runtime(self) -> Runtime:
        return load_runtime(load_settings(environ=self.environ, cwd=self.root))

    def load(self, *flows: str) -> None:
        report = run_flows(self.runtime, list(flows), in_process=True, progress=lambda _: None)
        assert report.ok, [o.line for o in report.outcomes if not o.ok]

    def verify(self, flow: str, limits: VerifyLimits | None = None) -> VerifyReport:
        report = verify_flow(self.runtime, self.spark, self.runtime.flow(flow), limits)
        assert report.status in ("clean", "different"), report.summary()
        return report

    def silver(self, flow: str, statement: str) -> None:
        """A Spark SQL statement on the flow's silver table, named `{t}` in it."""
        self.spark.sql(statement.format(t=f"delta.`{self.runtime.lake.silver(flow)}`"))

    def silver_copy(self, flow: str, key: str, value: Any, new_value: Any) -> None:
        """Append a copy of silver's row `key = value` under `new_value`: a key the source does not have."""
        from pyspark.sql import functions as F

        path = self.runtime.lake.silver(flow)
        row = self.spark.read.format("delta").load(path).filter(F.col(key) == value)
        row.withColumn(key, F.lit(new_value).cast(dict(row.dtypes)[key])).write.format("delta").mode("append").save(
            path
        )

    def close(self) -> None:
        if "runtime" in self.__dict__ and "state" in self.runtime.__dict__:
            self.runtime.state.close()


def found(report: VerifyReport) -> tuple[list[str], list[str], list[str]]:
    return report.missing, report.extra, report.different


def assert_clean(report: VerifyReport, rows: int) -> None:
    assert report.status == "clean", report.summary()
    assert (report.source_rows, report.silver_rows, report.fetched_rows) == (rows, rows, 0)


# ------------------------------------------------------------------------------------------ the items table


ITEM_COLUMNS = ("id", "name", "note", "amount", "price", "born", "seen", "flag", "raw")


def item(i: int) -> tuple[Any, ...]:
    """Row i: NULLs, an empty string, unicode, negative decimals, microseconds, bytes."""
    return (
        i,
        None if i % 7 == 0 else f"Zoë {i}",
        "" if i % 11 == 0 else f"tëxt 😀 {i}",
        Decimal(i * 125).scaleb(-2) * (-1 if i % 5 == 0 else 1),
        i / 3,
        date(2000, 1, 1) + timedelta(days=i),
        datetime(2024, 1, 1) + timedelta(seconds=i * 37, microseconds=i % 1000 * 1000),
        i % 2 == 0,
        None if i % 13 == 0 else bytes([i % 256, 0, 255]),
    )


def plant_in_silver(scratch: Scratch, flow: str = "items") -> None:
    """10: a changed value; 20: gone; 30: soft-deleted; 999999: a row the source never had."""
    scratch.silver(flow, "UPDATE {t} SET name = 'changed' WHERE id = 10")
    scratch.silver(flow, "DELETE FROM {t} WHERE id = 20")
    scratch.silver(flow, "UPDATE {t} SET _pz_deleted = true WHERE id = 30")
    scratch.silver_copy(flow, "id", 1, 999999)


SOURCE_CHANGES = (
    "UPDATE items SET amount = amount + 1 WHERE id = 40",  # different
    "UPDATE items SET price = price + 1 WHERE id = 70",  # a double: not hashed, so not found
    "INSERT INTO items (id, name) VALUES (500000, 'new')",  # missing
    "DELETE FROM items WHERE id = 60",  # extra
)
PLANTED = (["20", "30", "500000"], ["60", "999999"], ["10", "40"])


def assert_planted(report: VerifyReport) -> None:
    assert report.status == "different"
    assert found(report) == PLANTED, report.summary()
    assert report.columns["10"][0][0] == "name" and report.columns["10"][0][2] == "changed"
    assert [c[0] for c in report.columns["40"]] == ["amount"]
    assert any(c.startswith("price (double") for c in report.not_compared), report.not_compared


# ------------------------------------------------------------------------------------------ SQLite


def sqlite_items(path: Path, rows: int) -> None:
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, note VARCHAR(20), amount NUMERIC(12,2), "
        "price REAL, born DATE, seen DATETIME, flag BOOLEAN, raw BLOB)"
    )
    conn.executemany(
        "INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (*r[:3], str(r[3]), r[4], r[5].isoformat(), r[6].isoformat(" "), int(r[7]), r[8])
            for r in map(item, range(1, rows + 1))
        ],
    )
    conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, status TEXT, updated_at DATETIME)")
    conn.executemany(
        "INSERT INTO events VALUES (?, ?, ?)", [(i, "new", f"2024-01-01 00:00:{i:02d}") for i in range(1, 40)]
    )
    conn.commit()
    conn.close()


def sqlite_run(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path)
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()


@pytest.fixture
def sqlite_scratch(spark: SparkSession, tmp_path: Path) -> Iterator[tuple[Scratch, Path]]:
    db = tmp_path / "src.db"
    sqlite_items(db, 20_000)
    scratch = Scratch.create(tmp_path, spark, f"name: src\ntype: sqlite\npath: {db}\n")
    yield scratch, db
    scratch.close()


def test_sqlite_clean_then_every_planted_difference_named_by_narrowing(sqlite_scratch: tuple[Scratch, Path]) -> None:
    scratch, db = sqlite_scratch
    scratch.flow("items", "table: items\nprimary_key: [id]")
    scratch.load("items")
    assert_clean(scratch.verify("items"), 20_000)

    plant_in_silver(scratch)
    sqlite_run(db, *SOURCE_CHANGES)
    report = scratch.verify("items", VerifyLimits(leaf_rows=200))
    assert_planted(report)
    assert report.hashed_in == "Spark"  # SQLite has no hash function: its rows are hashed by Spark
    assert report.narrowed > 0 and report.ranges == 16
    assert report.fetched_rows < 2_000, "only the ranges that differ are listed"

    # 3000 keys gone from silver: ranges where the source holds far more rows are cut at the source's keys
    scratch.silver("items", "DELETE FROM {t} WHERE id BETWEEN 5001 AND 8000")
    report = scratch.verify("items", VerifyLimits(leaf_rows=200))
    assert len(report.missing) == 3003 and report.missing[:3] == ["20", "30", "5001"]
    assert (report.extra, report.different, report.unresolved) == (PLANTED[1], PLANTED[2], [])
    # more differences than the fetch budget: the ranges beyond it are reported with their counts
    report = scratch.verify("items", VerifyLimits(leaf_rows=200, max_fetch_rows=500))
    assert report.status == "different" and report.unresolved
    assert sum(ours - theirs for _, ours, theirs in report.unresolved) + len(report.missing) - len(report.extra) == 3001


def test_sqlite_scd2_compares_the_current_version_only(sqlite_scratch: tuple[Scratch, Path]) -> None:
    """Only the current version of each key is live; a renamed column is compared under its new name and a
    derived one is silver's own."""
    scratch, db = sqlite_scratch
    scratch.flow(
        "events",
        "table: events\nprimary_key: [id]\nincremental:\n  cursor: updated_at\n  safety_buffer: 0s",
        "scd2\n    transforms:\n      - rename: {status: state}\n      - derive: {is_new: \"state = 'new'\"}",
    )
    scratch.load("events")
    sqlite_run(db, "UPDATE events SET status = 'paid', updated_at = '2024-01-02 00:00:00' WHERE id = 2")
    scratch.load("events")
    history = scratch.spark.read.format("delta").load(scratch.runtime.lake.silver("events"))
    assert history.filter("id = 2").count() == 2  # the old version is kept, closed
    clean = scratch.verify("events")
    assert_clean(clean, 39)
    assert clean.hashed == ["id", "state", "updated_at"] and clean.not_compared == []

    scratch.silver("events", "UPDATE {t} SET state = 'old' WHERE id = 2 AND NOT _pz_is_current")  # history: unseen
    scratch.silver("events", "UPDATE {t} SET state = 'lost' WHERE id = 3 AND _pz_is_current")
    report = scratch.verify("events")
    assert found(report) == ([], [], ["3"])
    assert report.columns["3"] == [("state", "new", "lost")]


def hashable(spark_type: str) -> bool:
    return spark_type not in ("double", "float") and not spark_type.startswith("array")


def plan(transforms: list[dict[str, Any]], keys: Sequence[str] = ("OrderId",), **types: str):  # noqa: ANN201
    columns = ["OrderId", "Customer Name", "email", "price", "tags", "code"]
    silver = {"order_id": "bigint", "email": "string", "price": "double", "tags": "array<int>", "code": "string"}
    silver |= {"customer_name": "string", **types}
    return plan_columns(keys, columns, [Transform(**t) for t in transforms], silver, hashable)


def test_source_columns_follow_snake_case_and_renames_to_silver() -> None:
    compared = plan([{"rename": {"customer_name": "customer"}}], customer="string")
    assert [(c.source, c.silver) for c in compared.hashed] == [
        ("OrderId", "order_id"),
        ("Customer Name", "customer"),
        ("email", "email"),
        ("code", "code"),
    ]
    assert compared.skipped == ["price (double: not hashed)", "tags (array<int>: not hashed)"]
    assert compared.ordered  # an integer key: ranges over its values


def test_transforms_that_change_values_leave_those_columns_out() -> None:
    compared = plan([{"trim": ["email"]}, {"lower": ["email"]}, {"cast": {"code": "int"}}, {"drop": ["customer_name"]}])
    assert [c.silver for c in compared.hashed] == ["order_id"]
    assert compared.skipped[:3] == [
        "email (silver transform trim)",
        "code (silver transform cast)",
        "Customer Name (dropped by silver transforms)",
    ]
    derived = plan([{"derive": {"email": "upper(email)", "is_big": "price > 10"}}])
    assert "email (silver transform derive)" in derived.skipped
    assert plan([{"deduplicate": {"keys": ["order_id"]}}]).hashed  # on the key: one row per key already


@pytest.mark.parametrize(
    ("transforms", "keys", "message"),
    [
        ([{"filter": "price > 0"}], ["OrderId"], "silver transforms filter rows (price > 0)"),
        ([{"deduplicate": {"keys": ["email"]}}], ["OrderId"], "silver transforms deduplicate on email"),
        ([{"trim": ["code"]}], ["code"], "key column code (silver transform trim)"),
        ([], ["price"], "key column price is double"),
        ([], ["nope"], "primary_key column nope is not a column of the source read"),
    ],
)
def test_what_cannot_be_verified_is_one_line(transforms: list[dict[str, Any]], keys: list[str], message: str) -> None:
    with pytest.raises(NotVerifiable) as err:
        plan(transforms, keys)
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_string_keys_range_over_the_key_hash() -> None:
    assert not plan([], ["code"]).ordered
    assert not plan([], ["OrderId", "code"]).ordered


# ------------------------------------------------------------------------------------------ servers


@dataclass(frozen=True)
class Server:
    """What differs between MariaDB and PostgreSQL in these tests: DDL, placeholders, how to run a statement."""

    items_ddl: str
    to_row: Callable[[tuple[Any, ...]], tuple[Any, ...]]
    run: Callable[[str, Sequence[Any]], None]
    run_many: Callable[[str, list[tuple[Any, ...]]], None]


KEY_TABLES_DDL = (
    "CREATE TABLE order_lines (order_id INT, line_no INT, sku VARCHAR(20), qty INT, PRIMARY KEY (order_id, line_no))",
    "CREATE TABLE codes (code VARCHAR(20) PRIMARY KEY, label VARCHAR(40))",
)


def fill(server: Server, rows: int) -> None:
    server.run(server.items_ddl, ())
    marks = ", ".join(["%s"] * len(ITEM_COLUMNS))
    server.run_many(
        f"INSERT INTO items ({', '.join(ITEM_COLUMNS)}) VALUES ({marks})",
        [server.to_row(item(i)) for i in range(1, rows + 1)],
    )
    for ddl in KEY_TABLES_DDL:
        server.run(ddl, ())
    server.run_many(
        "INSERT INTO order_lines VALUES (%s, %s, %s, %s)",
        [(o, n, f"sku-{o}-{n}", o * n) for o in range(1, 201) for n in range(1, 4)],
    )
    server.run_many("INSERT INTO codes VALUES (%s, %s)", [(f"{'Ab'[i % 2]}-{i}", f"label {i}") for i in range(1, 501)])


def server_scenario(scratch: Scratch, server: Server, codes_source: str) -> None:
    """Items (every type family of the server), a composite key (`lines`), a string key (`codes`, read as
    `codes_source`): clean after the load; then each planted difference found where it was planted."""
    fill(server, 3000)
    scratch.flow("items", "table: items\nprimary_key: [id]")
    scratch.flow("lines", "table: order_lines\nprimary_key: [order_id, line_no]")
    scratch.flow("codes", f"{codes_source}\nprimary_key: [code]")
    scratch.load("items", "lines", "codes")

    clean = scratch.verify("items", SMALL_LEAVES)
    assert_clean(clean, 3000)
    assert clean.hashed_in == "source SQL" and clean.source_queries == 1  # a clean flow: one source query
    assert_clean(scratch.verify("lines", SMALL_LEAVES), 600)
    codes = scratch.verify("codes")
    assert_clean(codes, 500)
    assert codes.ranges == 16  # string keys: ranges over the key's hash (collations differ from Spark's order)

    plant_in_silver(scratch)
    for statement in SOURCE_CHANGES:
        server.run(statement, ())
    report = scratch.verify("items", SMALL_LEAVES)
    assert_planted(report)
    assert report.narrowed > 0 and report.fetched_rows < 1000

    scratch.silver("lines", "UPDATE {t} SET qty = -1 WHERE order_id = 3 AND line_no = 2")
    scratch.silver("lines", "DELETE FROM {t} WHERE order_id = 5 AND line_no = 1")
    server.run("INSERT INTO order_lines VALUES (%s, %s, %s, %s)", (9999, 1, "new", 1))
    server.run("DELETE FROM order_lines WHERE order_id = %s AND line_no = %s", (7, 2))
    assert found(scratch.verify("lines", SMALL_LEAVES)) == (["(5, 1)", "(9999, 1)"], ["(7, 2)"], ["(3, 2)"])

    scratch.silver("codes", "UPDATE {t} SET label = 'changed' WHERE code = 'b-1'")
    server.run("DELETE FROM codes WHERE code = %s", ("A-2",))
    server.run("INSERT INTO codes VALUES (%s, %s)", ("zz-new", "new"))
    assert found(scratch.verify("codes")) == (["zz-new"], ["A-2"], ["b-1"])


@pytest.fixture
def mariadb_db(mariadb: MariaDB) -> Iterator[str]:
    database = f"pz_verify_{uuid.uuid4().hex[:10]}"
    mariadb.create_database(database)
    try:
        yield database
    finally:
        mariadb.drop_database(database)


@pytest.mark.services
def test_mariadb_clean_then_differences_found(
    spark: SparkSession, mariadb: MariaDB, mariadb_db: str, tmp_path: Path
) -> None:
    conn = mariadb.connect(mariadb_db)

    def run(statement: str, args: Sequence[Any]) -> None:
        with conn.cursor() as cursor:
            cursor.execute(statement, args or None)

    def run_many(statement: str, rows: list[tuple[Any, ...]]) -> None:
        with conn.cursor() as cursor:
            cursor.executemany(statement, rows)

    ddl = (
        "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(40) CHARACTER SET latin1, note TEXT, "
        "amount DECIMAL(12,2), price DOUBLE, born DATE, seen DATETIME(6), flag BIT(1), raw VARBINARY(8), "
        "tiny TINYINT(1) DEFAULT 1, big BIGINT UNSIGNED DEFAULT 18446744073709551615, kind ENUM('a','b') DEFAULT 'b', "
        "dur TIME DEFAULT '-838:59:59', stamp TIMESTAMP(3) NULL DEFAULT '2024-05-06 07:08:09.123')"
    )
    server = Server(ddl, lambda r: (*r[:7], int(r[7]), r[8]), run, run_many)
    environ = {"PZ_V_USER": mariadb.user, "PZ_V_PASSWORD": mariadb.password}
    connection = mariadb.connection_yaml("src", mariadb_db, "${env:PZ_V_USER}", "${env:PZ_V_PASSWORD}")
    scratch = Scratch.create(tmp_path, spark, connection, environ)
    try:
        server_scenario(scratch, server, "table: codes")
    finally:
        scratch.close()
        conn.close()


@pytest.fixture
def postgres_db(postgres: Postgres) -> Iterator[str]:
    database = f"pz_verify_{uuid.uuid4().hex[:10]}"
    postgres.create_database(database)
    try:
        yield database
    finally:
        postgres.drop_database(database)


@pytest.mark.services
def test_postgres_clean_then_differences_found(
    spark: SparkSession, postgres: Postgres, postgres_db: str, tmp_path: Path
) -> None:
    conn = postgres.connect(postgres_db)

    def run(statement: str, args: Sequence[Any]) -> None:
        conn.execute(statement, args or None)

    def run_many(statement: str, rows: list[tuple[Any, ...]]) -> None:
        with conn.cursor() as cursor:
            cursor.executemany(statement, rows)

    ddl = (
        "CREATE TABLE items (id int PRIMARY KEY, name varchar(40), note text, amount numeric(12,2), "
        "price double precision, born date, seen timestamp(6), flag boolean, raw bytea, "
        "stamp timestamptz DEFAULT '2024-05-06 07:08:09.123456+02', u uuid DEFAULT gen_random_uuid(), "
        "n numeric DEFAULT 1.5, c char(5) DEFAULT 'ab', tags int[] DEFAULT '{1,2}', m money DEFAULT 12.5)"
    )
    server = Server(ddl, lambda r: r, run, run_many)
    environ = {"PZ_V_USER": postgres.user, "PZ_V_PASSWORD": postgres.password}
    connection = postgres.connection_yaml("src", postgres_db, "${env:PZ_V_USER}", "${env:PZ_V_PASSWORD}")
    scratch = Scratch.create(tmp_path, spark, connection, environ)
    try:
        server_scenario(scratch, server, 'query: "SELECT code, label FROM codes WHERE label IS NOT NULL"')
    finally:
        scratch.close()
        conn.close()
