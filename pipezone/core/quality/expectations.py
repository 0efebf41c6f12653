"""A flow's quality checks as Great Expectations expectations, and, for the checks a row can fail on its
own, the Spark SQL condition that picks the unexpected rows.

GX validates and reports (counts, percent, a sample of keys, Data Docs); PipeZone acts on rows (drop,
quarantine) with the same condition GX counts, spelled here once per check, so what GX reports and what
silver leaves out are the same rows (`tests/core/quality/test_row_checks.py` holds them equal).

Mapping: not_null -> expect_column_values_to_not_be_null (one per column); accepted_values ->
expect_column_values_to_be_in_set (NULL is not judged, as GX does); expression -> a boolean column
`coalesce(expr, false)` added to the validated frame, expected to be in {true}; unique ->
expect_column_values_to_be_unique / expect_compound_columns_to_be_unique; row_count ->
expect_table_row_count_to_be_between; freshness -> expect_column_max_to_be_between with the oldest
acceptable value; sql -> unexpected_rows_expectation over `{batch}`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from types import ModuleType
from typing import TYPE_CHECKING, Any

from pipezone.core.spec.quality import (
    AcceptedValuesCheck,
    ExpressionCheck,
    FreshnessCheck,
    NotNullCheck,
    QualityCheck,
    RowCountCheck,
    SqlCheck,
    UniqueCheck,
)

if TYPE_CHECKING:
    import great_expectations.expectations as gxe
    from pyspark.sql import DataFrame

EXPECT_PREFIX = "_pz_expect_"  # helper columns of expression checks, in the validated frame only
TIME_TYPES = frozenset({"date", "timestamp", "timestamp_ntz"})


def _gxe() -> ModuleType:
    """`great_expectations.expectations`, imported when the first expectation is built: importing GX takes
    about 3.5 s, and most step processes (extract, bronze, a silver without row checks) build none."""
    import great_expectations.expectations

    return great_expectations.expectations


@dataclass(frozen=True)
class Expectation:
    """One expectation of one check: its name in results and docs, the GX object, the condition of an
    unexpected row (checks rows fail one by one), and the helper column it validates (expressions).

    The GX object is built on first use (`gx`): counting a condition over changed rows
    (quality/change_counts.py) or acting on rows (steps/row_checks.py) never imports GX."""

    name: str
    index: int  # the check's position in the flow's `quality:` list
    check: QualityCheck
    build: Callable[[], gxe.Expectation] | None  # None: nothing GX can judge (freshness on a non-time column)
    unexpected: str | None = None
    helper: tuple[str, str] | None = None  # (column, SQL) added to the frame before validation
    problem: str | None = None  # why gx is None
    column: str | None = None  # the column a not_null or accepted_values expectation judges
    describe: Callable[[Any], Any] = lambda observed: observed  # GX's observed value as results show it

    @cached_property
    def gx(self) -> gxe.Expectation | None:
        """The GX expectation (one object per Expectation: the Validator sets its meta)."""
        return None if self.build is None else self.build()

    @property
    def row_level(self) -> bool:
        return self.unexpected is not None

    @property
    def failing(self) -> str:
        """The SQL condition true exactly for the rows GX counts unexpected (never NULL)."""
        return f"coalesce(({self.unexpected}), false)"

    @property
    def key(self) -> str:
        """Unique in a suite: two checks may judge the same column the same way."""
        return f"{self.index}:{self.name}"


def q(column: str) -> str:
    return "`" + column.replace("`", "``") + "`"


def literal(value: Any) -> str:
    """A Spark SQL literal of a YAML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def expectations(
    checks: list[tuple[int, QualityCheck]], df: DataFrame | None, resolve: Callable[[str], str] = str
) -> list[Expectation]:
    """The expectations of `checks` (numbered as in the flow) on `df`'s columns. `resolve` rewrites the
    silver.<flow> / gold.<table> references of a `sql` check's query. Without a frame (`None`: counting
    changes, quality/change_counts.py) no column has a type, which only a freshness check looks at."""
    types = {} if df is None else {f.name.lower(): f.dataType.simpleString() for f in df.schema.fields}
    out: list[Expectation] = []
    for index, check in checks:
        out += _of(index, check, types, resolve)
    return out


