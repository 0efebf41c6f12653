"""delta_tables and delta_merge on real Delta: idempotent appends, forward-only MERGE, replays, commit metadata."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import functions as F

from pipezone.core.lake import delta_merge as dm
from pipezone.core.lake import delta_tables as dt

pytestmark = pytest.mark.spark

SCHEMA = "id INT, v STRING, updated_at TIMESTAMP, _pz_batch BIGINT"
T1 = datetime(2024, 1, 1, 10, 0, tzinfo=UTC)
T2 = datetime(2024, 1, 2, 10, 0, tzinfo=UTC)
T3 = datetime(2024, 1, 3, 10, 0, tzinfo=UTC)
APP = "pipezone:test:silver"


def frame(spark: Any, rows: list[tuple[Any, ...]], schema: str = SCHEMA) -> Any:
    return spark.createDataFrame(rows, schema)


def meta(batch: int) -> dict[str, Any]:
    return {"run_id": f"run-{batch}", "step": "test", "batch": batch}


def table(spark: Any, path: str) -> dict[int, tuple[Any, ...]]:
    """id -> (v, _pz_batch), after asserting one row per id."""
    rows = spark.read.format("delta").load(path).select("id", "v", dt.BATCH).collect()
    assert len({r.id for r in rows}) == len(rows), "duplicate keys"
    return {r.id: (r.v, r[dt.BATCH]) for r in rows}


def merge(spark: Any, path: str, rows: list[tuple[Any, ...]], version: int, cursor: str | None = "updated_at") -> Any:
    df = frame(spark, rows)
    return dm.merge(df, path, keys=["id"], cursor=cursor, app_id=APP, version=version, metadata=meta(version))


@pytest.fixture
def path(tmp_path: Path) -> str:
    return (tmp_path / "table").as_uri()


# ---------------------------------------------------------------------------------------------- append


def test_append_is_idempotent_per_app_id_and_version(spark: Any, path: str) -> None:
    first = dt.append(frame(spark, [(1, "a", T1, 1), (2, "b", T1, 1)]), path, app_id=APP, version=1, metadata=meta(1))
    assert (first.version, first.rows_written, first.skipped) == (0, 2, False)
    assert first.bytes_written > 0

    again = dt.append(frame(spark, [(3, "c", T1, 1)]), path, app_id=APP, version=1, metadata=meta(1))
    assert (again.version, again.rows_written, again.skipped) == (0, 0, True)
    older = dt.append(frame(spark, [(3, "c", T1, 0)]), path, app_id=APP, version=0, metadata=meta(0))
    assert older.skipped and dt.last_commit(spark, path)["version"] == 0
    assert dt.row_count(spark, path) == 2

    newer = dt.append(frame(spark, [(3, "c", T2, 2)]), path, app_id=APP, version=2, metadata=meta(2))
    assert (newer.version, newer.rows_written, newer.skipped) == (1, 1, False)
    other_writer = dt.append(frame(spark, [(4, "d", T2, 1)]), path, app_id="other", version=1, metadata=meta(1))
    assert other_writer.version == 2
    assert dt.row_count(spark, path) == 4


def test_overwrite_replaces_and_is_idempotent_too(spark: Any, path: str) -> None:
    dt.append(frame(spark, [(1, "a", T1, 1), (2, "b", T1, 1)]), path, app_id=APP, version=1, metadata=meta(1))
    dt.append(frame(spark, [(9, "z", T2, 2)]), path, app_id=APP, version=2, metadata=meta(2), overwrite=True)
    assert table(spark, path) == {9: ("z", 2)}
    replay = dt.append(frame(spark, [(8, "y", T2, 2)]), path, app_id=APP, version=2, metadata=meta(2), overwrite=True)
    assert replay.skipped and table(spark, path) == {9: ("z", 2)}


def test_commits_carry_our_metadata_newest_first(spark: Any, path: str) -> None:
    assert dt.commits_with_metadata(spark, path) == []  # no table yet
    for batch in (1, 2):
        dt.append(frame(spark, [(batch, "a", T1, batch)]), path, app_id=APP, version=batch, metadata=meta(batch))
    commits = dt.commits_with_metadata(spark, path)
    assert [(c["version"], c["batch"], c["run_id"]) for c in commits] == [(1, 2, "run-2"), (0, 1, "run-1")]


def test_a_missing_table(spark: Any, path: str) -> None:
    assert not dt.table_exists(spark, path)
    assert dt.last_commit(spark, path) is None
    assert dt.row_count(spark, path) == 0


# ---------------------------------------------------------------------------------------------- merge


def test_merge_creates_the_table_then_upserts(spark: Any, path: str) -> None:
    created = merge(spark, path, [(1, "a", T1, 1), (2, "b", T1, 1)], version=1)
    assert (created.version, created.rows_written) == (0, 2)
    upsert = merge(spark, path, [(2, "b2", T2, 2), (3, "c", T2, 2)], version=2)
    assert (upsert.version, upsert.rows_written, upsert.skipped) == (1, 2, False)
    assert table(spark, path) == {1: ("a", 1), 2: ("b2", 2), 3: ("c", 2)}


def test_merge_is_forward_only(spark: Any, path: str) -> None:
    """Each key is one case of the rule; one MERGE of batch 2 over batch 1 (and 5) decides them all."""
    merge(
        spark,
        path,
        [
            (1, "newest", T2, 1),
            (2, "first", T2, 1),
            (3, "same-batch", T2, 5),
            (4, "null", None, 1),
            (5, "set", T1, 1),
            (6, "null", None, 1),
        ],
        version=1,
    )
    result = merge(
        spark,
        path,
        [
            (1, "stale", T1, 2),  # older cursor, newer batch (a late re-read): never wins
            (2, "re-read", T2, 2),  # same cursor, newer batch (the lookback window): wins
            (3, "not-newer", T2, 5),  # same cursor, batch not newer: keeps
            (4, "now set", T1, 2),  # a cursor where there was none: wins
            (5, "null again", None, 2),  # a NULL cursor never replaces a value
            (6, "null, newer batch", None, 2),  # both NULL: by batch
            (7, "new key", T1, 2),  # inserted
        ],
        version=2,
    )
    assert table(spark, path) == {
        1: ("newest", 1),
        2: ("re-read", 2),
        3: ("same-batch", 5),
        4: ("now set", 2),
        5: ("set", 1),
        6: ("null, newer batch", 2),
        7: ("new key", 2),
    }
    assert result.rows_written == 4  # 3 updated + 1 inserted


def test_without_a_cursor_the_newer_batch_wins(spark: Any, path: str) -> None:
    merge(spark, path, [(1, "b2", T1, 2), (2, "b2", T1, 2)], version=2, cursor=None)
    merge(spark, path, [(1, "b3", T1, 3), (2, "b1", T3, 1)], version=3, cursor=None)
    assert table(spark, path) == {1: ("b3", 3), 2: ("b2", 2)}


def test_replaying_the_same_batch_is_a_no_op(spark: Any, path: str) -> None:
    merge(spark, path, [(1, "a", T1, 1)], version=1)
    merge(spark, path, [(1, "b", T2, 2), (2, "new", T2, 2)], version=2)
    before = dt.last_commit(spark, path)["version"]
    # The same writer and version again, even with rows the forward-only rule would accept: Delta skips it.
    replay = merge(spark, path, [(1, "replayed", T3, 3), (3, "replayed", T3, 3)], version=2)
    assert replay.skipped and replay.rows_written == 0
    assert dt.last_commit(spark, path)["version"] == before
    assert table(spark, path) == {1: ("b", 2), 2: ("new", 2)}
    # ... and the session is left clean: a later plain write is not mistaken for a replay
    assert spark.conf.get("spark.databricks.delta.write.txnAppId", None) is None
    nxt = merge(spark, path, [(1, "c", T3, 3)], version=3)
    assert not nxt.skipped and table(spark, path)[1] == ("c", 3)
    newest = dt.commits_with_metadata(spark, path)[0]  # merge commits carry our metadata too
    assert (newest["version"], newest["batch"], newest["run_id"]) == (nxt.version, 3, "run-3")


CASES = [
    # (target cursor, incoming cursor, target batch, incoming batch, update?)
    (T1, T2, 5, 1, True),  # newer cursor wins whatever the batch
    (T2, T1, 1, 5, False),  # older cursor never wins
    (T1, T1, 1, 2, True),  # tie: newer batch wins
    (T1, T1, 2, 2, False),  # tie, same batch: nothing to do
    (T1, T1, 3, 2, False),  # tie, older batch
    (None, T1, 3, 1, True),  # a cursor where there was none
    (T1, None, 1, 3, False),  # a NULL never replaces a value
    (None, None, 1, 2, True),  # both NULL: by batch
    (None, None, 2, 2, False),
]


def test_forward_only_condition(spark: Any) -> None:
    """The condition's truth table, every case evaluated by Spark SQL in one query."""
    schema = "n INT, updated_at TIMESTAMP, _pz_batch BIGINT"
    spark.createDataFrame([(i, c[0], c[2]) for i, c in enumerate(CASES)], schema).createOrReplaceTempView("t")
    spark.createDataFrame([(i, c[1], c[3]) for i, c in enumerate(CASES)], schema).createOrReplaceTempView("s")
    condition = dm.forward_only_condition("updated_at")
    rows = spark.sql(f"SELECT s.n, coalesce({condition}, false) AS ok FROM s JOIN t ON s.n = t.n").collect()
    got = {r.n: r.ok for r in rows}
    assert got == {i: c[4] for i, c in enumerate(CASES)}, [CASES[i] for i in got if got[i] != CASES[i][4]]


