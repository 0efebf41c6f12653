"""arrow_merge on tables Spark wrote (deletion vectors, change data feed): delta-rs's MERGE of a small
batch leaves the table, and its change feed, exactly as Spark's MERGE of the same batch (differential, on
two copies of one table), commits once per writer version, and refuses what it cannot write exactly
before committing anything."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from pipezone.core.lake import arrow_merge
from pipezone.core.lake import delta_merge as dm
from pipezone.core.lake import delta_tables as dt
from pipezone.core.lake.arrow_tables import ArrowUnsupported

pytestmark = pytest.mark.spark

APP = "pipezone:test:silver"
T0, T1, T2 = (datetime(2024, 1, d, 10, 0, tzinfo=UTC) for d in (1, 2, 3))
SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("v", pa.string()),
        ("updated_at", pa.timestamp("us", tz="UTC")),
        (dt.BATCH, pa.int64()),
        (dt.RUN_ID, pa.string()),
        (dt.DELETED, pa.bool_()),
        (dt.DELETED_AT, pa.timestamp("us", tz="UTC")),
    ]
)


def events(batch: int, live: list[tuple[int, str, datetime | None]], tombstones: tuple[int, ...] = ()) -> pa.Table:
    """One event per key: live rows (id, v, updated_at) and tombstones of `batch`."""
    rows = [(i, v, at, batch, f"run-{batch}", False, None) for i, v, at in live]
    rows += [(i, None, None, batch, f"run-{batch}", True, T2) for i in tombstones]
    return pa.Table.from_pylist([dict(zip(SCHEMA.names, r, strict=True)) for r in rows], schema=SCHEMA)


def spark_merge(spark: Any, path: str, batch: pa.Table, version: int) -> dt.CommitInfo:
    df = spark.createDataFrame(batch)
    return dm.merge(
        df, path, keys=["id"], cursor="updated_at", app_id=APP, version=version, metadata={"batch": version}
    )


def arrow(path: str, batch: pa.Table, version: int, most: int = 10**6) -> dt.CommitInfo:
    common = {"app_id": APP, "version": version, "metadata": {"batch": version}}
    return arrow_merge.merge(batch, path, {}, keys=["id"], cursor="updated_at", most=most, **common)


def rows(spark: Any, path: str) -> list[tuple[Any, ...]]:
    return sorted((tuple(r) for r in spark.read.format("delta").load(path).collect()), key=repr)


def changes(spark: Any, path: str, version: int) -> list[tuple[Any, ...]]:
    feed = spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", version).load(path)
    return sorted((tuple(r) for r in feed.drop("_commit_version", "_commit_timestamp").collect()), key=repr)


@pytest.fixture
def loaded(spark: Any, tmp_path: Path) -> str:
    """A merged table Spark created (1,000 keys) and then merged into: ids 0-9 updated (deletion vectors
    on their old rows), ids 10-14 flagged deleted."""
    path = str(tmp_path / "spark")
    spark_merge(spark, path, events(1, [(i, f"a{i}", T0) for i in range(1000)]), 1)
    spark_merge(spark, path, events(2, [(i, f"b{i}", T1) for i in range(10)], tombstones=tuple(range(10, 15))), 2)
    return path


BATCH_3 = events(
    3,
    [
        (0, "newer", T2),  # a newer cursor: updated
        (1, "older", T0),  # an older cursor: left alone
        (2, "tie", T1),  # the same cursor, a newer batch: updated
        (3, "no cursor", None),  # a NULL cursor against a value: left alone
        (10, "back", T0),  # deleted in batch 2, re-inserted (an older cursor): live again
        (5000, "new", T2),  # a new key: inserted
    ],
    tombstones=(11, 20, 5001),  # already deleted: unchanged; live: flagged; unknown: nothing inserted
)


def test_a_small_merge_writes_what_spark_writes(spark: Any, loaded: str, tmp_path: Path) -> None:
    twin = str(tmp_path / "arrow")
    shutil.copytree(loaded, twin)
    by_spark = spark_merge(spark, loaded, BATCH_3, 3)
    by_arrow = arrow(twin, BATCH_3, 3)
    assert rows(spark, twin) == rows(spark, loaded)
    assert by_arrow.version == by_spark.version == 2
    assert changes(spark, twin, 2) == changes(spark, loaded, 2)
    assert by_arrow.rows_written == by_spark.rows_written == 5  # 0, 2, 10 updated, 5000 inserted, 20 flagged
    table = rows(spark, twin)
    assert len(table) == 1001, "a row Spark's deletion vector had replaced came back, or a tombstone was inserted"
    got = {r[0]: r for r in table}
    assert (got[0][1], got[1][1], got[2][1], got[3][1], got[5][1]) == ("newer", "b1", "tie", "b3", "b5")
    assert (got[10][5], got[11][5], got[20][5]) == (False, True, True)
    assert by_arrow.narrowed_by == "key range" and by_arrow.files["rewritten"] <= by_arrow.files["in_table"]


def test_the_same_writer_version_commits_once(spark: Any, loaded: str) -> None:
    first = arrow(loaded, BATCH_3, 3)
    again = arrow(loaded, events(3, [(0, "replayed", T2)]), 3)
    assert not first.skipped and again.skipped
    assert again.version == first.version
    assert {r[0]: r[1] for r in rows(spark, loaded)}[0] == "newer"
    history = dt.commits_with_metadata(spark, loaded)
    assert history[0]["batch"] == 3 and history[0]["version"] == first.version


def test_keys_spread_over_the_table_are_left_to_spark(spark: Any, loaded: str) -> None:
    """A range meeting more rows than allowed raises before anything is committed."""
    before = dt.last_commit(spark, loaded)["version"]
    spread = events(3, [(0, "x", T2), (999, "y", T2)])
    with pytest.raises(arrow_merge.KeysSpread, match="key range meets 10[0-9]{2} rows of the table"):
        arrow(loaded, spread, 3, most=500)
    assert dt.last_commit(spark, loaded)["version"] == before


def test_a_new_column_or_type_is_left_to_spark(spark: Any, loaded: str) -> None:
    before = dt.last_commit(spark, loaded)["version"]
    extra = BATCH_3.append_column("added", pa.array(["z"] * BATCH_3.num_rows))
    with pytest.raises(ArrowUnsupported, match="columns the table lacks: added"):
        arrow(loaded, extra, 3)
    retyped = BATCH_3.set_column(1, "v", pa.array([1] * BATCH_3.num_rows, pa.int32()))
    with pytest.raises(ArrowUnsupported, match="another type than the table's: v"):
        arrow(loaded, retyped, 3)
    assert dt.last_commit(spark, loaded)["version"] == before


def test_no_table_is_left_to_spark(tmp_path: Path) -> None:
    with pytest.raises(ArrowUnsupported, match="table"):
        arrow(str(tmp_path / "none"), BATCH_3, 1)


def test_an_append_commits_once_with_our_metadata(spark: Any, tmp_path: Path) -> None:
    path = str(tmp_path / "appended")
    dt.append(spark.createDataFrame(events(1, [(1, "a", T0)])), path, app_id=APP, version=1, metadata={"batch": 1})
    common = {"app_id": APP, "metadata": {"batch": 2}}
    first = arrow_merge.append(events(2, [(2, "b", T1)]), path, {}, version=2, **common)
    again = arrow_merge.append(events(2, [(3, "c", T1)]), path, {}, version=2, **common)
    assert (first.rows_written, first.skipped, again.skipped) == (1, False, True)
    assert first.bytes_written > 0
    assert [r[0] for r in rows(spark, path)] == [1, 2]
    assert dt.committed_batch(spark, path) == 2
    assert dt.appended_rows(dt.commits_with_metadata(spark, path)[0]) == 1
    with pytest.raises(ArrowUnsupported, match="columns the rows lack: v"):
        arrow_merge.append(events(3, [(4, "d", T1)]).drop_columns(["v"]), path, {}, version=3, **common)


def test_read_batches_reads_only_the_pending_ones(spark: Any, tmp_path: Path) -> None:
    path = str(tmp_path / "batches")
    for batch in (1, 2, 3):
        frame = spark.createDataFrame(events(batch, [(batch, f"v{batch}", T0)]))
        dt.append(frame, path, app_id=APP, version=batch, metadata={"batch": batch})
    got = arrow_merge.read_batches(path, {}, (1, 3))
    assert sorted(got[dt.BATCH].to_pylist()) == [2, 3]
    with pytest.raises(ArrowUnsupported, match="missing"):
        arrow_merge.read_batches(str(tmp_path / "missing"), {}, (0, 1))
