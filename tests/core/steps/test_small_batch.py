"""The small-batch path (steps/small_batch.py): the Arrow events functions choose what Spark's choose
(differential, on generated events), an incremental run of a flow without transforms writes bronze and
silver with delta-rs and silver still equals the source, keys spread over silver are merged by Spark from
the batch prepared in Arrow, and what the path cannot do exactly (a big batch, schema drift) goes to Spark
with nothing lost; silver's transforms run in Spark on the batch alone. The sync properties
(test_sync_properties.py) run their merge flow through this path too, deletes and re-inserts included."""

from __future__ import annotations

import random
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest

from pipezone.core.demo import shop as demo_source
from pipezone.core.lake import delta_tables as dt
from pipezone.core.steps import arrow_events, events, small_batch
from pipezone.core.steps.context import StepContext
from pipezone.core.steps.runner import run_step

pytestmark = pytest.mark.spark

T0 = datetime(2024, 1, 1, tzinfo=UTC)
STAMP = pa.timestamp("us", tz="UTC")


def generated_events(seed: int, rows: int = 400) -> pa.Table:
    """Events of 25 keys (and a NULL key) over 3 batches: cursors with NULLs and ties, tombstones, a
    unique extraction time per row so that Spark's choice is never arbitrary."""
    rng = random.Random(seed)
    data: dict[str, list[Any]] = {c: [] for c in ("id", "v", "updated_at", dt.BATCH, dt.EXTRACTED_AT, dt.DELETED)}
    tombstoned = set()
    for n in range(rows):
        key = rng.choice([*range(25), None])
        batch = rng.randint(1, 3)
        deleted = rng.random() < 0.15 and (key, batch) not in tombstoned  # one tombstone per key and batch
        if deleted:
            tombstoned.add((key, batch))
        data["id"].append(key)
        data["v"].append(f"v{n}")
        data["updated_at"].append(None if rng.random() < 0.1 else T0 + timedelta(minutes=rng.randint(0, 5)))
        data[dt.BATCH].append(batch)
        data[dt.EXTRACTED_AT].append(T0 + timedelta(seconds=n))
        data[dt.DELETED].append(None if rng.random() < 0.05 and not deleted else deleted)
    types = {"id": pa.int64(), "v": pa.string(), "updated_at": STAMP, dt.BATCH: pa.int64(), dt.EXTRACTED_AT: STAMP}
    return pa.table({name: pa.array(values, types.get(name, pa.bool_())) for name, values in data.items()})


def as_rows(table: pa.Table) -> list[tuple[Any, ...]]:
    return sorted((tuple(r.values()) for r in table.to_pylist()), key=repr)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("cursor", ["updated_at", None, dt.CHANGE_ORDER])
def test_latest_events_choose_what_spark_chooses(spark: Any, seed: int, cursor: str | None) -> None:
    table = generated_events(seed)
    if cursor == dt.CHANGE_ORDER:  # a change log: a unique, shuffled order
        order = list(range(table.num_rows))
        random.Random(seed).shuffle(order)
        table = table.append_column(dt.CHANGE_ORDER, pa.array(order, pa.int64()))
    by_arrow = arrow_events.latest_events(arrow_events.as_events(table), ["id"], cursor)
    frame = events.latest_events(events.as_events(spark.createDataFrame(table)), ["id"], cursor)
    by_spark = frame.select(*by_arrow.column_names).toArrow()
    assert as_rows(by_arrow.cast(by_spark.schema)) == as_rows(by_spark)
    assert by_arrow.num_rows == len(set(table["id"].to_pylist()))


def test_as_events_flags_and_stamps_tombstones() -> None:
    table = pa.table(
        {"id": [1, 2, 3], dt.EXTRACTED_AT: pa.array([T0] * 3, STAMP), dt.DELETED: pa.array([True, None, False])}
    )
    got = arrow_events.as_events(table)
    assert got[dt.DELETED].to_pylist() == [True, False, False]
    assert got[dt.DELETED_AT].to_pylist() == [T0, None, None]
    assert arrow_events.as_events(table.drop_columns([dt.DELETED]))[dt.DELETED].to_pylist() == [False] * 3


PLAIN_FLOW = """\
name: orders_plain
source:
  connection: retail_demo
  table: orders
  primary_key: [order_id]
  incremental:
    cursor: updated_at
layers:
  silver:
    write_mode: merge
quality:
  - check: not_null
    columns: [status]
  - check: accepted_values
    column: status
    values: [pending, shipped, delivered, cancelled]
    severity: warn
"""


def execute(project: Any, sql: str) -> None:
    with sqlite3.connect(project.db) as conn:
        conn.execute(sql)


def source_orders(project: Any) -> set[tuple[Any, ...]]:
    return {(r["order_id"], r["status"]) for r in project.query("SELECT order_id, status FROM orders")}


def silver_orders(project: Any) -> set[tuple[Any, ...]]:
    frame = project.read("silver", "orders_plain").filter(f"NOT `{dt.DELETED}`")
    rows = frame.select("order_id", "status").collect()
    assert len(rows) == len({r.order_id for r in rows}), "one row per key"
    return {(r.order_id, r.status) for r in rows}


