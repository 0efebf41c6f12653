"""One writer per table: hold_tables on real SQLite state stores, and run_step as the only writer of its tables.

"Another process" is another StateStore on the same SQLite file with another holder identity; a holder on
another host (`etl-2`) is never judged by this host's process table, so only its lease's expiry frees it.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipezone.core.spec.flow import FlowSpec
from pipezone.core.spec.settings import load_settings
from pipezone.core.state import table_lease
from pipezone.core.state.leases import LeaseHolder
from pipezone.core.state.store import StateStore
from pipezone.core.state.table_lease import (
    LeaseHeld,
    LeaseLost,
    flow_tables,
    hold_tables,
    step_tables,
    this_process,
)
from pipezone.core.steps import runner as step_runner
from pipezone.core.steps.context import StepContext, StepResult
from pipezone.core.steps.runner import StepFailed, run_step
from pipezone.core.steps.runtime import Runtime, load_runtime

REPO = Path(__file__).resolve().parents[3]
OTHER = LeaseHolder(run_id="scheduled__1", flow="orders", step="silver", host="etl-2", pid=4242)
HELD_BY_OTHER = (
    r"table silver\.orders is being written by flow orders, step silver, run scheduled__1"
    r" \(host etl-2, pid 4242, since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ, lease expires \d\d:\d\d:\d\dZ\)"
)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"


@pytest.fixture
def store(url: str) -> Iterator[StateStore]:
    with StateStore(url) as s:
        yield s


def me(run_id: str = "run-1", step: str = "silver") -> LeaseHolder:
    return this_process(run_id, "orders", step)


def eventually(condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def taken_later(url: str, resource: str, holder: LeaseHolder) -> None:
    """`holder` takes `resource` as a store whose clock is an hour ahead would: past any current lease."""
    with StateStore(url, clock=lambda: datetime.now(UTC) + timedelta(hours=1)) as future:
        assert future.take_lease(resource, holder, ttl_s=7200) is None


# -- which tables ---------------------------------------------------------------------------------------


def test_each_step_leases_the_tables_it_writes() -> None:
    flow = FlowSpec.model_validate(
        {
            "name": "orders",
            "source": {"connection": "shop", "table": "orders", "primary_key": ["id"]},
            "layers": {
                "gold": [
                    {"name": "revenue", "sql": "SELECT 1 AS x FROM silver.orders"},
                    {"name": "counts", "sql": "SELECT 2 AS x FROM silver.orders"},
                ]
            },
            "quality": [{"check": "not_null", "columns": ["id"]}],
        }
    )
    assert {s: step_tables(flow, s) for s in flow.steps()} == {
        "extract": ["raw.orders"],
        "bronze": ["bronze.orders"],
        "silver": ["silver.orders"],
        "gold": ["gold.revenue", "gold.counts"],
        "quality": [],
    }
    assert flow_tables(flow) == ["bronze.orders", "gold.counts", "gold.revenue", "raw.orders", "silver.orders"]


# -- hold_tables ----------------------------------------------------------------------------------------


def test_hold_takes_and_releases_every_table(store: StateStore) -> None:
    with hold_tables(store, ["silver.orders", "gold.b", "silver.orders"], me()) as leases:
        assert leases.resources == ["gold.b", "silver.orders"]
        assert store.get_lease("silver.orders").holder == me()
        assert store.take_lease("gold.b", OTHER, ttl_s=60) is not None
    assert store.get_lease("silver.orders") is None and store.get_lease("gold.b") is None


def test_waiting_holder_fails_after_the_wait_with_one_line_naming_the_holder(store: StateStore) -> None:
    store.take_lease("silver.orders", OTHER, ttl_s=120)
    told: list[str] = []
    started = time.monotonic()
    with (
        pytest.raises(LeaseHeld) as info,
        hold_tables(store, ["silver.orders"], me(), wait_s=0.3, poll_s=0.05, notify=told.append),
    ):
        pytest.fail("must not get the table")
    assert time.monotonic() - started >= 0.3
    message = str(info.value)
    assert re.fullmatch(
        HELD_BY_OTHER + "; waited 0.3 s: retry later, or if that process is gone wait for the lease to expire",
        message,
    ), message
    assert info.value.lease.holder == OTHER
    assert len(told) == 1  # once, not once per poll
    assert re.fullmatch("waiting for table silver.orders: held by " + HELD_BY_OTHER.split("by ", 1)[1], told[0])


def test_second_holder_waits_then_gets_the_table_after_release(url: str, store: StateStore) -> None:
    released = threading.Event()
    inside = threading.Event()

    def first() -> None:
        with StateStore(url) as s, hold_tables(s, ["silver.orders"], me("run-1")):
            inside.set()
            time.sleep(0.5)
        released.set()

    thread = threading.Thread(target=first)
    thread.start()
    assert inside.wait(10)
    told: list[str] = []
    with hold_tables(store, ["silver.orders"], me("run-2"), wait_s=10, poll_s=0.05, notify=told.append):
        assert released.is_set()
        assert store.get_lease("silver.orders").holder.run_id == "run-2"
    thread.join()
    assert len(told) == 1 and "held by flow orders, step silver, run run-1" in told[0]


def test_concurrent_holders_never_write_at_once(url: str) -> None:
    StateStore(url).migrate()
    active, most, errors = [0], [0], []
    lock = threading.Lock()

    def writer(i: int) -> None:
        try:
            with StateStore(url) as s, hold_tables(s, ["silver.orders"], me(f"run-{i}"), wait_s=30, poll_s=0.02):
                with lock:
                    active[0] += 1
                    most[0] = max(most[0], active[0])
                time.sleep(0.05)
                with lock:
                    active[0] -= 1
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert most[0] == 1


def test_expired_lease_is_taken_over(url: str, store: StateStore) -> None:
    past = datetime.now(UTC) - timedelta(minutes=10)
    with StateStore(url, clock=lambda: past) as then:
        then.take_lease("silver.orders", OTHER, ttl_s=120)  # expired 8 minutes ago
    with hold_tables(store, ["silver.orders"], me(), wait_s=0):
        assert store.get_lease("silver.orders").holder == me()


def test_lease_of_a_killed_process_on_this_host_is_taken_at_once(store: StateStore) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    killed = LeaseHolder("run-1", "orders", "silver", socket.gethostname(), child.pid)
    store.take_lease("silver.orders", killed, ttl_s=120)
    child.kill()
    child.wait()
    with hold_tables(store, ["silver.orders"], me("run-1"), wait_s=0):
        assert store.get_lease("silver.orders").holder == me("run-1")


def test_heartbeat_keeps_the_lease_past_its_ttl(store: StateStore) -> None:
    with hold_tables(store, ["silver.orders"], me(), ttl_s=1):
        first = store.get_lease("silver.orders").expires_at
        time.sleep(2)  # two TTLs: only renewals keep it
        later = store.get_lease("silver.orders").expires_at
        assert later > first and later > datetime.now(UTC)
        assert store.take_lease("silver.orders", OTHER, ttl_s=60) is not None


def test_lease_taken_while_the_step_runs_fails_the_step(url: str, store: StateStore) -> None:
    with pytest.raises(LeaseLost) as info, hold_tables(store, ["silver.orders"], me(), ttl_s=0.4) as leases:
        taken_later(url, "silver.orders", OTHER)
        assert eventually(lambda: bool(leases.lost))  # the heartbeat noticed
    assert str(info.value).startswith(
        "lost the lease on table silver.orders while writing it (taken by flow orders, step silver, run scheduled__1"
    )
    assert store.get_lease("silver.orders").holder == OTHER  # not released: it is not ours


def test_lease_taken_between_heartbeats_is_noticed_on_release(url: str, store: StateStore) -> None:
    with pytest.raises(LeaseLost, match="silver.orders"), hold_tables(store, ["silver.orders"], me()):
        taken_later(url, "silver.orders", OTHER)  # the first heartbeat is 30 s away


def test_error_of_the_body_wins_and_releases(url: str, store: StateStore) -> None:
    with pytest.raises(ZeroDivisionError), hold_tables(store, ["silver.orders"], me()):
        1 / 0  # noqa: B018
    assert store.get_lease("silver.orders") is None
    with pytest.raises(KeyError), hold_tables(store, ["silver.orders"], me()):
        taken_later(url, "silver.orders", OTHER)
        raise KeyError("step failed")


def test_tables_taken_before_a_blocked_one_are_released(store: StateStore) -> None:
    store.take_lease("silver.orders", OTHER, ttl_s=120)
    with pytest.raises(LeaseHeld), hold_tables(store, ["silver.orders", "gold.a"], me(), wait_s=0):
        pass
    assert store.get_lease("gold.a") is None  # sorted first, taken, then given back


def test_tables_taken_first_stay_ours_while_waiting_for_a_later_one(store: StateStore) -> None:
    store.take_lease("silver.orders", OTHER, ttl_s=120)
    timer = threading.Timer(1.2, store.release_lease, args=("silver.orders", OTHER))
    timer.start()
    with hold_tables(store, ["silver.orders", "gold.a"], me(), wait_s=10, ttl_s=0.4, poll_s=0.05, notify=print):
        # gold.a was taken 1.2 s (three TTLs) ago: only the heartbeat kept it
        assert store.take_lease("gold.a", OTHER, ttl_s=60) is not None
    timer.join()


# -- run_step -------------------------------------------------------------------------------------------


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    shutil.copytree(REPO / "metadata", tmp_path / "metadata")
    runtime = load_runtime(load_settings(environ={}, cwd=tmp_path))
    yield runtime
    runtime.state.close()


def fake_silver(monkeypatch: pytest.MonkeyPatch, step: Callable[[StepContext], StepResult]) -> None:
    monkeypatch.setitem(step_runner.STEP_FUNCTIONS, "silver", step)


def context(runtime: Runtime, run_id: str) -> StepContext:
    return StepContext(runtime, None, runtime.flow("retail_orders"), run_id)  # type: ignore[arg-type]


def test_run_step_blocked_by_another_writer_logs_a_failed_attempt(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = LeaseHolder("scheduled__1", "retail_orders", "silver", "etl-2", 4242)
    runtime.state.take_lease("silver.retail_orders", other, ttl_s=120)
    monkeypatch.setattr(table_lease, "DEFAULT_WAIT_S", 0.2)
    fake_silver(monkeypatch, lambda ctx: pytest.fail("must not run"))
    with pytest.raises(StepFailed) as info:
        run_step(context(runtime, "manual-1"), "silver")
    line = str(info.value)
    assert line.startswith(
        "flow retail_orders, step silver: table silver.retail_orders is being written by flow retail_orders,"
        " step silver, run scheduled__1 (host etl-2, pid 4242, since "
    )
    assert line.endswith("; waited 0.2 s: retry later, or if that process is gone wait for the lease to expire")
    [record] = runtime.state.recent_runs("retail_orders")
    assert (record.run_id, record.step, record.status, record.error) == ("manual-1", "silver", "failed", line)


def test_two_runs_of_one_step_take_turns(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(table_lease, "POLL_S", 0.02)
    active, most = [0], [0]
    lock = threading.Lock()

    def silver(ctx: StepContext) -> StepResult:
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.3)
        with lock:
            active[0] -= 1
        return StepResult(rows_read=1, rows_written=1)

    fake_silver(monkeypatch, silver)
    results: dict[str, object] = {}

    def run(run_id: str) -> None:
        try:
            results[run_id] = run_step(context(runtime, run_id), "silver")
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            results[run_id] = exc

    threads = [threading.Thread(target=run, args=(f"run-{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(isinstance(r, StepResult) for r in results.values()), results
    assert most[0] == 1
    assert sorted(r.status for r in runtime.state.recent_runs("retail_orders")) == ["success", "success"]
    assert runtime.state.get_lease("silver.retail_orders") is None


def test_run_step_whose_lease_was_taken_fails(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    def silver(ctx: StepContext) -> StepResult:
        taken_later(runtime.state_url(), "silver.retail_orders", OTHER)
        return StepResult(rows_written=5)

    fake_silver(monkeypatch, silver)
    with pytest.raises(StepFailed, match=r"^flow retail_orders, step silver: lost the lease on table silver\."):
        run_step(context(runtime, "run-1"), "silver")
    [record] = runtime.state.recent_runs("retail_orders")
    assert record.status == "failed" and "lost the lease" in record.error


def test_run_step_that_waited_for_its_own_run_id_skips(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """An Airflow retry next to its still-running first attempt: once the first one succeeds, nothing is left."""
    monkeypatch.setattr(table_lease, "POLL_S", 0.02)
    fake_silver(monkeypatch, lambda ctx: pytest.fail("must not run twice"))
    first_attempt = LeaseHolder("run-1", "retail_orders", "silver", "etl-2", 4242)
    state = runtime.state
    state.take_lease("silver.retail_orders", first_attempt, ttl_s=120)

    def first_attempt_finishes() -> None:
        time.sleep(0.3)
        state.finish_step(state.start_step("run-1", "retail_orders", "silver"), "success")
        state.release_lease("silver.retail_orders", first_attempt)

    thread = threading.Thread(target=first_attempt_finishes)
    thread.start()
    result = run_step(context(runtime, "run-1"), "silver")
    thread.join()
    assert result.skipped and result.note == "already succeeded for this run id"
    assert [r.status for r in state.recent_runs("retail_orders")] == ["success"]
