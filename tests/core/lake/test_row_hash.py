"""`row_hash.row_hash` must give Spark's own `xxhash64` bit for bit: bronze rows written from Arrow are
compared with hashes Spark computes on later runs. Every supported type, NULLs, edge values, strings on
each side of XXH64's 4/8/32-byte boundaries, and sliced batches are checked against a real Spark session.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import TYPE_CHECKING

import pyarrow as pa
import pytest

from pipezone.core.lake import row_hash

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = pytest.mark.spark

UTC = dt.UTC
SCHEMA = (
    "flag boolean, tiny tinyint, small smallint, whole int, big bigint, ratio float, measure double, "
    "money decimal(10,2), exact decimal(18,0), wide decimal(26,8), widest decimal(38,0), label string, "
    "blob binary, day date, moment timestamp, local timestamp_ntz"
)
STRINGS = ["", "a", "abc", "abcd", "abcdefg", "abcdefgh", "é", "日本語テキスト", "x" * 31, "y" * 32, "z" * 33, "w" * 71]


def _rows() -> list[tuple]:
    edge = [
        (
            True,
            -128,
            -32768,
            -(2**31),
            -(2**63),
            float("-0.0"),
            float("-0.0"),
            Decimal("-99999999.99"),
            Decimal(-(10**18 - 1)),
            Decimal("-999999999999999999.99999999"),
            Decimal(-(10**38 - 1)),
            "",
            b"",
            dt.date(1, 1, 1),
            dt.datetime(1900, 1, 1, tzinfo=UTC),
            dt.datetime(1900, 1, 1),
        ),
        (
            False,
            127,
            32767,
            2**31 - 1,
            2**63 - 1,
            float("nan"),
            float("nan"),
            Decimal("99999999.99"),
            Decimal(10**18 - 1),
            Decimal("999999999999999999.99999999"),
            Decimal(10**38 - 1),
            "\x00",
            b"\x00\xff",
            dt.date(9999, 12, 31),
            dt.datetime(2262, 4, 11, 23, 47, 16, 854775, tzinfo=UTC),
            dt.datetime(2038, 1, 19, 3, 14, 8, 1),
        ),
        (None,) * 16,
        (True, 0, 0, 0, 0, 0.0, 0.0, Decimal("0.00"), Decimal(0), Decimal(0), Decimal(0), None, None, None, None, None),
        (
            None,
            1,
            None,
            -1,
            None,
            float("inf"),
            float("-inf"),
            Decimal("-0.01"),
            Decimal(-1),
            Decimal("-0.00000001"),
            Decimal(-128),
            "ab",
            b"a" * 40,
            dt.date(1970, 1, 1),
            None,
            dt.datetime(1970, 1, 1),
        ),
    ]
    # small values around the sign-byte boundaries of BigInteger.toByteArray, for the wide decimals
    wide = [Decimal(v) for v in (127, 128, -128, -129, 255, 256, -256, -257, 2**63, -(2**63) - 1, 2**64)]
    more = [
        (
            i % 2 == 0,
            i % 100 - 50,
            i * 7 - 300,
            i * 1_000_003 - 10**8,
            i * 10**15 - 5 * 10**16,
            i / 3.0,
            i * 1.1e-3,
            Decimal(i * 37 - 1000) / 100,
            Decimal(i * 10**16 - 7),
            Decimal(i * 10**9) / 10**8 - 5,
            wide[i % len(wide)],
            STRINGS[i % len(STRINGS)],
            STRINGS[i % len(STRINGS)].encode()[::-1],
            dt.date(2024, 1, 1) + dt.timedelta(days=i),
            dt.datetime(2024, 6, 1, tzinfo=UTC) + dt.timedelta(seconds=i, microseconds=i),
            dt.datetime(2020, 2, 29) + dt.timedelta(hours=i),
        )
        for i in range(60)
    ]
    return edge + more


def test_row_hash_is_sparks_xxhash64_for_every_supported_type(spark: SparkSession) -> None:
    from pyspark.sql import functions as F

    df = spark.createDataFrame(_rows(), SCHEMA).repartition(1)
    columns = df.columns
    expected = df.select(F.xxhash64(*columns).alias("h")).toArrow().column("h").to_pylist()
    batch = df.toArrow().combine_chunks().to_batches()[0]
    assert row_hash.row_hash(batch, columns).to_pylist() == expected
    for name in columns:  # each type alone, so a mismatch names its column
        alone = df.select(F.xxhash64(name).alias("h")).toArrow().column("h").to_pylist()
        assert row_hash.row_hash(batch, [name]).to_pylist() == alone, name


def test_row_hash_honours_slices_and_column_order(spark: SparkSession) -> None:
    from pyspark.sql import functions as F

    df = spark.createDataFrame(_rows(), SCHEMA).repartition(1)
    columns = ["label", "big", "wide", "flag", "day"]
    expected = df.select(F.xxhash64(*columns).alias("h")).toArrow().column("h").to_pylist()
    batch = df.toArrow().combine_chunks().to_batches()[0]
    assert row_hash.row_hash(batch.slice(7, 20), columns).to_pylist() == expected[7:27]


def test_types_without_an_exact_hash_are_refused_before_any_work() -> None:
    batch = pa.record_batch({"id": pa.array([1]), "tags": pa.array([["a"]])})
    with pytest.raises(row_hash.Unhashable, match="column tags: .*list"):
        row_hash.row_hash(batch, ["id", "tags"])
