"""Quality checks of a flow (`quality:`): what must hold of a layer's table or of each row silver writes.

Two kinds. A table-level check (every check without `action`) judges a layer's table after the write, in
the `quality` step; `severity: error` fails the run, `warn` records. A row-level check (`not_null`,
`accepted_values` or `expression` with an `action`) judges each row of the batch silver is about to write:
`warn` writes it and records it, `drop` leaves it out (counted), `quarantine` writes it to the flow's
quarantine table instead, `fail` writes nothing of the batch and moves nothing.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from pipezone.core.spec.value_types import (
    MAX_INT,
    BoundedInt,
    Columns,
    Duration,
    Identifier,
    Name,
    SpecModel,
    SqlCheckQuery,
    SqlExpression,
)

RowAction = Literal["warn", "drop", "quarantine", "fail"]
ROW_ACTIONS: tuple[str, ...] = ("warn", "drop", "quarantine", "fail")
TABLE_PLACEHOLDER = "{table}"


class _Check(SpecModel):
    layer: Literal["bronze", "silver", "gold"] = "silver"
    table: Name | None = Field(default=None, description="Gold table name, for layer gold.")
    severity: Literal["error", "warn"] = Field(default="error", description="error fails the run, warn logs.")

    @model_validator(mode="before")
    @classmethod
    def _action_is_for_row_checks(cls, data: Any) -> Any:
        if isinstance(data, dict) and "action" in data and not issubclass(cls, _RowCheck):
            raise PydanticCustomError(
                "table_check_action",
                "{check} judges the whole table, not single rows: it takes severity (error or warn), not action "
                "(action is for not_null, accepted_values and expression)",
                {"check": data.get("check"), "at": "action"},
            )
        return data

    @model_validator(mode="after")
    def _table_for_gold(self) -> _Check:
        if self.layer == "gold" and self.table is None:
            raise PydanticCustomError("gold_table", "a check on layer gold names its gold table", {"at": "table"})
        if self.layer != "gold" and self.table is not None:
            raise PydanticCustomError("table_layer", "'table' is for checks on layer gold", {"at": "table"})
        return self


class _RowCheck(_Check):
    """A check each row can pass or fail on its own, so it can also act on rows (`action`)."""

    action: RowAction | None = Field(
        default=None,
        description="Row-level on the silver write: warn (write, record), drop (leave out, count), quarantine "
        "(write to quarantine/<flow> instead), fail (write nothing of the batch). Without it: table-level.",
    )

    @model_validator(mode="after")
    def _row_level_on_silver(self) -> _RowCheck:
        if self.action is None:
            return self
        if self.layer != "silver":
            raise PydanticCustomError(
                "row_action_layer",
                "a check with an action judges the rows silver writes: its layer is silver",
                {"at": "layer"},
            )
        if "severity" in self.model_fields_set:
            raise PydanticCustomError(
                "row_action_severity",
                "'severity' is for table-level checks; a check with an action stops the run with action: fail",
                {"at": "severity"},
            )
        return self


class NotNullCheck(_RowCheck):
    check: Literal["not_null"]
    columns: Columns = Field(min_length=1)


class UniqueCheck(_Check):
    check: Literal["unique"]
    columns: Columns = Field(min_length=1)


class AcceptedValuesCheck(_RowCheck):
    check: Literal["accepted_values"]
    column: Identifier
    values: list[str | BoundedInt | float | bool] = Field(min_length=1)


class RowCountCheck(_Check):
    check: Literal["row_count"]
    min: int | None = Field(default=None, ge=0, le=MAX_INT)
    max: int | None = Field(default=None, ge=0, le=MAX_INT)

    @model_validator(mode="after")
    def _range(self) -> RowCountCheck:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise PydanticCustomError(
                "row_count_range",
                "min {min} is greater than max {max}",
                {"min": self.min, "max": self.max, "at": "min"},
            )
        return self


class ExpressionCheck(_RowCheck):
    check: Literal["expression"]
    expression: SqlExpression = Field(description="Must hold for every row.")


class FreshnessCheck(_Check):
    check: Literal["freshness"]
    column: Identifier
    max_age: Duration


class SqlCheck(_Check):
    check: Literal["sql"]
    query: SqlCheckQuery = Field(
        description="A read-only Spark SQL query over {table} (the checked table; it may join silver.<flow> and "
        "gold.<table>): every row it returns is unexpected, and the check fails when it returns one."
    )


QualityCheck = Annotated[
    NotNullCheck | UniqueCheck | AcceptedValuesCheck | RowCountCheck | ExpressionCheck | FreshnessCheck | SqlCheck,
    Field(discriminator="check"),
]
RowCheck = NotNullCheck | AcceptedValuesCheck | ExpressionCheck


def row_level(check: QualityCheck) -> bool:
    """Whether the check judges the rows of silver's write (it has an action) rather than a table after it."""
    return getattr(check, "action", None) is not None


def checks_fit_the_flow(checks: list[QualityCheck], gold_tables: set[str], has_silver: bool) -> None:
    """A check on gold names one of the flow's gold tables; a check with an action needs silver."""
    for index, check in enumerate(checks):
        if check.table is not None and check.table not in gold_tables:
            known = ", ".join(sorted(gold_tables)) or "none"
            raise PydanticCustomError(
                "unknown_gold_table",
                "no gold table '{table}' in this flow (its gold tables: {known})",
                {"table": check.table, "known": known, "at": f"quality.{index}.table"},
            )
        if row_level(check) and not has_silver:
            raise PydanticCustomError(
                "row_action_no_silver",
                "an action acts on the rows silver writes: this flow has no source, so no silver",
                {"at": f"quality.{index}.action"},
            )
