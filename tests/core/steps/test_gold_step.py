"""Gold on real Spark: daily_revenue equals the same aggregate computed by SQLite over the source."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from pipezone.core.spec.flow import FlowSpec
from pipezone.core.steps.context import StepContext
from pipezone.core.steps.gold import resolve_references, run_gold

pytestmark = pytest.mark.spark


def by_day_and_category(row: tuple[Any, ...]) -> tuple[Any, Any]:
    return row[0], row[1]


def test_daily_revenue_equals_sqlite_after_the_full_load(demo: Any, same_rows: Any) -> None:
    assert len(demo.full.expected_gold) > 100
    same_rows(demo.full.gold, demo.full.expected_gold, "daily_revenue after the full load", key=by_day_and_category)
    log = demo.full.logs["retail_daily_revenue"]["gold"]
    assert (log.status, log.rows_written) == ("success", len(demo.full.expected_gold))


def test_daily_revenue_equals_sqlite_after_the_incremental_run(demo: Any, same_rows: Any) -> None:
    incremental = demo.incremental
    assert incremental.expected_gold != demo.full.expected_gold, "change batch 1 changes revenue"
    same_rows(incremental.gold, incremental.expected_gold, "daily_revenue after batch 1", key=by_day_and_category)


def test_the_demo_export_equals_gold_after_each_run(demo: Any, same_rows: Any) -> None:
    """The demo flow's export (replace into SQLite) carries exactly the gold rows, values included."""
    for phase in (demo.full, demo.incremental):
        same_rows(
            phase.exported_gold,
            phase.expected_gold,
            f"exported daily_revenue ({phase.run_id})",
            key=by_day_and_category,
        )
        log = phase.logs["retail_daily_revenue"]["export_retail_bi_daily_revenue"]
        assert (log.status, log.rows_written) == ("success", len(phase.expected_gold))


def test_daily_revenue_columns_and_types(demo: Any) -> None:
    df = demo.project.spark.read.format("delta").load(demo.project.runtime.lake.gold("daily_revenue"))
    types = dict(df.dtypes)
    assert df.columns == ["order_day", "category", "orders", "revenue"]
    assert types["order_day"] == "date" and types["orders"] == "bigint" and types["revenue"].startswith("decimal(")


def test_references_become_delta_paths(project: Any) -> None:
    lake = project.runtime.lake
    sql = "SELECT * FROM silver.retail_orders o JOIN SILVER . `retail_products` p ON 1=1 JOIN gold.daily_revenue g"
    resolved = resolve_references(sql, lake)
    assert resolved == (
        f"SELECT * FROM delta.`{lake.silver('retail_orders')}` o JOIN delta.`{lake.silver('retail_products')}` p "
        f"ON 1=1 JOIN delta.`{lake.gold('daily_revenue')}` g"
    )


def test_gold_fails_naming_the_inputs_not_written_yet(project: Any) -> None:
    with pytest.raises(RuntimeError) as caught:
        run_gold(project.ctx("retail_daily_revenue", "t-gold-early"))
    assert str(caught.value) == (
        "gold table daily_revenue: input tables not written yet: "
        "silver.retail_order_items, silver.retail_orders, silver.retail_products"
    )


def test_a_merge_gold_table_upserts_by_key(demo: Any, same_rows: Any) -> None:
    project = demo.project
    flow = FlowSpec.model_validate(
        {
            "name": "t_category_stats",
            "layers": {
                "gold": [
                    {
                        "name": "t_category_stats",
                        "write_mode": "merge",
                        "primary_key": ["category"],
                        "sql": "SELECT category, COUNT(*) AS products, MAX(unit_price) AS top_price "
                        "FROM silver.retail_products GROUP BY category",
                    }
                ]
            },
        }
    )
    expected = [
        (r["category"], r["n"], Decimal(r["top_cents"]).scaleb(-2))
        for r in project.query(
            "SELECT category, COUNT(*) AS n, MAX(CAST(ROUND(unit_price * 100) AS INTEGER)) AS top_cents "
            "FROM products GROUP BY category"
        )
    ]
    path = project.runtime.lake.gold("t_category_stats")
    for run in ("t-gold-merge-1", "t-gold-merge-2"):
        run_gold(StepContext(project.runtime, project.spark, flow, run))
        df = project.spark.read.format("delta").load(path)
        same_rows([tuple(r) for r in df.select("category", "products", "top_price").collect()], expected, run)
    assert project.state.get_progress("t_category_stats", "gold:t_category_stats") == 2
