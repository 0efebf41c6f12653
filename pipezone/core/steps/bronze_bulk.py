"""Bronze's bulk path: a flow's first load goes from raw's Parquet files to bronze's with Arrow and delta-rs,
the row hash computed by `lake/row_hash.py`; no row passes through the JVM.

Spark on a small machine spends most of a first load's bronze step hashing and re-encoding every row
(about 50 s for 10M rows on 2 cores, against about 12 s here: docs/benchmarks.md). The path is taken only
when bronze has no table yet and the pending raw rows are one read of a source table (each key once, no
tombstones): bronze is then raw's rows with bronze's column names, flags, load time and (append mode) row
hash, whatever the write mode. The table's schema is that of Spark's own plan of the same frame, so it is
the table the Spark path would have created; what this path cannot do exactly (a column type without an
exact hash, a raw table delta-rs cannot read) is found before anything is written, and Spark does it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pipezone.core.lake import arrow_tables, delta_log, row_hash
from pipezone.core.lake import delta_merge as dm
from pipezone.core.lake import delta_tables as dt
from pipezone.core.lake.arrow_tables import ArrowUnsupported, first_line
from pipezone.core.steps.standardize import snake_case

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame

    from pipezone.core.steps.context import StepContext

BATCH_ROWS = 100_000


def _raw_dataset(ctx: StepContext):  # noqa: ANN202 - pyarrow.dataset.Dataset
    from deltalake import DeltaTable

    raw = ctx.runtime.lake.raw(ctx.flow)
    try:
        table = DeltaTable(delta_log.table_uri(raw), storage_options=ctx.runtime.lake_options())
        return table.to_pyarrow_dataset()
    except Exception as err:  # noqa: BLE001 - a table feature delta-rs cannot read: Spark reads it
        raise ArrowUnsupported(f"raw table: {first_line(err)}") from None


def _raw_batches(dataset, batch: int, columns: dict[str, str]) -> Iterator[pa.RecordBatch]:  # noqa: ANN001
    """Raw's rows of `batch`, renamed to bronze's names (`columns`: raw name -> bronze name)."""
    import pyarrow.compute as pc

    # one file and a couple of batches ahead: memory stays flat whatever the table's size
    scanner = dataset.scanner(
        columns=list(columns),
        filter=pc.field(dt.BATCH) == batch,
        batch_size=BATCH_ROWS,
        batch_readahead=2,
        fragment_readahead=1,
    )
    reader = scanner.to_reader()
    try:
        for record_batch in reader:
            yield record_batch.rename_columns([columns[name] for name in record_batch.schema.names])
    finally:  # a scan left open when the write fails crashes the interpreter at exit
        reader.close()


def _shape(
    record_batch: pa.RecordBatch, target: pa.Schema, stamps: dict[str, Any], hashed: list[str] | None
) -> pa.RecordBatch:
    """A raw batch as bronze's rows: `_pz_deleted` false when unset, stamps filled, the row hash computed
    from the conformed (bronze-typed) values. Without a hash (merge, overwrite) tombstones are dropped, as
    those modes drop them."""
    import pyarrow.compute as pc

    index = record_batch.schema.get_field_index(dt.DELETED)
    if index >= 0:
        deleted = pc.fill_null(record_batch.column(index), False)
        record_batch = record_batch.set_column(index, dt.DELETED, deleted)
        if hashed is None:
            record_batch = record_batch.filter(pc.invert(deleted))
    if hashed is None:
        return arrow_tables.conform(record_batch, target, stamps)
    index = target.get_field_index(dt.ROW_HASH)
    out = arrow_tables.conform(record_batch, target.remove(index), stamps)
    return out.add_column(index, target.field(index), row_hash.row_hash(out, hashed))


def write(ctx: StepContext, frame: DataFrame, batch: int, *, hashed: bool, properties: dict[str, str]) -> dt.CommitInfo:
    """Create bronze from raw's batch `batch` as the Spark write of `frame` would (its schema; `hashed`:
    with `delta_merge.with_row_hash`'s column). Raises ArrowUnsupported, with nothing written, when the
    frame has a column this path cannot fill exactly."""
    target = arrow_tables.arrow_schema(frame.schema)
    stamps: dict[str, Any] = {dt.DELETED_AT: None, dt.LOADED_AT: datetime.now(UTC)}
    columns = None
    if hashed:
        columns = dm.row_hash_columns(target.names)
        try:
            row_hash.check(target, columns)
        except row_hash.Unhashable as err:
            raise ArrowUnsupported(str(err)) from None
    dataset = _raw_dataset(ctx)
    wanted = set(target.names) - set(stamps) - {dt.ROW_HASH}  # the hash is computed from the others
    renames = {name: snake_case(name) for name in dataset.schema.names if snake_case(name) in wanted}
    if dt.DELETED not in renames:  # raw written before delete detection: as_events' default
        stamps[dt.DELETED] = False
    if missing := wanted - set(renames.values()) - set(stamps):
        raise ArrowUnsupported(f"bronze columns not in raw: {', '.join(sorted(missing))}")
    source = _raw_batches(dataset, batch, renames)
    try:
        return arrow_tables.create_table(
            ctx.runtime.lake.bronze(ctx.flow.name),
            ctx.runtime.lake_s3(),
            (_shape(b, target, stamps, columns) for b in source),
            target=target,
            partition_by=ctx.flow.layers.bronze.partition_by or [],
            properties=properties,
            metadata=ctx.metadata("bronze", batch=batch),
            transaction=(ctx.app_id("bronze"), batch),
        )
    finally:
        source.close()
