"""Exports of a flow (`exports:`): defaults, the names and ids derived from them, and every rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from pipezone.core.spec.catalog import Catalog, load_catalog
from pipezone.core.spec.connection import DESTINATION_TYPES
from pipezone.core.spec.export import ExportSpec
from pipezone.core.spec.flow import FlowSpec
from pipezone.core.spec.loader import validate_document
from pipezone.core.spec.yaml_source import parse_yaml

SOURCE = {"connection": "shop", "table": "orders", "primary_key": ["id"]}
GOLD = [
    {"name": "daily", "sql": "SELECT 1 AS day", "write_mode": "merge", "primary_key": ["day"]},
    {"name": "totals", "sql": "SELECT 1 AS n"},
]


def flow(*exports: dict[str, Any], **overrides: Any) -> FlowSpec:
    data: dict[str, Any] = {"name": "orders", "source": SOURCE, "exports": list(exports)}
    return FlowSpec.model_validate({**data, **overrides})


def gold_flow(*exports: dict[str, Any], gold: list[dict[str, Any]] | None = None) -> FlowSpec:
    return FlowSpec.model_validate({"name": "revenue", "layers": {"gold": gold or GOLD}, "exports": list(exports)})


def problems(text: str) -> list[str]:
    _, found = validate_document(parse_yaml(text, "f.yaml"), FlowSpec)
    return [str(p) for p in found]


def test_defaults_export_silver_to_a_table_named_after_the_flow() -> None:
    spec = flow({"connection": "bi"})
    export = spec.exports[0]
    assert (export.from_, export.schema_, export.table, export.mode) == (None, None, None, "replace")
    assert (export.columns, export.rename, export.name) == (None, {}, None)
    assert export.source_table(spec) == ("silver", "orders")
    assert export.destination_table(spec) == "orders"
    assert export.export_name(spec) == "bi_orders"
    assert export.step(spec) == "export_bi_orders"
    assert export.export_id(spec) == "orders:silver.orders->bi..orders"
    assert export.key_columns(spec) == ["id"]


def test_yaml_keys_are_from_and_schema() -> None:
    export = ExportSpec.model_validate({"from": "gold.daily", "connection": "bi", "schema": "marts"})
    assert (export.from_, export.schema_) == ("gold.daily", "marts")
    assert export.model_dump(by_alias=True)["from"] == "gold.daily"


def test_gold_export_names_and_renamed_key() -> None:
    spec = gold_flow(
        {
            "from": "gold.daily",
            "connection": "bi",
            "schema": "marts",
            "table": "daily_revenue",
            "mode": "upsert",
            "rename": {"day": "revenue_day"},
            "name": "bi_revenue",
        }
    )
    export = spec.exports[0]
    assert export.source_table(spec) == ("gold", "daily")
    assert export.step(spec) == "export_bi_revenue"
    assert export.export_id(spec) == "revenue:gold.daily->bi.marts.daily_revenue"
    assert export.key_columns(spec) == ["revenue_day"]
    assert export.lake_key(spec) == ["day"]


def test_gold_only_flow_with_one_gold_table_exports_it_by_default() -> None:
    spec = gold_flow({"connection": "bi"}, gold=[GOLD[1]])
    assert spec.exports[0].source_table(spec) == ("gold", "totals")
    assert spec.exports[0].export_name(spec) == "bi_totals"


def test_export_steps_run_after_quality_and_before_verify() -> None:
    spec = flow(
        {"connection": "bi"},
        {"connection": "pg", "name": "second"},
        quality=[{"check": "not_null", "columns": ["id"]}],
        verify="daily",
    )
    assert spec.steps() == [
        "extract",
        "bronze",
        "silver",
        "quality",
        "export_bi_orders",
        "export_second",
        "verify",
    ]


@pytest.mark.parametrize(
    ("exports", "expected"),
    [
        ("  - connection: bi\n    from: bronze\n", "exports[0].from: from is 'silver'"),
        ("  - connection: bi\n    mode: merge\n", "exports[0].mode: Input should be 'replace', 'append' or 'upsert'"),
        (
            "  - connection: bi\n    columns: []\n",
            "exports[0].columns: columns is empty: omit it to export every column",
        ),
        ("  - connection: bi\n    table: a-b\n", "exports[0].table: unsafe SQL identifier 'a-b'"),
        ("  - connection: bi\n    columns: [id, id]\n", "exports[0].columns: 'id' is listed twice"),
    ],
)
def test_field_types(exports: str, expected: str) -> None:
    found = problems(
        f"name: orders\nsource: {{connection: shop, table: orders, primary_key: [id]}}\nexports:\n{exports}"
    )
    assert len(found) == 1 and expected in found[0], found


RULES = [
    # from
    (
        "name: g\nlayers:\n  gold:\n    - {name: a, sql: SELECT 1}\n    - {name: b, sql: SELECT 2}\n"
        "exports:\n  - connection: bi\n",
        "f.yaml:7:5: exports[0].from: this flow has several gold tables (a, b): set from: gold.<table>",
    ),
    (
        "name: g\nlayers:\n  gold:\n    - {name: a, sql: SELECT 1}\nexports:\n  - connection: bi\n    from: gold.c\n",
        "f.yaml:7:11: exports[0].from: no gold table 'c' in this flow (its gold tables: a)",
    ),
    (
        "name: g\nlayers:\n  gold:\n    - {name: a, sql: SELECT 1}\nexports:\n  - connection: bi\n    from: silver\n",
        "f.yaml:7:11: exports[0].from: this flow has no source, so no silver table: export one of its gold tables (a)",
    ),
    (
        "name: o\nsource: {connection: s, table: t, primary_key: [id]}\nlayers:\n  silver: {enabled: false}\n"
        "exports:\n  - connection: bi\n",
        "f.yaml:6:5: exports[0].from: silver is disabled in this flow (layers.silver.enabled)",
    ),
    # upsert
    (
        "name: o\nsource: {connection: s, table: t}\nlayers:\n  silver: {write_mode: overwrite}\n"
        "exports:\n  - connection: bi\n    mode: upsert\n",
        "f.yaml:7:11: exports[0].mode: mode upsert matches rows by key: set source.primary_key",
    ),
    (
        "name: g\nlayers:\n  gold:\n    - {name: a, sql: SELECT 1}\nexports:\n  - connection: bi\n    mode: upsert\n",
        "f.yaml:7:11: exports[0].mode: mode upsert matches rows by key: set primary_key on gold table 'a' "
        "(layers.gold[0])",
    ),
    (
        "name: o\nsource: {connection: s, table: t, primary_key: [id]}\nlayers:\n  silver: {write_mode: append}\n"
        "exports:\n  - connection: bi\n    mode: upsert\n",
        "f.yaml:7:11: exports[0].mode: silver write_mode append keeps every version of a row, which can't be "
        "upserted by key: use mode append",
    ),
    (
        "name: o\nsource: {connection: s, table: t, primary_key: [id, line]}\n"
        "exports:\n  - connection: bi\n    mode: upsert\n    columns: [id, amount]\n",
        "f.yaml:6:14: exports[0].columns: mode upsert matches rows by key: columns must include line",
    ),
    # columns and rename
    (
        "name: o\nsource: {connection: s, table: t, primary_key: [id]}\n"
        "exports:\n  - connection: bi\n    columns: [id, _pz_deleted]\n",
        "f.yaml:5:19: exports[0].columns[1]: '_pz_deleted' is one of PipeZone's own _pz_* columns, which exports "
        "leave out",
    ),
    (
        "name: o\nsource: {connection: s, table: t, primary_key: [id]}\n"
        "exports:\n  - connection: bi\n    rename: {_pz_loaded_at: loaded_at}\n",
        "f.yaml:5:14: exports[0].rename._pz_loaded_at: '_pz_loaded_at' is one of PipeZone's own _pz_* columns, "
        "which exports leave out",
    ),
    (
        "name: o\nsource: {connection: s, table: t, primary_key: [id]}\n"
        "exports:\n  - connection: bi\n    columns: [id, amount]\n    rename: {total: amount_usd}\n",
        "f.yaml:6:14: exports[0].rename.total: rename 'total': not among columns (id, amount)",
    ),
    (
        "name: o\nsource: {connection: s, table: t, primary_key: [id]}\n"
        "exports:\n  - connection: bi\n    rename: {net: amount, gross: Amount}\n",
        "f.yaml:5:34: exports[0].rename.gross: 'net' and 'gross' are both renamed to 'Amount'",
    ),
    (
        "name: o\nsource: {connection: s, table: t, primary_key: [id]}\n"
        "exports:\n  - connection: bi\n    columns: [id, net, amount]\n    rename: {net: amount}\n",
        "f.yaml:6:19: exports[0].rename.net: rename 'net' to 'amount' collides with the exported column 'amount'",
    ),
    # names
    (
        "name: o\nsource: {connection: s, table: t, primary_key: [id]}\n"
        "exports:\n  - connection: bi\n  - connection: pg\n    name: bi_o\n",
        "f.yaml:6:11: exports[1].name: exports[0] and exports[1] are both named 'bi_o': give one a distinct name",
    ),
]


@pytest.mark.parametrize(("text", "expected"), RULES, ids=range(len(RULES)))
def test_each_rule_is_one_located_problem(text: str, expected: str) -> None:
    assert problems(text) == [expected]


def test_swapping_two_columns_is_no_collision() -> None:
    spec = flow({"connection": "bi", "columns": ["id", "a", "b"], "rename": {"a": "b", "b": "a"}})
    assert spec.exports[0].renamed("a") == "b"


def test_upsert_with_key_among_columns_is_fine() -> None:
    spec = flow({"connection": "bi", "mode": "upsert", "columns": ["id", "amount"], "rename": {"id": "order_id"}})
    assert spec.exports[0].key_columns(spec) == ["order_id"]


def test_at_most_fifty_exports() -> None:
    many = [{"connection": "bi", "name": f"e{i}"} for i in range(51)]
    with pytest.raises(ValidationError, match="at most 50"):
        flow(*many)


def test_destination_types_are_the_registered_destinations() -> None:
    from pipezone.core.destinations.registry import DESTINATION_ADAPTERS

    assert set(DESTINATION_TYPES) == set(DESTINATION_ADAPTERS)


def _catalog(tmp_path: Path, exports: str) -> Catalog:
    (tmp_path / "connections").mkdir()
    (tmp_path / "flows").mkdir()
    for name, body in {
        "shop": "type: sqlite\npath: shop.db\n",
        "lake": "type: local\npath: lake\n",
        "bi": "type: postgres\nhost: db\ndatabase: bi\n",
        "ora": "type: oracle\nhost: db\ndatabase: ORCL\n",
        "broken": "type: postgres\nhost: db\n",
    }.items():
        (tmp_path / "connections" / f"{name}.yaml").write_text(f"name: {name}\n{body}")
    flow_text = f"name: orders\nsource: {{connection: shop, table: orders, primary_key: [id]}}\nexports:\n{exports}"
    (tmp_path / "flows" / "orders.yaml").write_text(flow_text)
    return load_catalog(tmp_path)


def _lines(catalog: Catalog) -> list[str]:
    return [f"{p.line}:{p.col}: {p.path}: {p.message}" for p in catalog.problems if p.file.endswith("orders.yaml")]


@pytest.mark.parametrize(
    ("connection", "expected"),
    [
        ("bi", []),
        ("shop", []),
        ("bii", ["4:17: exports[0].connection: unknown connection 'bii' (did you mean 'bi'?)"]),
        (
            "lake",
            [
                "4:17: exports[0].connection: connection 'lake' has type 'local'; exports go to postgres, "
                "mysql, mariadb or sqlite connections"
            ],
        ),
        (
            "ora",
            [
                "4:17: exports[0].connection: connection 'ora' has type 'oracle'; exports go to postgres, "
                "mysql, mariadb or sqlite connections"
            ],
        ),
    ],
)
def test_export_connection_exists_and_is_a_destination(tmp_path: Path, connection: str, expected: list[str]) -> None:
    assert _lines(_catalog(tmp_path, f"  - connection: {connection}\n")) == expected


def test_a_broken_export_connection_leaves_the_flow_its_dag(tmp_path: Path) -> None:
    catalog = _catalog(tmp_path, "  - connection: broken\n")
    [line] = _lines(catalog)
    assert line.startswith("4:17: exports[0].connection: connection 'broken' is invalid (see ")
    assert line.endswith("broken.yaml)")
    assert catalog.own_problems("orders") == []
