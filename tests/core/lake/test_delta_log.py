"""delta_log (delta-rs) answers what Spark's history answers, and delta_tables falls back to Spark when it cannot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipezone.core.lake import delta_log
from pipezone.core.lake import delta_tables as dt

pytestmark = pytest.mark.spark

APP = "pipezone:test:raw"


def _write(spark: Any, path: str, batch: int, rows: int) -> None:
    df = spark.range(rows).selectExpr("id", f"CAST({batch} AS BIGINT) AS {dt.BATCH}", "CAST(id AS BOOLEAN) AS flag")
    dt.append(df, path, app_id=APP, version=batch, metadata={"step": "t", "batch": batch}, stats_on=["id", "flag"])


def _spark_history(spark: Any, path: str) -> list[dict[str, Any]]:
    from delta.tables import DeltaTable

    return [r.asDict(recursive=True) for r in DeltaTable.forPath(spark, path).history().collect()]


def test_history_matches_sparks_own(spark: Any, tmp_path: Path) -> None:
    path = tmp_path.joinpath("t").as_uri()
    _write(spark, path, 1, 5)
    _write(spark, path, 2, 3)
    native = delta_log.history(spark, path, None)
    theirs = _spark_history(spark, path)
    assert [c["version"] for c in native] == [r["version"] for r in theirs] == [1, 0]
    assert [c["userMetadata"] for c in native] == [r["userMetadata"] for r in theirs]
    assert [c["operationMetrics"]["numOutputRows"] for c in native] == ["3", "5"]
    assert all(c["timestamp"].tzinfo is not None for c in native)
    assert [c["batch"] for c in dt.commits_with_metadata(spark, path)] == [2, 1]
    assert [dt.appended_rows(c) for c in dt.commits_with_metadata(spark, path)] == [3, 5]


def test_missing_table_is_no_table_for_both_readers(spark: Any, tmp_path: Path) -> None:
    path = tmp_path.joinpath("none").as_uri()
    assert delta_log.exists(spark, path) is False
    assert dt.table_exists(spark, path) is False
    assert dt.commits_with_metadata(spark, path) == []


def test_spark_answers_when_delta_rs_cannot(spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path.joinpath("t").as_uri()
    _write(spark, path, 1, 4)
    expected = dt.commits_with_metadata(spark, path)

    def unavailable(*_args: Any) -> Any:
        raise delta_log.LogUnavailable("a table feature delta-rs does not know")

    monkeypatch.setattr(delta_log, "history", unavailable)
    monkeypatch.setattr(delta_log, "exists", unavailable)
    assert dt.table_exists(spark, path) is True
    fallback = dt.commits_with_metadata(spark, path)
    assert [(c["batch"], c["version"], dt.appended_rows(c)) for c in fallback] == [(1, 0, 4)]
    assert abs((fallback[0]["timestamp"] - expected[0]["timestamp"]).total_seconds()) < 5


def test_new_tables_keep_statistics_only_where_reads_filter(spark: Any, tmp_path: Path) -> None:
    path = tmp_path.joinpath("t").as_uri()
    _write(spark, path, 1, 5)
    detail = spark.sql(f"DESCRIBE DETAIL delta.`{path}`").collect()[0]
    # the boolean key column gets none: Delta keeps no statistics for booleans
    assert detail["properties"]["delta.dataSkippingStatsColumns"] == f"`{dt.BATCH}`,`id`"


def test_s3_paths_become_delta_rs_uris_with_fast_failing_clients() -> None:
    from pipezone.core.spark.session import S3Settings

    assert delta_log.table_uri("s3a://raw/db/t") == "s3://raw/db/t"
    assert delta_log.table_uri("file:///lake/raw/t") == "file:///lake/raw/t"
    options = delta_log.storage_options(S3Settings(endpoint="http://127.0.0.1:9000", access_key="a", secret_key="b"))
    assert options["AWS_ALLOW_HTTP"] == "true"
    assert options["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] == "false"
    assert options["max_retries"] == "2"
    assert delta_log.storage_options(None) == {}


def test_merged_tables_get_deletion_vectors_and_statistics_skip_unsupported_types() -> None:
    columns = {dt.BATCH: "bigint", "id": "int", "flag": "boolean", "blob": "binary", "at": "timestamp"}
    props = dt.table_properties(columns, ["id", "flag", "blob", "at", "gone"], merged=True)
    assert props["delta.enableDeletionVectors"] == "true"
    assert props["delta.dataSkippingStatsColumns"] == f"`{dt.BATCH}`,`id`,`at`"
    assert dt.table_properties(columns, None) == dt.TABLE_PROPERTIES
