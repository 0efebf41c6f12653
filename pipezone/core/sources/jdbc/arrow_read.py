"""Extract's bulk path: a flow's first load streams Arrow record batches from the source (connectorx: the
database's binary protocol, one connection per range partition) straight into raw with delta-rs.

No row passes through the JVM, and batches are written as they arrive, so memory does not grow with the
table. JDBC row conversion and Spark's Parquet write cost about 20x the database client's own speed on a
small machine; this path runs at about the client's speed (docs/benchmarks.md).

The raw table it creates is the one the JDBC path would have written: the same columns and Spark types
(the schema comes from Spark's own JDBC resolution of the same window), the same stamps, partitioning,
table properties, commit metadata (`userMetadata`) and transaction id, so every later step and every
later (JDBC) extract sees no difference. It is used only while raw has no table yet: later windows are
small, and delete detection, backfills and full refreshes stay on JDBC.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pipezone.core.lake import arrow_tables
from pipezone.core.lake import delta_tables as dt
from pipezone.core.lake.arrow_tables import ArrowUnsupported, conform, first_line

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql.types import StructType

    from pipezone.core.steps.context import StepContext

BATCH_ROWS = 100_000
SESSION_INIT = "SET time_zone = '+00:00'"  # TIMESTAMP values in UTC, as the JDBC path's session has them


@dataclass(frozen=True)
class Target:
    """What the raw table must hold: the stamped Spark schema of the JDBC read of the same window, the
    CHAR(n) columns Spark pads to n on read, and the columns worth file statistics."""

    schema: StructType
    char_lengths: dict[str, int]
    stats_on: list[str]


def source_url(ctx: StepContext, adapter: Any, raw_path: str) -> str | None:
    """The connectorx URL when this extract may take the bulk path, else None."""
    source = ctx.flow.source
    if source is None or source.read.initial_load != "auto" or ctx.backfill is not None:
        return None
    if dt.table_exists(ctx.spark, raw_path):
        return None
    return adapter.arrow_url(ctx.runtime.connection(source.connection), ctx.runtime.resolver)


def _target_schema(schema: StructType) -> pa.Schema:
    from pyspark.sql.types import DecimalType

    # connectorx carries MySQL decimals as scale-10 values of at most 28 digits (rust_decimal): exact only
    # for at most 10 fractional and 18 integer digits; a value beyond that fails the read mid-stream.
    for field in schema.fields:
        kind = field.dataType
        if isinstance(kind, DecimalType) and (kind.scale > 10 or kind.precision - kind.scale > 18):
            raise ArrowUnsupported(f"column {field.name}: {kind.simpleString()} is wider than connectorx carries")
    return arrow_tables.arrow_schema(schema)


def _batches(ctx: StepContext, url: str, dbtable: str, adapter: Any) -> Iterator[pa.RecordBatch]:
    import connectorx

    source = ctx.flow.source
    assert source is not None
    column = adapter.partition_column(source)
    split: dict[str, Any] = {}
    if source.read.num_partitions > 1 and column:
        split = {"partition_on": column, "partition_num": source.read.num_partitions}
        if source.table is not None:  # the table's MIN/MAX is an index lookup; connectorx's own scans the query
            bounds = connectorx.read_sql(
                url,
                adapter.partition_bounds_query(source, column, adapter.relation(source)),
                return_type="arrow",
                pre_execution_query=SESSION_INIT,
            )
            lo, hi = (bounds.column(i)[0].as_py() for i in range(2))
            if not isinstance(lo, int) or not isinstance(hi, int):
                split = {}  # an empty table, or a split column connectorx cannot range over: one connection
            else:
                split["partition_range"] = (lo, hi)
    reader = connectorx.read_sql(
        url,
        f"SELECT * FROM {dbtable}",
        return_type="arrow_stream",
        batch_size=BATCH_ROWS,
        pre_execution_query=SESSION_INIT,
        **split,
    )
    yield from reader


def append(
    ctx: StepContext,
    adapter: Any,
    url: str,
    dbtable: str,
    table: Target,
    raw_path: str,
    batch: int,
    metadata: dict[str, Any],
) -> dt.CommitInfo:
    """Write `dbtable`'s rows to raw as batch `batch`. Raises ArrowUnsupported, with nothing committed,
    when a column has no exact Arrow form or the stream stops."""
    target = _target_schema(table.schema)
    now = datetime.now(UTC)
    stamps = {
        dt.RUN_ID: ctx.run_id,
        dt.BATCH: batch,
        dt.EXTRACTED_AT: now,
        dt.INGEST_DATE: now.date(),
        dt.DELETED: False,
    }
    source = _batches(ctx, url, dbtable, adapter)
    try:
        first = next(source, None)
    except RuntimeError as err:  # connectorx could not start (a split it cannot do, a type, the server):
        raise ArrowUnsupported(f"connectorx: {first_line(err)}") from None  # JDBC reads it, or says why
    # the first batch is conformed before anything is written: a type problem shows here
    head = [conform(first, target, stamps, table.char_lengths)] if first is not None else []

    def conformed() -> Iterator[pa.RecordBatch]:
        yield from head
        for record_batch in source:
            yield conform(record_batch, target, stamps, table.char_lengths)

    return arrow_tables.create_table(
        raw_path,
        ctx.runtime.lake_s3(),
        conformed(),
        target=target,
        partition_by=[dt.INGEST_DATE],
        properties=dt.table_properties(
            {f.name: f.dataType.simpleString() for f in table.schema.fields}, table.stats_on
        ),
        metadata=metadata,
        transaction=(ctx.app_id("raw"), batch),
    )
