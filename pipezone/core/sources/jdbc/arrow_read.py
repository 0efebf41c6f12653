"""The JDBC family's Arrow reader: a flow's first load streams Arrow record batches from the source with
connectorx (the database's binary protocol, one connection per range partition) instead of JDBC.

No row passes through the JVM and batches arrive as they are read, so memory does not grow with the
table. JDBC row conversion and Spark's Parquet write cost about 20x the database client's own speed on a
small machine; this path runs at about the client's speed (docs/benchmarks.md). The extract step writes
the batches into raw with delta-rs, as the table the JDBC read would have written.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from itertools import chain
from typing import TYPE_CHECKING, Any

from pipezone.core.sources.contract import ArrowUnavailable
from pipezone.core.sources.jdbc.dialect import JdbcDialect
from pipezone.core.spark.errors import summarize_error
from pipezone.core.spec.source import SourceSpec

if TYPE_CHECKING:
    import pyarrow as pa

BATCH_ROWS = 100_000
_DECIMAL = re.compile(r"decimal\((\d+),(\d+)\)")


def check_schema(types: Mapping[str, str], native_types: Mapping[str, str]) -> None:
    """Refuse columns connectorx can't carry exactly (`types`: column -> Spark type name): it holds MySQL
    decimals as scale-10 values of at most 28 digits (rust_decimal), exact only for at most 10 fractional
    and 18 integer digits; a value beyond that would fail the read mid-stream. (Other decimals, e.g.
    BIGINT UNSIGNED's, come as integers.)"""
    for name, kind in types.items():
        native = native_types.get(name, "")
        decimal = _DECIMAL.fullmatch(kind)
        if not native.startswith(("DECIMAL", "NUMERIC")) or decimal is None:
            continue
        precision, scale = int(decimal[1]), int(decimal[2])
        if scale > 10 or precision - scale > 18:
            raise ArrowUnavailable(f"column {name}: {kind} is wider than connectorx carries")


def _split(url: str, dialect: JdbcDialect, source: SourceSpec) -> dict[str, Any]:
    """connectorx's range partitioning on the split column, bounded by the table's MIN/MAX (an index lookup;
    connectorx's own scans the query); none for an empty table or a column it cannot range over."""
    import connectorx

    column = dialect.partition_column(source)
    if source.read.num_partitions <= 1 or not column:
        return {}
    split: dict[str, Any] = {"partition_on": column, "partition_num": source.read.num_partitions}
    if source.table is None:
        return split
    bounds = connectorx.read_sql(
        url,
        dialect.partition_bounds_query(source, column, dialect.relation(source)),
        return_type="arrow",
        pre_execution_query=dialect.arrow_session_init,
    )
    lo, hi = (bounds.column(i)[0].as_py() for i in range(2))
    if not isinstance(lo, int) or not isinstance(hi, int):
        return {}
    return {**split, "partition_range": (lo, hi)}


def stream(url: str, dialect: JdbcDialect, source: SourceSpec, dbtable: str) -> Iterator[pa.RecordBatch]:
    """`dbtable`'s rows as record batches of BATCH_ROWS, read lazily (nothing runs before the first `next`)."""
    import connectorx

    try:
        reader = connectorx.read_sql(
            url,
            f"SELECT * FROM {dbtable}",
            return_type="arrow_stream",
            batch_size=BATCH_ROWS,
            pre_execution_query=dialect.arrow_session_init,
            **_split(url, dialect, source),
        )
        yield from reader
    except BaseException as err:
        if not _is_reader_failure(err):
            raise
        raise ArrowUnavailable(f"connectorx: {summarize_error(err)}") from None


def _is_reader_failure(err: BaseException) -> bool:
    """connectorx's errors: RuntimeError, or a Rust panic surfacing as pyo3's PanicException (a BaseException,
    e.g. on a MySQL zero date), which must become a fallback to JDBC, not kill the step."""
    return isinstance(err, RuntimeError) or type(err).__name__ == "PanicException"


def prepend(first: pa.RecordBatch | None, rest: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """The stream again, with its already-read first batch (None: the stream was empty) in front."""
    return chain([] if first is None else [first], rest)
