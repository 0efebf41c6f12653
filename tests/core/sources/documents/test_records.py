"""Records (JSON-like dicts) into Arrow tables: the widening lattice, nested JSON text, names the lake takes,
and chunks typed separately unified into one table (pipezone/core/sources/documents/records.py)."""

from __future__ import annotations

import math
import re
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from pipezone.core.sources.documents.lake_fit import typed_records
from pipezone.core.sources.documents.records import (
    MAX_DEPTH,
    finalize,
    flat_json,
    infer,
    json_text,
    names_fit,
    records_to_arrow,
    renamed,
    text_of,
    type_depth,
    unify,
    widen,
)

TS = pa.timestamp("us", tz="UTC")
A_UUID = uuid.UUID("12345678-1234-5678-1234-567812345678")


def schema(*fields: tuple[str, pa.DataType]) -> pa.Schema:
    return pa.schema([pa.field(name, kind) for name, kind in fields])


def struct(*fields: tuple[str, pa.DataType]) -> pa.DataType:
    return pa.struct([pa.field(name, kind) for name, kind in fields])


def column(records: list[dict[str, Any]], name: str = "a") -> tuple[pa.DataType, list[Any]]:
    """One column's type and values, as `records_to_arrow` types the records."""
    table = records_to_arrow(records)
    return table.schema.field(name).type, table.column(name).to_pylist()


# ------------------------------------------------------------------------------------------ fast path


def test_homogeneous_records_keep_nested_structs_and_lists():
    records = [
        {"_id": "a1", "n": 1, "doc": {"x": 1, "tags": ["p", "q"]}, "items": [{"sku": "s1", "qty": 2}]},
        {"_id": "a2", "n": 2, "doc": {"x": 2, "tags": []}, "items": []},
    ]
    table = records_to_arrow(records)
    assert table.schema == schema(
        ("_id", pa.string()),
        ("n", pa.int64()),
        ("doc", struct(("x", pa.int64()), ("tags", pa.list_(pa.string())))),
        ("items", pa.list_(struct(("sku", pa.string()), ("qty", pa.int64())))),
    )
    assert table.to_pylist() == records


def test_a_field_only_in_later_records_is_kept_in_order_of_first_appearance():
    records = [{"b": 1, "a": "x"}, {"a": "y", "c": True}, {"d": {"k": 1}, "b": 3}]
    table = records_to_arrow(records)
    assert table.column_names == ["b", "a", "c", "d"]
    assert table.schema == schema(
        ("b", pa.int64()), ("a", pa.string()), ("c", pa.bool_()), ("d", struct(("k", pa.int64())))
    )
    assert table.to_pylist() == [
        {"b": 1, "a": "x", "c": None, "d": None},
        {"b": None, "a": "y", "c": True, "d": None},
        {"b": 3, "a": None, "c": None, "d": {"k": 1}},
    ]


def test_a_nested_field_only_in_later_records_is_merged_into_the_struct():
    table = records_to_arrow([{"doc": {"x": 1}}, {"doc": {"x": 2, "y": "s"}}])
    assert table.schema == schema(("doc", struct(("x", pa.int64()), ("y", pa.string()))))
    assert table.to_pylist() == [{"doc": {"x": 1, "y": None}}, {"doc": {"x": 2, "y": "s"}}]


def test_no_records_is_an_empty_table():
    table = records_to_arrow([])
    assert table.num_columns == 0 and table.num_rows == 0


# ------------------------------------------------------------------------------------------ widening


def test_int_and_float_widen_to_double():
    assert column([{"a": 1}, {"a": 2.5}]) == (pa.float64(), [1.0, 2.5])


def test_int_and_str_widen_to_string():
    assert column([{"a": 1}, {"a": "x"}]) == (pa.string(), ["1", "x"])


def test_bool_and_int_widen_to_string_with_json_spelling():
    assert column([{"a": True}, {"a": 1}]) == (pa.string(), ["true", "1"])
    assert column([{"a": 1}, {"a": False}]) == (pa.string(), ["1", "false"])


