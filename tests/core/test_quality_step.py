"""Quality checks on real Spark: each check kind passing and failing, and how run_quality records and fails."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from pipezone.core import delta_tables as dt
from pipezone.core.flow_spec import (
    AcceptedValuesCheck,
    ExpressionCheck,
    FlowSpec,
    FreshnessCheck,
    NotNullCheck,
    RowCountCheck,
    UniqueCheck,
)
from pipezone.core.quality_step import QualityError, evaluate, run_quality
from pipezone.core.step_context import StepContext
from pipezone.core.step_runner import StepFailed, run_step

pytestmark = pytest.mark.spark

SCHEMA = "order_id INT, status STRING, amount DECIMAL(12,2), updated_at TIMESTAMP"
NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def good(spark: Any) -> Any:
    rows = [
        (1, "paid", Decimal("10.00"), NOW - timedelta(minutes=10)),
        (2, "cancelled", Decimal("0.00"), NOW - timedelta(days=3)),
        (3, "paid", Decimal("5.50"), NOW - timedelta(days=1)),
    ]
    return spark.createDataFrame(rows, SCHEMA).cache()


@pytest.fixture(scope="module")
def bad(spark: Any) -> Any:
    rows = [
        (1, "paid", Decimal("10.00"), NOW - timedelta(days=2)),
        (1, "test", Decimal("-1.00"), NOW - timedelta(days=3)),  # duplicate id, unknown status, negative
        (2, None, None, None),  # NULLs everywhere but the key
        (3, "cancelled", Decimal("1.00"), NOW - timedelta(days=5)),
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
