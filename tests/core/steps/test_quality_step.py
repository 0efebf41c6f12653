"""Quality checks on real Spark: each check kind passing and failing, and how run_quality records and fails."""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from pipezone.core.lake import delta_tables as dt
from pipezone.core.quality.expectations import expectations, oldest_fresh
from pipezone.core.quality.validation import Outcome, Validator
from pipezone.core.spec.flow import FlowSpec
from pipezone.core.spec.quality import (
    AcceptedValuesCheck,
    ExpressionCheck,
    FreshnessCheck,
    NotNullCheck,
    RowCountCheck,
    SqlCheck,
    UniqueCheck,
)
from pipezone.core.state.quality_results import UnexpectedRows
from pipezone.core.steps import quality as quality_step
from pipezone.core.steps.context import StepContext
from pipezone.core.steps.quality import QualityError, run_quality
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


@pytest.fixture(scope="module")
def validator() -> Validator:
    return Validator()  # no Data Docs site: these tests read the outcomes only


def evaluate(validator: Validator, df: Any, spec: Any) -> Outcome:
    """One check on one frame through GX, as the quality step runs it."""
    (outcome,) = validator.validate(df, "t", expectations([(0, spec)], df), ["order_id"], "test")
    return outcome


CHECKS = [
    # (check, observed on the bad table, keys sampled)
    (check(NotNullCheck, check="not_null", columns=["status"]), "1 of 4 rows unexpected", [{"order_id": 2}]),
    (check(UniqueCheck, check="unique", columns=["order_id"]), "2 of 4 rows unexpected", [{"order_id": 1}] * 2),
    (
        check(AcceptedValuesCheck, check="accepted_values", column="status", values=["paid", "cancelled"]),
        "1 of 4 rows unexpected",  # NULL is not judged: not_null says whether it may be
        [{"order_id": 1}],
    ),
    (check(RowCountCheck, check="row_count", min=1, max=3), 4, None),
    (
        check(ExpressionCheck, check="expression", expression="amount >= 0"),
        "2 of 4 rows unexpected",  # NULL is a violation
        [{"order_id": 1}, {"order_id": 2}],
    ),
    (
        check(SqlCheck, check="sql", query="SELECT * FROM {table} WHERE amount < 0"),
        "1 rows returned by the query",
        None,
    ),
]


@pytest.mark.parametrize(("spec", "observed", "keys"), CHECKS, ids=[c[0].check for c in CHECKS])
def test_each_check_passes_on_good_data_and_fails_on_bad(
    validator: Validator, good: Any, bad: Any, spec: Any, observed: Any, keys: Any
) -> None:
    ok = evaluate(validator, good, spec)
    assert ok.success, ok
    failed = evaluate(validator, bad, spec)
    assert not failed.success
    assert failed.observed == observed
    by_key = (lambda k: k["order_id"]) if keys else None
    assert (sorted(failed.unexpected.keys, key=by_key) if keys else failed.unexpected.keys) == keys


def test_unexpected_rows_are_counted_with_their_share_of_the_rows(validator: Validator, bad: Any) -> None:
    outcome = evaluate(validator, bad, check(NotNullCheck, check="not_null", columns=["status"]))
    assert (outcome.unexpected.count, outcome.unexpected.percent) == (1, 25.0)


def test_two_checks_judging_the_same_column_the_same_way_each_get_their_outcome(validator: Validator, bad: Any) -> None:
    twice = [(0, check(NotNullCheck, check="not_null", columns=["status"]))] * 2
    outcomes = validator.validate(bad, "t", expectations(twice, bad), ["order_id"], "test")
    assert [(o.name, o.success, o.unexpected.count) for o in outcomes] == [("not_null(status)", False, 1)] * 2


def test_row_count_bounds(validator: Validator, good: Any) -> None:
    assert not evaluate(validator, good, check(RowCountCheck, check="row_count", min=4)).success
    assert evaluate(validator, good, check(RowCountCheck, check="row_count", max=3)).success
    assert evaluate(validator, good, check(RowCountCheck, check="row_count")).observed == 3


def test_freshness(validator: Validator, spark: Any, good: Any, bad: Any) -> None:
    fresh = check(FreshnessCheck, check="freshness", column="updated_at", max_age="1h")
    assert evaluate(validator, good, fresh).success  # newest row is 10 minutes old
    stale = evaluate(validator, bad, fresh)
    assert not stale.success and stale.observed.startswith("2 days")
    empty = spark.createDataFrame([], SCHEMA)
    assert not evaluate(validator, empty, fresh).success  # no rows: nothing is fresh


