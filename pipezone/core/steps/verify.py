"""Reconciliation of a flow's source with silver's live rows (`pipezone verify`), without reading the
whole source: counts and SUMs of row hashes per key range, narrowed down where they differ.

1. Silver's live rows (not `_pz_deleted`; for scd2 the current version), at one Delta version, and the
   source's typed read (the exact SELECT the extract reads) get the same derived columns
   (steps/verify_sides.py): key texts and a row hash over the canonical text of every compared column
   (steps/verify_columns.py), in the source's SQL on MySQL/MariaDB and PostgreSQL, in Spark on SQLite.
2. The key space is cut into ranges at quantiles of silver's keys (one open range for a small or empty
   silver). One query per side gives (rows, SUM of hashes) per range: a clean flow costs one source scan.
3. Each range that differs is cut again into `parts` sub-ranges (at the keys of the side holding more
   rows there), all of a level in one query, until both sides hold at most `leaf_rows` rows in it; then
   keys and row hashes of those ranges only are fetched from both sides and compared: missing (in the
   source, not in silver), extra (in silver, not in the source), different (same key, different values).

`run_verify` records the outcome in the run history as step `verify`; `verify_flow` only compares.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipezone.core.lake import delta_tables as dt
from pipezone.core.sources.contract import ReadPlan
from pipezone.core.sources.jdbc.source import JdbcSource
from pipezone.core.spark.errors import summarize_error
from pipezone.core.spec.flow import FlowSpec
from pipezone.core.steps.context import StepContext
from pipezone.core.steps.runtime import Runtime
from pipezone.core.steps.verify_columns import (
    ColumnPlan,
    NotVerifiable,
    plan_columns,
    sort_key,
    spark_hashable,
)
from pipezone.core.steps.verify_sides import KeyRange, Side, Tally, frame_side, quantile_bounds, sql_side

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

VERIFY_STEP = "verify"
STATE_STATUS = {"clean": "success", "different": "failed", "error": "failed", "not_verifiable": "skipped"}


class VerifyError(Exception):
    """The comparison cannot run (no silver table yet): one line, reported as an error."""


@dataclass(frozen=True)
class VerifyLimits:
    """How the narrowing proceeds: `parts` ranges per cut, keys listed once both sides hold at most
    `leaf_rows` rows in a range, at most `max_depth` cuts below the first, at most `max_fetch_rows` keys
    fetched per side in all, at most `ranges_per_query` ranges per aggregate query."""

    parts: int = 16
    leaf_rows: int = 2000
    max_depth: int = 4
    max_fetch_rows: int = 100_000
    ranges_per_query: int = 256
    examples: int = 5


@dataclass
class VerifyReport:
    """What verify found for one flow. `status`: clean, different, not_verifiable (the flow's design rules
    a comparison out: `message` says why), nothing (no source or no silver layer), error (`message`)."""

    flow: str
    status: str = "clean"
    message: str = ""
    source_rows: int = 0
    silver_rows: int = 0
    missing: list[str] = field(default_factory=list)  # keys in the source, not in silver (sorted)
    extra: list[str] = field(default_factory=list)  # keys in silver, not in the source
    different: list[str] = field(default_factory=list)  # keys in both, with different values
    duplicated: dict[str, list[str]] = field(default_factory=dict)  # side -> keys held by more than one row
    columns: dict[str, list[tuple[str, Any, Any]]] = field(default_factory=dict)  # key -> (column, source, silver)
    unresolved: list[tuple[str, int, int]] = field(default_factory=list)  # (range, source rows, silver rows)
    hashed: list[str] = field(default_factory=list)  # silver columns compared by value
    not_compared: list[str] = field(default_factory=list)  # "column (why)": compared by key presence only
    ranges: int = 0  # ranges of the first cut
    compared_ranges: int = 0  # ranges compared in all
    narrowed: int = 0  # ranges cut again
    fetched_rows: int = 0  # keys fetched from the source
    source_queries: int = 0
    hashed_in: str = ""  # where the source's rows were hashed: "source SQL" or "Spark"
    silver_version: int | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status in ("clean", "nothing")

    def summary(self) -> str:
        """One line: the outcome and what it cost."""
        if self.status in ("nothing", "not_verifiable", "error"):
            label = {"nothing": "nothing to verify", "not_verifiable": "not verifiable", "error": "error"}
            return f"{self.flow}: {label[self.status]}: {self.message}"
        asked = (
            "source read and hashed by Spark"
            if self.hashed_in == "Spark"
            else _count(self.source_queries, "source query", "source queries")
        )
        cost = f"{_count(self.compared_ranges, 'range')}, {asked}, {_count(self.fetched_rows, 'key')} fetched"
        if self.status == "clean":
            return f"{self.flow}: ok: {self.source_rows} rows, source = silver ({cost}) in {self.seconds:.1f} s"
        found = [f"{len(self.missing)} missing", f"{len(self.extra)} extra", f"{len(self.different)} different"]
        found += [f"{len(keys)} duplicated in {side}" for side, keys in self.duplicated.items()]
        if self.unresolved:
            found.append(f"{len(self.unresolved)} ranges too different to list")
        rows = f"source {self.source_rows} rows, silver {self.silver_rows}"
        return f"{self.flow}: DIFFERENT: {', '.join(found)}; {rows} ({cost}) in {self.seconds:.1f} s"

    def state_details(self, examples: int = VerifyLimits.examples) -> dict[str, Any]:
        """What the run history keeps: counts, a few keys of each kind, what was compared and how."""
        return {
            "status": self.status,
            "note": self.message or self.summary(),
            "source_rows": self.source_rows,
            "silver_rows": self.silver_rows,
            "silver_version": self.silver_version,
            "missing": len(self.missing),
            "extra": len(self.extra),
            "different": len(self.different),
            "duplicated": {side: len(keys) for side, keys in self.duplicated.items()},
            "examples": {"missing": self.missing[:examples], "extra": self.extra[:examples]}
            | {"different": self.different[:examples]},
            "unresolved_ranges": [list(u) for u in self.unresolved[:examples]],
            "ranges": self.ranges,
            "compared_ranges": self.compared_ranges,
            "narrowed": self.narrowed,
            "fetched_rows": self.fetched_rows,
            "source_queries": self.source_queries,
            "hashed_in": self.hashed_in,
            "not_compared": self.not_compared,
            "duration_s": round(self.seconds, 3),
        }


def nothing_to_verify(flow: FlowSpec) -> str | None:
    """Why the flow has no silver table fed by a source, or None."""
    if flow.source is None:
        return "no source (a gold-only flow)"
    if not flow.layers.silver.enabled:
        return "its silver layer is disabled"
    return None


def spec_problem(flow: FlowSpec) -> str | None:
    """Why the flow's design rules a comparison out (before anything is read), or None."""
    assert flow.source is not None
    if not flow.source.primary_key:
        return "no source.primary_key: verify matches silver's rows to the source's by key"
    mode = flow.layers.silver.write_mode
    if mode == "append":
        return "silver write_mode append keeps every version of a row, not the source's current rows"
    if mode == "overwrite" and flow.source.incremental is not None:
        return "silver write_mode overwrite with an incremental source holds only the latest window"
    return None