def test_struct_and_str_widen_to_json_text():
    kind, values = column([{"a": {"k": 1, "j": "é", "n": None, "l": [1, 2]}}, {"a": "x"}])
    assert kind == pa.string()
    assert values == ['{"k":1,"j":"é","n":null,"l":[1,2]}', "x"]


def test_list_and_str_widen_to_json_text():
    assert column([{"a": [1, "b"]}, {"a": "x"}]) == (pa.string(), ['[1,"b"]', "x"])


def test_list_element_conflicts_widen_the_element_type():
    assert column([{"a": [1]}, {"a": [2.5]}]) == (pa.list_(pa.float64()), [[1.0], [2.5]])
    assert column([{"a": [1, "x"]}, {"a": [2.5, None]}]) == (pa.list_(pa.string()), [["1", "x"], ["2.5", None]])
    assert column([{"a": [{"k": 1}, "x"]}]) == (pa.list_(pa.string()), [['{"k":1}', "x"]])


def test_list_of_structs_merge_fields_and_widen_them():
    kind, values = column([{"a": [{"k": 1}]}, {"a": [{"k": "x", "m": True}]}])
    assert kind == pa.list_(struct(("k", pa.string()), ("m", pa.bool_())))
    assert values == [[{"k": "1", "m": None}], [{"k": "x", "m": True}]]


def test_struct_field_conflict_widens_only_that_field():
    kind, values = column([{"a": {"x": 1, "y": 1}}, {"a": {"x": "s", "y": 2.5}}])
    assert kind == struct(("x", pa.string()), ("y", pa.float64()))
    assert values == [{"x": "1", "y": 1.0}, {"x": "s", "y": 2.5}]


def test_decimals_widen_to_precision_and_scale_holding_both():
    assert column([{"a": Decimal("1.5")}, {"a": Decimal("123.25")}]) == (
        pa.decimal128(5, 2),
        [Decimal("1.50"), Decimal("123.25")],
    )


def test_decimal_and_int_stay_decimal():
    kind, values = column([{"a": Decimal("1.5")}, {"a": 7}])
    assert pa.types.is_decimal(kind) and kind.scale == 1
    assert values == [Decimal("1.5"), Decimal("7")]
    # on the slow path (another field conflicts) the lattice's own rule: an int needs 19 digits
    table = records_to_arrow([{"a": Decimal("1.5"), "b": 1}, {"a": 7, "b": "x"}])
    assert table.schema == schema(("a", pa.decimal128(20, 1)), ("b", pa.string()))
    assert table.to_pylist() == [{"a": Decimal("1.5"), "b": "1"}, {"a": Decimal("7.0"), "b": "x"}]


def test_decimal_and_float_widen_to_string():
    assert column([{"a": Decimal("1.50")}, {"a": 2.5}]) == (pa.string(), ["1.50", "2.5"])


def test_decimal_and_str_widen_to_exact_text():
    assert column([{"a": Decimal("1.50")}, {"a": "x"}]) == (pa.string(), ["1.50", "x"])


def test_non_finite_decimal_is_text():
    assert column([{"a": Decimal("NaN")}]) == (pa.string(), ["NaN"])


def test_int_beyond_int64_is_text():
    assert column([{"a": 2**64}]) == (pa.string(), ["18446744073709551616"])
    assert column([{"a": 1}, {"a": -(2**63) - 1}]) == (pa.string(), ["1", "-9223372036854775809"])
    assert column([{"a": 2**63 - 1}]) == (pa.int64(), [2**63 - 1])
    assert column([{"a": {"n": 2**64}}]) == (struct(("n", pa.string())), [{"n": "18446744073709551616"}])


def test_float_nan_is_kept_as_a_double():
    kind, values = column([{"a": float("nan")}, {"a": 1}])
    assert kind == pa.float64()
    assert math.isnan(values[0]) and values[1] == 1.0


def test_non_finite_float_widened_to_string_is_its_json_spelling():
    assert column([{"a": float("nan")}, {"a": float("inf")}, {"a": "x"}]) == (pa.string(), ["NaN", "Infinity", "x"])


def test_timestamp_widened_to_string_is_iso_text():
    moment = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert column([{"a": moment}, {"a": "x"}]) == (pa.string(), ["2024-01-02T03:04:05+00:00", "x"])
    assert column([{"a": date(2024, 1, 2)}, {"a": 1}]) == (pa.string(), ["2024-01-02", "1"])


