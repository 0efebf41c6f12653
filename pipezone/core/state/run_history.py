"""Run history: one row per attempt of one step of one run, in `pipeline_execution_logs`.

This is the evidence a re-run and an operator rely on (did this step already succeed in this run, what
did its last success see), so a retried step becomes a new attempt instead of overwriting the failed one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from pipezone.core.state.base import StoreBase
from pipezone.core.state.encoding import check_choice, clip_error, dump_json
from pipezone.core.state.errors import StateStoreError
from pipezone.core.state.schema import STEP_STATUSES, execution_logs


@dataclass(frozen=True)
class RunRecord:
    """One attempt of one step of one run."""

    id: int
    run_id: str
    flow: str
    step: str
    attempt: int
    status: str
    started_at: datetime
    finished_at: datetime | None
    rows_read: int | None
    rows_written: int | None
    bytes_written: int | None
    duration_s: float | None
    error: str | None
    details: dict[str, Any]


class RunHistoryStore(StoreBase):
    """Step logs: start, finish and look up attempts."""

    def start_step(self, run_id: str, flow: str, step: str, details: dict[str, Any] | None = None) -> int:
        """Log a step as running and return its log id; a repeat of (run_id, flow, step) is a new attempt."""
        t = execution_logs
        same_step = and_(t.c.run_id == run_id, t.c.flow == flow, t.c.step == step)
        for _ in range(5):
            try:
                with self._transaction() as conn:
                    last = conn.scalar(select(func.max(t.c.attempt)).where(same_step)) or 0
                    result = conn.execute(
                        insert(t).values(
                            run_id=run_id,
                            flow=flow,
                            step=step,
                            attempt=last + 1,
                            status="running",
                            started_at=self._now(),
                            details=dump_json(details),
                        )
                    )
                    return int(result.inserted_primary_key[0])
            except IntegrityError:
                continue  # a concurrent attempt took the number: read again
        raise StateStoreError(f"could not number an attempt of {run_id}/{flow}/{step} in {self.display_url}")

    def finish_step(
        self,
        log_id: int,
        status: str,
        rows_read: int | None = None,
        rows_written: int | None = None,
        bytes_written: int | None = None,
        error: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> RunRecord:
        """Close a step log with its outcome; `details` is merged over the details given at start."""
        check_choice(status, STEP_STATUSES[1:], "finished step status")
        t = execution_logs
        with self._transaction() as conn:
            row = conn.execute(select(t.c.started_at, t.c.details).where(t.c.id == log_id)).first()
            if row is None:
                raise StateStoreError(f"no step log with id {log_id} in {self.display_url}")
            merged = json.loads(row.details) if row.details else {}
            merged.update(details or {})
            finished_at = self._now()
            conn.execute(
                update(t)
                .where(t.c.id == log_id)
                .values(
                    status=status,
                    finished_at=finished_at,
                    duration_s=(finished_at - row.started_at).total_seconds(),
                    rows_read=rows_read,
                    rows_written=rows_written,
                    bytes_written=bytes_written,
                    error=clip_error(error),
                    details=dump_json(merged) if merged else None,
                )
            )
            return _run_record(conn.execute(select(t).where(t.c.id == log_id)).one())

    def step_succeeded(self, run_id: str, flow: str, step: str) -> bool:
        """True when any attempt of this step in this run succeeded, so a re-run can skip it."""
        t = execution_logs
        query = select(t.c.id).where(t.c.run_id == run_id, t.c.flow == flow, t.c.step == step, t.c.status == "success")
        with self._transaction() as conn:
            return conn.execute(query.limit(1)).first() is not None

    def last_success(self, flow: str, step: str) -> RunRecord | None:
        """The newest successful attempt of a flow's step in any run (what it saw, in its details)."""
        t = execution_logs
        query = (
            select(t)
            .where(t.c.flow == flow, t.c.step == step, t.c.status == "success")
            .order_by(t.c.finished_at.desc(), t.c.id.desc())
            .limit(1)
        )
        with self._transaction() as conn:
            row = conn.execute(query).first()
        return None if row is None else _run_record(row)

    def get_step(self, log_id: int) -> RunRecord | None:
        """One step log by id."""
        with self._transaction() as conn:
            row = conn.execute(select(execution_logs).where(execution_logs.c.id == log_id)).first()
        return None if row is None else _run_record(row)

    def detail_total(self, flow: str, step: str, key: str) -> int:
        """The sum of a numeric detail over the flow's successful attempts of `step` (e.g. the rows silver's
        row checks dropped, run after run)."""
        t = execution_logs
        query = select(t.c.details).where(t.c.flow == flow, t.c.step == step, t.c.status == "success")
        with self._transaction() as conn:
            return sum(int(json.loads(text or "{}").get(key) or 0) for (text,) in conn.execute(query))

    def recent_runs(self, flow: str | None = None, limit: int = 20) -> list[RunRecord]:
        """Newest step attempts first, optionally for one flow."""
        t = execution_logs
        query = select(t).order_by(t.c.started_at.desc(), t.c.id.desc()).limit(limit)
        if flow is not None:
            query = query.where(t.c.flow == flow)
        with self._transaction() as conn:
            return [_run_record(row) for row in conn.execute(query)]


def _run_record(row: Any) -> RunRecord:
    fields = row._asdict()
    fields["details"] = json.loads(fields["details"]) if fields["details"] else {}
    return RunRecord(**fields)