def verify_flow(
    runtime: Runtime, spark: SparkSession, flow: FlowSpec, limits: VerifyLimits | None = None
) -> VerifyReport:
    """Compare the flow's source with silver's live rows; never raises (an error is a report with its line)."""
    report = VerifyReport(flow.name)
    started = time.perf_counter()
    reason = nothing_to_verify(flow)
    if reason is not None:
        report.status, report.message = "nothing", reason
        return report
    try:
        problem = spec_problem(flow)
        if problem is not None:
            raise NotVerifiable(problem)
        _compare(runtime, spark, flow, limits or VerifyLimits(), report)
    except NotVerifiable as err:
        report.status, report.message = "not_verifiable", str(err)
    except Exception as err:  # noqa: BLE001 - one line naming the flow's source or the lake, never a traceback
        report.status, report.message = "error", summarize_error(err)
    report.seconds = time.perf_counter() - started
    return report


def run_verify(ctx: StepContext, limits: VerifyLimits | None = None) -> VerifyReport:
    """verify_flow for the context's flow, recorded in the run history as step `verify` (rows in: the
    source's, rows out: silver's; differences fail the step with the summary as its error)."""
    if nothing_to_verify(ctx.flow) is not None:
        return verify_flow(ctx.runtime, ctx.spark, ctx.flow, limits)
    log_id = ctx.state.start_step(ctx.run_id, ctx.flow.name, VERIFY_STEP)
    report = verify_flow(ctx.runtime, ctx.spark, ctx.flow, limits)
    status = STATE_STATUS[report.status]
    ctx.state.finish_step(
        log_id,
        status,
        rows_read=report.source_rows,
        rows_written=report.silver_rows,
        error=report.summary() if status == "failed" else None,
        details=report.state_details(),
    )
    return report


