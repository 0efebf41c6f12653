"""Row-wise check counts carried from the last judged version of a table to its newest through Delta's
change data feed, instead of Great Expectations passing over every row again.

A row-wise check (not_null, accepted_values, a deterministic expression) counts each row on its own, so
its unexpected count after a few commits is the count before them plus the changed rows' net count
(`change_feed.net_counts`: new images +1, old images -1); row_count is the live rows' count carried the
same way. On a 10M-row table with 1,000 changed rows that reads the commits' change files, not the table.

What it carries (`Tally`): per table, the version judged, its live rows, each expectation's unexpected
count, and the table's columns (a changed column means judging again). The quality step stores one with
every run and uses a carried one only when it is exact and all passes: otherwise GX judges the table whole
(key samples, Data Docs of the failure). Not carried (GX again): freshness, unique and sql checks (they
depend on the clock or on other rows), expressions that call the clock or randomness or hold a query, and
any commit but an append, MERGE, UPDATE, DELETE or a commit that changes no data (an overwrite, a restore:
the feed would be the whole table).

Who counts: Arrow, in the step's own process, when delta-rs reads the range's feed exactly and every
wanted condition has an exact Arrow form (not_null, plain accepted_values: lake/arrow_feed.py,
quality/arrow_conditions.py); no Spark session is opened then. Otherwise Spark reads the feed and counts
the conditions' SQL.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import sqlglot
from sqlglot import expressions as exp

from pipezone.core.lake import arrow_feed, change_feed
from pipezone.core.lake import delta_tables as dt
from pipezone.core.quality import arrow_conditions
from pipezone.core.quality.expectations import Expectation
from pipezone.core.spec.quality import (
    AcceptedValuesCheck,
    ExpressionCheck,
    NotNullCheck,
    QualityCheck,
    RowCountCheck,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.types import StructType

# Commits whose feed is the rows they changed (an overwrite's or a restore's would be the whole table).
FEED_OPERATIONS = frozenset(
    {"MERGE", "UPDATE", "DELETE", "OPTIMIZE", "SET TBLPROPERTIES", "VACUUM START", "VACUUM END", "WRITE"}
)
MAX_COMMITS = 200  # more commits since the last judgement than this: judge again
HISTORY_SLACK = 20  # commits newer than the judged version that the history read may also meet
# Functions whose value is not the row's own: a row's verdict could change with no commit.
VOLATILE = frozenset(
    {
        "current_date",
        "current_timestamp",
        "current_time",
        "current_timezone",
        "curdate",
        "now",
        "localtimestamp",
        "unix_timestamp",
        "rand",
        "randn",
        "random",
        "uniform",
        "randstr",
        "uuid",
        "shuffle",
        "monotonically_increasing_id",
        "spark_partition_id",
        "input_file_name",
        "input_file_block_start",
        "input_file_block_length",
        "current_user",
        "user",
        "session_user",
        "current_database",
        "current_schema",
        "current_catalog",
        "reflect",
        "java_method",
        "try_reflect",
    }
)


@dataclass(frozen=True)
class Tally:
    """What a quality run counted on one table: kept in the run's details, carried by the next run."""

    version: int
    rows: int
    unexpected: dict[str, int]  # by Expectation.key
    columns: str  # fingerprint of the table's columns and types

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> Tally | None:
        try:
            return cls(int(data["version"]), int(data["rows"]), dict(data["unexpected"]), str(data["columns"]))
        except (KeyError, TypeError, ValueError):
            return None


def columns_key(schema: StructType) -> str:
    """A short fingerprint of a table's columns and their types (the change feed's own columns left out)."""
    return fields_key([(f.name, f.dataType.simpleString()) for f in schema.fields])


def fields_key(fields: list[tuple[str, str]]) -> str:
    """`columns_key` of (name, Spark type name) pairs: the same fingerprint from delta-rs's schema."""
    kept = [(name, kind) for name, kind in fields if name not in change_feed.FEED_COLUMNS]
    return hashlib.sha256(json.dumps(kept).encode()).hexdigest()[:16]


def deterministic(expression: str) -> bool:
    """Whether a check's SQL expression depends on nothing but the row: no clock, randomness or query. An
    expression sqlglot cannot parse is taken as not (GX judges it every run)."""
    try:
        tree = sqlglot.parse_one(expression, read="spark")
    except sqlglot.errors.ParseError:
        return False
    for node in tree.walk():
        if isinstance(node, exp.Select | exp.Subquery):
            return False
        if isinstance(node, exp.Func):
            name = node.name if isinstance(node, exp.Anonymous) else node.sql_name()
            if name.lower() in VOLATILE:
                return False
    return True


