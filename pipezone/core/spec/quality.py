"""Quality checks of a flow (`quality:`): what must hold of a layer's table, and how bad a failure is."""

from __future__ import annotations

from typing import Annotated, Literal

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
    SqlExpression,
)


class _Check(SpecModel):
    layer: Literal["bronze", "silver", "gold"] = "silver"
    table: Name | None = Field(default=None, description="Gold table name, for layer gold.")
    severity: Literal["error", "warn"] = Field(default="error", description="error fails the run, warn logs.")

    @model_validator(mode="after")
    def _table_for_gold(self) -> _Check:
        if self.layer == "gold" and self.table is None:
            raise PydanticCustomError("gold_table", "a check on layer gold names its gold table", {"at": "table"})
        if self.layer != "gold" and self.table is not None:
            raise PydanticCustomError("table_layer", "'table' is for checks on layer gold", {"at": "table"})
        return self


class NotNullCheck(_Check):
    check: Literal["not_null"]
    columns: Columns = Field(min_length=1)


class UniqueCheck(_Check):
    check: Literal["unique"]
    columns: Columns = Field(min_length=1)


class AcceptedValuesCheck(_Check):
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


class ExpressionCheck(_Check):
    check: Literal["expression"]
    expression: SqlExpression = Field(description="Must hold for every row.")


class FreshnessCheck(_Check):
    check: Literal["freshness"]
    column: Identifier
    max_age: Duration


QualityCheck = Annotated[
    NotNullCheck | UniqueCheck | AcceptedValuesCheck | RowCountCheck | ExpressionCheck | FreshnessCheck,
    Field(discriminator="check"),
]
