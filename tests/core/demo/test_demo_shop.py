"""Demo retail source: deterministic content, change batches an incremental sync can see, clean errors."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from pipezone.core.demo.shop import (
    TABLES,
    DemoSourceError,
    applied_batches,
    apply_change_batch,
    as_money,
    create_retail_db,
    main,
    max_updated_at,
    table_counts,
)

TS_PATTERN = "____-__-__ __:__:__"


def dump(path: Path) -> dict[str, list[tuple[object, ...]]]:
    with sqlite3.connect(path) as conn:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in (*TABLES, "_demo_batches")}


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "retail.db"
    create_retail_db(path)
    return path


def test_counts_and_speed(tmp_path: Path) -> None:
    started = time.perf_counter()
    counts = create_retail_db(tmp_path / "r.db", customers=200, products=50, orders=1000)
    assert time.perf_counter() - started < 1.0
    assert counts["customers"] == 200 and counts["products"] == 50 and counts["orders"] == 1000
    assert 1000 <= counts["order_items"] <= 4000
    assert table_counts(tmp_path / "r.db") == counts
    assert create_retail_db(tmp_path / "small.db", customers=3, products=2, orders=5)["orders"] == 5


def test_same_seed_same_content_other_seed_differs(tmp_path: Path) -> None:
    for name in ("a.db", "b.db"):
        create_retail_db(tmp_path / name, seed=7)
        apply_change_batch(tmp_path / name, batch=1)
        apply_change_batch(tmp_path / name, batch=2)
    assert dump(tmp_path / "a.db") == dump(tmp_path / "b.db")
    create_retail_db(tmp_path / "c.db", seed=8)
    assert dump(tmp_path / "c.db")["customers"] != dump(tmp_path / "a.db")["customers"]


def test_schema_declares_timestamps_and_numeric_money(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        declared = {(table, row[1]): row[2] for table in TABLES for row in conn.execute(f"PRAGMA table_info({table})")}
        assert declared[("customers", "updated_at")] == "TIMESTAMP"
        assert declared[("orders", "order_date")] == "TIMESTAMP"
        assert declared[("products", "unit_price")] == "NUMERIC(10,2)"
        assert declared[("order_items", "unit_price")] == "NUMERIC(10,2)"
        for table in TABLES:
            bad = conn.execute(
                f"SELECT COUNT(*) FROM {table} WHERE updated_at NOT LIKE ? OR typeof(updated_at) <> 'text'",
                (TS_PATTERN,),
            ).fetchone()[0]
            assert bad == 0, table


def test_money_reads_back_exactly_and_totals_add_up(db: Path) -> None:
    apply_change_batch(db, batch=1)
    with sqlite3.connect(db) as conn:
        for (price,) in conn.execute("SELECT unit_price FROM products"):
            # The stored double is the one nearest to the cents value, and prints as that value.
            assert float(as_money(price)) == price
            assert Decimal(repr(price)) == as_money(price)
        lines: dict[int, Decimal] = {}
        for order_id, qty, price in conn.execute("SELECT order_id, quantity, unit_price FROM order_items"):
            lines[order_id] = lines.get(order_id, Decimal(0)) + as_money(price) * qty
        totals = dict(conn.execute("SELECT order_id, total_amount FROM orders"))
    assert {k: as_money(v) for k, v in totals.items()} == lines


def test_data_has_quirks_for_cleaning(db: Path) -> None:
    with sqlite3.connect(db) as conn:

        def count(sql: str) -> int:
            return conn.execute(sql).fetchone()[0]

        assert count("SELECT COUNT(*) FROM customers WHERE email IS NULL") > 0
        assert count("SELECT COUNT(*) FROM customers WHERE email <> lower(trim(email, ' ' || char(9)))") > 0
        assert count("SELECT COUNT(*) FROM customers WHERE email <> trim(email, ' ' || char(9))") > 0
        assert count("SELECT COUNT(*) FROM orders WHERE status = 'cancelled'") > 0
        assert count("SELECT COUNT(*) FROM products WHERE active = 0") > 0


def test_change_batch_inserts_updates_and_advances_every_table(db: Path) -> None:
    before_counts, before_max = table_counts(db), max_updated_at(db)
    previous_global_max = max(before_max.values())
    changes = apply_change_batch(db, batch=1)
    after_counts, after_max = table_counts(db), max_updated_at(db)
    for table in TABLES:
        edited = changes[table]["updated"] > 0 if table != "reviews" else changes[table]["updated"] == 0  # insert-only
        assert changes[table]["inserted"] > 0 and edited, table
        assert after_counts[table] == before_counts[table] + changes[table]["inserted"], table
        assert after_max[table] > previous_global_max, table
    with sqlite3.connect(db) as conn:
        for table in TABLES:
            changed = conn.execute(f"SELECT COUNT(*) FROM {table} WHERE updated_at > ?", (previous_global_max,))
            assert changed.fetchone()[0] == changes[table]["inserted"] + changes[table]["updated"], table
    second = apply_change_batch(db, batch=2)
    assert all(max_updated_at(db)[t] > max(after_max.values()) for t in TABLES if second[t]["inserted"])
    assert applied_batches(db) == [1, 2]


def test_repeated_batch_is_refused_and_changes_nothing(db: Path) -> None:
    apply_change_batch(db, batch=1)
    snapshot = dump(db)
    with pytest.raises(DemoSourceError, match="batch 1 was already applied"):
        apply_change_batch(db, batch=1)
    assert dump(db) == snapshot
    with pytest.raises(DemoSourceError, match=">= 1"):
        apply_change_batch(db, batch=0)


def test_bad_paths_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(DemoSourceError, match="no demo database"):
        table_counts(tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()  # opening must not create it
    with pytest.raises(DemoSourceError, match="no demo database"):
        apply_change_batch(tmp_path / "missing.db")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DemoSourceError, match="not a directory"):
        create_retail_db(tmp_path / "notes.txt" / "x.db")
    with pytest.raises(DemoSourceError):
        table_counts(tmp_path / "notes.txt")
    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(DemoSourceError, match="not a demo retail database"):
        table_counts(tmp_path / "other.db")


def test_create_refuses_to_overwrite_unless_asked(db: Path) -> None:
    apply_change_batch(db, batch=1)
    with pytest.raises(DemoSourceError, match="already exists"):
        create_retail_db(db)
    assert create_retail_db(db, overwrite=True)["customers"] == 200
    assert applied_batches(db) == []
    assert [p.name for p in db.parent.iterdir()] == [db.name]  # no temporary file left behind


def test_cli_prints_one_line_per_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "sub" / "cli.db"
    assert main(["create", str(path), "--orders", "100"]) == 0
    assert capsys.readouterr().out.splitlines()[2] == "orders: 100 rows"
    assert main(["change", str(path), "--batch", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == list(TABLES)
    assert "inserted" in lines[0] and "updated" in lines[0]
    assert main(["counts", str(path)]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("customers: 205 rows, max updated_at 20")
    assert main(["change", str(path), "--batch", "1"]) == 1
    assert capsys.readouterr().err == f"error: batch 1 was already applied to {path}\n"


def test_cli_errors_have_no_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pipezone.core.demo.shop", "counts", str(tmp_path / "nope.db")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr == f"error: no demo database at {tmp_path / 'nope.db'}\n"


def test_reviews_carry_what_each_row_check_action_is_for(db: Path) -> None:
    """Bad ratings (quarantine), blank bodies (drop), missing titles (warn); never a review without its
    product (fail) — the demo flow retail_reviews shows every action on these."""
    with sqlite3.connect(db) as conn:
        count = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
        assert count("SELECT COUNT(*) FROM reviews WHERE rating NOT BETWEEN 1 AND 5") > 0
        assert count("SELECT COUNT(*) FROM reviews WHERE trim(body, ' ' || char(9)) = ''") > 0
        assert count("SELECT COUNT(*) FROM reviews WHERE title IS NULL") > 0
        assert count("SELECT COUNT(*) FROM reviews WHERE product_id NOT IN (SELECT product_id FROM products)") == 0