def write_paths(project: Any, run_id: str) -> dict[str, str]:
    logs = project.logs(run_id, "orders_plain")
    return {step: logs[step].details.get("write_path") for step in ("bronze", "silver")}


@pytest.fixture
def plain(project: Any) -> Any:
    (project.root / "metadata" / "flows" / "orders_plain.yaml").write_text(PLAIN_FLOW)
    project.reload()
    assert project.run(["orders_plain"], "full").ok
    return project


def test_an_incremental_run_writes_small_batches_with_delta_rs(plain: Any) -> None:
    demo_source.apply_change_batch(plain.db, batch=1)
    assert plain.run(["orders_plain"], "incr").ok
    assert write_paths(plain, "incr") == {"bronze": "arrow", "silver": "arrow"}
    assert silver_orders(plain) == source_orders(plain)
    silver = plain.logs("incr", "orders_plain")["silver"].details
    assert silver["narrowed_by"] == "key range" and silver["files"]["rewritten"] <= silver["files"]["in_table"]
    # nothing new: the next run's steps have nothing to do, and the tables stay as they are
    before = plain.layers("orders_plain")
    assert plain.run(["orders_plain"], "idle").ok
    assert plain.layers("orders_plain") == before


def test_a_small_batch_opens_no_spark_session(plain: Any) -> None:
    """Bronze and silver of a small batch run without a session: the context's factory is never called. Nor
    does quality's: its checks are counted in Arrow on silver's change feed (quality/change_counts.py)."""
    demo_source.apply_change_batch(plain.db, batch=1)
    assert plain.run(["orders_plain"], "incr", steps=["extract"]).ok

    def no_session() -> Any:
        raise AssertionError("the step opened a Spark session")

    flow = plain.runtime.flow("orders_plain")
    for step in ("bronze", "silver"):
        ctx = StepContext(plain.runtime, no_session, flow, "incr")
        result = run_step(ctx, step)
        assert result.details["write_path"] == "arrow" and result.rows_written > 0
        assert "session" not in ctx.phases
    assert silver_orders(plain) == source_orders(plain)
    quality = run_step(StepContext(plain.runtime, no_session, flow, "incr"), "quality")
    assert quality.details["carried"] == ["silver.orders_plain"], quality.note


def test_a_batch_over_the_limit_is_written_by_spark(plain: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(small_batch, "SMALL_BATCH_ROWS", 0)
    demo_source.apply_change_batch(plain.db, batch=1)
    assert plain.run(["orders_plain"], "incr").ok
    assert write_paths(plain, "incr") == {"bronze": "spark", "silver": "spark"}
    assert silver_orders(plain) == source_orders(plain)


def test_keys_spread_over_silver_are_marked_by_spark_from_the_prepared_batch(
    plain: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch whose key range meets more of silver than delta-rs should copy: bronze still appends it with
    delta-rs, and Spark's MERGE of the rows prepared in Arrow marks silver's rows with deletion vectors
    (no file rewritten); silver equals the source, as after a Spark-path run."""
    monkeypatch.setattr(small_batch, "RANGE_ROWS", 0)
    demo_source.apply_change_batch(plain.db, batch=1)
    assert plain.run(["orders_plain"], "incr").ok
    assert write_paths(plain, "incr") == {"bronze": "arrow", "silver": "arrow+spark"}
    silver = plain.logs("incr", "orders_plain")["silver"].details
    assert silver["narrowed_by"] == "key list"
    assert silver["files"]["marked"] >= 1 and silver["files"]["rewritten"] == 0, silver["files"]
    assert silver_orders(plain) == source_orders(plain)


def test_a_new_source_column_goes_to_spark_and_its_drift_policy(plain: Any, capsys: pytest.CaptureFixture) -> None:
    """Schema drift is Spark's (the flow's policy, type widening): the small path finds the new column
    before writing, says so, and Spark adds it."""
    demo_source.apply_change_batch(plain.db, batch=1)
    execute(plain, "ALTER TABLE orders ADD COLUMN channel TEXT")
    execute(plain, "UPDATE orders SET channel = 'web'")
    assert plain.run(["orders_plain"], "incr").ok
    assert write_paths(plain, "incr") == {"bronze": "spark", "silver": "spark"}
    assert "bronze small-batch path not used (columns the table lacks: channel)" in capsys.readouterr().out
    channels = {r.channel for r in plain.read("silver", "orders_plain").select("channel").collect()}
    assert "web" in channels
    assert silver_orders(plain) == source_orders(plain)


def test_silver_transforms_run_in_spark_on_the_batch_and_delta_rs_merges_it(demo: Any) -> None:
    """The demo's flows transform silver (casts, derived columns, renames): Spark applies them to the small
    batch and delta-rs merges the result; silver still equals the source with the transforms applied by
    hand (test_layer_steps.py)."""
    for flow in ("retail_orders", "retail_customers", "retail_products"):
        logs = demo.incremental.logs[flow]
        paths = (logs["bronze"].details["write_path"], logs["silver"].details["write_path"])
        assert paths == ("arrow", "arrow"), (flow, paths)
