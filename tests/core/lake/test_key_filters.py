"""Key filters: a collected list of keys, and key ranges from the Delta log's file statistics, each a
superset of the keys a batch holds (a filter on it never drops a row the join would match)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from pipezone.core.lake import delta_merge as dm
from pipezone.core.lake import delta_tables as dt
from pipezone.core.lake import key_filters as kf

pytestmark = pytest.mark.spark

STATS = "`_pz_batch`,`k`"


def write_batches(spark: Any, path: str, batches: dict[int, list[Any]], kind: str) -> None:
    """One append per batch (a file or two each), statistics on the batch and key as the layers keep them."""
    for batch, keys in batches.items():
        df = spark.createDataFrame([(k, batch, f"row {k}") for k in keys], f"k {kind}, _pz_batch BIGINT, v STRING")
        writer = df.repartition(2).write.format("delta").mode("append")
        writer.option("delta.dataSkippingStatsColumns", STATS).save(path)


@pytest.mark.parametrize(
    ("kind", "batches"),
    [
        ("BIGINT", {1: list(range(0, 1000)), 2: [1000, 1003, 1500], 3: [7, 2000]}),
        ("DECIMAL(20,2)", {1: [Decimal("1.50"), Decimal("9.99")], 2: [Decimal("10.01"), Decimal("12.00")], 3: []}),
        ("DATE", {1: [date(2020, 1, 1), date(2021, 1, 1)], 2: [date(2026, 2, 28)], 3: [date(2026, 3, 1)]}),
    ],
)
def test_key_ranges_cover_exactly_the_pending_batches_keys(spark: Any, tmp_path: Path, kind: str, batches: Any) -> None:
    path = (tmp_path / "t").as_uri()
    write_batches(spark, path, batches, kind)
    for previous, newest in ((0, 3), (1, 2), (1, 3), (2, 3)):
        ranges = kf.key_ranges(spark, path, (previous, newest), {"key": "k"})
        held = [k for b in range(previous + 1, newest + 1) for k in batches[b]]
        assert ranges is not None and ranges.empty == (not held)
        if not held:
            continue
        assert ranges.bounds == {"key": (min(held), max(held))}, (previous, newest)
        # the filter, as Spark reads it, keeps every pending key
        rows = spark.read.format("delta").load(path).withColumnRenamed("k", "key")
        kept = {r.key for r in rows.filter(ranges.sql()).collect()}
        assert set(held) <= kept


def test_key_ranges_of_batches_without_files_keep_nothing(spark: Any, tmp_path: Path) -> None:
    path = (tmp_path / "t").as_uri()
    write_batches(spark, path, {1: [1, 2]}, "INT")
    ranges = kf.key_ranges(spark, path, (1, 2), {"k": "k"})
    assert ranges is not None and ranges.empty and ranges.sql("t.") == "false"


@pytest.mark.parametrize(
    ("kind", "keys"),
    [
        ("STRING", ["a" * 40, "b"]),  # statistics truncate long strings
        ("TIMESTAMP", [datetime(2026, 1, 1, 0, 0, 0, 999, tzinfo=UTC)]),  # statistics keep milliseconds
        ("INT", [1, None]),  # a NULL key: the null-safe join matches it, a range would not
    ],
)
def test_no_range_where_statistics_are_not_exact(spark: Any, tmp_path: Path, kind: str, keys: list[Any]) -> None:
    path = (tmp_path / "t").as_uri()
    write_batches(spark, path, {1: keys}, kind)
    assert kf.key_ranges(spark, path, (0, 1), {"k": "k"}) is None


def test_no_range_for_a_missing_column_or_table(spark: Any, tmp_path: Path) -> None:
    path = (tmp_path / "t").as_uri()
    assert kf.key_ranges(spark, path, (0, 1), {"k": "k"}) == kf.KeyRanges({}, empty=True)  # no table: no rows
    write_batches(spark, path, {1: [1]}, "INT")
    assert kf.key_ranges(spark, path, (0, 1), {"k": "other"}) is None


def test_rows_within_counts_the_rows_of_the_files_a_range_meets(spark: Any, tmp_path: Path) -> None:
    path = (tmp_path / "t").as_uri()
    df = spark.range(0, 10_000).selectExpr("id AS k", "1L AS _pz_batch", "'x' AS v")
    df.repartitionByRange(10, "k").write.format("delta").option("delta.dataSkippingStatsColumns", STATS).save(path)
    assert dt.table_exists(spark, path)
    rows = spark.read.format("delta").load(path).selectExpr("k", "input_file_name() AS f")
    first = {r.f for r in rows.filter("k BETWEEN 10 AND 20").select("f").distinct().collect()}
    assert len(first) == 1
    assert kf.KeyRanges({"k": (10, 20)}).rows_within(spark, path) == rows.filter(rows.f.isin(first)).count()
    assert kf.KeyRanges({"k": (0, 9_999)}).rows_within(spark, path) == 10_000
    assert kf.KeyRanges({"k": (20_000, 30_000)}).rows_within(spark, path) == 0
    assert kf.KeyRanges({"k": (date(2020, 1, 1), date(2020, 1, 2))}).rows_within(spark, path) is None  # types differ
    assert kf.KeyRanges({"other": (1, 2)}).rows_within(spark, path) is None  # no statistics: cannot say


def test_key_filter_keeps_the_rows_a_null_safe_key_join_can_match(spark: Any, monkeypatch: Any) -> None:
    batch = spark.createDataFrame([(1, "a"), (2, None), (1, "b")], "k1 INT, k2 STRING")
    rows = [(1, "a"), (1, "b"), (2, None), (2, "a"), (3, "a"), (None, "a")]
    table_df = spark.createDataFrame(rows, "k1 INT, k2 STRING")
    only = kf.key_filter(batch, ["k1", "k2"])
    assert only is not None
    kept = {tuple(r) for r in table_df.filter(only).collect()}
    # a superset per column of what the join matches: (2, 'a') stays, (3, *) and (NULL, *) go
    assert kept == {(1, "a"), (1, "b"), (2, "a"), (2, None)}
    monkeypatch.setattr(kf, "NARROW_KEYS", 2)
    assert kf.key_filter(batch, ["k1", "k2"]) is None  # 3 keys: too many to list, the join does it all


def test_sql_literals_read_back_as_the_same_value_and_type(spark: Any) -> None:
    values = [7, -(2**40), "it's a \\path\\ 'x'", "", Decimal("12345.6700"), date(2026, 2, 28), True]
    for value in values:
        literal = kf.sql_literal(value)
        assert literal is not None, value
        back = spark.sql(f"SELECT {literal} AS v").first()["v"]
        assert (back, type(back)) == (value, type(value)), literal
    assert kf.sql_literal(datetime(2026, 1, 1, tzinfo=UTC)) is None  # zone-dependent: no narrowing
    assert kf.sql_literal(Decimal("NaN")) is None and kf.sql_literal(1.5) is None


def test_key_filter_gives_up_on_keys_it_cannot_spell(spark: Any) -> None:
    batch = spark.createDataFrame([(datetime(2026, 1, 1, 12, tzinfo=UTC),)], "k TIMESTAMP")
    assert kf.key_filter(batch, ["k"]) is None  # the MERGE then joins the whole table, still correct
    strings = spark.createDataFrame([("o'k",), ("a\\b",)], "k STRING")
    only = kf.key_filter(strings, ["k"])
    table_df = spark.createDataFrame([("o'k",), ("a\\b",), ("ok",)], "k STRING")
    assert {r.k for r in table_df.filter(only).collect()} == {"o'k", "a\\b"}


def test_a_merge_narrowed_by_the_batch_key_range_writes_what_a_whole_table_merge_writes(
    spark: Any, tmp_path: Path
) -> None:
    """The range comes from the statistics of the table below (as silver's from bronze's), the batch
    updates keys at both ends of it, inserts new ones and leaves the rest of the table out."""
    below = (tmp_path / "below").as_uri()
    first = [(k, 1, f"v{k}") for k in range(0, 2_000)]
    second = [(0, 2, "changed"), (1_999, 2, "changed"), (2_500, 2, "new")]
    schema = "id BIGINT, _pz_batch BIGINT, v STRING"
    got = {}
    for mode in ("whole", "range"):
        path = (tmp_path / mode).as_uri()
        for batch, rows in ((1, first), (2, second)):
            df = spark.createDataFrame(rows, schema)
            if mode == "range":
                dt.append(df, below, app_id="below", version=batch, metadata={"batch": batch}, stats_on=["id"])
            within = kf.key_ranges(spark, below, (batch - 1, batch), {"id": "id"}) if mode == "range" else None
            commit = dm.merge(
                df,
                path,
                keys=["id"],
                cursor=None,
                app_id=mode,
                version=batch,
                metadata={"batch": batch},
                within=within.sql("t.") if within is not None and batch > 1 else None,
            )
        assert commit.narrowed_by == ("key range" if mode == "range" else None)
        got[mode] = sorted(tuple(r) for r in spark.read.format("delta").load(path).select("id", "v").collect())
    assert got["range"] == got["whole"]
    assert (0, "changed") in got["range"] and (2_500, "new") in got["range"] and len(got["range"]) == 2_001