# ------------------------------------------------------------------------------------------ scalar types


def test_utc_datetimes_are_utc_timestamps():
    moment = datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    kind, values = column([{"a": moment}, {"a": None}])
    assert kind == TS
    assert values == [moment, None]
    assert values[0].utcoffset().total_seconds() == 0


def test_dates_are_date32():
    assert column([{"a": date(2024, 1, 2)}]) == (pa.date32(), [date(2024, 1, 2)])


def test_bytes_are_binary():
    assert column([{"a": b"\x00\xff"}, {"a": b""}]) == (pa.binary(), [b"\x00\xff", b""])


def test_uuid_is_its_text():
    # pymongo with uuidRepresentation="standard" decodes BSON UUIDs to uuid.UUID; pyarrow (>= 21) infers its
    # own uuid extension type for them and refuses it ("extension": ArrowNotImplementedError)
    text = "12345678-1234-5678-1234-567812345678"
    assert column([{"a": A_UUID}]) == (pa.string(), [text])
    assert column([{"a": {"u": A_UUID}}]) == (struct(("u", pa.string())), [{"u": text}])
    assert column([{"a": [A_UUID]}]) == (pa.list_(pa.string()), [[text]])
    assert column([{"a": A_UUID}, {"a": "x"}]) == (pa.string(), [text, "x"])


def test_other_unknown_objects_are_their_text():
    class Odd:
        def __str__(self) -> str:
            return "odd!"

    assert column([{"a": Odd()}]) == (pa.string(), ["odd!"])
    assert column([{"a": re.compile("ab+")}]) == (pa.string(), ["re.compile('ab+')"])


# ------------------------------------------------------------------------------------------ nulls and empties


def test_a_top_level_field_null_in_every_record_is_left_out():
    table = records_to_arrow([{"a": 1, "n": None}, {"a": 2, "n": None}])
    assert table.schema == schema(("a", pa.int64()))
    assert table.to_pylist() == [{"a": 1}, {"a": 2}]


def test_a_nested_field_null_in_every_record_is_a_string():
    table = records_to_arrow([{"a": {"x": None, "y": 1}}, {"a": {"x": None, "y": 2}}])
    assert table.schema == schema(("a", struct(("x", pa.string()), ("y", pa.int64()))))
    assert table.to_pylist() == [{"a": {"x": None, "y": 1}}, {"a": {"x": None, "y": 2}}]


def test_an_empty_sub_document_is_json_text():
    table = records_to_arrow([{"a": {}, "b": {"e": {}, "y": 1}}])
    assert table.schema == schema(("a", pa.string()), ("b", struct(("e", pa.string()), ("y", pa.int64()))))
    assert table.to_pylist() == [{"a": "{}", "b": {"e": "{}", "y": 1}}]


def test_empty_and_all_null_arrays_are_lists_of_string():
    table = records_to_arrow([{"a": [], "b": [None]}])
    assert table.schema == schema(("a", pa.list_(pa.string())), ("b", pa.list_(pa.string())))
    assert table.to_pylist() == [{"a": [], "b": [None]}]


def test_a_record_without_fields_is_a_row_of_nulls():
    assert column([{}, {"a": 1}]) == (pa.int64(), [None, 1])


# ------------------------------------------------------------------------------------------ nested: json


