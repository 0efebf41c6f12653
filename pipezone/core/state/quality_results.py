"""Data-quality results: one row per check outcome of a run, in `data_quality_checks`.

Kept with the run they belong to so a failed or warned check can be traced to the data it judged;
observations of any shape are stored as text (JSON when not already a string).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select

from pipezone.core.state.base import StoreBase
from pipezone.core.state.encoding import as_text, check_choice
from pipezone.core.state.schema import CHECK_STATUSES, quality_checks


@dataclass(frozen=True)
class QualityResult:
    """One data-quality check outcome."""

    id: int
    run_id: str
    flow: str
    layer: str
    check_name: str
    status: str
    observed: str | None
    expected: str | None
    severity: str
    checked_at: datetime
    action: str | None = None
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    unexpected_keys: str | None = None  # JSON: a sample of the unexpected rows' primary keys


@dataclass(frozen=True)
class UnexpectedRows:
    """The rows a check found unexpected: how many, their share of the rows judged, a sample of their keys;
    `action` for a row-level check."""

    count: int | None = None
    percent: float | None = None
    keys: list[dict[str, Any]] | None = None
    action: str | None = None

    def columns(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "unexpected_count": self.count,
            "unexpected_percent": self.percent,
            "unexpected_keys": None if self.keys is None else as_text(self.keys),
        }


class QualityStore(StoreBase):
    """Record check outcomes and read a run's."""

    def record_quality_check(
        self,
        run_id: str,
        flow: str,
        layer: str,
        check_name: str,
        status: str,
        observed: Any = None,
        expected: Any = None,
        severity: str = "error",
        detail: UnexpectedRows | None = None,
    ) -> int:
        """Store one check outcome; non-string observed/expected values are stored as JSON. `detail`: what
        Great Expectations measured of the rows (and the action of a row-level check)."""
        check_choice(status, CHECK_STATUSES, "quality check status")
        with self._transaction() as conn:
            result = conn.execute(
                insert(quality_checks).values(
                    run_id=run_id,
                    flow=flow,
                    layer=layer,
                    check_name=check_name,
                    status=status,
                    observed=as_text(observed),
                    expected=as_text(expected),
                    severity=severity,
                    checked_at=self._now(),
                    **(detail.columns() if detail else {}),
                )
            )
            return int(result.inserted_primary_key[0])

    def latest_quality_results(self, flow: str) -> list[QualityResult]:
        """The flow's check outcomes of the newest run that recorded any (its silver row checks and its
        quality step share the run id)."""
        newest = (
            select(quality_checks.c.run_id)
            .where(quality_checks.c.flow == flow)
            .order_by(quality_checks.c.id.desc())
            .limit(1)
        )
        with self._transaction() as conn:
            run_id = conn.execute(newest).scalar()
        if run_id is None:
            return []
        return self.quality_results(run_id, flow)

    def quality_results(self, run_id: str, flow: str | None = None) -> list[QualityResult]:
        """A run's check outcomes in the order they were recorded; only `flow`'s when given (the flows of one
        `pipezone run` share its run id)."""
        query = select(quality_checks).where(quality_checks.c.run_id == run_id).order_by(quality_checks.c.id)
        if flow is not None:
            query = query.where(quality_checks.c.flow == flow)
        with self._transaction() as conn:
            return [QualityResult(**row._asdict()) for row in conn.execute(query)]
