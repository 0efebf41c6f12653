"""Quality: the flow's checks evaluated with Spark SQL on the layer tables, recorded in the state store.

Each check is one aggregate over the table, so a check costs one pass whatever its kind. A failed
`error` check fails the step (and the DAG run); a failed `warn` check is recorded and logged only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from pipezone.core.lake import delta_tables as dt
from pipezone.core.spec.quality import (
    AcceptedValuesCheck,
    ExpressionCheck,
    FreshnessCheck,
    NotNullCheck,
    RowCountCheck,
    UniqueCheck,
)
from pipezone.core.state.quality_results import QualityResult
from pipezone.core.steps.context import StepContext, StepResult

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


class QualityError(RuntimeError):
    """Error-severity checks failed; the message lists them."""


@dataclass(frozen=True)
class Outcome:
    name: str
    passed: bool
    observed: Any
    expected: Any


_TIME_TYPES = {"date", "timestamp", "timestamp_ntz"}


def _q(column: str) -> str:
    return f"`{column}`"


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _count_where(df: DataFrame, condition: str) -> int:
    return int(df.selectExpr(f"count_if({condition}) AS n").collect()[0]["n"] or 0)


def evaluate(df: DataFrame, check: Any) -> Outcome:
    """One check against one table."""
    if isinstance(check, NotNullCheck):
        bad = _count_where(df, " OR ".join(f"{_q(c)} IS NULL" for c in check.columns))
        return Outcome(f"not_null({', '.join(check.columns)})", bad == 0, f"{bad} null rows", "0 null rows")
    if isinstance(check, UniqueCheck):
        cols = ", ".join(_q(c) for c in check.columns)
        dupes = df.groupBy(*check.columns).count().filter("count > 1").count()
        return Outcome(f"unique({cols.replace('`', '')})", dupes == 0, f"{dupes} duplicated keys", "0")
    if isinstance(check, AcceptedValuesCheck):
        values = ", ".join(_literal(v) for v in check.values)
        bad = _count_where(df, f"{_q(check.column)} IS NOT NULL AND {_q(check.column)} NOT IN ({values})")
        return Outcome(f"accepted_values({check.column})", bad == 0, f"{bad} rows outside", check.values)
    if isinstance(check, RowCountCheck):
        rows = df.count()
        ok = (check.min is None or rows >= check.min) and (check.max is None or rows <= check.max)
        return Outcome("row_count", ok, rows, {"min": check.min, "max": check.max})
    if isinstance(check, ExpressionCheck):
        bad = _count_where(df, f"NOT coalesce(({check.expression}), false)")
        return Outcome(f"expression({check.expression})", bad == 0, f"{bad} rows violate", "0")
    if isinstance(check, FreshnessCheck):
        return _freshness(df, check)
    raise TypeError(f"unknown check {check!r}")


def _column_type(df: DataFrame, column: str) -> str | None:
    """The column's Spark SQL type name (`date`, `timestamp`, `string`...), matched case-insensitively."""
    for field in df.schema.fields:
        if field.name.lower() == column.lower():
            return field.dataType.simpleString()
    return None


def _as_utc(newest: date | datetime, type_name: str) -> datetime:
    """The instant a collected max(column) stands for, as an aware UTC datetime.

    DATE: the END of that day in UTC (the next midnight), so a date of today is never stale.
    TIMESTAMP: PySpark hands back a naive datetime in this process's local time; it is read as local
    time, as `cursor_values.normalize` does. TIMESTAMP_NTZ: a wall-clock value with no zone, read in the
    Spark session time zone, which PipeZone pins to UTC (spark/session.py).
    """
    if isinstance(newest, datetime):
        if type_name == "timestamp_ntz":
            return newest.replace(tzinfo=UTC)
        return newest.astimezone(UTC)  # aware values convert; naive = local time of this process
    return datetime.combine(newest + timedelta(days=1), time.min, tzinfo=UTC)


