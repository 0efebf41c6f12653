"""Row-level checks on silver's write: each check with an `action` judges every live row of the batch
silver is about to write, with Great Expectations, before anything is written.

- `warn`: the row is written; the check is recorded `warned` with the count and a sample of keys.
- `drop`: the row is not written (a key's earlier version in silver stays as it was); counted.
- `quarantine`: the row is written to the flow's quarantine table (`quarantine/<flow>`, Delta) with the
  names of the checks it failed, the run id and the time, instead of silver. A row failing both a drop and
  a quarantine check is quarantined: nothing is lost that could be fixed.
- `fail`: if any row fails, nothing of the batch is written and nothing moves (silver's position stays, so
  the next run judges the same batches again); the step fails with one line naming the check and count.

Tombstones (deleted keys) are not judged: a delete always reaches silver. GX counts and samples (one
suite, BASIC, then keys for the failed checks); the rows are split with the same conditions GX counts
(quality/expectations.py). The quarantine write is idempotent per batch (Delta txnAppId/txnVersion, as
silver's own write), and comes before silver's: a run killed between the two quarantines nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pipezone.core.lake import delta_tables as dt
from pipezone.core.quality import data_docs
from pipezone.core.quality.expectations import Expectation, expectations
from pipezone.core.quality.validation import Outcome, Validator
from pipezone.core.spec.quality import QualityCheck, row_level
from pipezone.core.steps.context import StepContext
from pipezone.core.steps.quality import QualityError, docs_site

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

FAILED_CHECKS = "_pz_failed_checks"
QUARANTINED_AT = "_pz_quarantined_at"
RUN_ID = "_pz_quarantine_run_id"  # silver rows carry their own _pz_run_id (the extracting run)
STATUS = {"warn": "warned", "drop": "dropped", "quarantine": "quarantined", "fail": "failed"}


@dataclass
class RowVerdict:
    """What silver writes of the batch, what goes to quarantine, and the counts."""

    keep: DataFrame
    quarantine: DataFrame | None
    dropped: int = 0
    quarantined: int = 0
    checks: list[dict[str, Any]] = field(default_factory=list)

    def details(self) -> dict[str, Any]:
        return {"rows_dropped": self.dropped, "rows_quarantined": self.quarantined, "row_checks": self.checks}


def row_checks(checks: list[QualityCheck]) -> list[tuple[int, QualityCheck]]:
    """The flow's checks with an action, numbered as in the flow file."""
    return [(i, check) for i, check in enumerate(checks) if row_level(check)]


def judge(ctx: StepContext, df: DataFrame, keys: list[str]) -> RowVerdict | None:
    """Judge the batch `df` (silver's columns, before the write); None when the flow has no row checks.
    The caller caches `df`: GX's passes, the counts and both writes read it."""
    checks = row_checks(ctx.flow.quality)
    if not checks:
        return None
    live = df.filter(f"NOT `{dt.DELETED}`") if dt.DELETED in df.columns else df
    judged = expectations(checks, live)
    with data_docs.site_folder(docs_site(ctx, "silver"), ctx.runtime.lake_s3()) as folder:
        validator = Validator(folder)
        outcomes = validator.validate(live, f"silver.{ctx.flow.name}", judged, keys, ctx.run_id)
        validator.build_docs()
    results = [_record(ctx, outcome) for outcome in outcomes]
    stopped = [o for o in outcomes if _action(o) == "fail" and not o.success]
    if stopped:
        raise QualityError("silver write stopped, nothing written: " + "; ".join(_line(o) for o in stopped))
    return _split(ctx, df, judged, results)


def _action(outcome: Outcome) -> str:
    return str(outcome.expectation.check.action)  # type: ignore[union-attr]


def _line(outcome: Outcome) -> str:
    keys = outcome.unexpected.keys
    sample = f" (keys: {', '.join(_key(k) for k in keys[:5])})" if keys else ""
    return f"{outcome.name} [{_action(outcome)}]: {outcome.observed}{sample}"


def _key(key: dict[str, Any]) -> str:
    return repr(next(iter(key.values()))) if len(key) == 1 else repr(tuple(key.values()))


def _record(ctx: StepContext, outcome: Outcome) -> dict[str, Any]:
    action = _action(outcome)
    status = "passed" if outcome.success else STATUS[action]
    severity = "error" if action == "fail" else "warn"
    detail = replace(outcome.unexpected, action=action)
    ctx.state.record_quality_check(
        ctx.run_id, ctx.flow.name, "silver", outcome.name, status, outcome.observed, outcome.expected, severity, detail
    )
    return {"check": outcome.name, "action": action, "status": status, "unexpected": outcome.unexpected.count}


def _any(judged: list[Expectation], action: str, deleted: bool) -> str:
    """The condition of a live row failing any check with `action` ('false' when none has it)."""
    conditions = [e.failing for e in judged if e.check.action == action]  # type: ignore[union-attr]
    if not conditions:
        return "false"
    live = f"NOT `{dt.DELETED}` AND " if deleted else ""
    return f"({live}({' OR '.join(conditions)}))"


def _split(ctx: StepContext, df: DataFrame, judged: list[Expectation], results: list[dict[str, Any]]) -> RowVerdict:
    from pyspark.sql import functions as F  # noqa: N812 - PySpark's convention

    deleted = dt.DELETED in df.columns
    held, dropped = _any(judged, "quarantine", deleted), _any(judged, "drop", deleted)
    if held == "false" and dropped == "false":
        return RowVerdict(df, None, checks=results)
    counts = df.selectExpr(f"count_if({held}) AS q", f"count_if(NOT {held} AND {dropped}) AS d").first()
    keep = df.filter(f"NOT {held} AND NOT {dropped}")
    if not counts["q"]:
        return RowVerdict(keep, None, dropped=counts["d"], checks=results)
    names = [
        F.when(F.expr(e.failing), F.lit(e.name))
        for e in judged
        if e.check.action in ("quarantine", "drop")  # type: ignore[union-attr]
    ]
    quarantine = (
        df.filter(held)
        .withColumn(FAILED_CHECKS, F.filter(F.array(*names), lambda name: name.isNotNull()))
        .withColumn(RUN_ID, F.lit(ctx.run_id))
        .withColumn(QUARANTINED_AT, F.current_timestamp())
    )
    return RowVerdict(keep, quarantine, dropped=counts["d"], quarantined=counts["q"], checks=results)


def write_quarantine(ctx: StepContext, verdict: RowVerdict, batch: int) -> None:
    """The batch's quarantined rows, appended once per batch (a retried run's append is a no-op)."""
    if verdict.quarantine is None:
        return
    path = ctx.runtime.lake.quarantine(ctx.flow.name)
    dt.append(
        verdict.quarantine,
        path,
        app_id=ctx.app_id("quarantine"),
        version=batch,
        metadata=ctx.metadata("quarantine", batch=batch),
    )
