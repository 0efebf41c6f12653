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
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipezone.core.lake import delta_tables as dt
from pipezone.core.quality import data_docs
from pipezone.core.quality.change_counts import Tally, carry, tally
from pipezone.core.quality.checked_tables import checked_path, judgement, table_checks
from pipezone.core.quality.expectations import Expectation, expectations
from pipezone.core.quality.validation import Outcome, Validator
from pipezone.core.spec.quality import FreshnessCheck, QualityCheck, RowCountCheck
from pipezone.core.state.quality_results import QualityResult, UnexpectedRows
from pipezone.core.state.run_history import RunRecord
from pipezone.core.steps.context import StepContext, StepResult
from pipezone.core.steps.gold import resolve_references
from pipezone.core.steps.layer_writes import layer_keys
from pipezone.core.steps.transforms import renamed

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


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
    options = ctx.runtime.lake_options()
    versions = {name: dt.content_version_of(path, options, _session(ctx)) for name, path in paths.items()}
    missing = sorted(name for name, version in versions.items() if version is None)
    if missing:
        raise QualityError(f"table {', '.join(missing)} does not exist yet: run the flow's other steps first")
    seen = judgement(checks, versions)
    slots = [(index, check) for index, check in checks for _ in _outcome_names(check)]
    last = ctx.state.last_success(ctx.flow.name, "quality")
    before = _before(ctx, last, seen, len(slots))
    previous = before if last is not None and last.details.get("seen") == seen else None
    tallies = dict(last.details.get("tallies") or {}) if previous is not None else {}
    # what the last run judged of these very tables is still true, but a freshness check ages with the clock
    judged = [(i, c) for i, c in checks if previous is None or isinstance(c, FreshnessCheck)]
    carried: dict[str, list[Recorded]] = {}
    if previous is None and before is not None:
        carried = _carried(ctx, last, before, checks, located, versions, slots, tallies)
    outcomes: dict[int, list[Outcome]] = {}
    judged = [(i, c) for i, c in judged if located[i][0] not in carried]
    if judged:
        # GX's datasource takes the process's active session, or starts a local Spark of its own (a Connect
        # client then cannot open its session): the step's session is opened first
        ctx.spark  # noqa: B018 - the property opens the session
        with data_docs.site_folder(docs_site(ctx, "quality"), ctx.runtime.lake_s3()) as folder:
            validator = Validator(folder)
            for name in dict.fromkeys(located[i][0] for i, _ in judged):
                group = [(i, c) for i, c in judged if located[i][0] == name]
                found, counted = _validate(
                    ctx, validator, (name, paths[name], versions[name] or 0), located[group[0][0]][2], group
                )
                for outcome in found:
                    outcomes.setdefault(outcome.expectation.index, []).append(outcome)
                if previous is None:  # a freshness-only judgement counts no rows: the old tally stands
                    _set_tally(tallies, name, counted)
            validator.build_docs()
    rows = []
    for k, (index, _) in enumerate(slots):
        table = located[index][0]
        if table in carried:
            rows.append(carried[table].pop(0))
        elif index in outcomes:
            rows.append(Recorded.of(table, outcomes[index].pop(0)))
        else:
            rows.append(Recorded.again(table, previous[k]))
    return _recorded(ctx, rows, seen, previous is not None, tallies, sorted(carried))


def _before(ctx: StepContext, last: RunRecord | None, seen: dict[str, Any], slots: int) -> list[QualityResult] | None:
    """The last successful run's outcomes, one per slot, when it judged these very checks (any versions)."""
    if last is None or (last.details.get("seen") or {}).get("checks") != seen["checks"]:
        return None
    # the run id may be shared: other flows of one `pipezone run`, Airflow runs triggered alike, and this flow's
    # row checks (recorded by silver, with their action)
    found = ctx.state.quality_results(last.run_id, ctx.flow.name)
    outcomes = [r for r in found if r.action is None]
    return outcomes if len(outcomes) == slots else None


def _set_tally(tallies: dict[str, Any], name: str, counted: Tally | None) -> None:
    if counted is None:
        tallies.pop(name, None)
    else:
        tallies[name] = counted.to_json()