def test_forward_only_condition_without_a_cursor_is_by_batch() -> None:
    assert dm.forward_only_condition(None) == "s.`_pz_batch` > t.`_pz_batch`"


def test_a_narrowed_merge_writes_what_a_whole_table_merge_writes(spark: Any, tmp_path: Path) -> None:
    first = [(1, "a", T2, 1), (2, "b", T1, 1), (None, "null key", T1, 1), (4, "d", None, 1)]
    second = [(1, "stale", T1, 2), (2, "newer", T2, 2), (None, "null key newer", T2, 2), (5, "new", T1, 2)]
    tables = []
    for narrow in (False, True):
        path = (tmp_path / f"narrow-{narrow}").as_uri()
        for version, rows in ((1, first), (2, second)):
            df = frame(spark, rows)
            dm.merge(
                df,
                path,
                keys=["id"],
                cursor="updated_at",
                app_id=APP,
                version=version,
                metadata=meta(version),
                narrow=narrow,
            )
        tables.append({tuple(r) for r in spark.read.format("delta").load(path).select("id", "v", dt.BATCH).collect()})
    assert tables[0] == tables[1]
    assert (None, "null key newer", 2) in tables[1] and (1, "a", 1) in tables[1] and (5, "new", 2) in tables[1]


def test_a_merged_table_is_laid_out_by_key_so_a_few_keys_touch_a_few_files(
    spark: Any, path: str, monkeypatch: Any
) -> None:
    """The first load is range-partitioned and sorted by the key, files of at most ROWS_PER_FILE rows; a
    narrowed MERGE of 5 neighbouring keys then rewrites or marks one or two of its files, and says so."""
    monkeypatch.setattr(dm, "ROWS_PER_FILE", 500)
    shuffled = [((i * 7919) % 10_000, f"v{i}", T1, 1) for i in range(10_000)]  # keys in no order
    first = dm.merge(
        frame(spark, shuffled), path, keys=["id"], cursor="updated_at", app_id=APP, version=1, metadata=meta(1)
    )
    files = spark.read.format("delta").load(path).inputFiles()
    assert len(files) >= 20
    by_file = spark.read.format("delta").load(path).selectExpr("input_file_name() AS f", "id").groupBy("f")
    spans = sorted((r[0], r[1]) for r in by_file.agg(F.min("id"), F.max("id")).drop("f").collect())
    assert all(a[1] < b[0] for a, b in zip(spans, spans[1:], strict=False)), "files overlap in key range"
    assert first.files is None  # an append, not a MERGE

    changed = [(k, "changed", T2, 2) for k in range(4_000, 4_005)]
    commit = dm.merge(
        frame(spark, changed),
        path,
        keys=["id"],
        cursor="updated_at",
        app_id=APP,
        version=2,
        metadata=meta(2),
        narrow=True,
    )
    assert commit.files is not None and commit.files["in_table"] == len(files)
    assert commit.files["rewritten"] + commit.files["marked"] <= 2, commit.files
    assert table(spark, path)[4_002] == ("changed", 2)

    # The same keys again: still a file or two, each counted once (with deletion vectors Delta reports a
    # re-marked file under both "added" and "updated"; merge_files counts it once).
    again = [(k, "again", T3, 3) for k in range(4_000, 4_005)]
    commit_again = dm.merge(
        frame(spark, again),
        path,
        keys=["id"],
        cursor="updated_at",
        app_id=APP,
        version=3,
        metadata=meta(3),
        narrow=True,
    )
    assert commit_again.files is not None
    assert 1 <= commit_again.files["rewritten"] + commit_again.files["marked"] <= 2, commit_again.files
    assert table(spark, path)[4_002] == ("again", 3)