def test_freshness_of_a_date_counts_from_the_end_of_that_day_in_utc(validator: Validator, spark: Any) -> None:
    today = datetime.now(UTC).date()
    days = spark.createDataFrame([(today - timedelta(days=3),), (today,)], "d DATE")
    fresh = evaluate(validator, days, check(FreshnessCheck, check="freshness", column="d", max_age="1h"))
    assert fresh.success, fresh  # today's date is fresh all day: it ends at the next midnight UTC
    assert fresh.observed.startswith("0:00:00 old")
    old = spark.createDataFrame([(today - timedelta(days=3),)], "d DATE")
    stale = evaluate(validator, old, check(FreshnessCheck, check="freshness", column="d", max_age="1d"))
    assert not stale.success
    assert stale.observed.startswith("2 days")  # ended 2 days and some hours ago


def test_oldest_fresh_day_is_the_one_ending_at_or_after_the_cutoff() -> None:
    assert oldest_fresh("date", datetime(2026, 1, 10, 12, 0, tzinfo=UTC)) == date(2026, 1, 10)
    assert oldest_fresh("date", datetime(2026, 1, 10, 0, 0, tzinfo=UTC)) == date(2026, 1, 9)  # ends at the cutoff


def test_freshness_of_a_timestamp_is_exact_whatever_the_local_time_zone(
    validator: Validator, spark: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC)
    monkeypatch.setenv("TZ", "America/New_York")  # PySpark collects TIMESTAMPs as naive local times
    time.tzset()
    try:
        rows = [(now - timedelta(minutes=30),), (now - timedelta(days=1),)]
        stamps = spark.createDataFrame(rows, "t TIMESTAMP")
        in_time = check(FreshnessCheck, check="freshness", column="t", max_age="45m")
        assert evaluate(validator, stamps, in_time).success
        late = evaluate(validator, stamps, check(FreshnessCheck, check="freshness", column="t", max_age="15m"))
    finally:
        monkeypatch.undo()
        time.tzset()
    assert not late.success
    assert late.observed.startswith("0:3")  # ~30 minutes, not hours off: naive was read as local time
    ntz = spark.createDataFrame([(now.replace(tzinfo=None) - timedelta(minutes=30),)], "t TIMESTAMP_NTZ")
    assert evaluate(validator, ntz, check(FreshnessCheck, check="freshness", column="t", max_age="45m")).success


def test_freshness_of_a_column_that_is_not_a_time_fails_with_a_clear_message(validator: Validator, good: Any) -> None:
    text = evaluate(validator, good, check(FreshnessCheck, check="freshness", column="status", max_age="1h"))
    assert (text.success, text.observed) == (False, "column status is string: not a date or timestamp")
    missing = evaluate(validator, good, check(FreshnessCheck, check="freshness", column="nope", max_age="1h"))
    assert (missing.success, missing.observed) == (False, "column nope not found: not a date or timestamp")


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
    assert str(caught.value) == (
        "quality checks failed: silver.q_orders expression(amount >= 0): 2 of 4 rows unexpected"
    )

    results = project.state.quality_results("q-run-1")
    assert [(r.layer, r.check_name, r.status, r.severity) for r in results] == [
        ("silver", "not_null(order_id)", "passed", "error"),
        ("silver", "accepted_values(status)", "warned", "warn"),
        ("silver", "expression(amount >= 0)", "failed", "error"),
        ("gold", "row_count", "passed", "error"),
        ("silver", "unique(order_id)", "warned", "warn"),
    ]
    assert (results[2].observed, results[2].unexpected_count, results[2].unexpected_percent) == (
        "2 of 4 rows unexpected",
        2,
        50.0,
    )
    assert sorted(k["order_id"] for k in json.loads(results[2].unexpected_keys)) == [1, 2]
    docs = project.runtime.lake.quality("q_orders").removeprefix("file://") + "/quality/index.html"
    assert "q_orders" in Path(docs).read_text()  # the Data Docs site of this run


