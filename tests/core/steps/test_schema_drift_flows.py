"""Schema drift end to end (real SQLite source, Spark, Delta): `evolve` carries a new column up and keeps a
dropped one's data; `freeze` fails the extract in one line naming the columns, before anything is written."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from pipezone.core.lake import delta_tables as dt

pytestmark = pytest.mark.spark

FLOW_YAML = """\
name: {name}
source:
  connection: drift_src
  table: items
  primary_key: [id]
  incremental:
    cursor: updated_at
schema_drift: {policy}
"""


def source(project: Any) -> sqlite3.Connection:
    return sqlite3.connect(project.root / "drift.db", isolation_level=None)


def setup_flows(project: Any) -> None:
    with source(project) as conn:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, note VARCHAR(20), qty INTEGER, updated_at TEXT)")
        conn.executemany(
            "INSERT INTO items VALUES (?, ?, ?, ?)",
            [(1, "first", 1, "2024-01-01 00:00:00"), (2, "second", 2, "2024-01-02 00:00:00")],
        )
    meta = project.root / "metadata"
    (meta / "connections" / "drift_src.yaml").write_text(
        f"name: drift_src\ntype: sqlite\npath: {project.root / 'drift.db'}\n"
    )
    for policy in ("evolve", "freeze"):
        (meta / "flows" / f"drift_{policy}.yaml").write_text(FLOW_YAML.format(name=f"drift_{policy}", policy=policy))
    project.reload()


def change_the_source(project: Any) -> None:
    """A new column, a dropped column, and a changed row."""
    with source(project) as conn:
        conn.execute("ALTER TABLE items ADD COLUMN coupon TEXT")
        conn.execute("ALTER TABLE items DROP COLUMN note")
        conn.execute("UPDATE items SET qty = 5, coupon = 'SAVE5', updated_at = '2024-02-01 00:00:00' WHERE id = 2")
        conn.execute("INSERT INTO items (id, qty, updated_at, coupon) VALUES (3, 7, '2024-02-02 00:00:00', 'NEW')")


def test_evolve_adds_new_columns_and_never_deletes_a_dropped_one(project: Any) -> None:
    setup_flows(project)
    assert project.run(["drift_evolve"], "d1").ok
    change_the_source(project)
    report = project.run(["drift_evolve"], "d2")
    assert report.ok, [o.line for o in report.outcomes]
    rows = {r["id"]: r for r in dt.read_live(project.spark, project.path("silver", "drift_evolve")).collect()}
    assert {k: (r["qty"], r["coupon"]) for k, r in rows.items()} == {1: (1, None), 2: (5, "SAVE5"), 3: (7, "NEW")}
    # The dropped column keeps its data: untouched and updated rows keep their value, new rows get NULL.
    assert {k: r["note"] for k, r in rows.items()} == {1: "first", 2: "second", 3: None}
    for layer in ("raw", "bronze"):
        assert {"note", "coupon"} <= set(project.read(layer, "drift_evolve").columns)


def test_freeze_fails_naming_the_columns_and_writes_nothing(project: Any) -> None:
    setup_flows(project)
    assert project.run(["drift_freeze"], "f1").ok
    before = project.layers("drift_freeze")
    watermark = project.state.get_watermark("drift_freeze").value
    change_the_source(project)
    report = project.run(["drift_freeze"], "f2")
    failed = [o for o in report.outcomes if not o.ok]
    assert [o.step for o in failed] == ["extract"]
    line = failed[0].line
    assert "\n" not in line
    assert "schema drift in raw.drift_freeze (schema_drift: freeze)" in line
    assert "new columns coupon (string)" in line and "dropped columns note" in line
    assert project.layers("drift_freeze") == before
    assert project.state.get_watermark("drift_freeze").value == watermark