# ------------------------------------------------------------------ the comparison


def _compare(runtime: Runtime, spark: SparkSession, flow: FlowSpec, limits: VerifyLimits, report: VerifyReport) -> None:
    source = runtime.source(flow)
    if not isinstance(source, JdbcSource):
        raise NotVerifiable(f"verify reads JDBC sources only, not {source.connection.type}")
    dialect = source.dialect
    in_spark = dialect.verify_reads_rows()
    if not in_spark and dialect.row_hash_sql(["''"]) is None:
        raise NotVerifiable(f"verify is not available for {dialect.name} sources (no row hash in its SQL yet)")
    silver = _live_silver(runtime, spark, flow, report)
    silver_types = {f.name: f.dataType.simpleString() for f in silver.schema.fields if not f.name.startswith("_pz_")}
    if in_spark:
        source_df = source.read(spark, ReadPlan.full())
        columns, typed_dbtable = list(source_df.columns), ""
    else:
        typed = source.typed(spark, source.dbtable(ReadPlan.full()))
        columns, typed_dbtable = list(typed.native_types), typed.dbtable

    def hashable(spark_type: str) -> bool:
        sql_ok = in_spark or dialect.canonical_text("x", spark_type) is not None
        return sql_ok and spark_hashable(spark_type)

    assert flow.source is not None
    plan = plan_columns(flow.source.primary_key, columns, flow.layers.silver.transforms, silver_types, hashable)
    report.hashed = [c.silver for c in plan.hashed]
    report.not_compared = plan.skipped
    report.hashed_in = "Spark" if in_spark else "source SQL"
    lake = frame_side("silver", silver, plan, lambda c: c.silver)
    origin: Side = (
        frame_side("source", source_df, plan, lambda c: c.source)
        if in_spark
        else sql_side(source, spark, typed_dbtable, plan)
    )
    try:
        _narrow(origin, lake, plan, limits, report)
    finally:
        lake.close()
        origin.close()
    report.source_queries = origin.queries
    report.fetched_rows = origin.fetched
    for side in (origin, lake):
        if side.duplicates:
            report.duplicated[side.label] = [_key_text(k) for k in sorted(side.duplicates, key=_sorter(plan))]
    differs = report.missing or report.extra or report.different or report.unresolved or report.duplicated
    report.status = "different" if differs else "clean"


def _live_silver(runtime: Runtime, spark: SparkSession, flow: FlowSpec, report: VerifyReport) -> DataFrame:
    """Silver's live rows at its newest version (pinned: a write during verify does not move it)."""
    path = runtime.lake.silver(flow.name)
    commit = dt.last_commit(spark, path)
    if commit is None:
        raise VerifyError(f"silver has no table yet at {path}: run the flow first")
    report.silver_version = int(commit["version"])
    df = spark.read.format("delta").option("versionAsOf", report.silver_version).load(path)
    condition = dt.live_condition(df.columns)
    return df.filter(condition) if condition else df


def _first_cut(lake: Side, plan: ColumnPlan, limits: VerifyLimits) -> list[KeyRange]:
    """The first ranges: over the key hash, equal parts; over the keys, at silver's quantiles (the first
    open below and the last open above, so source keys outside silver's span fall in them)."""
    whole = KeyRange(None, None)
    if plan.ordered:
        rows = lake.aggregate([whole])[0][0]
        if rows <= limits.leaf_rows:
            return [whole]
        ranges = whole.split(quantile_bounds(lake.sample([(whole, rows)], limits.parts)[0], limits.parts))
    else:
        ranges = whole.hash_split(limits.parts)
    return [KeyRange(r.lo, r.hi, 0) for r in ranges]


def _tallies(side: Side, ranges: list[KeyRange], limits: VerifyLimits) -> list[Tally]:
    step = limits.ranges_per_query
    return [t for i in range(0, len(ranges), step) for t in side.aggregate(ranges[i : i + step])]


