"""Which checks Arrow counts on a change feed, and that it counts them as the checks' Spark conditions do
(the carried counts on real tables: tests/core/quality/test_change_counts.py)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from pydantic import TypeAdapter

from pipezone.core.quality.arrow_conditions import failing
from pipezone.core.quality.expectations import expectations
from pipezone.core.spec.quality import QualityCheck

FEED = pa.table(
    {
        "status": pa.array(["paid", None, "lost", "new"]),
        "small": pa.array([1, 2, None, 100], pa.int8()),
        "ratio": pa.array([0.5, None, 1.0, float("nan")]),
        "flag": pa.array([True, False, None, True]),
        "A": pa.array([1, 2, 3, 4]),
        "a": pa.array([1, 2, 3, 4]),
    }
)


def mask(**check: Any) -> list[bool] | None:
    """The unexpected rows of FEED as Arrow finds them, or None when Arrow leaves the check to Spark."""
    (expectation,) = expectations([(0, TypeAdapter(QualityCheck).validate_python(check))], None)
    condition = failing(expectation, FEED.schema)
    return None if condition is None else condition(FEED).to_pylist()


def test_not_null_finds_its_column_ignoring_case_as_spark_does() -> None:
    assert mask(check="not_null", columns=["STATUS"]) == [False, True, False, False]
    assert mask(check="not_null", columns=["small"]) == [False, False, True, False]


def test_accepted_values_leave_nulls_alone_and_compare_plain_types_exactly() -> None:
    assert mask(check="accepted_values", column="status", values=["paid", "new"]) == [False, False, True, False]
    assert mask(check="accepted_values", column="small", values=[1, 2]) == [False, False, False, True]
    assert mask(check="accepted_values", column="flag", values=[True]) == [False, True, False, False]


def test_what_spark_would_coerce_is_left_to_spark() -> None:
    assert mask(check="accepted_values", column="ratio", values=[0.5, 1.0]) is None  # floats: NaN, -0.0
    assert mask(check="accepted_values", column="status", values=["paid", 1]) is None  # mixed types
    assert mask(check="accepted_values", column="small", values=["1"]) is None  # a string against a number
    assert mask(check="accepted_values", column="small", values=[1, 1000]) is None  # beyond the column's type
    assert mask(check="accepted_values", column="flag", values=[1]) is None


def test_a_column_missing_or_ambiguous_is_left_to_spark() -> None:
    assert mask(check="not_null", columns=["missing"]) is None
    assert mask(check="not_null", columns=["a"]) is None  # `a` and `A`: Spark would call it ambiguous
    assert mask(check="expression", expression="small > 0") is None