def test_nested_json_mode_writes_sub_documents_and_arrays_as_compact_json_text():
    records = [
        {
            "_id": "a",
            "n": 5,
            "at": datetime(2024, 1, 2, tzinfo=UTC),
            "doc": {
                "z": 1,
                "a": "é ü 中",
                "t": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
                "d": date(2024, 1, 2),
                "p": Decimal("1.50"),
                "b": b"\x00\xff",
            },
            "arr": [1, {"k": None}, [True]],
            "empty": {},
            "none": [],
        },
        {"_id": "b", "n": 6, "doc": "plain", "arr": None},
    ]
    table = typed_records(records, "json", None)
    assert table.schema == schema(
        ("_id", pa.string()),
        ("n", pa.int64()),
        ("at", TS),
        ("doc", pa.string()),
        ("arr", pa.string()),
        ("empty", pa.string()),
        ("none", pa.string()),
    )
    assert table.to_pylist() == [
        {
            "_id": "a",
            "n": 5,
            "at": datetime(2024, 1, 2, tzinfo=UTC),
            "doc": '{"z":1,"a":"é ü 中","t":"2024-01-02T03:04:05+00:00","d":"2024-01-02","p":"1.50","b":"AP8="}',
            "arr": '[1,{"k":null},[true]]',
            "empty": "{}",
            "none": "[]",
        },
        {"_id": "b", "n": 6, "at": None, "doc": "plain", "arr": None, "empty": None, "none": None},
    ]


def test_nested_json_mode_renames_only_top_level_keys():
    table = typed_records([{"a b": {"c d": 1}}], "json", None)
    assert table.schema == schema(("a_b", pa.string()))
    assert table.to_pylist() == [{"a_b": '{"c d":1}'}]


# ------------------------------------------------------------------------------------------ names


def test_forbidden_characters_in_names_become_underscores():
    records = [{"a b": 1, "c=d": 2, "e,f": 3, "g;h{i}(j)": 4, "t\tn\nx": 5, "": 6, "ok": 7}]
    table = typed_records(records, "struct", None)
    assert table.column_names == ["a_b", "c_d", "e_f", "g_h_i__j_", "t_n_x", "_", "ok"]
    assert table.to_pylist() == [{"a_b": 1, "c_d": 2, "e_f": 3, "g_h_i__j_": 4, "t_n_x": 5, "_": 6, "ok": 7}]


def test_names_equal_but_for_case_get_a_suffix():
    table = typed_records([{"Name": "x", "name": "y", "NAME": "z"}], "struct", None)
    assert table.schema == schema(("Name", pa.string()), ("name__2", pa.string()), ("NAME__3", pa.string()))
    assert table.to_pylist() == [{"Name": "x", "name__2": "y", "NAME__3": "z"}]


def test_a_cleaned_name_colliding_with_another_gets_a_suffix():
    table = typed_records([{"a_b": 1, "a b": 2}], "struct", None)
    assert table.to_pylist() == [{"a_b": 1, "a_b__2": 2}]


def test_nested_names_are_renamed_too_values_kept():
    records = [{"sub": {"x y": 1, "K": 2, "k": 3}, "arr": [{"p=q": "v", "P=Q": "w"}]}]
    table = typed_records(records, "struct", None)
    assert table.schema == schema(
        ("sub", struct(("x_y", pa.int64()), ("K", pa.int64()), ("k__2", pa.int64()))),
        ("arr", pa.list_(struct(("p_q", pa.string()), ("P_Q__2", pa.string())))),
    )
    assert table.to_pylist() == [{"sub": {"x_y": 1, "K": 2, "k__2": 3}, "arr": [{"p_q": "v", "P_Q__2": "w"}]}]


def test_names_fit():
    assert names_fit(struct(("a", pa.int64()), ("b", struct(("c", pa.string())))))
    assert not names_fit(struct(("a b", pa.int64())))
    assert not names_fit(struct(("", pa.int64())))
    assert not names_fit(struct(("a", pa.int64()), ("A", pa.int64())))
    assert not names_fit(struct(("s", struct(("x=y", pa.int64())))))
    assert not names_fit(struct(("l", pa.list_(struct(("k", pa.int64()), ("K", pa.int64()))))))
    assert names_fit(pa.int64())


def test_renamed_leaves_fitting_values_alone():
    value = {"a": [{"b": 1}, 2], "c": {"d": None}}
    assert renamed(value) == value
    assert renamed([{"a b": 1}]) == [{"a_b": 1}]
    assert renamed("a b") == "a b"


# ------------------------------------------------------------------------------------------ unify


def test_unify_widens_chunks_typed_separately():
    first = records_to_arrow([{"a": 1}, {"a": 2}])
    second = records_to_arrow([{"a": "x", "b": [1, 2]}])
    table = unify([first, second])
    assert table.schema == schema(("a", pa.string()), ("b", pa.list_(pa.int64())))
    assert table.to_pylist() == [
        {"a": "1", "b": None},
        {"a": "2", "b": None},
        {"a": "x", "b": [1, 2]},
    ]