def _carried(
    ctx: StepContext,
    last: RunRecord,
    before: list[QualityResult],
    checks: list[tuple[int, QualityCheck]],
    located: dict[int, tuple[str, str, list[str]]],
    versions: dict[str, int | None],
    slots: list[tuple[int, QualityCheck]],
    tallies: dict[str, Any],
) -> dict[str, list[Recorded]]:
    """The outcomes of each table whose last tally carries, through its change feed, to a verdict of all
    passed (quality/change_counts.py), in slot order; the new tallies go into `tallies`."""
    stored = last.details.get("tallies") or {}
    carried: dict[str, list[Recorded]] = {}
    for name in dict.fromkeys(located[i][0] for i, _ in checks):
        group = [(i, c) for i, c in checks if located[i][0] == name]
        kept = Tally.from_json(stored.get(name))
        judged = expectations(group, None)
        path = located[group[0][0]][1]
        now = kept and carry(_session(ctx), path, ctx.runtime.lake_options(), kept, versions[name] or 0, judged)
        rows = now and _passed(
            name, now, judged, [r for (i, _), r in zip(slots, before, strict=True) if located[i][0] == name]
        )
        if rows:
            carried[name] = rows
            _set_tally(tallies, name, now)
    return carried


def _session(ctx: StepContext) -> Callable[[], SparkSession]:
    """The step's session, opened when first called: a check carried in Arrow never opens one."""
    return lambda: ctx.spark


def _passed(table: str, tally: Tally, judged: list[Expectation], before: list[QualityResult]) -> list[Recorded] | None:
    """The outcomes a carried tally gives, when every one is a pass (else None: GX judges the table, to
    sample the failing rows' keys and render the failure); `before` gives each outcome's expected value."""
    if tally.rows <= 0 or [e.name for e in judged] != [r.check_name for r in before]:
        return None
    rows = []
    for expectation, was in zip(judged, before, strict=True):
        check = expectation.check
        if isinstance(check, RowCountCheck):
            if (check.min is not None and tally.rows < check.min) or (check.max is not None and tally.rows > check.max):
                return None
            observed, detail = tally.rows, UnexpectedRows()
        elif tally.unexpected[expectation.key] != 0:
            return None
        else:
            observed, detail = f"0 of {tally.rows} rows unexpected", UnexpectedRows(0, 0.0, None)
        rows.append(
            Recorded(table, check.layer, expectation.name, "passed", observed, was.expected, check.severity, detail)
        )
    return rows


def _outcome_names(check: QualityCheck) -> list[str | None]:
    """One outcome per column of a not_null check, one for any other check."""
    return list(getattr(check, "columns", None) or [None]) if check.check == "not_null" else [None]


def _validate(
    ctx: StepContext, validator: Validator, table: tuple[str, str, int], keys: list[str], group: list[tuple[int, Any]]
) -> tuple[list[Outcome], Tally | None]:
    """GX's outcomes on the live rows of `table` (name, path, content version), and what they counted."""
    name, path, version = table
    live: DataFrame = dt.read_live(ctx.spark, path)
    judged = expectations(group, live, lambda sql: resolve_references(sql, ctx.runtime.lake, ctx.spark))
    # not cached: GX's few jobs re-read the Delta files faster than a 10M-row cache is built (1.3x of one
    # aggregate pass uncached, 2.5x cached: docs/benchmarks.md)
    found = validator.validate(live, name, judged, [k for k in keys if k in live.columns], ctx.run_id)
    rows = next((o.rows for o in found if o.rows is not None), None)
    counts = {o.expectation.key: o.unexpected.count for o in found}
    return found, None if rows is None else tally(version, rows, judged, counts, live.schema)


def _recorded(
    ctx: StepContext,
    rows: list[Recorded],
    seen: dict[str, Any],
    reused: bool,
    tallies: dict[str, Any],
    carried: list[str],
) -> StepResult:
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
    elif carried:
        note += f" (counted on the changes of {', '.join(carried)} since the last check)"
    details = {
        "checks": results,
        "seen": seen,
        "reused": reused,
        "carried": carried,
        "tallies": tallies,
        "data_docs": data_docs.index_uri(docs_site(ctx, "quality")),
    }
    return StepResult(note=note, details=details)
