"""A table's change data feed read by delta-rs into Arrow, and its net counts: what the quality step needs
from the few commits since its last judgement (quality/change_counts.py), with no Spark session.

Why: counting one check on 1,000 changed rows through Spark meant a session and a feed read in every
quality task; here it is one log read and the commits' change files, in the task's own process.

Spark's reader (lake/change_feed.py) refuses versions the feed does not cover; delta-rs's does not check
(on a table without the feed it hands out the added files as inserts, and drops what a rewrite removed).
So this reads a range only when the table records its feed at the range's end and every commit in it is
one whose feed is its changed rows as written (`FEED_OPERATIONS`): nothing that could have switched the
feed off (a property change) or that rewrites files without changing rows (OPTIMIZE). Anything else is
`ArrowFeedUnsupported`: the caller counts with Spark, which checks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pipezone.core.lake import delta_log
from pipezone.core.lake.change_feed import CHANGE_FEED_PROPERTY, ROWS
from pipezone.core.lake.delta_tables import DELETED, IS_CURRENT

if TYPE_CHECKING:
    import pyarrow as pa

# Commits whose change files (or, for an append, added files) are exactly their changed rows: the caller
# reads a range with delta-rs only when each of its commits is one (an append, not an overwrite).
FEED_OPERATIONS = frozenset({"MERGE", "UPDATE", "DELETE", "WRITE"})
CHANGE_TYPE = "_change_type"
_ADDED = ("insert", "update_postimage")

Condition = Callable[["pa.Table"], "pa.Array"]  # true exactly for a feed row that meets the condition


class ArrowFeedUnsupported(Exception):
    """delta-rs can't give this range's feed exactly: count it with Spark."""


def read_feed(path: str, options: dict[str, str], start: int, end: int) -> tuple[list[tuple[str, str]], pa.Table]:
    """The table's columns at `end` with their Spark type names (what a Spark schema's simpleString says),
    and the feed of versions start..end (inclusive): those columns and the change type, strings as plain
    strings. ArrowFeedUnsupported when the table does not record its feed at `end`, holds a nested column,
    or delta-rs fails."""
    import pyarrow as pa
    from deltalake import DeltaTable

    try:
        table = DeltaTable(delta_log.table_uri(path), version=end, storage_options=options)
        configuration = table.metadata().configuration
    except Exception as err:  # noqa: BLE001 - any delta-rs failure means "ask Spark"
        raise ArrowFeedUnsupported(f"delta-rs: {str(err)[:200]}") from None
    if str(configuration.get(CHANGE_FEED_PROPERTY, "")).lower() != "true":
        raise ArrowFeedUnsupported(f"the table does not record its change feed at version {end}")
    fields = delta_log.spark_fields(table)
    if fields is None:
        raise ArrowFeedUnsupported("the table holds a nested column")
    try:
        columns = [*(name for name, _ in fields), CHANGE_TYPE]
        feed = pa.table(table.load_cdf(starting_version=start, ending_version=end, columns=columns))
    except Exception as err:  # noqa: BLE001 - any delta-rs failure means "ask Spark"
        raise ArrowFeedUnsupported(f"delta-rs: {str(err)[:200]}") from None
    plain = [pa.field(f.name, pa.string()) if pa.types.is_string_view(f.type) else f for f in feed.schema]
    return fields, feed.cast(pa.schema(plain))


def live(feed: pa.Table) -> pa.Array:
    """`delta_tables.live_condition` on Arrow: not soft-deleted, the current SCD2 version."""
    import pyarrow as pa
    import pyarrow.compute as pc

    mask = pa.repeat(True, feed.num_rows)
    if DELETED in feed.column_names:
        mask = pc.and_(mask, pc.invert(pc.fill_null(feed[DELETED], False)))
    if IS_CURRENT in feed.column_names:
        mask = pc.and_(mask, pc.fill_null(feed[IS_CURRENT], True))
    return mask


def net_counts(feed: pa.Table, conditions: dict[str, Condition]) -> dict[str, int]:
    """`change_feed.net_counts` on Arrow: per condition, how many more live rows meet it after the feed's
    versions than before them (an inserted row or post-image +1, a deleted row or pre-image -1), and under
    `ROWS` how many more live rows there are."""
    import pyarrow as pa
    import pyarrow.compute as pc

    added = pc.is_in(feed[CHANGE_TYPE], value_set=pa.array(_ADDED))
    sign = pc.if_else(added, 1, -1)
    counted = live(feed)

    def net(mask: pa.Array) -> int:
        return int(pc.sum(pc.if_else(pc.and_(counted, mask), sign, 0)).as_py() or 0)

    return {ROWS: net(pa.repeat(True, feed.num_rows)), **{key: net(meets(feed)) for key, meets in conditions.items()}}