# ---------------------------------------------------------------------------------------------- scd2

EVENTS = "id INT, v STRING, _pz_valid_from TIMESTAMP, _pz_deleted BOOLEAN, _pz_batch BIGINT"


def scd2(spark: Any, path: str, rows: list[tuple[Any, ...]], version: int) -> None:
    df = frame(spark, rows, EVENTS)
    dm.scd2(df, path, keys=["id"], app_id=APP, version=version, metadata=meta(version))


def history(spark: Any, path: str) -> list[tuple[Any, ...]]:
    """(id, v, from, to, current, deleted) in order of start."""
    rows = spark.read.format("delta").load(path).collect()
    fields = ("id", "v", dt.VALID_FROM, dt.VALID_TO, dt.IS_CURRENT, dt.DELETED)
    return sorted((tuple(r[f] for f in fields) for r in rows), key=lambda t: (t[0], t[2], t[3] is None))


def test_scd2_a_key_reinserted_with_an_older_cursor_starts_after_its_delete(spark: Any, path: str) -> None:
    """The tombstone is stamped when the delete is seen (T3); the re-inserted row's cursor (T2) is older.
    Its version starts where the deleted one ended, never inside it, in a later batch or the same one."""
    naive = [t.replace(tzinfo=None) for t in (T1, T2, T3)]
    t1, t2, t3 = naive
    scd2(spark, path, [(1, "a", t1, False, 1), (2, "b", t1, False, 1)], version=1)
    scd2(spark, path, [(1, None, t3, True, 2)], version=2)
    scd2(spark, path, [(1, "again", t2, False, 3), (2, None, t3, True, 3), (2, "back", t2, False, 4)], version=3)
    assert history(spark, path) == [
        (1, "a", t1, t3, False, True),
        (1, "again", t3, None, True, False),
        (2, "b", t1, t3, False, True),
        (2, "back", t3, None, True, False),
    ]