def test_the_step_opens_its_session_before_gx_asks_for_one(
    project: Any, bad: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GX's Spark datasource takes the process's active session or starts a local Spark of its own; in a
    Connect client whose earlier steps opened none (small batches), that local Spark then kept the step from
    opening its Connect session. The step opens its session first."""
    write_tables(project, bad)
    opened: list[bool] = []

    def session() -> Any:
        opened.append(True)
        return project.spark

    real = quality_step.Validator

    def validator(*args: Any, **kwargs: Any) -> Validator:
        assert opened, "GX's datasource was created before the step's session"
        return real(*args, **kwargs)

    monkeypatch.setattr(quality_step, "Validator", validator)
    flow = quality_flow({"check": "unique", "columns": ["order_id"], "severity": "warn"})
    run_step(StepContext(project.runtime, session, flow, "q-session"), "quality")
    assert opened == [True]


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
    assert line == (
        "flow q_orders, step quality: quality checks failed: silver.q_orders unique(order_id): 2 of 4 rows unexpected"
    )
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
            ("silver", "accepted_values(status)", "warned", "2 of 4 rows unexpected"),
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
    assert third.details["checks"][0]["observed"] == "3 of 5 rows unexpected"

    # A changed check on unchanged tables: evaluated again.
    changed = quality_flow({**checks[0], "values": ["paid", "lost"]}, *checks[1:])
    fourth = run_step(StepContext(project.runtime, project.spark, changed, "q-reuse-4"), "quality")
    assert fourth.details["reused"] is False
    assert fourth.details["checks"][0]["observed"] == "2 of 5 rows unexpected"


def test_a_sql_check_reads_other_lake_tables_by_their_layer_names(project: Any, bad: Any) -> None:
    write_tables(project, bad)  # silver.q_orders has order ids 1, 1, 2, 3; gold.q_summary one row n = 4
    query = "SELECT o.* FROM {table} o LEFT ANTI JOIN gold.q_summary s ON s.n > o.order_id"
    flow = quality_flow({"check": "sql", "query": query, "severity": "warn"})
    result = run_step(StepContext(project.runtime, project.spark, flow, "q-sql"), "quality")
    assert result.details["checks"][0]["observed"] == "0 rows returned by the query"
    flow = quality_flow({"check": "sql", "query": query.replace("s.n >", "s.n <"), "severity": "warn"})
    result = run_step(StepContext(project.runtime, project.spark, flow, "q-sql-2"), "quality")
    assert result.details["checks"][0] == {
        "check": "sql(SELECT o.* FROM {table} o LEFT ANTI JOIN gold.q_summary s ON s.n < o.order_id)",
        "table": "silver.q_orders",
        "status": "warned",
        "observed": "4 rows returned by the query",
    }


def test_after_a_few_changes_the_checks_are_counted_on_the_changes_and_judged_whole_when_one_fails(
    project: Any,
) -> None:
    spark, path = project.spark, project.runtime.lake.silver("q_orders")
    now = datetime.now(UTC)
    rows = project.spark.createDataFrame([(i, "paid", Decimal(i), now) for i in range(1, 51)], SCHEMA)
    dt.append(rows, path, app_id="seed:silver", version=1, metadata={"batch": 1}, merged=True)  # a merged silver
    flow = quality_flow(
        {"check": "not_null", "columns": ["status"]},
        {"check": "accepted_values", "column": "status", "values": ["paid", "new"], "severity": "warn"},
        {"check": "row_count", "min": 1},
    )

    def run(name: str) -> tuple[list[str], list[tuple[str, str, Any, Any]]]:
        result = run_step(StepContext(project.runtime, spark, flow, name), "quality")
        found = [
            (r.status, r.observed, r.unexpected_count, r.unexpected_keys) for r in project.state.quality_results(name)
        ]
        return result.details["carried"], found

    assert run("q-carry-1")[0] == []  # the first judgement: GX on the whole table
    # the run id shared with another flow (one `pipezone run` of many flows) and with this flow's row checks
    project.state.record_quality_check("q-carry-1", "other", "silver", "not_null(x)", "passed", "0", "", "error")
    row_check = UnexpectedRows(0, 0.0, None, "drop")
    project.state.record_quality_check("q-carry-1", "q_orders", "silver", "r", "passed", "0", "", "warn", row_check)
    source = "SELECT id AS order_id, 'new' AS status, CAST(id AS DECIMAL(12,2)) AS amount, now() AS updated_at"
    spark.sql(
        f"MERGE INTO {dt.sql_table(path)} t USING ({source} FROM range(45, 53) r(id)) s ON t.order_id = s.order_id "
        "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"
    )
    assert run("q-carry-2") == (
        ["silver.q_orders"],
        [("passed", "0 of 52 rows unexpected", 0, None)] * 2 + [("passed", "52", None, None)],
    )

    spark.sql(f"UPDATE {dt.sql_table(path)} SET status = 'lost' WHERE order_id = 3")  # a warning: GX judges whole
    carried, found = run("q-carry-3")
    assert (carried, found[1]) == ([], ("warned", "1 of 52 rows unexpected", 1, '[{"order_id": 3}]'))

    spark.sql(f"UPDATE {dt.sql_table(path)} SET status = 'paid' WHERE order_id = 3")  # mended: counted again
    carried, found = run("q-carry-4")
    assert (carried, found[1]) == (["silver.q_orders"], ("passed", "0 of 52 rows unexpected", 0, None))
