"""When a flow runs (`schedule:`): a cron, a preset, or after other flows' outputs update."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any, Literal

from croniter import CroniterError, croniter
from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from pipezone.core.spec.value_types import NAME_PATTERN, Names, SpecModel

Preset = Literal["@once", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly"]
_CRON_START = datetime(2024, 1, 1)


@functools.lru_cache(maxsize=1024)
def _fires(cron: str) -> bool:
    """Whether a well-formed cron has a next run at all."""
    try:
        croniter(cron, _CRON_START).get_next(datetime)
    except (CroniterError, ValueError, OverflowError):
        return False
    return True


class ScheduleSpec(SpecModel):
    """When the flow runs: a cron, a preset, or after other flows' outputs update."""

    cron: str | None = Field(default=None, max_length=120, description="Five-field cron, e.g. '0 */6 * * *' (UTC).")
    preset: Preset | None = None
    after: Names | None = Field(default=None, min_length=1, description="Run when these flows finish.")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"preset": value} if value.startswith("@") else {"cron": value}
        if isinstance(value, list):
            return {"after": value}
        return value

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if len(value.split()) != 5 or not croniter.is_valid(value):
            raise PydanticCustomError(
                "invalid_cron", "invalid cron '{value}': expected 5 fields like '0 */6 * * *'", {"value": value}
            )
        if not _fires(value):  # '0 0 30 2 *' is well formed and never fires: the scheduler would search forever
            raise PydanticCustomError("cron_never", "cron '{value}' never fires", {"value": value})
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> ScheduleSpec:
        given = [k for k in ("cron", "preset", "after") if getattr(self, k) is not None]
        if len(given) != 1:
            raise PydanticCustomError(
                "one_schedule",
                "set exactly one of 'cron', 'preset' or 'after' (found {found})",
                {"found": ", ".join(given) or "none"},
            )
        return self

    def describe(self) -> str:
        if self.after:
            return "after " + ", ".join(self.after)
        return self.cron or self.preset or ""


def schedule_shorthands(schema: dict[str, Any]) -> None:
    """Let editors accept `schedule: "0 * * * *"`, `schedule: "@daily"` and `schedule: [a, b]`."""
    schema["anyOf"] = [
        *schema["anyOf"],
        {"type": "string"},
        {"type": "array", "items": {"type": "string", "pattern": NAME_PATTERN}, "minItems": 1},
    ]
