"""State store against real SQLite files; MySQL-specific DDL is checked by rendering the migration offline."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Dialect, PrimaryKeyConstraint, String, UniqueConstraint, create_engine, inspect
from sqlalchemy.dialects import mysql
from sqlalchemy.dialects.mysql.mariadb import MariaDBDialect
from sqlalchemy.schema import CreateTable

from pipezone.core.state.encoding import decode_watermark, encode_watermark
from pipezone.core.state.engine import alembic_config, offline_migration_sql
from pipezone.core.state.errors import StateStoreError
from pipezone.core.state.leases import Lease, LeaseHolder, process_gone
from pipezone.core.state.quality_results import UnexpectedRows
from pipezone.core.state.schema import VERSION_TABLE, metadata
from pipezone.core.state.store import StateStore

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
    """A controllable clock, so ordering and durations are exact."""

    def __init__(self) -> None:
        self.now = datetime(2025, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float = 1.0) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[StateStore]:
    with StateStore(f"sqlite:///{tmp_path / 'state.db'}", clock=clock) as s:
        yield s


# -- migrations -----------------------------------------------------------------------------------------


def test_migrate_creates_schema_on_fresh_file_and_rerun_is_noop(tmp_path: Path) -> None:
    db = tmp_path / "nested" / "state.db"
    url = f"sqlite:///{db}"
    with StateStore(url, auto_migrate=False) as s:
        assert s.schema_revision() is None
        s.migrate()
        assert s.schema_revision() == "0004"
        s.set_watermark("f", "id", 7, "run-1")
        schema_before = _sqlite_schema(db)
        s.migrate()
        assert _sqlite_schema(db) == schema_before
    with StateStore(url) as again:  # a second process: auto-migrate is a no-op and keeps data
        assert again.get_watermark("f").value == 7
    assert _table_names(url) == TABLES | {VERSION_TABLE}


def test_migrated_schema_matches_table_definitions(store: StateStore) -> None:
    store.migrate()
    engine = create_engine(store.url)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = [d for d in compare_metadata(ctx, metadata) if not _is_version_table(d)]
    engine.dispose()
    assert diff == []


def test_downgrade_to_base_and_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    StateStore(url).migrate()
    config = alembic_config(url)
    command.downgrade(config, "base")
    assert _table_names(url) == {VERSION_TABLE}
    command.upgrade(config, "head")
    assert _table_names(url) == TABLES | {VERSION_TABLE}


def test_store_from_a_newer_pipezone_is_a_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    StateStore(f"sqlite:///{db}").migrate()
    with sqlite3.connect(db) as conn:
        conn.execute(f"UPDATE {VERSION_TABLE} SET version_num = '9999'")
    with pytest.raises(StateStoreError, match=r"cannot migrate state store sqlite:///.*9999"):
        StateStore(f"sqlite:///{db}").migrate()


def test_mysql_ddl_keeps_microseconds_utf8mb4_and_fits_index_limits() -> None:
    sql = offline_migration_sql("mysql+pymysql://u:p@db/pipezone")
    assert "DATETIME(6) NOT NULL" in sql
    assert " DATETIME " not in sql and " DATETIME," not in sql
    assert sql.count("ENGINE=InnoDB CHARSET=utf8mb4 COLLATE utf8mb4_bin") == len(TABLES)
    assert "MEDIUMTEXT" in sql
    assert "ENGINE=InnoDB" in offline_migration_sql("mariadb+pymysql://u:p@db/pipezone")


@pytest.mark.parametrize("dialect", [mysql.dialect(), MariaDBDialect()], ids=["mysql", "mariadb"])
def test_table_definitions_render_mysql_types(dialect: Dialect) -> None:
    ddl = str(CreateTable(metadata.tables["pipeline_execution_logs"]).compile(dialect=dialect))
    assert "started_at DATETIME(6) NOT NULL" in ddl and "error MEDIUMTEXT" in ddl
    assert "ENGINE=InnoDB" in ddl and "utf8mb4_bin" in ddl


def test_indexed_varchars_fit_innodb_key_limit() -> None:
    for table in metadata.tables.values():
        keys = [c for c in table.constraints if isinstance(c, PrimaryKeyConstraint | UniqueConstraint)]
        for key in [*keys, *table.indexes]:
            size = sum(4 * c.type.length if isinstance(c.type, String) else 8 for c in key.columns)
            assert size <= 3072, f"{table.name}: key {key.name} is {size} bytes"


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
    date(2024, 2, 29),
    "",
    "abc-001 ü",
]


@pytest.mark.parametrize("value", ROUND_TRIP_VALUES, ids=repr)
def test_watermark_round_trip(store: StateStore, value: object) -> None:
    store.set_watermark("orders", "cursor", value, "run-1")
    got = store.get_watermark("orders")
    assert got is not None
    assert type(got.value) is type(value)
    assert got.value == value
    assert str(got.value) == str(value)  # Decimal exponent and trailing zeros kept
    assert (got.flow, got.cursor_column, got.last_run_id) == ("orders", "cursor", "run-1")
    assert got.updated_at == datetime(2025, 1, 1, tzinfo=UTC)


def test_aware_datetime_watermark_is_stored_as_utc(store: StateStore) -> None:
    plus_two = timezone(timedelta(hours=2))
    store.set_watermark("f", "updated_at", datetime(2024, 6, 1, 12, 0, 0, 7, tzinfo=plus_two), "r")
    value = store.get_watermark("f").value
    assert value == datetime(2024, 6, 1, 10, 0, 0, 7, tzinfo=UTC)
    assert value.tzinfo == UTC and value.microsecond == 7


@pytest.mark.parametrize("bad", [datetime(2024, 1, 1), float("inf"), True, Decimal("NaN"), None, b"x"], ids=repr)
def test_ambiguous_or_inexact_watermarks_are_refused(store: StateStore, bad: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        store.set_watermark("f", "c", bad, "r")
    assert store.get_watermark("f") is None


_timezones = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))])
_watermarks = st.one_of(
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2200, 1, 1), timezones=_timezones),
    st.dates(),
    st.text(),
)


@given(_watermarks)
def test_watermark_encoding_round_trips(value: object) -> None:
    decoded = decode_watermark(*encode_watermark(value))
    assert type(decoded) is type(value)
    assert decoded == value
    if isinstance(value, Decimal):
        assert str(decoded) == str(value)


@settings(max_examples=40, deadline=None)
@given(_watermarks)
def test_watermark_round_trips_through_sqlite(tmp_path_factory: pytest.TempPathFactory, value: object) -> None:
    # One file per session keeps the property test fast; each example overwrites the same flow.
    db = tmp_path_factory.getbasetemp() / "hypothesis-state.db"
    with StateStore(f"sqlite:///{db}") as s:
        s.set_watermark("f", "c", value, None)
        assert s.get_watermark("f").value == value


def test_set_watermark_overwrites_and_lists(store: StateStore, clock: Clock) -> None:
    store.set_watermark("b", "id", 1, "r1")
    clock.tick()
    store.set_watermark("a", "updated_at", date(2024, 1, 1), "r1")
    clock.tick()
    store.set_watermark("b", "id", 2, "r2")
    assert [(w.flow, w.value, w.last_run_id) for w in store.watermarks()] == [
        ("a", date(2024, 1, 1), "r1"),
        ("b", 2, "r2"),
    ]
    assert store.get_watermark("b").updated_at == datetime(2025, 1, 1, 0, 0, 2, tzinfo=UTC)


def test_reset_watermark_deletes_or_moves(store: StateStore) -> None:
    store.set_watermark("f", "id", 100, "r1")
    previous = store.reset_watermark("f", to=40)
    assert previous is not None and previous.value == 100
    moved = store.get_watermark("f")
    assert (moved.cursor_column, moved.value, moved.last_run_id) == ("id", 40, None)
    assert store.reset_watermark("f").value == 40
    assert store.get_watermark("f") is None
    assert store.reset_watermark("f") is None  # nothing to delete is fine
    with pytest.raises(StateStoreError, match="cursor_column"):
        store.reset_watermark("new", to=5)
    store.reset_watermark("new", to=5, cursor_column="id")
    assert store.get_watermark("new").value == 5


# -- step logs ------------------------------------------------------------------------------------------


def test_attempts_increment_per_run_flow_step(store: StateStore) -> None:
    first = store.start_step("run-1", "orders", "raw", details={"window": ["a", "b"]})
    second = store.start_step("run-1", "orders", "raw")
    other_step = store.start_step("run-1", "orders", "bronze")
    other_run = store.start_step("run-2", "orders", "raw")
    attempts = {r.id: r.attempt for r in store.recent_runs()}
    assert attempts == {first: 1, second: 2, other_step: 1, other_run: 1}
    assert store.get_step(first).details == {"window": ["a", "b"]}
    assert store.get_step(second).status == "running"


def test_concurrent_starts_get_distinct_attempts(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    StateStore(url).migrate()
    ids: list[int] = []

    def worker() -> None:
        with StateStore(url) as s:
            ids.append(s.start_step("run-1", "orders", "raw"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with StateStore(url) as s:
        assert sorted(r.attempt for r in s.recent_runs()) == list(range(1, 9))
    assert len(set(ids)) == 8


def test_finish_step_records_metrics_duration_and_merged_details(store: StateStore, clock: Clock) -> None:
    window = {"lo": datetime(2024, 1, 1, tzinfo=UTC), "hi": Decimal("2.50")}
    log_id = store.start_step("run-1", "orders", "raw", details=window)
    clock.tick(12.5)
    record = store.finish_step(
        log_id, "success", rows_read=10, rows_written=9, bytes_written=2048, details={"hi": "moved"}
    )
    assert (record.status, record.rows_read, record.rows_written, record.bytes_written) == (
        "success",
        10,
        9,
        2048,
    )
    assert record.duration_s == 12.5
    assert record.finished_at == datetime(2025, 1, 1, 0, 0, 12, 500000, tzinfo=UTC)
    assert record.details == {"lo": "2024-01-01T00:00:00+00:00", "hi": "moved"}
    assert record.error is None
    assert store.get_step(log_id) == record


def test_finish_step_records_errors_and_clips_huge_ones(store: StateStore) -> None:
    log_id = store.start_step("run-1", "orders", "raw")
    store.finish_step(log_id, "failed", error="java.sql.SQLException: boom", details={"odd": object})
    assert store.get_step(log_id).error == "java.sql.SQLException: boom"
    huge = "HEAD" + "x" * 100_000 + "Caused by: root cause"
    other = store.start_step("run-1", "orders", "bronze")
    error = store.finish_step(other, "failed", error=huge).error
    assert error.startswith("HEAD") and error.endswith("Caused by: root cause") and len(error) < 20_100


def test_finish_step_rejects_bad_status_and_unknown_id(store: StateStore) -> None:
    log_id = store.start_step("r", "f", "raw")
    with pytest.raises(ValueError, match="success, failed, skipped"):
        store.finish_step(log_id, "running")
    with pytest.raises(StateStoreError, match="no step log with id 999"):
        store.finish_step(999, "success")


def test_step_succeeded_for_idempotent_reruns(store: StateStore) -> None:
    failed = store.start_step("run-1", "orders", "raw")
    store.finish_step(failed, "failed", error="boom")
    assert not store.step_succeeded("run-1", "orders", "raw")
    retry = store.start_step("run-1", "orders", "raw")
    assert not store.step_succeeded("run-1", "orders", "raw")  # running is not done
    store.finish_step(retry, "success")
    assert store.step_succeeded("run-1", "orders", "raw")
    assert not store.step_succeeded("run-2", "orders", "raw")
    assert not store.step_succeeded("run-1", "orders", "bronze")


def test_last_success_is_the_newest_successful_attempt_of_that_flow_step(store: StateStore, clock: Clock) -> None:
    assert store.last_success("orders", "quality") is None
    ok = store.start_step("run-1", "orders", "quality")
    store.finish_step(ok, "success", details={"seen": 1})
    clock.tick()
    failed = store.start_step("run-2", "orders", "quality")
    store.finish_step(failed, "failed", error="boom")
    other = store.start_step("run-2", "customers", "quality")
    store.finish_step(other, "success")
    store.start_step("run-3", "orders", "quality")  # still running
    last = store.last_success("orders", "quality")
    assert last is not None and (last.id, last.details) == (ok, {"seen": 1})
    assert store.last_success("orders", "raw") is None


def test_recent_runs_newest_first_filtered_and_limited(store: StateStore, clock: Clock) -> None:
    ids = []
    for i in range(5):
        ids.append(store.start_step(f"run-{i}", "orders" if i % 2 == 0 else "customers", "raw"))
        clock.tick()
    same_time = store.start_step("run-9", "orders", "raw")  # ties on started_at break by id
    clock.tick(-10)
    older = store.start_step("run-old", "orders", "raw")
    assert [r.id for r in store.recent_runs()] == [same_time, ids[4], ids[3], ids[2], ids[1], ids[0], older]
    assert [r.id for r in store.recent_runs("orders", limit=3)] == [same_time, ids[4], ids[2]]
    assert store.recent_runs("nobody") == []


# -- registries and quality -----------------------------------------------------------------------------


def test_register_flow_and_connection_write_only_on_change(store: StateStore, clock: Clock) -> None:
    assert store.register_connection("shop", "mysql", "h1", host="db.local:3306", description="shop db")
    clock.tick()
    assert not store.register_connection("shop", "mysql", "h1", host="db.local:3306", description="shop db")
    assert store.connections()[0].updated_at == datetime(2025, 1, 1, tzinfo=UTC)
    assert store.register_connection("shop", "mysql", "h2", host="db.local:3306", description="shop db")
    assert store.connections()[0].spec_hash == "h2"
    with pytest.raises(ValueError, match="credentials"):
        store.register_connection("bad", "mysql", "h", host="root:secret@db")

    assert store.register_flow("orders", "shop", "f1", schedule="@hourly", layers=["raw", "bronze"], owner="ana")
    assert not store.register_flow("orders", "shop", "f1", schedule="@hourly", layers=("raw", "bronze"), owner="ana")
    flow = store.flows()[0]
    assert (flow.name, flow.connection, flow.layers, flow.schedule, flow.owner) == (
        "orders",
        "shop",
        ("raw", "bronze"),
        "@hourly",
        "ana",
    )


def test_quality_checks_round_trip(store: StateStore) -> None:
    store.record_quality_check("run-1", "orders", "bronze", "not_null:email", "failed", observed=3, expected=0)
    store.record_quality_check("run-1", "orders", "silver", "row_count", "warned", "5", ">= 10", "warn")
    store.record_quality_check("run-2", "orders", "bronze", "x", "passed")
    results = store.quality_results("run-1")
    assert [(r.check_name, r.status, r.observed, r.expected, r.severity) for r in results] == [
        ("not_null:email", "failed", "3", "0", "error"),
        ("row_count", "warned", "5", ">= 10", "warn"),
    ]
    with pytest.raises(ValueError, match="passed, failed, warned, dropped, quarantined"):
        store.record_quality_check("run-1", "orders", "bronze", "x", "ok")


def test_quality_checks_keep_the_unexpected_rows_detail(store: StateStore) -> None:
    keys = [{"id": 3}, {"id": 7}]
    detail = UnexpectedRows(count=2, percent=12.5, keys=keys, action="quarantine")
    store.record_quality_check("run-9", "orders", "silver", "not_null(email)", "quarantined", detail=detail)
    (result,) = store.quality_results("run-9")
    assert (result.status, result.action, result.unexpected_count, result.unexpected_percent) == (
        "quarantined",
        "quarantine",
        2,
        12.5,
    )
    assert json.loads(result.unexpected_keys) == keys


def test_migration_0004_keeps_the_results_recorded_before_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    command.upgrade(alembic_config(url), "0003")
    with StateStore(url, auto_migrate=False) as old:
        old.record_quality_check("run-1", "orders", "silver", "row_count", "warned", 5, ">= 10", "warn")
    with StateStore(url) as new:
        (result,) = new.quality_results("run-1")
        assert (result.check_name, result.status, result.unexpected_count) == ("row_count", "warned", None)
        new.record_quality_check("run-2", "orders", "silver", "x", "dropped")


# -- errors ---------------------------------------------------------------------------------------------


def test_unreachable_mysql_error_masks_password() -> None:
    store = StateStore("mysql+pymysql://u:hunter2@127.0.0.1:1/x")
    with pytest.raises(StateStoreError) as info:
        store.recent_runs()
    message = str(info.value)
    assert "hunter2" not in message
    assert "127.0.0.1:1" in message
    assert "u:***@" in message
    assert "\n" not in message


def test_unopenable_sqlite_file_names_the_store(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StateStoreError, match="dir.db"):
        StateStore(f"sqlite:///{tmp_path / 'dir.db'}").migrate()


def test_unknown_driver_and_garbage_urls_mask_passwords() -> None:
    with pytest.raises(StateStoreError) as info:
        StateStore("nosuchdb+nodriver://u:hunter2@h/x")
    assert "hunter2" not in str(info.value) and "nosuchdb" in str(info.value)
    with pytest.raises(StateStoreError) as info:
        StateStore("not a url :hunter2@")
    assert "hunter2" not in str(info.value)


def _table_names(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _sqlite_schema(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()


def _is_version_table(diff: object) -> bool:
    return isinstance(diff, tuple) and getattr(diff[1], "name", None) == VERSION_TABLE


def test_layer_progress_round_trip(tmp_path: Path) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    assert store.get_progress("orders", "bronze") == 0
    store.set_progress("orders", "bronze", 3, "run-1")
    store.set_progress("orders", "silver", 2, "run-1")
    store.set_progress("orders", "bronze", 4, "run-2")
    assert (store.get_progress("orders", "bronze"), store.get_progress("orders", "silver")) == (4, 2)
    assert store.get_progress("customers", "bronze") == 0
    store.reset_progress("orders")
    assert store.get_progress("orders", "bronze") == 0


# -- table leases ---------------------------------------------------------------------------------------

A = LeaseHolder(run_id="run-a", flow="orders", step="silver", host="etl-1", pid=101)
B = LeaseHolder(run_id="run-b", flow="orders", step="silver", host="etl-2", pid=202)


def test_lease_blocks_other_holders_until_released(store: StateStore, clock: Clock) -> None:
    assert store.take_lease("silver.orders", A, ttl_s=120) is None
    blocking = store.take_lease("silver.orders", B, ttl_s=120)
    assert blocking == Lease(
        "silver.orders", A, datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, 0, 2, tzinfo=UTC)
    )
    assert store.take_lease("gold.orders", B, ttl_s=120) is None  # another table is another lease
    assert not store.release_lease("silver.orders", B)  # never someone else's
    assert store.get_lease("silver.orders").holder == A
    assert store.release_lease("silver.orders", A)
    assert store.get_lease("silver.orders") is None
    assert store.take_lease("silver.orders", B, ttl_s=120) is None


def test_same_holder_takes_its_own_lease_again(store: StateStore, clock: Clock) -> None:
    assert store.take_lease("silver.orders", A, ttl_s=10) is None
    clock.tick(5)
    assert store.take_lease("silver.orders", A, ttl_s=10) is None
    assert store.get_lease("silver.orders").expires_at == datetime(2025, 1, 1, 0, 0, 15, tzinfo=UTC)
    same_run_other_process = LeaseHolder("run-a", "orders", "silver", "etl-1", 102)
    assert store.take_lease("silver.orders", same_run_other_process, ttl_s=10) is not None


def test_renew_pushes_expiry_and_expired_lease_is_taken_over(store: StateStore, clock: Clock) -> None:
    store.take_lease("silver.orders", A, ttl_s=10)
    clock.tick(8)
    assert store.renew_lease("silver.orders", A, ttl_s=10)
    assert store.get_lease("silver.orders").expires_at == datetime(2025, 1, 1, 0, 0, 18, tzinfo=UTC)
    clock.tick(9.999999)
    assert store.take_lease("silver.orders", B, ttl_s=10) is not None  # one microsecond left
    clock.tick(0.000001)
    assert store.take_lease("silver.orders", B, ttl_s=10) is None
    lease = store.get_lease("silver.orders")
    assert (lease.holder, lease.acquired_at) == (B, datetime(2025, 1, 1, 0, 0, 18, tzinfo=UTC))
    assert not store.renew_lease("silver.orders", A, ttl_s=10)  # A's heartbeat learns it lost the table
    assert not store.release_lease("silver.orders", A)
    assert store.get_lease("silver.orders").holder == B


def test_lease_of_a_process_gone_from_this_host_is_free_at_once(store: StateStore) -> None:
    host = socket.gethostname()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dying = LeaseHolder("run-a", "orders", "silver", host, child.pid)
        assert store.take_lease("silver.orders", dying, ttl_s=120) is None
        assert store.take_lease("silver.orders", B, ttl_s=120) is not None  # alive: still blocks
        elsewhere = LeaseHolder("run-c", "orders", "silver", "not-" + host, child.pid)
        assert store.take_lease("bronze.orders", elsewhere, ttl_s=120) is None
        child.kill()
        assert _eventually(lambda: process_gone(child.pid))  # killed, not yet reaped (a zombie): gone
        child.wait()
        assert process_gone(child.pid)
        assert store.take_lease("silver.orders", B, ttl_s=120) is None
        # The same pid on another host says nothing about that host's process: only expiry frees it.
        assert store.take_lease("bronze.orders", B, ttl_s=120).holder == elsewhere
    finally:
        child.kill()
        child.wait()
    assert not process_gone(os.getpid())


def _eventually(condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _race_for_lease(url: str, resource: str, takers: int = 8) -> list[int]:
    """Start `takers` stores at once on one lease; the indexes of those that got it."""
    winners: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(takers)

    def worker(i: int) -> None:
        try:
            with StateStore(url) as s:
                holder = LeaseHolder(f"run-{i}", "orders", "silver", "etl-9", 1000 + i)
                barrier.wait()
                if s.take_lease(resource, holder, ttl_s=60) is None:
                    winners.append(i)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(takers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return winners


@pytest.mark.parametrize("expired_before", [False, True], ids=["free", "expired"])
def test_concurrent_takers_exactly_one_wins(tmp_path: Path, expired_before: bool) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    past = datetime.now(UTC) - timedelta(hours=1)
    with StateStore(url, clock=lambda: past) as old:
        if expired_before:  # the takers race on the compare-and-set takeover, not on the insert
            old.take_lease("silver.orders", A, ttl_s=10)
        else:
            old.migrate()
    winners = _race_for_lease(url, "silver.orders")
    assert len(winners) == 1
    with StateStore(url) as s:
        assert s.get_lease("silver.orders").holder.run_id == f"run-{winners[0]}"
