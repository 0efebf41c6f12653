"""Extract on real Spark over the demo SQLite source: full and incremental windows, re-runs, failing sources."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pipezone.core.lake import delta_tables as dt
from pipezone.core.steps.extract import run_extract
from pipezone.core.steps.runner import StepFailed, run_step

pytestmark = pytest.mark.spark

FLOWS = ("retail_customers", "retail_order_items", "retail_orders", "retail_products")
REFRESHED = ("retail_customers", "retail_orders")
RERUN_FLOW = "retail_order_items"  # not touched after the incremental run, so its last run id is the incremental one


def rows(phase: Any, flow: str, layer: str) -> int:
    return phase.layers[flow][layer][1]


# ------------------------------------------------------------------------------------------ windows


@pytest.mark.parametrize("flow", FLOWS)
def test_full_load_reads_every_source_row_and_moves_the_watermark_to_the_source_max(demo: Any, flow: str) -> None:
    full = demo.full
    log = full.logs[flow]["extract"]
    assert log.status == "success"
    assert log.rows_read == log.rows_written == full.source_counts[flow]
    assert rows(full, flow, "raw") == full.source_counts[flow]
    assert full.watermarks[flow] == full.source_max[flow]
    assert full.watermarks[flow].tzinfo is not None and full.watermarks[flow].utcoffset().total_seconds() == 0


@pytest.mark.parametrize("flow", FLOWS)
def test_incremental_extract_reads_exactly_the_changed_rows_and_the_lookback_window(demo: Any, flow: str) -> None:
    expected = demo.window_keys[flow]  # source keys with updated_at > previous watermark - lookback
    changed = demo.changed_keys[flow]  # source keys with updated_at > previous watermark
    assert changed, "change batch 1 touches every table"

    log = demo.incremental.logs[flow]["extract"]
    assert (log.status, log.rows_read, log.rows_written) == ("success", len(expected), len(expected))
    assert rows(demo.incremental, flow, "raw") - rows(demo.full, flow, "raw") == len(expected)

    key = demo.project.key(flow)
    batch = demo.project.read("raw", flow).filter(f"{dt.BATCH} = 2")
    assert sorted(r[0] for r in batch.select(key).collect()) == expected
    assert {r[0] for r in batch.select(dt.RUN_ID).distinct().collect()} == {demo.incremental.run_id}

    if demo.lookback(flow):  # the window re-reads rows at or just behind the old watermark
        assert set(changed) < set(expected)
    else:
        assert expected == changed
    assert demo.incremental.watermarks[flow] == demo.incremental.source_max[flow]


@pytest.mark.parametrize("flow", REFRESHED)
def test_full_refresh_rereads_every_row(demo: Any, flow: str) -> None:
    refresh = demo.refresh
    log = refresh.logs[flow]["extract"]
    assert (log.status, log.rows_read) == ("success", refresh.source_counts[flow])
    assert rows(refresh, flow, "raw") - rows(demo.incremental, flow, "raw") == refresh.source_counts[flow]
    assert refresh.watermarks[flow] == refresh.source_max[flow]


def test_no_new_rows_and_no_lookback_writes_nothing(demo: Any) -> None:
    project = demo.project
    before = project.layers("retail_products")
    result = run_step(project.ctx("retail_products", "t-nothing-new"), "extract")
    assert (result.rows_read, result.rows_written, result.note) == (0, 0, "no new rows")
    assert project.layers("retail_products") == before


# ------------------------------------------------------------------------------------------ same run id again


def test_rerun_with_the_same_run_id_is_skipped_by_run_step(demo: Any) -> None:
    project = demo.project
    before, watermark = project.layers(RERUN_FLOW), project.state.get_watermark(RERUN_FLOW)
    result = run_step(project.ctx(RERUN_FLOW, demo.incremental.run_id), "extract")
    assert result.skipped and result.note == "already succeeded for this run id"
    assert project.layers(RERUN_FLOW) == before
    assert project.state.get_watermark(RERUN_FLOW) == watermark


def test_run_extract_again_with_the_same_run_id_writes_nothing(demo: Any) -> None:
    project = demo.project
    before, watermark = project.layers(RERUN_FLOW), project.state.get_watermark(RERUN_FLOW)
    result = run_extract(project.ctx(RERUN_FLOW, demo.incremental.run_id))
    assert result.skipped and result.note == "batch 2 already in raw for this run id"
    assert (result.rows_read, result.rows_written) == (0, 0)
    assert project.layers(RERUN_FLOW) == before
    assert project.state.get_watermark(RERUN_FLOW).value == watermark.value


def _previous_watermark_as_of_before_the_commit(project: Any, flow: str, value: Any, monkeypatch: Any) -> None:
    """The state a crash after raw's commit leaves: the watermark of the run before, written before the commit."""
    commit = dt.newest_commit(project.spark, project.path("raw", flow), lambda m: m.get("step") == "extract")
    monkeypatch.setattr(project.state, "_now", lambda: commit["timestamp"] - timedelta(seconds=1))
    project.state.set_watermark(flow, "updated_at", value, "the-run-before")
    monkeypatch.undo()