def _freshness(df: DataFrame, check: FreshnessCheck) -> Outcome:
    """Age of the newest value of a DATE or TIMESTAMP column against `max_age`; other types fail.

    The age is never negative: today's date (its day not over yet) or a future timestamp is 0 old.
    """
    name, expected = f"freshness({check.column})", f"<= {check.max_age}"
    type_name = _column_type(df, check.column)
    if type_name not in _TIME_TYPES:
        found = "not found" if type_name is None else f"is {type_name}"
        return Outcome(name, False, f"column {check.column} {found}: not a date or timestamp", expected)
    newest = df.selectExpr(f"max({_q(check.column)}) AS m").collect()[0]["m"]
    if newest is None:
        return Outcome(name, False, "no rows", expected)
    age = max(datetime.now(UTC) - _as_utc(newest, type_name), timedelta(0))  # not over yet: age 0
    return Outcome(name, age <= check.max_age, str(age), expected)


def _table_path(ctx: StepContext, check: Any) -> str:
    lake = ctx.runtime.lake
    if check.layer == "gold":
        gold = ctx.flow.layers.gold
        name = check.table or (gold[0].name if len(gold) == 1 else None)
        if name is None:
            raise ValueError(f"check {check.check} on gold needs 'table' (this flow has {len(gold)} gold tables)")
        return lake.gold(name)
    return lake.bronze(ctx.flow.name) if check.layer == "bronze" else lake.silver(ctx.flow.name)


def _checks_hash(ctx: StepContext) -> str:
    checks = [check.model_dump(mode="json") for check in ctx.flow.quality]
    return hashlib.sha256(json.dumps(checks, sort_keys=True).encode()).hexdigest()[:16]


def _reusable(ctx: StepContext, seen: dict[str, Any]) -> list[QualityResult] | None:
    """The outcomes of the last successful quality run when it checked these very table versions with these
    very checks: the data is the same, so are the outcomes (freshness, which depends on the clock, aside)."""
    last = ctx.state.last_success(ctx.flow.name, "quality")
    if last is None or last.details.get("seen") != seen:
        return None
    outcomes = ctx.state.quality_results(last.run_id)
    return outcomes if len(outcomes) == len(ctx.flow.quality) else None


def _table(ctx: StepContext, tables: dict[str, DataFrame], path: str, version: int | None, readers: int) -> DataFrame:
    if path not in tables:
        if version is None:  # no commit: no table
            raise QualityError(f"table {path} does not exist yet: run the flow's other steps first")
        live = dt.read_live(ctx.spark, path)
        # cached only when several checks read it: caching a 10M-row table for one pass costs a second pass
        tables[path] = live.cache() if readers > 1 else live
    return tables[path]


def run_quality(ctx: StepContext) -> StepResult:
    failures: list[str] = []
    results = []
    tables: dict[str, DataFrame] = {}
    paths = [_table_path(ctx, check) for check in ctx.flow.quality]
    versions = {path: (dt.last_commit(ctx.spark, path) or {}).get("version") for path in sorted(set(paths))}
    seen = {"checks": _checks_hash(ctx), "versions": versions}
    previous = _reusable(ctx, seen) if None not in versions.values() else None
    fresh = [previous is None or isinstance(check, FreshnessCheck) for check in ctx.flow.quality]
    for i, (check, path) in enumerate(zip(ctx.flow.quality, paths, strict=True)):
        if not fresh[i]:
            assert previous is not None
            reused = previous[i]
            name, status, observed, expected = reused.check_name, reused.status, reused.observed, reused.expected
        else:
            readers = sum(f and p == path for f, p in zip(fresh, paths, strict=True))
            outcome = evaluate(_table(ctx, tables, path, versions[path], readers), check)
            name, observed, expected = outcome.name, outcome.observed, outcome.expected
            status = "passed" if outcome.passed else ("failed" if check.severity == "error" else "warned")
        ctx.state.record_quality_check(
            ctx.run_id, ctx.flow.name, check.layer, name, status, observed, expected, check.severity
        )
        results.append({"check": name, "layer": check.layer, "status": status, "observed": str(observed)})
        if status == "failed":
            failures.append(f"{check.layer} {name}: {observed}")
    for df in tables.values():
        df.unpersist()
    if failures:
        raise QualityError("quality checks failed: " + "; ".join(failures))
    warned = sum(r["status"] == "warned" for r in results)
    note = f"{len(results)} checks, {warned} warned" if warned else f"{len(results)} checks passed"
    if previous is not None:
        note += " (tables unchanged since the last check: outcomes reused)"
    return StepResult(note=note, details={"checks": results, "seen": seen, "reused": previous is not None})