def carriable(check: QualityCheck) -> bool:
    """Whether a check's outcome can be carried through the change feed (module docstring)."""
    if isinstance(check, ExpressionCheck):
        return deterministic(check.expression)
    return isinstance(check, NotNullCheck | AcceptedValuesCheck | RowCountCheck)


def countable(expectation: Expectation) -> bool:
    """Whether an expectation's outcome can be carried: a carriable check's row-wise count or row count."""
    return carriable(expectation.check) and (expectation.row_level or isinstance(expectation.check, RowCountCheck))


def tally(
    version: int, rows: int, judged: list[Expectation], counts: dict[str, int | None], schema: StructType
) -> Tally | None:
    """The tally of a whole-table judgement (None when a row-wise count is missing: GX failed on it)."""
    unexpected = {e.key: counts.get(e.key) for e in judged if e.row_level}
    if any(count is None for count in unexpected.values()):
        return None
    return Tally(version, rows, {k: int(v) for k, v in unexpected.items() if v is not None}, columns_key(schema))


def carry(
    spark: Callable[[], SparkSession],
    path: str,
    options: dict[str, str],
    before: Tally,
    version: int,
    judged: list[Expectation],
) -> Tally | None:
    """`before` carried to `version` through the feed; None when that would not be exact or cheap (see the
    module docstring): the caller judges the table whole. Counted in Arrow where it can be exactly
    (`_arrow_counts`), else by Spark: `spark` opens the session only then."""
    if not all(countable(e) for e in judged):
        return None
    wanted = {e.key: e for e in judged if e.row_level}
    if set(wanted) - set(before.unexpected) or version < before.version:
        return None
    if version == before.version:
        return before
    if version - before.version > MAX_COMMITS:
        return None
    history = dt.history_of(path, options, version - before.version + HISTORY_SLACK, spark)
    commits = [c for c in history if before.version < int(c["version"]) <= version]
    if len(commits) != version - before.version or not all(_feed_is_change(c) for c in commits):
        return None  # a commit not in the history read (many newer ones), or one whose feed is the table
    try:
        counted = _arrow_counts(path, options, (before.version + 1, version), commits, wanted)
        columns, net = counted or _spark_counts(spark(), path, (before.version + 1, version), wanted)
    except change_feed.ChangeFeedUnavailable:
        return None
    if columns != before.columns:
        return None
    unexpected = {key: before.unexpected[key] + net[key] for key in wanted}
    return Tally(version, before.rows + net[change_feed.ROWS], unexpected, before.columns)


def _arrow_counts(
    path: str, options: dict[str, str], versions: tuple[int, int], commits: list[dict[str, Any]], wanted: dict[str, Any]
) -> tuple[str, dict[str, int]] | None:
    """(columns fingerprint, net counts) of the feed read by delta-rs and counted in Arrow, or None when
    that would not be exact (lake/arrow_feed.py, quality/arrow_conditions.py): Spark counts instead."""
    if not all(c.get("operation") in arrow_feed.FEED_OPERATIONS for c in commits):  # appends: _feed_is_change
        return None
    try:
        fields, feed = arrow_feed.read_feed(path, options, *versions)
    except arrow_feed.ArrowFeedUnsupported:
        return None
    conditions = {key: arrow_conditions.failing(e, feed.schema) for key, e in wanted.items()}
    exact = {key: c for key, c in conditions.items() if c is not None}
    return None if len(exact) < len(conditions) else (fields_key(fields), arrow_feed.net_counts(feed, exact))


def _spark_counts(
    spark: SparkSession, path: str, versions: tuple[int, int], wanted: dict[str, Any]
) -> tuple[str, dict[str, int]]:
    """(columns fingerprint, net counts) of the feed as Spark reads and counts it."""
    feed = change_feed.feed_of(spark, path, *versions)
    return columns_key(feed.schema), change_feed.net_counts(feed, {k: e.failing for k, e in wanted.items()})


def _feed_is_change(commit: dict[str, Any]) -> bool:
    operation = commit.get("operation")
    if operation not in FEED_OPERATIONS:
        return False
    mode = str((commit.get("operationParameters") or {}).get("mode", "Append")).strip('"')
    return operation != "WRITE" or mode == "Append"