def test_a_crash_between_the_raw_commit_and_the_watermark_is_repaired_without_writing(
    demo: Any, monkeypatch: Any
) -> None:
    """Raw has the run's batch but the watermark is still the previous one: the re-run only moves the watermark."""
    project = demo.project
    before = project.layers(RERUN_FLOW)
    _previous_watermark_as_of_before_the_commit(project, RERUN_FLOW, demo.full.watermarks[RERUN_FLOW], monkeypatch)
    result = run_extract(project.ctx(RERUN_FLOW, demo.incremental.run_id))
    assert result.skipped
    assert project.layers(RERUN_FLOW) == before
    assert project.state.get_watermark(RERUN_FLOW).value == demo.incremental.watermarks[RERUN_FLOW]


# ------------------------------------------------------------------------------------------ failing sources

EARLIER = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def assert_failed_cleanly(project: Any, flow: str, run_id: str, caught: Any, cause: str) -> str:
    line = str(caught.value)
    assert "\n" not in line and len(line) < 600, line
    assert line.startswith(f"flow {flow}, step extract (connection retail_demo): "), line
    assert cause in line, line
    log = project.state.recent_runs(flow)[0]
    assert (log.run_id, log.step, log.status, log.error) == (run_id, "extract", "failed", line)
    return line


def test_a_missing_table_fails_in_one_line_and_keeps_the_watermark(project: Any) -> None:
    (project.root / "metadata" / "flows" / "retail_ghosts.yaml").write_text(
        "name: retail_ghosts\n"
        "source:\n"
        "  connection: retail_demo\n"
        "  table: no_such_table\n"
        "  primary_key: [ghost_id]\n"
        "  incremental: {cursor: updated_at, lookback: 5m}\n"
    )
    project.reload()
    project.state.set_watermark("retail_ghosts", "updated_at", EARLIER, "earlier-run")
    with pytest.raises(StepFailed) as caught:
        run_step(project.ctx("retail_ghosts", "t-ghost-1"), "extract")
    assert_failed_cleanly(project, "retail_ghosts", "t-ghost-1", caught, "no such table: no_such_table")
    watermark = project.state.get_watermark("retail_ghosts")
    assert (watermark.value, watermark.last_run_id) == (EARLIER, "earlier-run")
    assert not dt.table_exists(project.spark, project.path("raw", "retail_ghosts"))


def _replace_with_directory(db: Any) -> None:
    os.replace(db, db.with_name("retail.db.moved"))
    db.mkdir()


def _move_its_folder_away(db: Any) -> None:
    shutil.move(db.parent, db.parent.with_name("demo.moved"))


# The driver's own root cause, not Spark's wrapper ("[FAILED_JDBC.UNCLASSIFIED] ... Failed to connect").
# Opened read-only, SQLite reports a directory as an I/O error on read, a missing file as "unable to open".
BREAKAGES = [
    (_replace_with_directory, "SQLiteException: [SQLITE_IOERR_READ] I/O error"),
    (_move_its_folder_away, "SQLiteException: [SQLITE_CANTOPEN] Unable to open the database file"),
]


@pytest.mark.parametrize(("breakage", "cause"), BREAKAGES, ids=["directory", "missing"])
def test_an_unreadable_source_fails_in_one_line_and_moves_nothing(project: Any, breakage: Any, cause: str) -> None:
    flow = "retail_products"
    run_step(project.ctx(flow, "t-good-1"), "extract")
    watermark, layers = project.state.get_watermark(flow), project.layers(flow)
    assert watermark.value == project.source_max(flow)

    breakage(project.db)
    with pytest.raises(StepFailed) as caught:
        run_step(project.ctx(flow, "t-bad-2"), "extract")
    line = assert_failed_cleanly(project, flow, "t-bad-2", caught, cause)
    assert "FAILED_JDBC" not in line
    after = project.state.get_watermark(flow)
    assert (after.value, after.last_run_id) == (watermark.value, "t-good-1")
    assert project.layers(flow) == layers


def test_a_missing_source_file_is_named_and_not_created(project: Any) -> None:
    project.db.unlink()
    with pytest.raises(StepFailed) as caught:
        run_step(project.ctx("retail_products", "t-missing-1"), "extract")
    assert not project.db.exists(), "reading a source must not create it"
    assert_failed_cleanly(project, "retail_products", "t-missing-1", caught, "Unable to open the database file")
