"""Backfill: a stateless closed-open window `[start, end)` read into raw and carried up, on real Spark + Delta,
leaving the live watermark where it was."""

from __future__ import annotations

from typing import Any

import pytest

from pipezone.core.lake import delta_tables as dt

pytestmark = pytest.mark.spark

FLOW = "orders_recent"
SPLIT = "2024-07-01 00:00:00"  # the live flow starts here; the backfill fills in what came before
FLOW_YAML = f"""\
name: {FLOW}
source:
  connection: retail_demo
  table: orders
  primary_key: [order_id]
  incremental:
    cursor: updated_at
    initial_value: "{SPLIT}"
"""


def silver_ids(project: Any) -> set[int]:
    return {r["order_id"] for r in dt.read_live(project.spark, project.path("silver", FLOW)).collect()}


def source_ids(project: Any, where: str = "1 = 1") -> set[int]:
    return {r[0] for r in project.query(f"SELECT order_id FROM orders WHERE {where}")}


def test_backfill_fills_a_closed_window_and_leaves_the_watermark(project: Any) -> None:
    (project.root / "metadata" / "flows" / f"{FLOW}.yaml").write_text(FLOW_YAML)
    project.reload()
    assert project.run([FLOW], "live-1").ok
    recent = source_ids(project, f"updated_at > '{SPLIT}'")
    assert recent and silver_ids(project) == recent
    watermark = project.state.get_watermark(FLOW)

    # [start, end) includes a row stamped exactly at SPLIT only through end's first excluded value.
    report = project.run([FLOW], "backfill-1", backfill=("2000-01-01", "2024-07-01 00:00:01"))
    assert report.ok, [o.line for o in report.outcomes]
    assert silver_ids(project) == source_ids(project)  # old rows in, recent rows untouched (forward-only)
    assert project.state.get_watermark(FLOW).value == watermark.value

    raw = dt.commits_with_metadata(project.spark, project.path("raw", FLOW))[0]
    assert raw["backfill"] is True and raw["run_id"] == "backfill-1"
    backfilled = project.read("raw", FLOW).filter(f"{dt.RUN_ID} = 'backfill-1'").count()
    assert backfilled == len(source_ids(project, "updated_at < '2024-07-01 00:00:01'"))

    # The next live run reads only after the untouched watermark: nothing new.
    before = project.count("raw", FLOW)
    assert project.run([FLOW], "live-2").ok
    assert project.count("raw", FLOW) == before
    assert silver_ids(project) == source_ids(project)