def _narrow(origin: Side, lake: Side, plan: ColumnPlan, limits: VerifyLimits, report: VerifyReport) -> None:
    """Compare range by range, cutting the ones that differ until they are small enough to list."""
    pending = _first_cut(lake, plan, limits)
    report.ranges = len(pending)
    leaves: list[KeyRange] = []
    budget = limits.max_fetch_rows
    while pending:
        source_tallies, lake_tallies = _tallies(origin, pending, limits), _tallies(lake, pending, limits)
        if not report.compared_ranges:
            report.source_rows = sum(t[0] for t in source_tallies)
            report.silver_rows = sum(t[0] for t in lake_tallies)
        report.compared_ranges += len(pending)
        differing = [(r, a, b) for r, a, b in zip(pending, source_tallies, lake_tallies, strict=True) if a != b]
        cuts = _cuts(origin, lake, differing, plan, limits)
        pending = []
        for rng, ours, theirs in differing:
            rows = max(ours[0], theirs[0])
            subs = cuts.get(rng, [])
            if len(subs) > 1:
                report.narrowed += 1
                pending += subs
            elif rows <= budget:
                budget -= rows
                leaves.append(rng)
            else:
                report.unresolved.append((rng.describe(not plan.ordered), ours[0], theirs[0]))
    if leaves:
        _list_keys(origin, lake, leaves, plan, limits, report)


def _cuts(
    origin: Side, lake: Side, differing: list[tuple[KeyRange, Tally, Tally]], plan: ColumnPlan, limits: VerifyLimits
) -> dict[KeyRange, list[KeyRange]]:
    """Sub-ranges of each differing range too big to list and not yet as deep as allowed: over the key hash
    equal parts, over the keys at a sample of the keys of the side holding more rows there (silver's keys
    cannot cut a range where the source holds many rows silver lacks); one sampling pass per side."""
    big = [
        (r, a[0], b[0]) for r, a, b in differing if max(a[0], b[0]) > limits.leaf_rows and r.depth < limits.max_depth
    ]
    if not plan.ordered:
        return {rng: rng.hash_split(limits.parts) for rng, _, _ in big}
    cuts: dict[KeyRange, list[KeyRange]] = {}
    for side, wanted in ((origin, [(r, a) for r, a, b in big if a > b]), (lake, [(r, b) for r, a, b in big if a <= b])):
        if wanted:
            for (rng, _), keys in zip(wanted, side.sample(wanted, limits.parts), strict=True):
                cuts[rng] = rng.split(quantile_bounds(keys, limits.parts))
    return cuts


def _list_keys(
    origin: Side, lake: Side, leaves: list[KeyRange], plan: ColumnPlan, limits: VerifyLimits, report: VerifyReport
) -> None:
    """Keys and row hashes of the differing ranges from both sides: the keys that differ, and for a few of
    the different ones, the columns."""
    step = limits.ranges_per_query
    ours: dict[tuple[str, ...], int] = {}
    theirs: dict[tuple[str, ...], int] = {}
    where: dict[tuple[str, ...], KeyRange] = {}  # the leaf holding each key: its range keeps lookups narrow
    for i in range(0, len(leaves), step):
        chunk = leaves[i : i + step]
        for side, hashes in ((origin, ours), (lake, theirs)):
            for key, (row_hash, leaf) in side.rows(chunk).items():
                hashes[key] = row_hash
                where.setdefault(key, chunk[leaf])

    def listed(keys: set[tuple[str, ...]]) -> list[tuple[str, ...]]:
        return sorted(keys, key=_sorter(plan))

    missing, extra = listed(ours.keys() - theirs.keys()), listed(theirs.keys() - ours.keys())
    different = listed({k for k in ours.keys() & theirs.keys() if ours[k] != theirs[k]})
    report.missing, report.extra = [_key_text(k) for k in missing], [_key_text(k) for k in extra]
    report.different = [_key_text(k) for k in different]
    shown = different[: limits.examples]
    if shown:
        wanted = [(where[k], k) for k in shown]
        _column_differences(origin, lake, wanted, plan, report)


def _column_differences(
    origin: Side, lake: Side, wanted: list[tuple[KeyRange, tuple[str, ...]]], plan: ColumnPlan, report: VerifyReport
) -> None:
    ours, theirs = origin.texts(wanted), lake.texts(wanted)
    for _, key in wanted:
        a, b = ours.get(key), theirs.get(key)
        if a is None or b is None:
            continue
        report.columns[_key_text(key)] = [
            (column.silver, x, y) for column, x, y in zip(plan.hashed, a, b, strict=True) if x != y
        ]


def _sorter(plan: ColumnPlan) -> Callable[[tuple[str, ...]], tuple[Any, ...]]:
    types = plan.key_types
    return lambda key: sort_key(key, types)


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def _key_text(key: tuple[str, ...]) -> str:
    return key[0] if len(key) == 1 else "(" + ", ".join(key) + ")"