def _of(index: int, check: QualityCheck, types: dict[str, str], resolve: Callable[[str], str]) -> list[Expectation]:
    meta = {"check": check.check, "quality_index": index}
    if isinstance(check, NotNullCheck):
        return [
            Expectation(
                f"not_null({c})",
                index,
                check,
                lambda c=c: _gxe().ExpectColumnValuesToNotBeNull(column=c, meta=meta, description=f"{c} is never null"),
                unexpected=f"{q(c)} IS NULL",
                column=c,
            )
            for c in check.columns
        ]
    if isinstance(check, AcceptedValuesCheck):
        values = ", ".join(literal(v) for v in check.values)

        def expectation() -> gxe.Expectation:
            return _gxe().ExpectColumnValuesToBeInSet(column=check.column, value_set=list(check.values), meta=meta)

        condition = f"{q(check.column)} IS NOT NULL AND NOT ({q(check.column)} IN ({values}))"
        name = f"accepted_values({check.column})"
        return [Expectation(name, index, check, expectation, unexpected=condition, column=check.column)]
    if isinstance(check, ExpressionCheck):
        column = f"{EXPECT_PREFIX}{index}"
        holds = f"coalesce(({check.expression}), false)"
        return [
            Expectation(
                f"expression({check.expression})",
                index,
                check,
                lambda: _gxe().ExpectColumnValuesToBeInSet(
                    column=column, value_set=[True], meta=meta, description=f"every row: {check.expression}"
                ),
                unexpected=f"NOT {holds}",
                helper=(column, holds),
            )
        ]
    return [_table_level(index, check, meta, types, resolve)]


def _table_level(
    index: int, check: QualityCheck, meta: dict[str, Any], types: dict[str, str], resolve: Callable[[str], str]
) -> Expectation:
    if isinstance(check, UniqueCheck):
        name = f"unique({', '.join(check.columns)})"
        if len(check.columns) == 1:
            return Expectation(
                name, index, check, lambda: _gxe().ExpectColumnValuesToBeUnique(column=check.columns[0], meta=meta)
            )
        return Expectation(
            name, index, check, lambda: _gxe().ExpectCompoundColumnsToBeUnique(column_list=check.columns, meta=meta)
        )
    if isinstance(check, RowCountCheck):
        return Expectation(
            "row_count",
            index,
            check,
            lambda: _gxe().ExpectTableRowCountToBeBetween(min_value=check.min, max_value=check.max, meta=meta),
        )
    if isinstance(check, FreshnessCheck):
        return _freshness(index, check, meta, types)
    if isinstance(check, SqlCheck):
        query = resolve(check.query).replace("{table}", "{batch}")
        return Expectation(
            f"sql({' '.join(check.query.split())[:80]})",
            index,
            check,
            lambda: _gxe().UnexpectedRowsExpectation(unexpected_rows_query=query, meta=meta, description=check.query),
        )
    raise TypeError(f"unknown check {check!r}")


def _freshness(index: int, check: FreshnessCheck, meta: dict[str, Any], types: dict[str, str]) -> Expectation:
    """The newest value must be at most `max_age` old: its max is expected at or after the cutoff, stated
    in the column's own terms (see oldest_fresh)."""
    name = f"freshness({check.column})"
    kind = types.get(check.column.lower())
    if kind not in TIME_TYPES:
        found = "not found" if kind is None else f"is {kind}"
        problem = f"column {check.column} {found}: not a date or timestamp"
        return Expectation(name, index, check, None, problem=problem)
    oldest = oldest_fresh(kind, datetime.now(UTC) - check.max_age)

    def expectation() -> gxe.Expectation:
        return _gxe().ExpectColumnMaxToBeBetween(
            column=check.column,
            min_value=oldest,
            meta=meta,
            description=f"newest {check.column} at most {check.max_age} old",
        )

    return Expectation(name, index, check, expectation, describe=lambda newest: _age(newest, kind))


def _age(newest: Any, kind: str) -> str:
    """How old the newest value is (never negative: a date not over yet, a future time, are 0 old)."""
    if newest is None:
        return "no rows"
    if isinstance(newest, datetime):
        instant = newest.replace(tzinfo=UTC) if kind == "timestamp_ntz" else newest.astimezone(UTC)
    else:  # a DATE lasts until the next midnight UTC
        instant = datetime.combine(newest + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    age = max(datetime.now(UTC) - instant, timedelta(0))
    return f"{age} old (newest {newest})"


def oldest_fresh(kind: str, cutoff: datetime) -> date | datetime:
    """The oldest value of a `kind` column that is still fresh at UTC instant `cutoff`, as PySpark hands
    the column's values back (GX compares it with the collected max).

    DATE: a day is fresh until its END (the next midnight, UTC), so the oldest fresh day is the one whose
    end is at or after the cutoff. TIMESTAMP: collected as naive local time of this process. TIMESTAMP_NTZ:
    a UTC wall clock (PipeZone pins the session time zone to UTC).
    """
    if kind == "date":
        day = (cutoff - timedelta(days=1)).date()
        start_of_next = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        return day if start_of_next >= cutoff else day + timedelta(days=1)
    if kind == "timestamp":
        return cutoff.astimezone().replace(tzinfo=None)
    return cutoff.astimezone(UTC).replace(tzinfo=None)
