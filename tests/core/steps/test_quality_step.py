"""Quality checks on real Spark: each check kind passing and failing, and how run_quality records and fails."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from pipezone.core.lake import delta_tables as dt
from pipezone.core.spec.flow import FlowSpec
from pipezone.core.spec.quality import (
    AcceptedValuesCheck,
    ExpressionCheck,
    FreshnessCheck,
    NotNullCheck,
    RowCountCheck,
    UniqueCheck,
)
from pipezone.core.steps.context import StepContext
from pipezone.core.steps.quality import QualityError, evaluate, run_quality
from pipezone.core.steps.runner import StepFailed, run_step

pytestmark = pytest.mark.spark

SCHEMA = "order_id INT, status STRING, amount DECIMAL(12,2), updated_at TIMESTAMP"


@pytest.fixture(scope="module")
def good(spark: Any) -> Any:
    now = datetime.now(UTC)  # when the table is built, not when the module was collected: the suite is long
    rows = [
        (1, "paid", Decimal("10.00"), now - timedelta(minutes=10)),
        (2, "cancelled", Decimal("0.00"), now - timedelta(days=3)),
        (3, "paid", Decimal("5.50"), now - timedelta(days=1)),
    ]
    return spark.createDataFrame(rows, SCHEMA).cache()


@pytest.fixture(scope="module")
def bad(spark: Any) -> Any:
    now = datetime.now(UTC)
    rows = [
        (1, "paid", Decimal("10.00"), now - timedelta(days=2)),
        (1, "test", Decimal("-1.00"), now - timedelta(days=3)),  # duplicate id, unknown status, negative
        (2, None, None, None),  # NULLs everywhere but the key
        (3, "cancelled", Decimal("1.00"), now - timedelta(days=5)),
    ]
    return spark.createDataFrame(rows, SCHEMA).cache()


def check(cls: Any, **fields: Any) -> Any:
    return cls.model_validate(fields)


CHECKS = [
    # (check, observed on the bad table)
    (check(NotNullCheck, check="not_null", columns=["order_id", "status"]), "1 null rows"),
    (check(UniqueCheck, check="unique", columns=["order_id"]), "1 duplicated keys"),
    (
        check(AcceptedValuesCheck, check="accepted_values", column="status", values=["paid", "cancelled"]),
        "1 rows outside",
    ),
    (check(RowCountCheck, check="row_count", min=1, max=3), 4),
    (check(ExpressionCheck, check="expression", expression="amount >= 0"), "2 rows violate"),  # NULL is a violation
]


@pytest.mark.parametrize(("spec", "observed"), CHECKS, ids=[c[0].check for c in CHECKS])
def test_each_check_passes_on_good_data_and_fails_on_bad(good: Any, bad: Any, spec: Any, observed: Any) -> None:
    ok = evaluate(good, spec)
    assert ok.passed, ok
    failed = evaluate(bad, spec)
    assert not failed.passed
    assert failed.observed == observed


def test_row_count_bounds(good: Any) -> None:
    assert not evaluate(good, check(RowCountCheck, check="row_count", min=4)).passed
    assert evaluate(good, check(RowCountCheck, check="row_count", max=3)).passed
    assert evaluate(good, check(RowCountCheck, check="row_count")).observed == 3


def test_freshness(spark: Any, good: Any, bad: Any) -> None:
    fresh = check(FreshnessCheck, check="freshness", column="updated_at", max_age="1h")
    assert evaluate(good, fresh).passed  # newest row is 10 minutes old
    stale = evaluate(bad, fresh)
    assert not stale.passed and stale.observed.startswith("2 days")
    empty = spark.createDataFrame([], SCHEMA)
    assert not evaluate(empty, fresh).passed  # no rows: nothing is fresh


def test_freshness_of_a_date_counts_from_the_end_of_that_day_in_utc(spark: Any) -> None:
    today = datetime.now(UTC).date()
    days = spark.createDataFrame([(today - timedelta(days=3),), (today,)], "d DATE")
    fresh = evaluate(days, check(FreshnessCheck, check="freshness", column="d", max_age="1h"))
    assert fresh.passed, fresh  # today's date is fresh all day: it ends at the next midnight UTC
    assert fresh.observed == "0:00:00"
    old = spark.createDataFrame([(today - timedelta(days=3),)], "d DATE")
    stale = evaluate(old, check(FreshnessCheck, check="freshness", column="d", max_age="1d"))
    assert not stale.passed
    assert stale.observed.startswith("2 days")  # ended 2 days and some hours ago


def test_freshness_of_a_timestamp_is_exact_whatever_the_local_time_zone(
    spark: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC)
    monkeypatch.setenv("TZ", "America/New_York")  # PySpark collects TIMESTAMPs as naive local times
    time.tzset()
    try:
        rows = [(now - timedelta(minutes=30),), (now - timedelta(days=1),)]
        stamps = spark.createDataFrame(rows, "t TIMESTAMP")
        assert evaluate(stamps, check(FreshnessCheck, check="freshness", column="t", max_age="45m")).passed
        late = evaluate(stamps, check(FreshnessCheck, check="freshness", column="t", max_age="15m"))
    finally:
        monkeypatch.undo()
        time.tzset()
    assert not late.passed
    assert late.observed.startswith("0:3")  # ~30 minutes, not hours off: naive was read as local time
    ntz = spark.createDataFrame([(now.replace(tzinfo=None) - timedelta(minutes=30),)], "t TIMESTAMP_NTZ")
    assert evaluate(ntz, check(FreshnessCheck, check="freshness", column="t", max_age="45m")).passed  # UTC


def test_freshness_of_a_column_that_is_not_a_time_fails_with_a_clear_message(good: Any) -> None:
    text = evaluate(good, check(FreshnessCheck, check="freshness", column="status", max_age="1h"))
    assert not text.passed
    assert text.observed == "column status is string: not a date or timestamp"
    missing = evaluate(good, check(FreshnessCheck, check="freshness", column="nope", max_age="1h"))
    assert (missing.passed, missing.observed) == (False, "column nope not found: not a date or timestamp")


# --------------------------------------------------------------------------------------------- run_quality


def quality_flow(*checks: dict[str, Any]) -> FlowSpec:
    return FlowSpec.model_validate(
        {
            "name": "q_orders",
            "source": {"connection": "retail_demo", "table": "orders", "primary_key": ["order_id"]},
            "layers": {"gold": [{"name": "q_summary", "sql": "SELECT COUNT(*) AS n FROM silver.q_orders"}]},
            "quality": list(checks),
        }
    )


def write_tables(project: Any, bad: Any) -> None:
    lake = project.runtime.lake
    meta = {"run_id": "seed", "batch": 1}
    dt.append(bad, lake.silver("q_orders"), app_id="seed:silver", version=1, metadata=meta)
    summary = project.spark.createDataFrame([(4,)], "n BIGINT")
    dt.append(summary, lake.gold("q_summary"), app_id="seed:gold", version=1, metadata=meta)


def test_a_failing_error_check_raises_and_a_warn_check_is_recorded_as_warned(project: Any, bad: Any) -> None:
    write_tables(project, bad)
    flow = quality_flow(
        {"check": "not_null", "columns": ["order_id"]},  # passes
        {"check": "accepted_values", "column": "status", "values": ["paid", "cancelled"], "severity": "warn"},
        {"check": "expression", "expression": "amount >= 0"},  # error, fails
        {"check": "row_count", "layer": "gold", "table": "q_summary", "min": 1},  # passes, on gold
        {"check": "unique", "columns": ["order_id"], "severity": "warn"},  # warn, fails
    )
    ctx = StepContext(project.runtime, project.spark, flow, "q-run-1")
    with pytest.raises(QualityError) as caught:
        run_quality(ctx)
    assert str(caught.value) == "quality checks failed: silver expression(amount >= 0): 2 rows violate"

    results = project.state.quality_results("q-run-1")
    assert [(r.layer, r.check_name, r.status, r.severity) for r in results] == [
        ("silver", "not_null(order_id)", "passed", "error"),
        ("silver", "accepted_values(status)", "warned", "warn"),
        ("silver", "expression(amount >= 0)", "failed", "error"),
        ("gold", "row_count", "passed", "error"),
        ("silver", "unique(order_id)", "warned", "warn"),
    ]
    assert results[2].observed == "2 rows violate"


def test_warnings_alone_do_not_fail_the_step(project: Any, bad: Any) -> None:
    write_tables(project, bad)
    flow = quality_flow(
        {"check": "accepted_values", "column": "status", "values": ["paid"], "severity": "warn"},
        {"check": "row_count", "min": 1},
    )
    result = run_step(StepContext(project.runtime, project.spark, flow, "q-run-2"), "quality")
    assert result.note == "2 checks, 1 warned"
    assert [c["status"] for c in result.details["checks"]] == ["warned", "passed"]
    log = project.state.recent_runs("q_orders")[0]
    assert (log.run_id, log.step, log.status) == ("q-run-2", "quality", "success")


def test_a_failing_quality_step_is_logged_as_failed(project: Any, bad: Any) -> None:
    write_tables(project, bad)
    flow = quality_flow({"check": "unique", "columns": ["order_id"]})
    with pytest.raises(StepFailed) as caught:
        run_step(StepContext(project.runtime, project.spark, flow, "q-run-3"), "quality")
    line = str(caught.value)
    assert line == "flow q_orders, step quality: quality checks failed: silver unique(order_id): 1 duplicated keys"
    log = project.state.recent_runs("q_orders")[0]
    assert (log.run_id, log.status, log.error) == ("q-run-3", "failed", line)
    assert [r.status for r in project.state.quality_results("q-run-3")] == ["failed"]


def test_checking_a_table_that_does_not_exist_yet_fails(project: Any) -> None:
    flow = quality_flow({"check": "row_count", "min": 1})
    with pytest.raises(QualityError, match="does not exist yet"):
        run_quality(StepContext(project.runtime, project.spark, flow, "q-run-4"))


def test_unchanged_tables_reuse_the_last_outcomes_and_a_new_commit_or_check_evaluates_again(
    project: Any, bad: Any
) -> None:
    write_tables(project, bad)
    checks = [
        {"check": "accepted_values", "column": "status", "values": ["paid"], "severity": "warn"},
        {"check": "row_count", "layer": "gold", "table": "q_summary", "min": 1},
        {"check": "freshness", "column": "updated_at", "max_age": "30d"},
    ]
    flow = quality_flow(*checks)
    first = run_step(StepContext(project.runtime, project.spark, flow, "q-reuse-1"), "quality")
    assert first.details["reused"] is False
    second = run_step(StepContext(project.runtime, project.spark, flow, "q-reuse-2"), "quality")
    assert second.details["reused"] is True
    assert second.note == "3 checks, 1 warned (tables unchanged since the last check: outcomes reused)"
    outcomes = [
        [(r.layer, r.check_name, r.status, r.observed) for r in project.state.quality_results(run)]
        for run in (
            "q-reuse-1",
            "q-reuse-2",
        )
    ]
    assert (
        outcomes[0][:2]
        == outcomes[1][:2]
        == [
            ("silver", "accepted_values(status)", "warned", "2 rows outside"),
            ("gold", "row_count", "passed", "1"),
        ]
    )
    assert outcomes[1][2][:3] == ("silver", "freshness(updated_at)", "passed")  # evaluated again: it ages

    # One more silver commit: evaluated again, and the new row is seen.
    more = project.spark.createDataFrame([(9, "lost", None, None)], SCHEMA)
    meta = {"run_id": "seed-2", "batch": 2}
    dt.append(more, project.runtime.lake.silver("q_orders"), app_id="seed:silver", version=2, metadata=meta)
    third = run_step(StepContext(project.runtime, project.spark, flow, "q-reuse-3"), "quality")
    assert third.details["reused"] is False
    assert third.details["checks"][0]["observed"] == "3 rows outside"

    # A changed check on unchanged tables: evaluated again.
    changed = quality_flow({**checks[0], "values": ["paid", "lost"]}, *checks[1:])
    fourth = run_step(StepContext(project.runtime, project.spark, changed, "q-reuse-4"), "quality")
    assert fourth.details["reused"] is False
    assert fourth.details["checks"][0]["observed"] == "2 rows outside"
