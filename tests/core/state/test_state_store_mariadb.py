"""The state store on a real MariaDB (setup/local/mariadb.sh): the SQLite behaviour, on the production backend.

Each test gets its own scratch database `pz_test_<hex>`, dropped afterwards.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import make_url

from pipezone.core.state.engine import alembic_config
from pipezone.core.state.errors import StateStoreError
from pipezone.core.state.leases import Lease, LeaseHolder
from pipezone.core.state.schema import VERSION_TABLE, metadata
from pipezone.core.state.store import StateStore

if TYPE_CHECKING:
    from services import MariaDB

pytestmark = pytest.mark.services

TABLES = {
    "pipeline_execution_logs",
    "incremental_state",
    "layer_progress",
    "connections_registry",
    "flows_registry",
    "data_quality_checks",
    "table_leases",
}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float = 1.0) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def scratch_db(mariadb: MariaDB) -> Iterator[str]:
    """An empty database; its SQLAlchemy URL."""
    name = f"pz_test_{uuid.uuid4().hex[:10]}"
    conn = mariadb.connect()
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        yield mariadb.url(name)
    finally:
        with conn.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(scratch_db: str, clock: Clock) -> Iterator[StateStore]:
    with StateStore(scratch_db, clock=clock) as s:
        yield s


def _schema(url: str) -> dict[str, object]:
    """Tables with their columns, indexes and keys, as the server reports them."""
    engine = create_engine(url)
    try:
        insp = inspect(engine)
        return {
            t: (
                [(c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(t)],
                sorted(str(i) for i in insp.get_indexes(t)),
                insp.get_pk_constraint(t),
                sorted(str(u) for u in insp.get_unique_constraints(t)),
            )
            for t in sorted(insp.get_table_names())
        }
    finally:
        engine.dispose()


# -- migrations -----------------------------------------------------------------------------------------


def test_migrate_on_empty_database_then_again_is_a_noop(scratch_db: str) -> None:
    with StateStore(scratch_db, auto_migrate=False) as s:
        assert s.schema_revision() is None
        s.migrate()
        assert s.schema_revision() == "0004"
        s.set_watermark("f", "id", 7, "run-1")
        before = _schema(scratch_db)
        s.migrate()
        assert _schema(scratch_db) == before
    with StateStore(scratch_db) as again:  # a second process: auto-migrate keeps the data
        assert again.get_watermark("f").value == 7
    assert set(_schema(scratch_db)) == TABLES | {VERSION_TABLE}


def test_migrated_schema_matches_table_definitions_on_mariadb(store: StateStore, scratch_db: str) -> None:
    store.migrate()
    engine = create_engine(scratch_db)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = [d for d in compare_metadata(ctx, metadata) if getattr(d[1], "name", None) != VERSION_TABLE]
            datetimes = conn.exec_driver_sql(
                "SELECT DISTINCT COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE()"
                " AND DATA_TYPE = 'datetime'"
            ).all()
            options = conn.exec_driver_sql(
                "SELECT ENGINE, TABLE_COLLATION FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
                " AND TABLE_NAME = 'pipeline_execution_logs'"
            ).one()
    finally:
        engine.dispose()
    assert diff == []
    assert datetimes == [("datetime(6)",)]  # never whole seconds
    assert tuple(options) == ("InnoDB", "utf8mb4_bin")


def test_downgrade_to_base_and_back_on_mariadb(store: StateStore, scratch_db: str) -> None:
    store.migrate()
    config = alembic_config(scratch_db)
    command.downgrade(config, "base")
    assert set(_schema(scratch_db)) == {VERSION_TABLE}
    command.upgrade(config, "head")
    assert set(_schema(scratch_db)) == TABLES | {VERSION_TABLE}


def test_concurrent_first_migrations_serialize_on_the_named_lock(scratch_db: str) -> None:
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with StateStore(scratch_db) as s:
                s.migrate()
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with StateStore(scratch_db) as s:
        assert s.schema_revision() == "0004"


# -- watermarks -----------------------------------------------------------------------------------------

ROUND_TRIP_VALUES = [
    0,
    -5,
    2**63 + 11,
    0.1,
    -1.5e-300,
    Decimal("10.50"),
    Decimal("1E+3"),
    Decimal("-0.000000000000000000000000000001"),
    datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=UTC),
    datetime(2024, 3, 1, 0, 0, 0, 1, tzinfo=UTC),
    date(2024, 2, 29),
    "",
    "abc-001 ü 😀",
    "x" * 70_000,  # past TEXT's 64 KiB: the watermark column is MEDIUMTEXT
]


@pytest.mark.parametrize("value", ROUND_TRIP_VALUES, ids=lambda v: repr(v)[:40])
def test_watermark_round_trip_on_mariadb(store: StateStore, value: object) -> None:
    store.set_watermark("orders", "cursor", value, "run-1")
    got = store.get_watermark("orders")
    assert got is not None
    assert type(got.value) is type(value)
    assert got.value == value
    assert str(got.value) == str(value)
    assert (got.flow, got.cursor_column, got.last_run_id) == ("orders", "cursor", "run-1")
    assert got.updated_at == datetime(2025, 1, 1, tzinfo=UTC)


def test_timestamps_keep_microseconds_and_are_utc(store: StateStore, clock: Clock) -> None:
    plus_two = timezone(timedelta(hours=2))
    clock.now = datetime(2025, 6, 1, 12, 0, 0, 654321, tzinfo=plus_two)
    store.set_watermark("f", "updated_at", datetime(2024, 6, 1, 12, 0, 0, 7, tzinfo=plus_two), "r")
    got = store.get_watermark("f")
    assert got.value == datetime(2024, 6, 1, 10, 0, 0, 7, tzinfo=UTC)
    assert got.value.tzinfo == UTC and got.value.microsecond == 7
    assert got.updated_at == datetime(2025, 6, 1, 10, 0, 0, 654321, tzinfo=UTC)
    assert got.updated_at.tzinfo == UTC


def test_set_reset_and_list_watermarks(store: StateStore, clock: Clock) -> None:
    store.set_watermark("b", "id", 1, "r1")
    clock.tick(0.000001)
    store.set_watermark("a", "updated_at", date(2024, 1, 1), "r1")
    clock.tick(0.000001)
    store.set_watermark("b", "id", 2, "r2")
    assert [(w.flow, w.value, w.last_run_id) for w in store.watermarks()] == [
        ("a", date(2024, 1, 1), "r1"),
        ("b", 2, "r2"),
    ]
    assert store.get_watermark("b").updated_at == datetime(2025, 1, 1, 0, 0, 0, 2, tzinfo=UTC)
    assert store.reset_watermark("b", to=40).value == 2
    assert store.get_watermark("b").value == 40
    assert store.reset_watermark("b").value == 40
    assert store.get_watermark("b") is None
    with pytest.raises(StateStoreError, match="cursor_column"):
        store.reset_watermark("new", to=5)


def test_flow_names_are_case_and_accent_sensitive(store: StateStore) -> None:
    # utf8mb4_bin: 'Orders', 'orders' and 'ördérs' are three flows, as they are in SQLite.
    for i, name in enumerate(("orders", "Orders", "ördérs")):
        store.set_watermark(name, "id", i, None)
    assert [(w.flow, w.value) for w in store.watermarks()] == [("Orders", 1), ("orders", 0), ("ördérs", 2)]


# -- step logs ------------------------------------------------------------------------------------------


def test_attempts_increment_per_run_flow_step(store: StateStore) -> None:
    first = store.start_step("run-1", "orders", "extract", details={"window": ["a", "b"]})
    second = store.start_step("run-1", "orders", "extract")
    other_step = store.start_step("run-1", "orders", "bronze")
    other_run = store.start_step("run-2", "orders", "extract")
    attempts = {r.id: r.attempt for r in store.recent_runs()}
    assert attempts == {first: 1, second: 2, other_step: 1, other_run: 1}
    assert store.get_step(first).details == {"window": ["a", "b"]}
    assert store.get_step(second).status == "running"


def test_concurrent_starts_get_distinct_attempts(store: StateStore, scratch_db: str) -> None:
    store.migrate()
    ids: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with StateStore(scratch_db) as s:
                ids.append(s.start_step("run-1", "orders", "extract"))
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(r.attempt for r in store.recent_runs()) == list(range(1, 9))
    assert len(set(ids)) == 8


def test_finish_step_records_metrics_duration_errors_and_details(store: StateStore, clock: Clock) -> None:
    log_id = store.start_step("run-1", "orders", "extract", details={"lo": datetime(2024, 1, 1, tzinfo=UTC)})
    clock.tick(12.500001)
    record = store.finish_step(log_id, "success", rows_read=10, rows_written=9, bytes_written=2**40, details={"x": 1})
    assert (record.status, record.rows_read, record.rows_written, record.bytes_written) == ("success", 10, 9, 2**40)
    assert record.duration_s == 12.500001
    assert record.finished_at == datetime(2025, 1, 1, 0, 0, 12, 500001, tzinfo=UTC)
    assert record.details == {"lo": "2024-01-01T00:00:00+00:00", "x": 1}
    assert store.get_step(log_id) == record

    huge = "HEAD ü" + "x" * 100_000 + "Caused by: root cause"
    failed = store.start_step("run-1", "orders", "bronze")
    error = store.finish_step(failed, "failed", error=huge).error
    assert error.startswith("HEAD ü") and error.endswith("Caused by: root cause") and len(error) < 20_100
    assert not store.step_succeeded("run-1", "orders", "bronze")
    assert store.step_succeeded("run-1", "orders", "extract")
    with pytest.raises(StateStoreError, match="no step log with id 999"):
        store.finish_step(999, "success")


def test_recent_runs_order_by_microsecond_start_then_id(store: StateStore, clock: Clock) -> None:
    first = store.start_step("r1", "orders", "extract")
    clock.tick(0.000001)
    second = store.start_step("r2", "orders", "extract")
    tie = store.start_step("r3", "orders", "extract")  # same started_at: the higher id is newer
    assert [r.id for r in store.recent_runs("orders")] == [tie, second, first]


# -- layer progress, registries, quality ----------------------------------------------------------------


def test_layer_progress_round_trip(store: StateStore) -> None:
    assert store.get_progress("orders", "bronze") == 0
    store.set_progress("orders", "bronze", 3, "run-1")
    store.set_progress("orders", "silver", 2, "run-1")
    store.set_progress("orders", "bronze", 2**40, "run-2")
    assert (store.get_progress("orders", "bronze"), store.get_progress("orders", "silver")) == (2**40, 2)
    assert store.get_progress("customers", "bronze") == 0
    store.reset_progress("orders")
    assert store.get_progress("orders", "bronze") == 0


def test_registries_write_only_on_change(store: StateStore, clock: Clock) -> None:
    assert store.register_connection("shop", "mariadb", "h1", host="127.0.0.1", description="shop ü")
    clock.tick()
    assert not store.register_connection("shop", "mariadb", "h1", host="127.0.0.1", description="shop ü")
    assert store.connections()[0].updated_at == datetime(2025, 1, 1, tzinfo=UTC)
    assert store.register_flow("orders", "shop", "f1", schedule="@hourly", layers=["extract", "bronze"], owner="ana")
    assert not store.register_flow(
        "orders", "shop", "f1", schedule="@hourly", layers=("extract", "bronze"), owner="ana"
    )
    assert store.flows()[0].layers == ("extract", "bronze")


def test_quality_checks_round_trip(store: StateStore) -> None:
    store.record_quality_check("run-1", "orders", "bronze", "not_null:email", "failed", observed=3, expected=0)
    store.record_quality_check("run-1", "orders", "silver", "row_count", "warned", "5", ">= 10", "warn")
    store.record_quality_check("run-2", "orders", "bronze", "x", "passed")
    assert [(r.check_name, r.status, r.observed, r.expected, r.severity) for r in store.quality_results("run-1")] == [
        ("not_null:email", "failed", "3", "0", "error"),
        ("row_count", "warned", "5", ">= 10", "warn"),
    ]


def test_wrong_password_is_one_line_without_the_password(scratch_db: str) -> None:
    url = make_url(scratch_db).set(password="not-the-password-71c3").render_as_string(hide_password=False)
    with pytest.raises(StateStoreError) as info:
        StateStore(url).migrate()
    message = str(info.value)
    assert "Access denied for user" in message
    assert "not-the-password-71c3" not in message and "***@" in message
    assert "\n" not in message


# -- table leases ---------------------------------------------------------------------------------------

A = LeaseHolder(run_id="run-a", flow="orders", step="silver", host="etl-1", pid=101)
B = LeaseHolder(run_id="run-b", flow="orders", step="silver", host="etl-2", pid=202)


def test_lease_take_block_renew_expire_release_on_mariadb(store: StateStore, clock: Clock) -> None:
    assert store.take_lease("silver.orders", A, ttl_s=10) is None
    assert store.take_lease("silver.orders", B, ttl_s=10) == Lease(
        "silver.orders", A, datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, 0, 0, 10, tzinfo=UTC)
    )
    assert store.renew_lease("silver.orders", A, ttl_s=10)  # same instant: still a match (found rows)
    clock.tick(8.000001)
    assert store.renew_lease("silver.orders", A, ttl_s=10)
    assert store.get_lease("silver.orders").expires_at == datetime(2025, 1, 1, 0, 0, 18, 1, tzinfo=UTC)
    clock.tick(9.999999)
    assert store.take_lease("silver.orders", B, ttl_s=10) is not None
    clock.tick(0.000001)
    assert store.take_lease("silver.orders", B, ttl_s=10) is None  # expired: taken over
    assert not store.renew_lease("silver.orders", A, ttl_s=10)
    assert not store.release_lease("silver.orders", A)
    assert store.release_lease("silver.orders", B)
    assert store.get_lease("silver.orders") is None


def test_lease_of_a_killed_process_on_this_host_is_free_on_mariadb(store: StateStore) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    killed = LeaseHolder("run-a", "orders", "silver", socket.gethostname(), child.pid)
    assert store.take_lease("silver.orders", killed, ttl_s=120) is None
    assert store.take_lease("silver.orders", B, ttl_s=120) is not None
    child.kill()
    child.wait()
    assert store.take_lease("silver.orders", B, ttl_s=120) is None


@pytest.mark.parametrize("expired_before", [False, True], ids=["free", "expired"])
def test_concurrent_takers_exactly_one_wins_on_mariadb(scratch_db: str, expired_before: bool) -> None:
    past = datetime.now(UTC) - timedelta(hours=1)
    with StateStore(scratch_db, clock=lambda: past) as old:
        old.migrate()
        if expired_before:  # the takers race on the compare-and-set takeover, not on the insert
            old.take_lease("silver.orders", A, ttl_s=10)
    winners: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker(i: int) -> None:
        try:
            with StateStore(scratch_db) as s:
                holder = LeaseHolder(f"run-{i}", "orders", "silver", "etl-9", 1000 + i)
                barrier.wait()
                if s.take_lease("silver.orders", holder, ttl_s=60) is None:
                    winners.append(i)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(winners) == 1
    with StateStore(scratch_db) as s:
        assert s.get_lease("silver.orders").holder.run_id == f"run-{winners[0]}"


def test_hold_tables_serializes_writers_and_heartbeats_on_mariadb(scratch_db: str) -> None:
    from pipezone.core.state.table_lease import LeaseHeld, hold_tables, this_process

    StateStore(scratch_db).migrate()
    active, most, errors = [0], [0], []
    lock = threading.Lock()

    def writer(i: int) -> None:
        try:
            with (
                StateStore(scratch_db) as s,
                hold_tables(s, ["silver.orders"], this_process(f"run-{i}", "orders", "silver"), ttl_s=1, poll_s=0.02),
            ):
                with lock:
                    active[0] += 1
                    most[0] = max(most[0], active[0])
                time.sleep(0.6)  # past the 0.25 s heartbeat twice
                with lock:
                    active[0] -= 1
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and most[0] == 1
    with StateStore(scratch_db) as s:
        assert s.take_lease("silver.orders", B, ttl_s=120) is None
        with (
            pytest.raises(LeaseHeld, match=r"^table silver\.orders is being written by flow orders, step silver"),
            hold_tables(s, ["silver.orders"], this_process("run-x", "orders", "silver"), wait_s=0.1),
        ):
            pytest.fail("must not get the table")
