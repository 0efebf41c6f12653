"""Check counts carried through Delta's change data feed equal Great Expectations' counts of the whole table,
commit after commit of every kind the lake writes; anything the feed cannot carry exactly is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from pipezone.core.lake import delta_tables as dt
from pipezone.core.quality.change_counts import Tally, carriable, carry, deterministic, tally
from pipezone.core.quality.expectations import Expectation, expectations
from pipezone.core.quality.validation import Validator
from pipezone.core.spec.quality import (
    AcceptedValuesCheck,
    ExpressionCheck,
    FreshnessCheck,
    NotNullCheck,
    QualityCheck,
    RowCountCheck,
)

pytestmark = pytest.mark.spark

SCHEMA = f"id INT, status STRING, amount INT, {dt.DELETED} BOOLEAN"
CHECKS = [
    (0, NotNullCheck.model_validate({"check": "not_null", "columns": ["status", "amount"]})),
    (
        1,
        AcceptedValuesCheck.model_validate({"check": "accepted_values", "column": "status", "values": ["paid", "new"]}),
    ),
    (2, ExpressionCheck.model_validate({"check": "expression", "expression": "amount >= 0 AND id < 10000"})),
    (3, RowCountCheck.model_validate({"check": "row_count", "min": 1})),
]
# checks Arrow counts exactly (quality/arrow_conditions.py): no expression, an integer value set, a column
# named in another case than the table's
ARROW_CHECKS = [
    *[(i, c) for i, c in CHECKS if not isinstance(c, ExpressionCheck)],
    (4, NotNullCheck.model_validate({"check": "not_null", "columns": ["STATUS"]})),
    (5, AcceptedValuesCheck.model_validate({"check": "accepted_values", "column": "amount", "values": [1, 2, 3, 4]})),
]


class Sessions:
    """A session factory that counts the sessions a carry asks for."""

    def __init__(self, spark: Any) -> None:
        self.spark, self.opened = spark, 0

    def __call__(self) -> Any:
        self.opened += 1
        return self.spark


def _row(i: int) -> tuple[Any, ...]:
    """Rows that fail some checks: a NULL status every 7th, an unknown one every 11th, a negative amount every
    13th, a NULL one every 19th; every 17th is soft-deleted (not judged)."""
    status = None if i % 7 == 0 else ("lost" if i % 11 == 0 else "paid")
    amount = None if i % 19 == 0 else (-i if i % 13 == 0 else i)
    return (i, status, amount, i % 17 == 0)


@pytest.fixture(scope="module")
def validator() -> Validator:
    return Validator()


def counted(
    spark: Any, validator: Validator, path: str, judged: list[Expectation], checks: list[Any] = CHECKS
) -> Tally:
    """What GX counts on the whole table now (the reference)."""
    live = dt.read_live(spark, path)
    outcomes = validator.validate(live, "t", expectations(checks, live), [], "ref")  # no key samples
    rows = next(o.rows for o in outcomes if o.rows is not None)
    version = dt.content_version(spark, path)
    return tally(version, rows, judged, {o.expectation.key: o.unexpected.count for o in outcomes}, live.schema)


def recounted(spark: Any, path: str, judged: list[Expectation]) -> Tally:
    """The whole table counted again with the checks' own conditions, in one Spark aggregate (the conditions
    GX counts: tests/core/quality/test_row_checks.py); quicker than GX between commits."""
    live = dt.read_live(spark, path)
    row_wise = [e for e in judged if e.row_level]
    found = live.selectExpr("count(*)", *(f"count_if({e.failing})" for e in row_wise)).first()
    counts = {e.key: int(found[i + 1]) for i, e in enumerate(row_wise)}
    return tally(dt.content_version(spark, path), int(found[0]), judged, counts, live.schema)


def seeded(
    spark: Any, validator: Validator, path: str, merged: bool = True, checks: list[Any] = CHECKS
) -> tuple[list[Expectation], Tally]:
    """A 300-row table at `path` (with a change feed when `merged`), the checks, and GX's tally of it."""
    df = spark.createDataFrame([_row(i) for i in range(1, 301)], SCHEMA)
    dt.append(df, path, app_id="t", version=1, metadata={"batch": 1}, merged=merged)
    judged = expectations(checks, None)
    return judged, counted(spark, validator, path, judged, checks)


def carry_in(spark: Any, path: str, kept: Tally, version: int | None, judged: list[Expectation]) -> Tally | None:
    """`carry` on a local table (no store options), the session given."""
    return carry(lambda: spark, path, {}, kept, version or 0, judged)


