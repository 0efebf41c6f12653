"""What the Arrow bulk paths (extract into raw, raw into bronze) share: a Spark schema as the Arrow schema a
table must hold, record batches shaped to it, and a new Delta table written by delta-rs with the commit
metadata and transaction id the Spark writer would have given it.

The schema always comes from Spark (the JDBC resolution of a window, or the lazily planned bronze frame),
so a table written here has exactly the columns and types the Spark path writes; only the rows bypass the
JVM.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pipezone.core.lake import delta_log
from pipezone.core.lake import delta_tables as dt

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql.types import StructType

    from pipezone.core.spec.settings import S3Settings


class ArrowUnsupported(Exception):
    """A column has no exact Arrow form, or the stream stopped: nothing was committed, use Spark instead."""


def first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:300]


def arrow_schema(schema: StructType) -> pa.Schema:
    """`schema` as Arrow, every column nullable as Delta on Spark creates a table (`asNullable`): a NOT NULL
    column from a JDBC schema (a primary key, a literal stamp) would become a constraint later batches trip
    over."""
    from pyspark.sql.pandas.types import to_arrow_schema
    from pyspark.sql.types import StructField, StructType

    nullable = StructType([StructField(f.name, f.dataType, True, f.metadata) for f in schema.fields])
    try:
        return to_arrow_schema(nullable, timezone="UTC")
    except (TypeError, AssertionError) as err:  # a Spark type Arrow conversion does not cover
        raise ArrowUnsupported(str(err)) from None


def _constant(value: Any, kind: pa.DataType, rows: int) -> pa.Array:
    import numpy as np
    import pyarrow as pa

    return pa.array([value], type=kind).take(pa.array(np.zeros(rows, dtype=np.int32)))


def conform(batch: pa.RecordBatch, target: pa.Schema, stamps: dict[str, Any]) -> pa.RecordBatch:
    """The batch with the target's columns, types and order, stamp columns filled with their value."""
    import pyarrow as pa

    arrays = []
    for field in target:
        if field.name in stamps:
            arrays.append(_constant(stamps[field.name], field.type, batch.num_rows))
            continue
        column = batch.column(field.name)
        try:
            column = column if column.type == field.type else column.cast(field.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
            raise ArrowUnsupported(f"column {field.name}: {column.type} -> {field.type}: {err}") from None
        arrays.append(column)
    return pa.RecordBatch.from_arrays(arrays, schema=target)


def create_table(
    path: str,
    s3: S3Settings | None,
    batches: Iterator[pa.RecordBatch],
    *,
    target: pa.Schema,
    partition_by: list[str],
    properties: dict[str, str],
    metadata: dict[str, Any],
    transaction: tuple[str, int],
) -> dt.CommitInfo:
    """Write `batches` (already conformed to `target`) as the first commit of the table at `path`, with
    `properties`, `userMetadata` = `metadata` and the Spark writer's (txnAppId, txnVersion). Raises
    ArrowUnsupported, with nothing committed, when the stream or the write fails."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake

    app_id, version = transaction
    rows = [0]

    def counted() -> Iterator[pa.RecordBatch]:
        for batch in batches:
            rows[0] += batch.num_rows
            yield batch

    uri, options = delta_log.table_uri(path), delta_log.storage_options(s3)
    commit = CommitProperties(
        custom_metadata={"userMetadata": json.dumps(metadata, sort_keys=True, default=str)},
        app_transactions=[Transaction(app_id=app_id, version=version)],
    )
    try:
        write_deltalake(
            uri,
            pa.RecordBatchReader.from_batches(target, counted()),
            mode="append",
            partition_by=partition_by or None,
            configuration=properties,
            storage_options=options,
            commit_properties=commit,
        )
    except ArrowUnsupported:
        raise
    except Exception as err:  # noqa: BLE001 - a failed write commits nothing (the commit is its last act)
        raise ArrowUnsupported(f"stopped mid-stream: {first_line(err)}") from None
    written = DeltaTable(uri, storage_options=options)
    sizes = pa.table(written.get_add_actions(flatten=True)).column("size_bytes")  # the new table's files: ours
    return dt.CommitInfo(version=written.version(), rows_written=rows[0], bytes_written=pc.sum(sizes).as_py())
