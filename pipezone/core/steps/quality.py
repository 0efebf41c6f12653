"""Quality: the flow's table-level checks validated with Great Expectations on each checked layer table,
recorded in the state store, rendered as Data Docs in the lake's `quality/<flow>/`.

Checks with an `action` are not here: they judge each row of silver's write (steps/row_checks.py). Each
checked table is one GX suite validated on the table's live rows. A failed `error` check fails the step
(and the DAG run) with one line per check naming the unexpected count; a failed `warn` check is recorded
only. When the checked tables and the checks are what the last
successful run judged, its outcomes are reused (freshness aside: it depends on the clock).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipezone.core.lake import delta_tables as dt
from pipezone.core.quality import data_docs
from pipezone.core.quality.checked_tables import checked_path, judgement, table_checks
from pipezone.core.quality.expectations import expectations
from pipezone.core.quality.validation import Outcome, Validator
from pipezone.core.spec.quality import FreshnessCheck, QualityCheck
from pipezone.core.state.quality_results import QualityResult, UnexpectedRows
from pipezone.core.steps.context import StepContext, StepResult
from pipezone.core.steps.gold import resolve_references
from pipezone.core.steps.layer_writes import layer_keys
from pipezone.core.steps.transforms import renamed

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


class QualityError(RuntimeError):
    """Error-severity checks failed, or a row check with action fail found rows; the message lists them."""


def checked_table(ctx: StepContext, check: QualityCheck) -> tuple[str, str, list[str]]:
    """(name, lake path, primary key) of the table a check judges."""
    name, path = checked_path(ctx.runtime.lake, ctx.flow, check)
    if check.layer == "gold":
        table = next(t for t in ctx.flow.layers.gold if f"gold.{t.name}" == name)
        return name, path, list(table.primary_key)
    keys, _ = layer_keys(ctx)
    if check.layer == "silver":
        keys = renamed(keys, ctx.flow.layers.silver.transforms)
    return name, path, keys


def docs_site(ctx: StepContext, step: str) -> str:
    """Where `step` renders the flow's Data Docs (quality/data_docs.site_uri)."""
    site = data_docs.site_uri(ctx.runtime.lake, ctx.flow, step)
    assert site is not None, f"step {step} of flow {ctx.flow.name} renders no Data Docs"
    return site


def _previous(ctx: StepContext, seen: dict[str, Any], slots: int) -> list[QualityResult] | None:
    """The outcomes of the last successful quality run when it judged these very table versions with these
    very checks (one outcome per slot, in the flow's order)."""
    last = ctx.state.last_success(ctx.flow.name, "quality")
    if last is None or last.details.get("seen") != seen:
        return None
    outcomes = ctx.state.quality_results(last.run_id)
    return outcomes if len(outcomes) == slots else None


@dataclass(frozen=True)
class Recorded:
    """One outcome as the state store keeps it."""

    table: str
    layer: str
    name: str
    status: str
    observed: Any
    expected: Any
    severity: str
    detail: UnexpectedRows

    @classmethod
    def of(cls, table: str, outcome: Outcome) -> Recorded:
        check = outcome.expectation.check
        status = "passed" if outcome.success else ("failed" if check.severity == "error" else "warned")
        return cls(
            table,
            check.layer,
            outcome.name,
            status,
            outcome.observed,
            outcome.expected,
            check.severity,
            outcome.unexpected,
        )

    @classmethod
    def again(cls, table: str, r: QualityResult) -> Recorded:
        keys = json.loads(r.unexpected_keys) if r.unexpected_keys else None
        detail = UnexpectedRows(r.unexpected_count, r.unexpected_percent, keys, r.action)
        return cls(table, r.layer, r.check_name, r.status, r.observed, r.expected, r.severity, detail)


def run_quality(ctx: StepContext) -> StepResult:
    checks = table_checks(ctx.flow)
    if not checks:
        return StepResult(skipped=True, note="no table-level checks (the flow's checks act on silver's rows)")
    located = {index: checked_table(ctx, check) for index, check in checks}
    paths = {name: path for name, path, _ in located.values()}
    # the versions holding the rows: an empty batch's MERGE commit leaves the outcomes true
    versions = {name: dt.content_version(ctx.spark, path) for name, path in paths.items()}
    missing = sorted(name for name, version in versions.items() if version is None)
    if missing:
        raise QualityError(f"table {', '.join(missing)} does not exist yet: run the flow's other steps first")
    seen = judgement(checks, versions)
    slots = [(index, check) for index, check in checks for _ in _outcome_names(check)]
    previous = _previous(ctx, seen, len(slots))
    # what the last run judged of these very tables is still true, but a freshness check ages with the clock
    judged = [(i, c) for i, c in checks if previous is None or isinstance(c, FreshnessCheck)]
    outcomes: dict[int, list[Outcome]] = {}
    with data_docs.site_folder(docs_site(ctx, "quality"), ctx.runtime.lake_s3()) as folder:
        validator = Validator(folder)
        for name in dict.fromkeys(located[i][0] for i, _ in judged):
            group = [(i, c) for i, c in judged if located[i][0] == name]
            for outcome in _validate(ctx, validator, name, paths[name], located[group[0][0]][2], group):
                outcomes.setdefault(outcome.expectation.index, []).append(outcome)
        if judged:
            validator.build_docs()
    rows = []
    for k, (index, _) in enumerate(slots):
        table = located[index][0]
        rows.append(
            Recorded.of(table, outcomes[index].pop(0)) if index in outcomes else Recorded.again(table, previous[k])
        )
    return _recorded(ctx, rows, seen, reused=previous is not None)


def _outcome_names(check: QualityCheck) -> list[str | None]:
    """One outcome per column of a not_null check, one for any other check."""
    return list(getattr(check, "columns", None) or [None]) if check.check == "not_null" else [None]


def _validate(
    ctx: StepContext, validator: Validator, name: str, path: str, keys: list[str], group: list[tuple[int, Any]]
) -> list[Outcome]:
    live: DataFrame = dt.read_live(ctx.spark, path)
    judged = expectations(group, live, lambda sql: resolve_references(sql, ctx.runtime.lake, ctx.spark))
    # not cached: GX's few jobs re-read the Delta files faster than a 10M-row cache is built (1.3x of one
    # aggregate pass uncached, 2.5x cached: docs/benchmarks.md)
    return validator.validate(live, name, judged, [k for k in keys if k in live.columns], ctx.run_id)


def _recorded(ctx: StepContext, rows: list[Recorded], seen: dict[str, Any], reused: bool) -> StepResult:
    failures, results = [], []
    for r in rows:
        ctx.state.record_quality_check(
            ctx.run_id, ctx.flow.name, r.layer, r.name, r.status, r.observed, r.expected, r.severity, detail=r.detail
        )
        results.append({"check": r.name, "table": r.table, "status": r.status, "observed": str(r.observed)})
        if r.status == "failed":
            failures.append(f"{r.table} {r.name}: {r.observed}")
    if failures:
        raise QualityError("quality checks failed: " + "; ".join(failures))
    warned = sum(r.status == "warned" for r in rows)
    count = f"{len(rows)} check{'s' if len(rows) != 1 else ''}"
    note = f"{count}, {warned} warned" if warned else f"{count} passed"
    if reused:
        note += " (tables unchanged since the last check: outcomes reused)"
    details = {
        "checks": results,
        "seen": seen,
        "reused": reused,
        "data_docs": data_docs.index_uri(docs_site(ctx, "quality")),
    }
    return StepResult(note=note, details=details)
