"""Bronze and silver on real Spark + Delta: silver equals the source after full, incremental and full-refresh
runs (every key and business column), and re-running a step with the same run id writes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from pipezone.core.steps.bronze import run_bronze
from pipezone.core.steps.runner import run_step
from pipezone.core.steps.silver import run_silver

pytestmark = pytest.mark.spark

FLOWS = ("retail_customers", "retail_order_items", "retail_orders", "retail_products")
REFRESHED = ("retail_customers", "retail_orders")
RERUN_FLOW = "retail_order_items"  # not touched after the incremental run
STEP_FUNCTIONS = {"bronze": run_bronze, "silver": run_silver}


def rows(phase: Any, flow: str, layer: str) -> int:
    return phase.layers[flow][layer][1]


# ------------------------------------------------------------------------------------------ silver = source


@pytest.mark.parametrize("flow", FLOWS)
def test_full_load_silver_equals_the_source(demo: Any, same_rows: Any, flow: str) -> None:
    assert demo.full.expected[flow], "the demo source has rows"
    same_rows(demo.full.silver[flow], demo.full.expected[flow], f"{flow} silver after the full load")


@pytest.mark.parametrize("flow", FLOWS)
def test_silver_has_every_business_column_and_only_those(demo: Any, flow: str) -> None:
    columns = demo.project.business_columns("silver", flow)
    assert sorted(columns) == sorted(demo.project.model_columns(flow))
    assert len(columns) == len(set(columns))


@pytest.mark.parametrize("flow", FLOWS)
def test_incremental_silver_equals_the_source(demo: Any, same_rows: Any, flow: str) -> None:
    same_rows(demo.incremental.silver[flow], demo.incremental.expected[flow], f"{flow} silver after change batch 1")


@pytest.mark.parametrize("flow", FLOWS)
def test_incremental_run_shows_both_inserts_and_updates(demo: Any, flow: str) -> None:
    before = {r[0]: r for r in demo.full.silver[flow]}
    after = {r[0]: r for r in demo.incremental.silver[flow]}
    change = demo.changes[demo.project.runtime.flow(flow).source.table]
    inserted = after.keys() - before.keys()
    updated = {k for k in before.keys() & after.keys() if before[k] != after[k]}
    assert before.keys() <= after.keys(), "no row may disappear"
    assert (len(inserted), len(updated)) == (change["inserted"], change["updated"])
    assert change["updated"] > 0 and change["inserted"] > 0
    assert sorted(inserted | updated) == demo.changed_keys[flow]


@pytest.mark.parametrize("flow", FLOWS)
def test_bronze_appends_every_new_row_version_once(demo: Any, flow: str) -> None:
    full, incremental = demo.full, demo.incremental
    assert rows(full, flow, "bronze") == rows(full, flow, "raw")
    assert rows(incremental, flow, "raw") - rows(full, flow, "raw") == len(demo.window_keys[flow])
    # The lookback re-reads rows that did not change: raw keeps the read, bronze only the new versions.
    gained = rows(incremental, flow, "bronze") - rows(full, flow, "bronze")
    assert gained == len(demo.changed_keys[flow])
    for phase in (full, incremental):
        bronze, silver = phase.logs[flow]["bronze"], phase.logs[flow]["silver"]
        assert bronze.status == silver.status == "success"
        assert bronze.rows_written <= bronze.rows_read


@pytest.mark.parametrize("flow", REFRESHED)
def test_full_refresh_silver_still_equals_the_source(demo: Any, same_rows: Any, flow: str) -> None:
    refresh, before = demo.refresh, demo.incremental
    same_rows(refresh.silver[flow], refresh.expected[flow], f"{flow} silver after a full refresh")
    assert rows(refresh, flow, "silver") == refresh.source_counts[flow]  # no duplicates
    # Everything re-read into raw, as a new batch; bronze takes only versions it does not hold: none.
    assert rows(refresh, flow, "raw") - rows(before, flow, "raw") == refresh.source_counts[flow]
    assert rows(refresh, flow, "bronze") == rows(before, flow, "bronze")
    assert refresh.logs[flow]["bronze"].rows_read == refresh.source_counts[flow]


# ------------------------------------------------------------------------------------------ same run id again


@pytest.mark.parametrize("step", ["bronze", "silver"])
def test_rerun_with_the_same_run_id_is_skipped_by_run_step(demo: Any, step: str) -> None:
    project = demo.project
    before = project.layers(RERUN_FLOW)
    result = run_step(project.ctx(RERUN_FLOW, demo.incremental.run_id), step)
    assert result.skipped and result.note == "already succeeded for this run id"
    assert project.layers(RERUN_FLOW) == before


@pytest.mark.parametrize("step", ["bronze", "silver"])
def test_calling_the_step_again_with_the_same_run_id_writes_nothing(demo: Any, step: str) -> None:
    project = demo.project
    before = project.layers(RERUN_FLOW)
    result = STEP_FUNCTIONS[step](project.ctx(RERUN_FLOW, demo.incremental.run_id))
    assert (result.rows_read, result.rows_written) == (0, 0)
    assert result.note.endswith("(at batch 2)")
    assert project.layers(RERUN_FLOW) == before


@pytest.mark.parametrize("step", ["bronze", "silver"])
def test_a_crash_before_the_progress_was_recorded_is_repaired_from_the_commit(
    demo: Any, same_rows: Any, step: str
) -> None:
    """The layer's Delta commit happened but the state store still says batch 1: the re-run (any run id) finds
    batch 2 in the commit's metadata, records it, and neither reads nor writes the batch again."""
    project = demo.project
    before = project.layers(RERUN_FLOW)
    project.state.set_progress(RERUN_FLOW, step, 1, "crashed")
    result = STEP_FUNCTIONS[step](project.ctx(RERUN_FLOW, "a-later-run"))
    assert (result.rows_read, result.rows_written) == (0, 0)
    assert project.layers(RERUN_FLOW) == before
    assert project.state.get_progress(RERUN_FLOW, step) == 2
    same_rows(project.silver_rows(RERUN_FLOW), demo.incremental.silver[RERUN_FLOW], "silver after the replay")


# ------------------------------------------------------------------------------------- narrowed by key range


def test_an_incremental_run_narrows_its_tables_by_the_batch_key_range(demo: Any) -> None:
    """Integer keys, no transform on them: bronze's semi join and silver's MERGE filter their table to the
    batch's key range (no Spark job to collect the keys), and still equal the source (the tests above). The
    batches are small, so delta-rs writes them (steps/small_batch.py) where the flow allows it."""
    for flow in FLOWS:
        logs = demo.incremental.logs[flow]
        assert logs["bronze"].details["write_path"] == "arrow", (flow, logs["bronze"].details)
        assert logs["bronze"].details.get("narrowed_by") == "key range", (flow, logs["bronze"].details)
        silver = logs["silver"].details
        if demo.project.runtime.flow(flow).layers.silver.write_mode == "merge":
            assert silver.get("narrowed_by") == "key range", (flow, silver)
