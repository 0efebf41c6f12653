"""Table references in gold SQL: found and rewritten in the SQL text only, never inside literals or comments."""

from __future__ import annotations

from pipezone.core.spec.sql_references import rewrite_references, table_references

SQL = """SELECT o.id, 'silver.orders' AS label, "gold.y" AS quoted -- from gold.commented
FROM silver.retail_orders o /* silver.hidden */
JOIN gold.`daily_revenue` d ON o.id = d.id
WHERE o.note <> 'it''s silver.x' AND o.path <> 'a\\'silver.q' AND o.k = SILVER . Retail_Items.k"""


def test_references_skip_literals_and_comments() -> None:
    assert table_references(SQL) == {
        ("silver", "retail_orders"),
        ("gold", "daily_revenue"),
        ("silver", "retail_items"),
    }


def test_rewrite_touches_only_references() -> None:
    out = rewrite_references(SQL, lambda layer, name: f"<{layer}:{name}>")
    assert "FROM <silver:retail_orders> o" in out
    assert "JOIN <gold:daily_revenue> d" in out
    for kept in ("'silver.orders'", '"gold.y"', "-- from gold.commented", "/* silver.hidden */", "'it''s silver.x'"):
        assert kept in out
    assert "'a\\'silver.q'" in out


def test_a_longer_name_is_not_a_prefix_match() -> None:
    assert table_references("SELECT * FROM silver.orders_v2") == {("silver", "orders_v2")}
    assert table_references("SELECT silvery.x, gold_y.z FROM t") == set()
