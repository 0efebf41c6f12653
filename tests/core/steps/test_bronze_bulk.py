"""Bronze's bulk path (Arrow + delta-rs, hash by `lake/row_hash.py`) must create the bronze table Spark would have
created: same schema, properties, rows and row hashes, for each write mode that takes it; the shared demo
run (full load then incremental) goes through it, so later Spark runs find its hashes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipezone.core.lake import delta_merge as dm
from pipezone.core.lake import delta_tables as dt
from pipezone.core.lake.arrow_tables import ArrowUnsupported
from pipezone.core.steps import bronze_bulk

pytestmark = pytest.mark.spark

FLOW = "retail_customers"
RUN_ID = "bulk-run"
# differ between two projects by when they ran, not by how bronze was written
TIMES = (dt.EXTRACTED_AT, dt.LOADED_AT)


def _project(new_project: Any, name: str, mode: str, partition_by: list[str] | None = None) -> Any:
    """A scratch project whose flow writes bronze in `mode`."""
    project = new_project(name)
    path = project.root / "metadata" / "flows" / f"{FLOW}.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["layers"]["bronze"] = {"write_mode": mode, **({"partition_by": partition_by} if partition_by else {})}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    project.reload()
    return project


def _load(project: Any) -> dict[str, Any]:
    report = project.run([FLOW], RUN_ID, steps=["extract", "bronze"])
    assert report.ok, [o.line for o in report.outcomes]
    return project.logs(RUN_ID, FLOW)["bronze"].details


def _table(project: Any) -> tuple[list[tuple[str, str]], dict[str, Any], list[tuple]]:
    df = project.read("bronze", FLOW)
    schema = [(f.name, f.dataType.simpleString()) for f in df.schema.fields]
    detail = project.spark.sql(f"DESCRIBE DETAIL delta.`{project.path('bronze', FLOW)}`").first()
    layout = {"properties": dict(detail["properties"]), "partitions": list(detail["partitionColumns"])}
    rows = sorted((tuple(r) for r in df.drop(*TIMES).collect()), key=repr)  # NULLs sort too
    return schema, layout, rows


def _first_commit(project: Any) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """Version 0's transaction ids (a retry must be a no-op whoever wrote it) and our commit metadata."""
    log = Path(project.path("bronze", FLOW).removeprefix("file:")) / "_delta_log" / f"{0:020d}.json"
    actions = [json.loads(line) for line in log.read_text().splitlines()]
    [metadata] = dt.commits_with_metadata(project.spark, project.path("bronze", FLOW))
    txns = [(a["txn"]["appId"], a["txn"]["version"]) for a in actions if "txn" in a]
    return txns, {k: v for k, v in metadata.items() if k in ("step", "batch", "run_id", "flow")}


@pytest.mark.parametrize(
    ("mode", "partition_by"), [("append", None), ("append", ["country"]), ("merge", None), ("overwrite", None)]
)
def test_bulk_bronze_is_the_table_spark_writes(
    new_project: Any, monkeypatch: pytest.MonkeyPatch, mode: str, partition_by: list[str] | None
) -> None:
    bulk = _project(new_project, "bulk", mode, partition_by)
    by_spark = _project(new_project, "spark", mode, partition_by)
    assert _load(bulk)["write_path"] == "arrow"
    with monkeypatch.context() as patched:  # the Spark path, as when the bulk path steps aside

        def refuse(*_: Any, **__: Any) -> None:
            raise ArrowUnsupported("refused by the test")

        patched.setattr(bronze_bulk, "write", refuse)
        assert _load(by_spark)["write_path"] == "spark"
    schema, layout, rows = _table(bulk)
    assert (schema, layout) == _table(by_spark)[:2]
    assert layout["partitions"] == (partition_by or [])
    assert rows == _table(by_spark)[2]
    assert len(rows) == by_spark.source_count(FLOW) > 0
    assert (dt.ROW_HASH in dict(schema)) == (mode == "append")
    assert _first_commit(bulk) == _first_commit(by_spark)


def test_the_demo_full_load_takes_the_bulk_path_and_later_runs_match_its_hashes(demo: Any) -> None:
    """The demo's incremental run re-reads rows inside the lookback: bronze (the small-batch path, which
    hashes as the bulk path does) skips them only when the re-read row's hash equals the stored one
    (test_layer_steps checks the counts); every stored hash is the one Spark computes."""
    for flow in ("retail_customers", "retail_orders"):
        assert demo.full.logs[flow]["bronze"].details["write_path"] == "arrow", flow
        assert demo.incremental.logs[flow]["bronze"].details["write_path"] == "arrow", flow
        bronze = demo.project.read("bronze", flow)
        recomputed = dm.with_row_hash(bronze.drop(dt.ROW_HASH)).select(dt.ROW_HASH)
        assert recomputed.exceptAll(bronze.select(dt.ROW_HASH)).count() == 0, flow


def test_a_bulk_write_that_fails_midway_leaves_bronze_to_spark(
    new_project: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    project = _project(new_project, "failing", "append")

    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(bronze_bulk.row_hash, "row_hash", broken)  # fails inside delta-rs's read of the stream
    assert _load(project)["write_path"] == "spark"
    assert "bronze bulk path not used (stopped mid-stream: " in capsys.readouterr().out
    bronze = project.read("bronze", FLOW)
    assert bronze.count() == project.source_count(FLOW)
    recomputed = dm.with_row_hash(bronze.drop(dt.ROW_HASH)).select(dt.ROW_HASH)
    assert recomputed.exceptAll(bronze.select(dt.ROW_HASH)).count() == 0
