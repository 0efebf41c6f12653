"""Records typed like the lake's table: lake types kept where values fit, the rest in `<column>__text`
(pipezone/core/sources/documents/lake_fit.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pyarrow as pa
import pytest

from pipezone.core.sources.documents.lake_fit import fit_to_lake, fits, typed_records
from pipezone.core.sources.documents.records import records_to_arrow

TS = pa.timestamp("us", tz="UTC")


def schema(*fields: tuple[str, pa.DataType]) -> pa.Schema:
    return pa.schema([pa.field(name, kind) for name, kind in fields])


def struct(*fields: tuple[str, pa.DataType]) -> pa.DataType:
    return pa.struct([pa.field(name, kind) for name, kind in fields])


# ------------------------------------------------------------------------------------------ typed_records


def test_without_a_lake_schema_the_records_type_themselves():
    table = typed_records([{"a": 1}, {"a": 2.5}], "struct", None)
    assert table.schema == schema(("a", pa.float64()))


def test_an_int_fitting_a_double_column_takes_the_lake_type():
    table = typed_records([{"amount": 3}], "struct", schema(("amount", pa.float64())))
    assert table.schema == schema(("amount", pa.float64()))
    assert table.to_pylist() == [{"amount": 3.0}]


def test_text_in_a_double_column_goes_to_the_text_column():
    records = [{"amount": 3}, {"amount": "free"}, {"amount": 2.5}, {"amount": None}]
    table = typed_records(records, "struct", schema(("amount", pa.float64())))
    assert table.schema == schema(("amount", pa.float64()), ("amount__text", pa.string()))
    assert table.to_pylist() == [
        {"amount": 3.0, "amount__text": None},
        {"amount": None, "amount__text": "free"},
        {"amount": 2.5, "amount__text": None},
        {"amount": None, "amount__text": None},
    ]


def test_values_the_read_widened_to_text_still_fit_the_lake_number_column():
    table = typed_records([{"a": 1}, {"a": "x"}], "struct", schema(("a", pa.int64())))
    assert table.schema == schema(("a", pa.int64()), ("a__text", pa.string()))
    assert table.to_pylist() == [{"a": 1, "a__text": None}, {"a": None, "a__text": "x"}]


def test_numeric_text_is_not_a_number():
    table = typed_records([{"a": "1"}], "struct", schema(("a", pa.int64())))
    assert table.to_pylist() == [{"a": None, "a__text": "1"}]


def test_a_sub_document_in_a_lake_string_column_is_its_json_text():
    records = [{"c": {"name": "é", "n": 1}}, {"c": {"name": "b", "n": 2}}]
    table = typed_records(records, "struct", schema(("c", pa.string())))
    assert table.schema == schema(("c", pa.string()))
    assert table.to_pylist() == [{"c": '{"name":"é","n":1}'}, {"c": '{"name":"b","n":2}'}]


def test_scalars_in_a_lake_string_column_are_their_text():
    records = [{"s": 1}, {"s": True}, {"s": datetime(2024, 1, 2, tzinfo=UTC)}]
    table = typed_records(records, "struct", schema(("s", pa.string())))
    assert table.schema == schema(("s", pa.string()))
    assert table.to_pylist() == [{"s": "1"}, {"s": "true"}, {"s": "2024-01-02T00:00:00+00:00"}]


def test_a_sub_document_with_an_extra_field_adds_it_to_the_lake_struct():
    lake = schema(("c", struct(("name", pa.string()), ("n", pa.int64()))))
    table = typed_records([{"c": {"name": "a", "vip": True}}], "struct", lake)
    assert table.schema == schema(("c", struct(("name", pa.string()), ("n", pa.int64()), ("vip", pa.bool_()))))
    assert table.to_pylist() == [{"c": {"name": "a", "n": None, "vip": True}}]


def test_a_sub_document_whose_fields_the_lake_knows_takes_the_lake_struct():
    lake = schema(("c", struct(("x", pa.float64()), ("y", pa.string()))))
    table = typed_records([{"c": {"x": 1}}, {"c": {"x": None}}, {"c": {}}], "struct", lake)
    assert table.schema == lake
    assert table.to_pylist() == [
        {"c": {"x": 1.0, "y": None}},
        {"c": {"x": None, "y": None}},
        {"c": {"x": None, "y": None}},
    ]


def test_a_list_of_sub_documents_with_an_extra_field_adds_it():
    lake = schema(("l", pa.list_(struct(("a", pa.int64())))))
    table = typed_records([{"l": [{"a": 1, "b": "x"}]}], "struct", lake)
    assert table.schema == schema(("l", pa.list_(struct(("a", pa.int64()), ("b", pa.string())))))
    assert table.to_pylist() == [{"l": [{"a": 1, "b": "x"}]}]


def test_a_sub_document_with_a_field_of_another_type_goes_to_the_text_column():
    lake = schema(("c", struct(("name", pa.bool_()))))
    table = typed_records([{"c": {"name": True}}, {"c": {"name": 5}}], "struct", lake)
    assert table.schema == schema(("c", struct(("name", pa.bool_()))), ("c__text", pa.string()))
    assert table.to_pylist() == [{"c": {"name": True}, "c__text": None}, {"c": None, "c__text": '{"name":5}'}]


def test_a_float_in_an_int64_column_goes_to_the_text_column():
    table = typed_records([{"n": 1}, {"n": 2.5}, {"n": 3.0}], "struct", schema(("n", pa.int64())))
    assert table.schema == schema(("n", pa.int64()), ("n__text", pa.string()))
    assert table.to_pylist() == [
        {"n": 1, "n__text": None},
        {"n": None, "n__text": "2.5"},
        {"n": None, "n__text": "3.0"},
    ]


def test_a_bool_in_an_int64_column_goes_to_the_text_column():
    table = typed_records([{"n": True}], "struct", schema(("n", pa.int64())))
    assert table.to_pylist() == [{"n": None, "n__text": "true"}]


def test_an_int_beyond_int64_goes_to_the_text_column():
    table = typed_records([{"n": 1}, {"n": 2**64}], "struct", schema(("n", pa.int64())))
    assert table.to_pylist() == [{"n": 1, "n__text": None}, {"n": None, "n__text": "18446744073709551616"}]


def test_decimals_fitting_the_lake_scale_take_the_lake_type():
    lake = schema(("p", pa.decimal128(10, 2)))
    table = typed_records([{"p": Decimal("1.5")}, {"p": 3}, {"p": Decimal("12345678.90")}], "struct", lake)
    assert table.schema == lake
    assert table.to_pylist() == [{"p": Decimal("1.50")}, {"p": Decimal("3.00")}, {"p": Decimal("12345678.90")}]


def test_decimals_not_fitting_the_lake_scale_or_precision_go_to_the_text_column():
    lake = schema(("p", pa.decimal128(10, 2)))
    records = [{"p": Decimal("1.505")}, {"p": Decimal("2.50")}, {"p": Decimal("123456789.5")}]
    table = typed_records(records, "struct", lake)
    assert table.schema == schema(("p", pa.decimal128(10, 2)), ("p__text", pa.string()))
    assert table.to_pylist() == [
        {"p": None, "p__text": "1.505"},
        {"p": Decimal("2.50"), "p__text": None},
        {"p": None, "p__text": "123456789.5"},
    ]


def test_text_in_a_timestamp_column_goes_to_the_text_column():
    moment = datetime(2024, 1, 2, tzinfo=UTC)
    table = typed_records([{"t": moment}, {"t": "soon"}], "struct", schema(("t", TS)))
    assert table.schema == schema(("t", TS), ("t__text", pa.string()))
    assert table.to_pylist() == [{"t": moment, "t__text": None}, {"t": None, "t__text": "soon"}]


def test_no_text_column_when_everything_fits():
    lake = schema(("a", pa.float64()), ("b", pa.string()), ("l", pa.list_(pa.float64())), ("z", pa.int64()))
    table = typed_records([{"a": 1, "b": {"k": 1}, "l": [1, 2], "c": 2}], "struct", lake)
    assert table.schema == schema(
        ("a", pa.float64()), ("b", pa.string()), ("l", pa.list_(pa.float64())), ("c", pa.int64())
    )
    assert table.to_pylist() == [{"a": 1.0, "b": '{"k":1}', "l": [1.0, 2.0], "c": 2}]
    assert not any(name.endswith("__text") for name in table.column_names)


def test_columns_match_the_lake_case_insensitively():
    table = typed_records([{"Amount": 3}], "struct", schema(("amount", pa.float64())))
    assert table.schema == schema(("Amount", pa.float64()))
    assert table.to_pylist() == [{"Amount": 3.0}]


def test_renamed_keys_match_the_lake_columns():
    table = typed_records([{"a b": 3}], "struct", schema(("a_b", pa.float64())))
    assert table.to_pylist() == [{"a_b": 3.0}]


def test_nested_json_mode_against_a_lake_struct_column_goes_to_the_text_column():
    table = typed_records([{"c": {"x": 1}}], "json", schema(("c", struct(("x", pa.int64())))))
    assert table.schema == schema(("c", struct(("x", pa.int64()))), ("c__text", pa.string()))
    assert table.to_pylist() == [{"c": None, "c__text": '{"x":1}'}]


def test_lake_columns_the_records_lack_are_not_added():
    table = typed_records([{"a": 1, "n": None}], "struct", schema(("n", pa.int64()), ("other", pa.string())))
    assert table.schema == schema(("a", pa.int64()))


def test_no_records_stay_an_empty_table():
    assert typed_records([], "struct", schema(("a", pa.int64()))).num_columns == 0


def test_fit_to_lake_without_a_lake_returns_the_table():
    records = [{"a": 1}]
    table = records_to_arrow(records)
    assert fit_to_lake(table, records, None) is table


def test_a_sub_document_adding_a_field_while_a_known_one_is_null_keeps_the_struct():
    lake = schema(("c", struct(("x", pa.int64()))))
    table = typed_records([{"c": {"x": None, "y": 1}}], "struct", lake)
    assert table.schema == schema(("c", struct(("x", pa.int64()), ("y", pa.int64()))))


# ------------------------------------------------------------------------------------------ fits


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        (None, pa.int64(), True),
        (None, struct(("a", pa.int64())), True),
        ("x", pa.string(), True),
        (1, pa.string(), True),
        ({"a": 1}, pa.string(), True),
        (True, pa.bool_(), True),
        (1, pa.bool_(), False),
        (True, pa.int64(), False),
        (True, pa.float64(), False),
        (True, pa.decimal128(10, 2), False),
        (1, pa.int64(), True),
        (2**63 - 1, pa.int64(), True),
        (2**63, pa.int64(), False),
        (-(2**63), pa.int64(), True),
        (1.0, pa.int64(), False),
        ("1", pa.int64(), False),
        (1, pa.float64(), True),
        (2.5, pa.float64(), True),
        (float("nan"), pa.float64(), True),
        (Decimal("2.5"), pa.float64(), False),
        ("2.5", pa.float64(), False),
        (Decimal("1.50"), pa.decimal128(3, 2), True),
        (Decimal("1.5"), pa.decimal128(3, 2), True),
        (Decimal("1.505"), pa.decimal128(3, 2), False),
        (Decimal("10.5"), pa.decimal128(3, 2), False),
        (5, pa.decimal128(3, 2), True),
        (50, pa.decimal128(3, 2), False),
        (Decimal("123"), pa.decimal128(3, 0), True),
        (Decimal("1.5"), pa.decimal128(3, 0), False),
        (Decimal("NaN"), pa.decimal128(10, 2), False),
        (2.5, pa.decimal128(10, 2), False),
        (datetime(2024, 1, 2, tzinfo=UTC), TS, True),
        (date(2024, 1, 2), TS, False),
        (datetime(2024, 1, 2, tzinfo=UTC), pa.date32(), False),
        (date(2024, 1, 2), pa.date32(), True),
        ("2024-01-02", pa.date32(), False),
        (b"ab", pa.binary(), True),
        ("ab", pa.binary(), False),
        ({"a": 1}, struct(("a", pa.int64()), ("b", pa.string())), True),
        ({}, struct(("a", pa.int64())), True),
        ({"a": 1, "c": 2}, struct(("a", pa.int64())), False),
        ({"a": "x"}, struct(("a", pa.int64())), False),
        ({"s": {"t": 1}}, struct(("s", struct(("t", pa.float64())))), True),
        ("x", struct(("a", pa.int64())), False),
        ([1, 2], pa.list_(pa.int64()), True),
        ([], pa.list_(pa.int64()), True),
        ([1, "x"], pa.list_(pa.int64()), False),
        ({"a": 1}, pa.list_(pa.int64()), False),
        ([{"a": 1}], pa.list_(struct(("a", pa.int64()))), True),
        (1, pa.list_(pa.int64()), False),
    ],
)
def test_fits(value: object, kind: pa.DataType, expected: bool):
    assert fits(value, kind) is expected