def test_unify_timestamp_widened_to_string_is_iso_text_not_arrow_cast_spelling():
    moment = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    table = unify([records_to_arrow([{"t": moment}]), records_to_arrow([{"t": "later"}])])
    assert table.schema == schema(("t", pa.string()))
    assert table.to_pylist() == [{"t": "2024-01-02T03:04:05+00:00"}, {"t": "later"}]


def test_unify_casts_where_the_widened_type_allows():
    table = unify(
        [
            records_to_arrow([{"a": 1, "d": {"x": 1}, "p": Decimal("1.5")}]),
            records_to_arrow([{"a": 2.5, "d": {"y": "s"}, "p": Decimal("123.25")}]),
        ]
    )
    assert table.schema == schema(
        ("a", pa.float64()), ("d", struct(("x", pa.int64()), ("y", pa.string()))), ("p", pa.decimal128(5, 2))
    )
    assert table.to_pylist() == [
        {"a": 1.0, "d": {"x": 1, "y": None}, "p": Decimal("1.50")},
        {"a": 2.5, "d": {"x": None, "y": "s"}, "p": Decimal("123.25")},
    ]


def test_unify_text_rules_for_bools_and_sub_documents():
    table = unify(
        [
            records_to_arrow([{"a": True, "d": {"x": 1, "z": "é"}}]),
            records_to_arrow([{"a": 1, "d": "s"}]),
        ]
    )
    assert table.schema == schema(("a", pa.string()), ("d", pa.string()))
    assert table.to_pylist() == [{"a": "true", "d": '{"x":1,"z":"é"}'}, {"a": "1", "d": "s"}]


def test_unify_skips_empty_chunks():
    only = records_to_arrow([{"a": 1}])
    assert unify([pa.table({}), only, pa.table({})]) is only
    assert unify([]).num_columns == 0
    assert unify([pa.table({})]).num_columns == 0


# ------------------------------------------------------------------------------------------ building blocks


def test_text_of():
    assert text_of("x") == "x"
    assert text_of(True) == "true"
    assert text_of(2.5) == "2.5"
    assert text_of(3) == "3"
    assert text_of({"b": 1, "a": "é"}) == '{"b":1,"a":"é"}'
    assert text_of([1, None]) == "[1,null]"
    assert text_of(datetime(2024, 1, 2, tzinfo=UTC)) == "2024-01-02T00:00:00+00:00"
    assert text_of(date(2024, 1, 2)) == "2024-01-02"
    assert text_of(Decimal("1.50")) == "1.50"
    assert text_of(A_UUID) == "12345678-1234-5678-1234-567812345678"


def test_json_text():
    value = {"z": [Decimal("1.50"), b"ab", A_UUID], "a": {"t": datetime(2024, 1, 2, tzinfo=UTC)}}
    assert json_text(value) == (
        '{"z":["1.50","YWI=","12345678-1234-5678-1234-567812345678"],"a":{"t":"2024-01-02T00:00:00+00:00"}}'
    )


def test_infer():
    assert infer(None) == pa.null()
    assert infer(True) == pa.bool_()
    assert infer(1) == pa.int64()
    assert infer(2**63) == pa.string()
    assert infer(Decimal("12.345")) == pa.decimal128(5, 3)
    assert infer(Decimal("0.001")) == pa.decimal128(3, 3)
    assert infer(Decimal("1E+3")) == pa.decimal128(4, 0)
    assert infer(Decimal("1" + "0" * 38)) == pa.string()
    assert infer(datetime(2024, 1, 2, tzinfo=UTC)) == TS
    assert infer(date(2024, 1, 2)) == pa.date32()
    assert infer([1, 2.5, None]) == pa.list_(pa.float64())
    assert infer({"a": 1, "b": [None]}) == struct(("a", pa.int64()), ("b", pa.list_(pa.null())))


