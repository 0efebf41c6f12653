"""Silver transforms on real Spark: each kind on its own, applied in order, and renames carried to keys/cursor."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from pipezone.core.spec.flow import Transform
from pipezone.core.steps.transforms import apply_transforms, latest_per_key, renamed, unchanged_columns

pytestmark = pytest.mark.spark

SCHEMA = "id INT, name STRING, email STRING, amount STRING, status STRING, updated_at TIMESTAMP, notes STRING"
T1 = datetime(2024, 1, 1, 10, 0, tzinfo=UTC)
T2 = datetime(2024, 1, 2, 10, 0, tzinfo=UTC)


def t(**kind: Any) -> Transform:
    return Transform.model_validate(kind)


def by_id(df: Any, *columns: str) -> dict[Any, tuple[Any, ...]]:
    return {r[0]: tuple(r[1:]) for r in df.select("id", *columns).collect()}


@pytest.fixture(scope="module")
def people(spark: Any) -> Any:
    rows = [
        (1, "  Ann \t", " Ann.Lee@Example.COM\t\n", "12.345", "paid", T1, "x"),
        (2, "Bob", "bob@example.com", "0.10", "cancelled", T2, None),
        (3, "\tMary Ann  ", None, "7", "test", None, "y"),
    ]
    return spark.createDataFrame(rows, SCHEMA)


def test_rename(people: Any) -> None:
    out = apply_transforms(people, [t(rename={"id": "customer_id", "name": "first_name"})])
    assert out.columns[:2] == ["customer_id", "first_name"]
    assert "id" not in out.columns and "name" not in out.columns
    assert sorted(r.customer_id for r in out.collect()) == [1, 2, 3]


def test_renamed_carries_keys_and_cursor_through_every_rename() -> None:
    transforms = [
        t(rename={"id": "customer_id"}),
        t(trim=["name"]),
        t(rename={"customer_id": "customer_key", "updated_at": "changed_at"}),
    ]
    assert renamed(["id", "updated_at", "email"], transforms) == ["customer_key", "changed_at", "email"]
    assert renamed(["id"], [t(trim=["id"])]) == ["id"]
    assert renamed([], transforms) == []


def test_unchanged_columns_follow_renames_and_give_up_on_any_write_to_a_key() -> None:
    """Silver filters its table by bronze's key ranges only where the key's values pass through unchanged."""
    keep = [
        t(rename={"id": "customer_id"}),
        t(filter="status <> 'x'"),
        t(lower=["email"]),
        t(deduplicate={"keys": ["id"]}),
    ]
    assert unchanged_columns(["id", "region"], keep) == {"customer_id": "id", "region": "region"}
    assert unchanged_columns(["id"], []) == {"id": "id"}
    changes = [
        t(cast={"id": "string"}),
        t(derive={"ID": "id + 1"}),  # Spark's names are case-insensitive
        t(trim=["id"]),
        t(lower=["id"]),
        t(drop=["id"]),
        t(rename={"legacy_id": "id"}),  # another column's values under the key's name
        t(rename={"ID": "key"}),  # renamed() follows exact names only
    ]
    for change in changes:
        assert unchanged_columns(["id"], [change]) is None, change
    assert unchanged_columns(["id"], [t(rename={"id": "k"}), t(cast={"k": "bigint"})]) is None


def test_cast(people: Any) -> None:
    out = apply_transforms(people, [t(cast={"amount": "decimal(10,2)", "id": "bigint"})])
    types = dict(out.dtypes)
    assert types["amount"] == "decimal(10,2)" and types["id"] == "bigint"
    assert by_id(out, "amount") == {1: (Decimal("12.35"),), 2: (Decimal("0.10"),), 3: (Decimal("7.00"),)}


def test_trim_strips_surrounding_whitespace_including_tabs_and_line_breaks(people: Any) -> None:
    out = apply_transforms(people, [t(trim=["name", "email"])])
    assert by_id(out, "name", "email") == {
        1: ("Ann", "Ann.Lee@Example.COM"),
        2: ("Bob", "bob@example.com"),
        3: ("Mary Ann", None),  # inner whitespace kept, NULL stays NULL
    }


def test_lower(people: Any) -> None:
    out = apply_transforms(people, [t(lower=["email"])])
    assert by_id(out, "email") == {1: (" ann.lee@example.com\t\n",), 2: ("bob@example.com",), 3: (None,)}


def test_filter_keeps_rows_where_the_condition_is_true(people: Any) -> None:
    assert sorted(by_id(apply_transforms(people, [t(filter="status <> 'test'")]))) == [1, 2]
    # NULL is not true: the row goes
    assert sorted(by_id(apply_transforms(people, [t(filter="notes <> 'x'")]))) == [3]


def test_derive_adds_expression_columns(people: Any) -> None:
    out = apply_transforms(people, [t(derive={"is_cancelled": "status = 'cancelled'", "id2": "id * 2"})])
    assert by_id(out, "is_cancelled", "id2") == {1: (False, 2), 2: (True, 4), 3: (False, 6)}


def test_drop(people: Any) -> None:
    out = apply_transforms(people, [t(drop=["notes", "amount"])])
    assert out.columns == ["id", "name", "email", "status", "updated_at"]


def test_deduplicate_keeps_the_newest_row_per_key(spark: Any) -> None:
    rows = [(1, "old", T1), (1, "new", T2), (1, "null-cursor", None), (2, "only", None), (3, "a", T1)]
    df = spark.createDataFrame(rows, "id INT, v STRING, updated_at TIMESTAMP")
    out = apply_transforms(df, [t(deduplicate={"keys": ["id"], "order_by": "updated_at"})])
    assert by_id(out, "v") == {1: ("new",), 2: ("only",), 3: ("a",)}
    # without order_by: still exactly one row per key
    anyone = apply_transforms(df, [t(deduplicate={"keys": ["id"]})])
    assert sorted(r.id for r in anyone.collect()) == [1, 2, 3]


def test_latest_per_key_breaks_cursor_ties_by_the_next_column(spark: Any) -> None:
    rows = [(1, "batch 1", T2, 1), (1, "batch 3", T2, 3), (1, "older cursor", T1, 9), (2, "x", T1, 1)]
    df = spark.createDataFrame(rows, "id INT, v STRING, updated_at TIMESTAMP, _pz_batch BIGINT")
    assert by_id(latest_per_key(df, ["id"], ["updated_at", "_pz_batch"]), "v") == {1: ("batch 3",), 2: ("x",)}
    assert latest_per_key(df, [], ["updated_at"]).count() == 4  # no key: nothing to deduplicate


def test_transforms_apply_in_the_order_given(people: Any) -> None:
    transforms = [
        t(rename={"id": "customer_id"}),
        t(trim=["email"]),
        t(lower=["email"]),
        t(derive={"domain": "substring_index(email, '@', -1)"}),
        t(filter="customer_id < 3"),
        t(drop=["notes"]),
    ]
    out = apply_transforms(people, transforms)
    got = {r.customer_id: (r.email, r.domain) for r in out.collect()}
    assert got == {1: ("ann.lee@example.com", "example.com"), 2: ("bob@example.com", "example.com")}
    assert "notes" not in out.columns
