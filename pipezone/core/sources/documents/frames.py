"""Arrow tables of records as Spark DataFrames and Arrow streams, the two forms extract takes."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pyarrow as pa

from pipezone.core.sources.contract import ArrowRead

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

BATCH_ROWS = 65_536


def spark_schema(table: pa.Table) -> StructType:
    """The Spark schema of a records table (timestamps with a zone are Spark timestamps)."""
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(table.schema)


def arrow_fields(schema: StructType | None) -> pa.Schema | None:
    """A lake table's source columns (metadata `_pz_*` columns left out) as an Arrow schema."""
    if schema is None:
        return None
    from pyspark.sql.pandas.types import to_arrow_schema
    from pyspark.sql.types import StructType

    fields = [f for f in schema.fields if not f.name.startswith("_pz_")]
    return to_arrow_schema(StructType(fields), timezone="UTC")


def keys_schema(keys: list[str], lake: pa.Schema | None) -> StructType:
    """The columns of an empty key snapshot: each key typed as raw has it (text where raw has none yet), so
    comparing it with the loaded keys needs no cast."""
    known = {f.name: f.type for f in lake} if lake is not None else {}
    return spark_schema(pa.table({key: pa.array([], known.get(key, pa.string())) for key in keys}))


def to_frame(spark: SparkSession, table: pa.Table, empty_schema: Callable[[], StructType]) -> DataFrame:
    """The table as a DataFrame; a read of no records has `empty_schema()` (what a sample describes, asked
    for only then: it costs the source a query)."""
    if table.num_rows == 0 or table.num_columns == 0:
        return spark.createDataFrame([], schema=empty_schema())
    return spark.createDataFrame(table, schema=spark_schema(table))


def as_arrow_read(table: pa.Table) -> ArrowRead:
    """The table as the Arrow stream the bulk path writes with delta-rs (no JVM round trip)."""
    return ArrowRead(batches=iter(table.to_batches(max_chunksize=BATCH_ROWS)))