@pytest.mark.parametrize("counter", ["spark", "arrow"])
def test_counts_carried_commit_by_commit_equal_a_whole_table_count(
    spark: Any, validator: Validator, tmp_path: Path, counter: str
) -> None:
    """With an expression among the checks Spark counts the feed; without, Arrow does and opens no session
    but for OPTIMIZE (delta-rs's feed reader is not trusted with a rewrite that changes no row)."""
    path = str(tmp_path / "t")
    checks = CHECKS if counter == "spark" else ARROW_CHECKS
    judged, kept = seeded(spark, validator, path, checks=checks)
    assert kept.unexpected and all(v > 0 for v in kept.unexpected.values())  # something to carry
    table = dt.sql_table(path)
    changes = [
        # a MERGE fixing some failing rows, breaking some passing ones, inserting new ones
        f"MERGE INTO {table} t USING (SELECT id, CASE WHEN id % 2 = 0 THEN 'paid' ELSE NULL END AS status, "
        f"id - 150 AS amount, false AS {dt.DELETED} FROM range(120, 360) r(id)) s ON t.id = s.id "
        "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *",
        # new values, soft deletes, and soft-deleted rows coming back
        f"UPDATE {table} SET status = if(id <= 40, 'new', status), {dt.DELETED} = (id > 40 AND id <= 60) "
        "WHERE id <= 60 OR id % 17 = 0",
        f"DELETE FROM {table} WHERE id BETWEEN 300 AND 320",
        f"INSERT INTO {table} VALUES (20000, 'paid', 1, false), (20001, NULL, -1, false)",
        f"OPTIMIZE {table}",
    ]
    for sql in changes:
        spark.sql(sql)
        version = dt.content_version(spark, path)
        sessions = Sessions(spark)
        now = carry(sessions, path, {}, kept, version or 0, judged)
        assert now == recounted(spark, path, judged), sql
        expected = 1 if counter == "spark" or sql.startswith("OPTIMIZE") else 0
        assert sessions.opened == expected, sql
        kept = now
    assert kept == counted(spark, validator, path, judged, checks)  # and GX agrees at the end
    assert carry_in(spark, path, kept, kept.version, judged) == kept  # nothing new: the same tally


def test_commits_the_feed_cannot_carry_cheaply_or_exactly_are_refused(
    spark: Any, validator: Validator, tmp_path: Path
) -> None:
    path = str(tmp_path / "t")
    judged, kept = seeded(spark, validator, path)
    table = dt.sql_table(path)

    spark.sql(f"ALTER TABLE {table} ADD COLUMNS (note STRING)")  # another table shape
    spark.sql(f"INSERT INTO {table} VALUES (900, 'paid', 1, false, 'x')")
    assert carry_in(spark, path, kept, dt.content_version(spark, path), judged) is None
    kept = counted(spark, validator, path, judged)

    rows = dt.read_live(spark, path).limit(50)  # an overwrite: its feed is the whole table
    dt.append(rows, path, app_id="t", version=2, metadata={"batch": 2}, overwrite=True)
    assert carry_in(spark, path, kept, dt.content_version(spark, path), judged) is None

    newer = counted(spark, validator, path, judged)
    assert carry_in(spark, path, newer, newer.version - 1, judged) is None  # a tally newer than the table
    fewer = Tally(newer.version, newer.rows, {}, newer.columns)  # counted without these checks
    spark.sql(f"INSERT INTO {table} VALUES (901, 'paid', 1, false, 'x')")
    assert carry_in(spark, path, fewer, dt.content_version(spark, path), judged) is None


def test_checks_that_are_not_the_row_s_own_are_not_carried(spark: Any, validator: Validator, tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    judged, kept = seeded(spark, validator, path)
    spark.sql(f"INSERT INTO {dt.sql_table(path)} VALUES (902, 'paid', 1, false)")
    version = dt.content_version(spark, path)
    assert carry_in(spark, path, kept, version, judged) is not None
    clock = ExpressionCheck.model_validate({"check": "expression", "expression": "id < unix_timestamp()"})
    fresh = FreshnessCheck.model_validate({"check": "freshness", "column": "id", "max_age": "1h"})
    for other in (clock, fresh):
        assert carry_in(spark, path, kept, version, judged + expectations([(9, other)], None)) is None


@pytest.mark.parametrize("checks", [CHECKS, ARROW_CHECKS], ids=["spark", "arrow"])
def test_a_table_without_a_change_feed_is_not_carried(
    spark: Any, validator: Validator, tmp_path: Path, checks: list[Any]
) -> None:
    """delta-rs would read its appended files as a feed: the Arrow counter must not trust it."""
    path = str(tmp_path / "t")
    judged, kept = seeded(spark, validator, path, merged=False, checks=checks)
    spark.sql(f"INSERT INTO {dt.sql_table(path)} VALUES (903, 'paid', 1, false)")
    assert carry_in(spark, path, kept, dt.content_version(spark, path), judged) is None


@pytest.mark.parametrize(
    ("expression", "own"),
    [
        ("amount >= 0 AND status IN ('a', 'b')", True),
        ("coalesce(upper(status), '') <> 'X' OR length(status) > 3", True),
        ("to_date(created) <= date_add(to_date(updated), 1)", True),
        ("created <= current_date()", False),
        ("created <= current_timestamp", False),
        ("updated > now() - INTERVAL 1 DAY", False),
        ("rand() < 0.5", False),
        ("id = uuid()", False),
        ("amount < (SELECT max(amount) FROM silver.orders)", False),
        ("amount >=", False),  # not SQL: GX judges it and says so
    ],
)
def test_an_expression_is_carried_only_when_it_depends_on_the_row_alone(expression: str, own: bool) -> None:
    assert deterministic(expression) is own


def test_only_checks_of_the_row_alone_and_the_row_count_are_carriable() -> None:
    def of(**fields: Any) -> Any:
        return TypeAdapter(QualityCheck).validate_python(fields)

    carried = [
        of(check="not_null", columns=["a"]),
        of(check="accepted_values", column="a", values=[1]),
        of(check="expression", expression="a > 0"),
        of(check="row_count", min=1),
    ]
    judged_whole = [
        of(check="expression", expression="a > current_date()"),
        of(check="unique", columns=["a"]),
        of(check="freshness", column="a", max_age="1h"),
        of(check="sql", query="SELECT * FROM {table} WHERE a < 0"),
    ]
    assert [carriable(c) for c in carried + judged_whole] == [True] * 4 + [False] * 4
