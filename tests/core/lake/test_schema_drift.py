"""schema_drift: comparing a batch's schema with its table's, and the evolve / freeze policies on real Delta."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql.types import (
    ByteType,
    DataType,
    DateType,
    DecimalType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    ShortType,
    StringType,
    StructType,
    TimestampNTZType,
    TimestampType,
)

from pipezone.core.lake.schema_drift import (
    WIDENING_TABLE_PROPERTIES,
    Drift,
    SchemaDriftError,
    compare,
    conform,
    enable_widening,
    is_widening,
)

TABLE = "silver.retail_orders"


def schema(ddl: str) -> StructType:
    """A schema from DDL (parsed by the JVM: callers take the `spark` fixture)."""
    parsed = StructType.fromDDL(ddl)
    assert isinstance(parsed, StructType)
    return parsed


def create(spark: Any, path: Path, ddl: str, rows: list[tuple[Any, ...]], *, widening: bool = True) -> str:
    """A Delta table at `path`, created as delta_tables.append does (properties as writer options)."""
    writer = spark.createDataFrame(rows, ddl).write.format("delta")
    for key, value in (WIDENING_TABLE_PROPERTIES if widening else {}).items():
        writer = writer.option(key, value)
    writer.save(str(path))
    return str(path)


def table_schema(spark: Any, path: str) -> StructType:
    return spark.read.format("delta").load(path).schema


def append(df: Any, path: str) -> None:
    df.write.format("delta").mode("append").option("mergeSchema", "true").save(path)


def merge(spark: Any, df: Any, path: str) -> None:
    """As delta_merge.merge does: update all / insert all with schema evolution."""
    from delta.tables import DeltaTable

    builder = DeltaTable.forPath(spark, path).alias("t").merge(df.alias("s"), "t.id = s.id").withSchemaEvolution()
    builder.whenMatchedUpdateAll().whenNotMatchedInsertAll().execute()


def rows(spark: Any, path: str, *columns: str) -> dict[Any, tuple[Any, ...]]:
    return {r[0]: tuple(r[1:]) for r in spark.read.format("delta").load(path).select("id", *columns).collect()}


# ------------------------------------------------------------------------------------------ compare (no Spark)


@pytest.mark.parametrize(
    ("old", "new", "widens"),
    [
        (ByteType(), ShortType(), True),
        (ShortType(), IntegerType(), True),
        (IntegerType(), LongType(), True),
        (ByteType(), LongType(), True),
        (IntegerType(), DoubleType(), True),
        (LongType(), DoubleType(), False),  # not exact above 2**53
        (FloatType(), DoubleType(), True),
        (IntegerType(), DecimalType(10, 0), True),
        (IntegerType(), DecimalType(12, 2), True),
        (IntegerType(), DecimalType(9, 0), False),
        (LongType(), DecimalType(20, 0), True),
        (LongType(), DecimalType(19, 0), False),
        (DecimalType(10, 2), DecimalType(12, 2), True),
        (DecimalType(10, 2), DecimalType(12, 4), True),
        (DecimalType(10, 2), DecimalType(11, 3), True),
        (DecimalType(10, 2), DecimalType(12, 5), False),  # integer digits lost
        (DecimalType(10, 2), DecimalType(12, 1), False),  # scale lost
        (DecimalType(10, 2), DecimalType(10, 2), False),
        (LongType(), IntegerType(), False),
        (DoubleType(), FloatType(), False),
        (DateType(), TimestampType(), False),
        (DateType(), TimestampNTZType(), False),  # Delta needs the timestampNtz feature for it
        (IntegerType(), StringType(), False),
        (StringType(), IntegerType(), False),
    ],
)
def test_is_widening(old: DataType, new: DataType, widens: bool) -> None:
    assert is_widening(old, new) is widens


@pytest.mark.spark
def test_compare_names_every_kind_of_drift(spark: Any) -> None:
    existing = schema("id INT, amount DECIMAL(10,2), qty INT, note STRING, status STRING")
    incoming = schema("id INT, amount STRING, qty BIGINT, status STRING, coupon_code STRING")
    assert compare(incoming, existing) == Drift(
        added=[("coupon_code", "string")],
        dropped=["note"],
        widened=[("qty", "int", "bigint")],
        changed=[("amount", "decimal(10,2)", "string")],
    )


@pytest.mark.spark
def test_compare_ignores_case_and_metadata_columns(spark: Any) -> None:
    existing = schema("ID INT, Amount DECIMAL(10,2), _pz_batch BIGINT, _pz_deleted BOOLEAN")
    incoming = schema("id INT, amount DECIMAL(10,2), _pz_run_id STRING, _PZ_batch STRING")
    assert compare(incoming, existing).empty()


@pytest.mark.spark
def test_compare_narrower_or_all_null_incoming_is_no_drift(spark: Any) -> None:
    existing = schema("id BIGINT, amount DECIMAL(12,2), ratio DOUBLE, note STRING")
    incoming = schema("id INT, amount DECIMAL(10,2), ratio FLOAT, note VOID")
    assert compare(incoming, existing).empty()


@pytest.mark.spark
def test_compare_nested_changes_are_unsafe_but_added_nested_fields_are_added(spark: Any) -> None:
    existing = schema(
        "id INT, address STRUCT<city: STRING>, tags ARRAY<INT>, attrs MAP<STRING, INT>, "
        "items ARRAY<STRUCT<sku: STRING>>, who STRUCT<name: STRING, tier: INT>"
    )
    incoming = schema(
        "id INT, address STRUCT<city: STRING, zip: STRING>, tags ARRAY<BIGINT>, attrs MAP<STRING, INT>, "
        "items ARRAY<STRUCT<sku: STRING, qty: BIGINT>>, who STRUCT<tier: INT, name: STRING>"
    )
    assert compare(incoming, existing) == Drift(
        added=[("address.zip", "string"), ("items.element.qty", "bigint")],
        changed=[
            ("tags", "array<int>", "array<bigint>"),
            ("who", "struct<name:string,tier:int>", "struct<tier:int,name:string>"),  # reordered: not an addition
        ],
    )


@pytest.mark.spark
def test_freeze_refuses_an_added_nested_field(spark: Any) -> None:
    existing = schema("id INT, address STRUCT<city: STRING>")
    batch = spark.createDataFrame([], schema("id INT, address STRUCT<city: STRING, zip: STRING>"))
    with pytest.raises(SchemaDriftError, match=r"address\.zip"):
        conform(batch, existing, "freeze", TABLE)
    conformed, drift = conform(batch, existing, "evolve", TABLE)
    assert drift.added == [("address.zip", "string")] and conformed.schema == batch.schema


@pytest.mark.spark
def test_compare_without_a_table_is_no_drift(spark: Any) -> None:
    assert compare(schema("id INT"), None).empty()


def test_describe() -> None:
    drift = Drift(added=[("a", "int"), ("b", "string")], dropped=["c"], widened=[("d", "int", "bigint")])
    assert drift.describe() == "new columns a (int), b (string); dropped columns c; widened types d int -> bigint"
    assert Drift().describe() == "no schema drift"


# ------------------------------------------------------------------------------------------ conform: policies


@pytest.mark.spark
def test_first_write_passes_the_batch_through(spark: Any) -> None:
    df = spark.createDataFrame([], "id INT, v STRING")
    assert conform(df, None, "freeze", TABLE) == (df, Drift())


@pytest.mark.spark
def test_freeze_names_new_dropped_and_changed_columns(spark: Any) -> None:
    existing = schema("id INT, amount DECIMAL(10,2), qty INT, note STRING")
    df = spark.createDataFrame([], "id INT, amount STRING, qty BIGINT, coupon_code STRING")
    with pytest.raises(SchemaDriftError) as raised:
        conform(df, existing, "freeze", TABLE)
    assert str(raised.value) == (
        "schema drift in silver.retail_orders (schema_drift: freeze): new columns coupon_code (string); "
        "dropped columns note; widened types qty int -> bigint; changed types amount decimal(10,2) -> string"
    )


@pytest.mark.spark
def test_freeze_accepts_a_narrower_batch_cast_up(spark: Any) -> None:
    df = spark.createDataFrame([(1, "a")], "id INT, _pz_run_id STRING")
    conformed, drift = conform(df, schema("id BIGINT, _pz_batch BIGINT"), "freeze", TABLE)
    assert drift.empty()
    assert conformed.schema.simpleString() == "struct<id:bigint,_pz_run_id:string>"


@pytest.mark.spark
def test_evolve_refuses_an_unsafe_type_change(spark: Any) -> None:
    existing = schema("id INT, amount DECIMAL(10,2), at TIMESTAMP, extra INT")
    df = spark.createDataFrame([], "id STRING, amount DECIMAL(10,1), at DATE, new_col INT")
    with pytest.raises(SchemaDriftError) as raised:
        conform(df, existing, "evolve", TABLE)
    message = str(raised.value)
    assert message == (
        "schema drift in silver.retail_orders (schema_drift: evolve): changed types id int -> string, "
        "amount decimal(10,2) -> decimal(10,1), at timestamp -> date: "
        "change the flow's silver cast or run a full refresh into a new table"
    )
    assert "\n" not in message


@pytest.mark.spark
def test_unknown_policy(spark: Any) -> None:
    with pytest.raises(ValueError, match="unknown schema_drift policy 'loose'"):
        conform(spark.createDataFrame([], "id INT"), schema("id INT"), "loose", TABLE)


# ------------------------------------------------------------------------------------------ evolve on Delta


@pytest.mark.spark
def test_evolve_append_adds_new_columns_and_keeps_dropped_ones(spark: Any, tmp_path: Path) -> None:
    path = create(spark, tmp_path / "bronze", "id INT, amount DECIMAL(10,2), note STRING", [(1, Decimal("1.50"), "n1")])
    batch = spark.createDataFrame([(2, Decimal("2.50"), "SAVE10")], "id INT, amount DECIMAL(10,2), coupon_code STRING")

    conformed, drift = conform(batch, table_schema(spark, path), "evolve", "bronze.retail_orders")
    assert drift == Drift(added=[("coupon_code", "string")], dropped=["note"])
    assert conformed.columns == ["id", "amount", "coupon_code", "note"]
    append(conformed, path)

    assert (
        table_schema(spark, path).simpleString() == "struct<id:int,amount:decimal(10,2),note:string,coupon_code:string>"
    )
    assert rows(spark, path, "note", "coupon_code") == {1: ("n1", None), 2: (None, "SAVE10")}


@pytest.mark.spark
def test_evolve_merge_keeps_the_target_value_of_a_dropped_column(spark: Any, tmp_path: Path) -> None:
    path = create(spark, tmp_path / "silver", "id INT, v STRING, note STRING", [(1, "a", "n1"), (2, "b", "n2")])
    batch = spark.createDataFrame([(1, "A", "x"), (3, "C", "y")], "id INT, v STRING, coupon_code STRING")

    conformed, drift = conform(batch, table_schema(spark, path), "evolve", TABLE, for_merge=True)
    assert drift == Drift(added=[("coupon_code", "string")], dropped=["note"])
    assert conformed.columns == ["id", "v", "coupon_code"]  # no NULL note: it would overwrite n1
    merge(spark, conformed, path)

    assert rows(spark, path, "v", "note", "coupon_code") == {
        1: ("A", "n1", "x"),  # updated, old note kept
        2: ("b", "n2", None),  # untouched
        3: ("C", None, "y"),  # inserted
    }


WIDE_DDL = "id INT, qty BIGINT, amount DECIMAL(12,2), ratio DOUBLE"


@pytest.mark.spark
@pytest.mark.parametrize("write", ["append", "merge"])
def test_evolve_widens_through_delta_type_widening(spark: Any, tmp_path: Path, write: str) -> None:
    path = create(
        spark, tmp_path / write, "id INT, qty INT, amount DECIMAL(10,2), ratio FLOAT", [(1, 1, Decimal("1.25"), 0.5)]
    )
    batch = spark.createDataFrame(
        [(1, 3_000_000_000, Decimal("1234567890.25"), 0.1), (2, 2, Decimal("2.00"), 0.25)], WIDE_DDL
    )

    conformed, drift = conform(batch, table_schema(spark, path), "evolve", TABLE, for_merge=write == "merge")
    assert drift.widened == [
        ("qty", "int", "bigint"),
        ("amount", "decimal(10,2)", "decimal(12,2)"),
        ("ratio", "float", "double"),
    ]
    assert conformed.schema == batch.schema  # left for Delta to widen
    if write == "append":
        append(conformed, path)
    else:
        merge(spark, conformed, path)

    assert table_schema(spark, path).simpleString() == "struct<id:int,qty:bigint,amount:decimal(12,2),ratio:double>"
    got = rows(spark, path, "qty", "amount", "ratio")
    assert got[2] == (2, Decimal("2.00"), 0.25)
    if write == "append":
        assert got[1] == (1, Decimal("1.25"), 0.5)  # the old row, read through the wider type
    else:
        assert got[1] == (3_000_000_000, Decimal("1234567890.25"), 0.1)


@pytest.mark.spark
def test_enable_widening_on_a_table_created_without_it(spark: Any, tmp_path: Path) -> None:
    from delta.tables import DeltaTable

    path = create(spark, tmp_path / "old", "id INT, qty INT", [(1, 1)], widening=False)
    batch = spark.createDataFrame([(2, 3_000_000_000)], "id INT, qty BIGINT")
    conformed, _ = conform(batch, table_schema(spark, path), "evolve", TABLE)
    with pytest.raises(Exception, match="DELTA_FAILED_TO_MERGE_FIELDS"):
        append(conformed, path)

    enable_widening(spark, path)
    version = DeltaTable.forPath(spark, path).history(1).first()["version"]
    enable_widening(spark, path)  # already set: no second commit
    assert DeltaTable.forPath(spark, path).history(1).first()["version"] == version
    append(conformed, path)

    assert table_schema(spark, path).simpleString() == "struct<id:int,qty:bigint>"
    assert rows(spark, path, "qty") == {1: (1,), 2: (3_000_000_000,)}
    enable_widening(spark, str(tmp_path / "missing"))  # no table yet: nothing to do


@pytest.mark.spark
def test_evolve_casts_a_narrower_batch_up_to_the_table_types(spark: Any, tmp_path: Path) -> None:
    path = create(spark, tmp_path / "wide", "id BIGINT, amount DECIMAL(12,2)", [(1, Decimal("1.00"))])
    batch = spark.createDataFrame([(2, Decimal("2.50"))], "id INT, amount DECIMAL(10,2)")

    conformed, drift = conform(batch, table_schema(spark, path), "evolve", TABLE)
    assert drift.empty()
    assert conformed.schema.simpleString() == "struct<id:bigint,amount:decimal(12,2)>"
    append(conformed, path)  # the uncast batch fails: Delta's mergeSchema does not narrow

    assert table_schema(spark, path).simpleString() == "struct<id:bigint,amount:decimal(12,2)>"
    assert rows(spark, path, "amount") == {1: (Decimal("1.00"),), 2: (Decimal("2.50"),)}
