"""`verify:` in a flow: the DAG's last task reconciles silver with the source, at most as often as the flow
says, and fails with verify's summary on a difference."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pipezone.core.airflow.dag_factory import build_dags
from pipezone.core.runs.flow_runner import run_flows
from pipezone.core.spec.settings import load_settings
from pipezone.core.steps.runtime import load_runtime

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = pytest.mark.spark

REPO_ROOT = Path(__file__).resolve().parents[3]
FLOW = """\
name: items
source:
  connection: src
  table: items
  primary_key: [id]
layers:
  silver:
    write_mode: merge
verify: {every}
"""


def _project(root: Path, every: str) -> None:
    meta = root / "metadata"
    for sub in ("connections", "flows", "profiles"):
        (meta / sub).mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(root / "src.db")
    db.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT, price NUMERIC(8,2))")
    db.executemany("INSERT OR REPLACE INTO items VALUES (?, ?, ?)", [(i, f"item {i}", i * 1.5) for i in range(1, 51)])
    db.commit()
    db.close()
    (meta / "connections" / "src.yaml").write_text(f"name: src\ntype: sqlite\npath: {root / 'src.db'}\n")
    (meta / "connections" / "lake.yaml").write_text("name: lake\ntype: local\npath: lake\n")
    (meta / "connections" / "state.yaml").write_text("name: state\ntype: sqlite\npath: state.db\n")
    (meta / "profiles" / "default.yaml").write_text(
        "name: default\nlake: lake\nstate_store: state\nspark:\n  master: local[2]\n  shuffle_partitions: 2\n"
    )
    (meta / "flows" / "items.yaml").write_text(FLOW.format(every=every))
    if not (root / ".pipezone" / "jars").exists():
        (root / ".pipezone").mkdir(exist_ok=True)
        (root / ".pipezone" / "jars").symlink_to(REPO_ROOT / ".pipezone" / "jars", target_is_directory=True)


def _run(root: Path) -> tuple[bool, list[str], dict[str, str]]:
    runtime = load_runtime(load_settings(environ={}, cwd=root))
    try:
        report = run_flows(runtime, ["items"], in_process=True, progress=lambda _: None)
        lines = [o.line for o in report.outcomes if not o.ok]
        steps = {r.step: r.status for r in reversed(runtime.state.recent_runs("items", limit=10))}
        return report.ok, lines, steps
    finally:
        runtime.state.close()


def test_verify_runs_last_fails_on_a_planted_difference_and_keeps_its_interval(
    spark: SparkSession, tmp_path: Path
) -> None:
    _project(tmp_path, "0s")
    ok, lines, steps = _run(tmp_path)
    assert ok, lines
    assert steps["verify"] == "success"

    silver = tmp_path / "lake" / "silver" / "items"
    spark.sql(f"UPDATE delta.`{silver}` SET name = 'tampered' WHERE id = 7")
    ok, lines, steps = _run(tmp_path)
    assert not ok
    assert "DIFFERENT" in lines[0] and "1 different" in lines[0], lines

    spark.sql(f"UPDATE delta.`{silver}` SET name = 'item 7' WHERE id = 7")
    (tmp_path / "metadata" / "flows" / "items.yaml").write_text(FLOW.format(every="daily"))
    assert _run(tmp_path)[0]  # verified clean now
    ok, lines, steps = _run(tmp_path)
    assert ok and steps["verify"] == "skipped"  # within the day


def test_the_dag_has_a_verify_task_after_silver(tmp_path: Path) -> None:
    _project(tmp_path, "daily")
    dags = build_dags(load_settings(environ={}, cwd=tmp_path), use_context=False)
    dag = next(d for d in dags.values() if d.dag_id.endswith("items"))
    assert [t.task_id for t in dag.topological_sort()][-1] == "verify"
    assert dag.get_task("verify").upstream_task_ids == {"silver"}
