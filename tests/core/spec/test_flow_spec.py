from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from pipezone.core.spec.flow import FlowSpec

BASE = {"name": "orders", "source": {"connection": "shop", "table": "orders", "primary_key": ["id"]}}


def flow(**overrides: object) -> FlowSpec:
    return FlowSpec.model_validate({**BASE, **overrides})


def test_defaults_make_a_full_medallion_flow() -> None:
    spec = flow()
    assert spec.steps() == ["extract", "bronze", "silver"]
    assert spec.layers.silver.write_mode == "merge"
    assert spec.retry_delay == timedelta(minutes=5)
    assert spec.schedule is None


@pytest.mark.parametrize(
    ("value", "field", "expected"),
    [
        ("0 */6 * * *", "cron", "0 */6 * * *"),
        ("@daily", "preset", "@daily"),
        (["a", "b"], "after", ["a", "b"]),
        ({"after": ["a"]}, "after", ["a"]),
    ],
)
def test_schedule_shorthands(value: object, field: str, expected: object) -> None:
    assert getattr(flow(schedule=value).schedule, field) == expected


@pytest.mark.parametrize("cron", ["* * *", "0 24 * * *", "every day", "0 0 * * * *"])
def test_invalid_cron_rejected(cron: str) -> None:
    with pytest.raises(ValidationError, match="invalid cron"):
        flow(schedule={"cron": cron})


def test_durations_dump_back_to_their_short_form() -> None:
    spec = flow(timeout="90m", retry_delay=30)
    dumped = spec.model_dump(mode="json")
    assert dumped["timeout"] == "90m"
    assert dumped["retry_delay"] == "30s"


def test_yaml_dates_become_text_cursor_values() -> None:
    from datetime import datetime

    source = {**BASE["source"], "incremental": {"cursor": "updated_at", "initial_value": datetime(2024, 1, 2, 3, 4, 5)}}
    assert flow(source=source).source.incremental.initial_value == "2024-01-02 03:04:05"


def test_gold_only_flow_and_dependencies() -> None:
    spec = FlowSpec.model_validate(
        {
            "name": "revenue",
            "layers": {"gold": [{"name": "daily", "sql": "SELECT * FROM silver.orders o JOIN Silver.items i"}]},
            "schedule": {"after": ["customers"]},
        }
    )
    assert spec.steps() == ["gold"]
    assert spec.upstream_flows() == {"orders", "items", "customers"}


def test_gold_only_flow_cannot_configure_source_layers() -> None:
    with pytest.raises(ValidationError, match="need a 'source'"):
        FlowSpec.model_validate(
            {"name": "g", "layers": {"silver": {"write_mode": "append"}, "gold": [{"name": "x", "sql": "SELECT 1"}]}}
        )


@pytest.mark.parametrize("sql", ["DELETE FROM silver.orders", "SELECT 1; DROP TABLE x", "  "])
def test_gold_sql_must_be_one_select(sql: str) -> None:
    with pytest.raises(ValidationError):
        FlowSpec.model_validate({"name": "g", "layers": {"gold": [{"name": "x", "sql": sql}]}})


def test_transform_kinds() -> None:
    transforms = [
        {"rename": {"a": "b"}},
        {"cast": {"b": "Decimal(12, 2)"}},
        {"filter": "b > 0"},
        {"derive": {"c": "b * 2"}},
        {"drop": ["c"]},
        {"deduplicate": {"keys": ["id"], "order_by": "updated_at"}},
    ]
    spec = flow(layers={"silver": {"transforms": transforms}})
    assert [t.kind for t in spec.layers.silver.transforms] == [
        "rename",
        "cast",
        "filter",
        "derive",
        "drop",
        "deduplicate",
    ]
    assert spec.layers.silver.transforms[1].cast == {"b": "decimal(12,2)"}


def test_append_needs_no_primary_key() -> None:
    source = {"connection": "shop", "table": "events"}
    spec = flow(source=source, layers={"silver": {"write_mode": "append"}})
    assert spec.source.primary_key == []


def test_incremental_safety_buffer_defaults_to_ten_seconds() -> None:
    spec = flow(source={**BASE["source"], "incremental": {"cursor": "updated_at"}})
    assert spec.source.incremental.safety_buffer == timedelta(seconds=10)
    spec = flow(source={**BASE["source"], "incremental": {"cursor": "updated_at", "safety_buffer": "2m"}})
    assert spec.source.incremental.safety_buffer == timedelta(minutes=2)


def test_delete_detection_needs_a_primary_key() -> None:
    spec = flow(source={**BASE["source"], "deletes": {"every": "6h"}})
    assert spec.source.deletes.every == timedelta(hours=6)
    assert flow(source={**BASE["source"], "deletes": {}}).source.deletes.every == timedelta(0)
    with pytest.raises(ValidationError, match="deletes needs source.primary_key"):
        flow(
            source={"connection": "shop", "table": "orders", "deletes": {}}, layers={"silver": {"write_mode": "append"}}
        )
