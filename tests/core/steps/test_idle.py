"""Idle steps: extract, bronze, silver and quality skipped without Spark when the state store and the Delta logs
prove there is nothing new, and run whenever that is not proven (new batches, a state update lost after a
commit, a changed table or check, a full refresh, a backfill, an unreadable log)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy

from pipezone.core.demo import shop as demo_source
from pipezone.core.state.schema import incremental_state
from pipezone.core.steps.idle import idle_reason

FLOW = "retail_products"


def idle(project: Any, step: str, flow: str = FLOW, **options: Any) -> str | None:
    return idle_reason(project.runtime, project.runtime.flow(flow), step, **options)


def test_a_run_with_nothing_new_skips_bronze_and_silver_and_records_why(project: Any) -> None:
    assert idle(project, "bronze") is None and idle(project, "silver") is None  # nothing loaded yet
    first = project.run([FLOW], "first")
    assert first.ok
    assert idle(project, "bronze") == "nothing new: raw batch 1 already consumed"
    assert idle(project, "silver") == "nothing new: bronze batch 1 already consumed"
    newest = project.state.get_watermark(FLOW).value  # the source's newest updated_at, read by the first run
    assert idle(project, "extract") == f"nothing new: the source's newest updated_at is not past the watermark {newest}"
    assert idle(project, "quality") is None  # this flow has no table-level checks: the step says so itself
    assert idle(project, "bronze", full_refresh=True) is None
    assert idle(project, "silver", backfill=("2024-01-01", "2024-02-01")) is None

    versions = project.layers(FLOW)
    again = project.run([FLOW], "again")
    assert again.ok, [o.line for o in again.outcomes]
    lines = {o.step: o.line for o in again.outcomes}
    assert lines["extract"].startswith("skipped (nothing new: the source's newest updated_at"), lines
    assert lines["bronze"] == "skipped (nothing new: raw batch 1 already consumed)", lines
    assert lines["silver"] == "skipped (nothing new: bronze batch 1 already consumed)", lines
    logs = project.logs("again", FLOW)
    assert logs["bronze"].status == "skipped" and logs["bronze"].details["idle"] is True
    assert logs["silver"].details["note"] == "nothing new: bronze batch 1 already consumed"
    assert project.layers(FLOW) == versions  # nothing written anywhere


def test_new_batches_and_a_lost_state_update_are_not_idle(project: Any) -> None:
    assert project.run([FLOW], "first").ok
    demo_source.apply_change_batch(project.db, batch=1)
    assert project.run([FLOW], "extract-only", steps=["extract"]).ok
    assert idle(project, "bronze") is None  # raw batch 2 waits
    assert idle(project, "silver") == "nothing new: bronze batch 1 already consumed"
    assert project.run([FLOW], "bronze-only", steps=["bronze"]).ok
    assert idle(project, "bronze") == "nothing new: raw batch 2 already consumed"
    assert idle(project, "silver") is None  # bronze batch 2 waits

    # Silver committed batch 2, then its state update was lost: the step must run to repair it.
    assert project.run([FLOW], "silver-only", steps=["silver"]).ok
    project.state.set_progress(FLOW, "silver", 1, "lost")
    assert idle(project, "silver") is None
    repaired = project.run([FLOW], "repair", steps=["silver"])
    assert repaired.ok and "skipped" not in repaired.outcomes[0].line
    assert project.state.get_progress(FLOW, "silver") == 2
    assert idle(project, "silver") == "nothing new: bronze batch 2 already consumed"


def test_extract_is_idle_only_when_the_sources_newest_cursor_proves_an_empty_window(project: Any) -> None:
    assert idle(project, "extract") is None  # no watermark, no raw table: the first load
    assert project.run([FLOW, "retail_customers"], "first").ok
    assert idle(project, "extract") is not None
    assert idle(project, "extract", "retail_customers") is None  # lookback 5m: the step re-reads behind the watermark

    # raw's newest extract commit is run "first"'s, and the watermark says another run set it before that
    # commit: the update after the commit was lost, and only the step repairs it
    stored = project.state.get_watermark(FLOW)
    project.state.set_watermark(FLOW, "updated_at", stored.value - timedelta(days=1), "an-older-run")
    with sqlalchemy.create_engine(project.state.url).begin() as conn:
        conn.execute(sqlalchemy.update(incremental_state).values(updated_at=datetime(2000, 1, 1, tzinfo=UTC)))
    assert idle(project, "extract") is None
    repaired = project.run([FLOW], "repair", steps=["extract"])
    assert repaired.ok and "skipped" not in repaired.outcomes[0].line, repaired.outcomes[0].line
    repaired_to = project.state.get_watermark(FLOW)
    assert (repaired_to.value, repaired_to.last_run_id) == (stored.value, "first")
    assert idle(project, "extract") is not None

    demo_source.apply_change_batch(project.db, batch=1)  # new products, newer than the watermark
    assert idle(project, "extract") is None
    changed = project.run([FLOW], "changed", steps=["extract"])
    assert changed.ok and "skipped" not in changed.outcomes[0].line
    assert idle(project, "extract") is not None

    project.db.rename(project.db.with_suffix(".gone"))  # the source can't be asked: the step meets it, not idle
    assert idle(project, "extract") is None


def test_an_unreadable_log_is_not_idle(project: Any) -> None:
    assert project.run([FLOW], "first").ok
    bronze = project.path("bronze", FLOW)
    shutil.rmtree(bronze.removeprefix("file://") + "/_delta_log")
    assert idle(project, "silver") is None


def test_quality_is_idle_while_its_tables_and_checks_are_what_its_last_success_judged(project: Any) -> None:
    flow = "retail_customers"  # not_null and unique on silver: table-level checks
    assert idle(project, "quality", flow) is None  # never checked
    assert project.run([flow], "first").ok
    unchanged = "nothing new: the checked tables are unchanged since run first"
    assert idle(project, "quality", flow) == unchanged
    assert idle(project, "quality", flow, full_refresh=True) is None

    again = project.run([flow], "again")
    assert {o.step: o.line for o in again.outcomes}["quality"] == f"skipped ({unchanged})"
    assert project.logs("again", flow)["quality"].status == "skipped"
    assert idle(project, "quality", flow) == unchanged  # a skip is no new judgement: run first's still holds

    demo_source.apply_change_batch(project.db, batch=1)  # new and changed customers: a new silver version
    assert project.run([flow], "changed", steps=["extract", "bronze", "silver"]).ok
    assert idle(project, "quality", flow) is None
    assert project.run([flow], "checked", steps=["quality"]).ok
    assert project.logs("checked", flow)["quality"].status == "success"
    assert idle(project, "quality", flow) == "nothing new: the checked tables are unchanged since run checked"

    path = project.runtime.settings.metadata_dir / "flows" / f"{flow}.yaml"  # a changed check: judged again
    path.write_text(
        path.read_text().replace("columns: [customer_id]\n  - check: unique", "columns: [email]\n  - check: unique")
    )
    project.reload()
    assert idle(project, "quality", flow) is None