@pytest.mark.parametrize(
    ("a", "b", "wider"),
    [
        (pa.int64(), pa.float64(), pa.float64()),
        (pa.null(), pa.int64(), pa.int64()),
        (pa.int64(), pa.null(), pa.int64()),
        (pa.bool_(), pa.int64(), pa.string()),
        (pa.int64(), pa.string(), pa.string()),
        (TS, pa.date32(), pa.string()),
        (pa.decimal128(2, 1), pa.decimal128(5, 2), pa.decimal128(5, 2)),
        (pa.decimal128(2, 1), pa.int64(), pa.decimal128(20, 1)),
        (pa.decimal128(38, 0), pa.decimal128(2, 1), pa.string()),
        (pa.decimal128(2, 1), pa.float64(), pa.string()),
        (pa.list_(pa.int64()), pa.list_(pa.float64()), pa.list_(pa.float64())),
        (pa.list_(pa.int64()), pa.int64(), pa.string()),
        (
            struct(("x", pa.int64())),
            struct(("y", pa.string()), ("x", pa.float64())),
            struct(("x", pa.float64()), ("y", pa.string())),
        ),
        (struct(("x", pa.int64())), pa.string(), pa.string()),
    ],
)
def test_widen(a: pa.DataType, b: pa.DataType, wider: pa.DataType):
    assert widen(a, b) == wider
    assert widen(b, a) == wider or pa.types.is_struct(wider)  # struct fields in first-seen order


def test_finalize():
    kind = struct(("a", pa.null()), ("b", struct(("c", pa.null()))), ("e", struct()), ("l", pa.list_(pa.null())))
    assert finalize(kind, top=True) == struct(
        ("b", struct(("c", pa.string()))), ("e", pa.string()), ("l", pa.list_(pa.string()))
    )
    assert finalize(struct(), top=True) == struct()
    assert finalize(pa.null()) == pa.string()


# ------------------------------------------------------------------------------------------ known gaps


def test_bool_and_float_widen_to_string():
    assert column([{"a": True}, {"a": 2.5}]) == (pa.string(), ["true", "2.5"])


def test_bytes_and_str_widen_to_string():
    assert column([{"a": b"ab"}, {"a": "x"}])[0] == pa.string()


def test_date_and_datetime_widen_to_string():
    moment = datetime(2024, 1, 2, 3, tzinfo=UTC)
    assert column([{"a": date(2024, 1, 2)}, {"a": moment}]) == (pa.string(), ["2024-01-02", moment.isoformat()])


def test_decimal_beyond_38_digits_is_text():
    assert column([{"a": Decimal("1" + "0" * 40)}]) == (pa.string(), ["1" + "0" * 40])


def test_names_equal_but_for_case_in_different_records_fit_the_lake():
    table = typed_records([{"Name": "x"}, {"name": "y"}], "struct", None)
    assert names_fit(pa.struct(list(table.schema)))


def test_documents_nested_thousands_of_levels_deep_keep_their_tail_as_json_text() -> None:
    """MongoDB allows 100 levels and JSON any number: past MAX_DEPTH levels a value is its JSON text, built
    without recursion, and a record that also conflicts in type is typed the same way."""
    deep: dict[str, Any] = {"v": 1}
    for _ in range(5000):
        deep = {"n": deep}
    table = typed_records([{"_id": "a", "deep": deep}], "struct", None)
    assert type_depth(pa.struct(list(table.schema))) == MAX_DEPTH  # the record itself is the first level
    tail, levels = table.column("deep")[0].as_py(), 1
    while isinstance(tail, dict):
        tail, levels = tail["n"], levels + 1
    in_text = tail.count('"n":')  # every level below the cut, as text
    assert levels - 1 + in_text == 5000 and tail.endswith('{"v":1}' + "}" * in_text), (levels, in_text)
    mixed = typed_records([{"_id": "a", "deep": deep}, {"_id": "b", "deep": "text"}], "struct", None)
    assert mixed.column("deep").to_pylist()[1] == "text" and mixed.column("deep")[0].as_py().startswith('{"n":')
    assert (
        flat_json({"a": [1, {"b": 'x"y'}, None, True, 2.5], "c": {}}) == '{"a":[1,{"b":"x\\"y"},null,true,2.5],"c":{}}'
    )
