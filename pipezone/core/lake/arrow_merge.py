"""A small batch's keyed writes with delta-rs, rows held in Arrow, no Spark job: the forward-only MERGE
of `delta_merge.merge` (the same `merge_clauses`) and the append of new row versions.

Why: a few thousand changed rows are well under a second of work, but each Spark action on them costs a
plan, a Delta snapshot and a job, over Spark Connect a round trip each: silver's MERGE of 1,000 changes
into a 10M-row table took 6-7.5 s through a warm server (docs/benchmarks.md), and delta-rs does the same
MERGE in about 0.15 s (measured 2026-12-06 on a table Spark wrote: 1 file of 40 rewritten).

delta-rs writes the tables Spark reads, features included: it honours the deletion vectors Spark's MERGEs
leave (it rewrites such a file without the deleted rows instead of adding a vector), writes the change
data feed the quality step and exports read, and its checkpoints keep the vectors (all checked on a table
Spark wrote: tests/core/lake/test_arrow_merge.py). Its reader refuses tables with deletion vectors, so a
merged table is only ever written here, never read.

Exactly-once as on the Spark path: each commit carries the writer's (txnAppId, txnVersion), and a write
whose version the table already holds commits nothing. delta-rs does not skip such a write itself, so
`_committed` asks the table first (one writer per table at a time: the flow's lease).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from pipezone.core.lake import delta_log
from pipezone.core.lake.arrow_tables import ArrowUnsupported, first_line
from pipezone.core.lake.delta_tables import BATCH, DELETED, CommitInfo
from pipezone.core.lake.merge_clauses import forward_only_condition, key_match, quoted, upsert_clauses

if TYPE_CHECKING:
    import pyarrow as pa
    from deltalake import DeltaTable


def open_table(path: str, options: dict[str, str]) -> DeltaTable:
    """The Delta table at `path`; ArrowUnsupported when there is none or delta-rs cannot open it."""
    from deltalake import DeltaTable

    try:
        return DeltaTable(delta_log.table_uri(path), storage_options=options)
    except Exception as err:  # noqa: BLE001 - no table, or a feature delta-rs lacks: Spark writes it
        raise ArrowUnsupported(f"table {path}: {first_line(err)}") from None


def read_batches(path: str, options: dict[str, str], batches: tuple[int, int]) -> pa.Table:
    """The rows of batches (previous, newest] of the table at `path`, read by delta-rs: only the files
    whose batch statistics can hold them. ArrowUnsupported for a table delta-rs cannot read (deletion
    vectors: a merged table)."""
    import pyarrow.compute as pc

    previous, newest = batches
    try:
        dataset = open_table(path, options).to_pyarrow_dataset()
        wanted = (pc.field(BATCH) > previous) & (pc.field(BATCH) <= newest)
        # a reader closed by hand: a dataset scan left to the interpreter's exit aborts it
        reader = dataset.scanner(filter=wanted).to_reader()
        try:
            return reader.read_all()
        finally:
            reader.close()
    except ArrowUnsupported:
        raise
    except Exception as err:  # noqa: BLE001 - a table delta-rs cannot read: Spark reads it
        raise ArrowUnsupported(f"reading {path}: {first_line(err)}") from None


def conformed(rows: pa.Table, table: DeltaTable, *, every_column: bool) -> pa.Table:
    """`rows` as the table's columns and types, or ArrowUnsupported when they differ (a new column, a
    changed type: schema drift, which the Spark path handles by the flow's policy). `every_column`: the
    rows must hold each of the table's columns (an append); else a subset will do (a MERGE keeps the
    target's values of the columns the rows lack)."""
    import pyarrow as pa

    target = table_schema(table)
    kinds = {field.name: field.type for field in target}
    unknown = [c for c in rows.column_names if c not in kinds]
    if unknown:
        raise ArrowUnsupported(f"columns the table lacks: {', '.join(unknown)}")
    if every_column and (missing := [c for c in kinds if c not in rows.column_names]):
        raise ArrowUnsupported(f"columns the rows lack: {', '.join(missing)}")
    changed = [c for c in rows.column_names if rows.schema.field(c).type != kinds[c]]
    if changed:
        raise ArrowUnsupported(f"columns of another type than the table's: {', '.join(changed)}")
    names = [c for c in kinds if c in rows.column_names]
    return rows.select(names).cast(pa.schema([target.field(c) for c in names]))


def _literal(value: Any) -> str | None:
    """`value` as a SQL literal both Spark and DataFusion read as its own type, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return None


def key_bounds(rows: pa.Table, keys: list[str]) -> dict[str, tuple[Any, Any]] | None:
    """Each key's lowest and highest value in `rows` (exact: read from the rows, not from file statistics),
    or None when a key is null or not an integer or a string (no narrowing, never a wrong one)."""
    import pyarrow.compute as pc

    bounds = {}
    for key in keys:
        column = rows[key]
        if column.null_count or rows.num_rows == 0:
            return None
        low, high = (value.as_py() for value in pc.min_max(column).values())
        if _literal(low) is None or _literal(high) is None:
            return None
        bounds[key] = (low, high)
    return bounds or None


def range_sql(bounds: dict[str, tuple[Any, Any]]) -> str:
    """The target rows (`t.`) within `bounds`: a superset of those the batch's keys match. The table's
    files are clustered by key, so changes to recent keys meet a few files."""
    terms = [f"t.{quoted(k)} >= {_literal(lo)} AND t.{quoted(k)} <= {_literal(hi)}" for k, (lo, hi) in bounds.items()]
    return " AND ".join(terms)


def range_filter(bounds: dict[str, tuple[Any, Any]]):  # noqa: ANN201 - pyarrow.compute.Expression
    """`range_sql` as a dataset filter."""
    import pyarrow.compute as pc

    expression = None
    for key, (low, high) in bounds.items():
        term = (pc.field(key) >= low) & (pc.field(key) <= high)
        expression = term if expression is None else expression & term
    return expression


def rows_meeting(table: DeltaTable, bounds: dict[str, tuple[Any, Any]]) -> int | None:
    """How many rows the table holds in files whose key statistics meet `bounds` (what a read narrowed to
    them scans), or None when a file lacks the statistics."""
    import pyarrow as pa
    import pyarrow.compute as pc

    files = pa.table(table.get_add_actions(flatten=True))
    if files.num_rows == 0:
        return 0
    meets = pa.array([True] * files.num_rows)
    for key, (low, high) in bounds.items():
        lows, highs = f"min.{key}", f"max.{key}"
        if any(n not in files.column_names or files[n].null_count for n in (lows, highs)):
            return None
        try:
            overlap = pc.and_(pc.less_equal(files[lows], high), pc.greater_equal(files[highs], low))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, TypeError):
            return None
        meets = pc.and_(meets, overlap)
    return pc.sum(files.filter(meets)["num_records"]).as_py() or 0


class KeysSpread(ArrowUnsupported):
    """The batch's keys meet more of the table's rows than delta-rs's copy-on-write MERGE should copy: a
    MERGE that marks rows with deletion vectors (Spark's) writes the batch instead. `rows`: the batch as
    `narrowed` was given it (`merge`'s: conformed to the table)."""

    def __init__(self, message: str, rows: pa.Table) -> None:
        super().__init__(message)
        self.rows = rows


def narrowed(table: DeltaTable, rows: pa.Table, keys: list[str], most: int) -> dict[str, tuple[Any, Any]]:
    """The rows' key bounds, when the table's files that meet them hold at most `most` rows; else
    KeysSpread (Spark marks the few rows of each file with a deletion vector, where delta-rs would copy
    every file), or ArrowUnsupported when the bounds or the files' statistics are not exact."""
    bounds = key_bounds(rows, keys)
    if bounds is None:
        raise ArrowUnsupported("no exact key range for the batch")
    meets = rows_meeting(table, bounds)
    if meets is not None and meets > most:
        raise KeysSpread(f"the batch's key range meets {meets} rows of the table", rows)
    if meets is None:
        raise ArrowUnsupported("a file of the table has no statistics for the batch's keys")
    return bounds


def _commit_properties(app_id: str, version: int, metadata: dict[str, Any]):  # noqa: ANN202 - CommitProperties
    from deltalake import CommitProperties, Transaction

    return CommitProperties(
        custom_metadata={"userMetadata": json.dumps(metadata, sort_keys=True, default=str)},
        app_transactions=[Transaction(app_id=app_id, version=version)],
    )


def _committed(table: DeltaTable, app_id: str, version: int) -> CommitInfo | None:
    """The skipped write's CommitInfo when the table already holds this writer's `version`, else None."""
    held = table.transaction_version(app_id)
    if held is not None and held >= version:
        return CommitInfo(version=table.version(), rows_written=0, bytes_written=0, skipped=True)
    return None


def _added_bytes(path: str, options: dict[str, str], before: set[str]) -> tuple[int, int]:
    """The table's version now, and the bytes of the files it holds that `before` did not (what was written)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = open_table(path, options)
    actions = pa.table(table.get_add_actions(flatten=True))
    new = pc.invert(pc.is_in(actions["path"], value_set=pa.array(sorted(before), pa.string())))
    return table.version(), pc.sum(actions.filter(new)["size_bytes"]).as_py() or 0


def _files(table: DeltaTable) -> set[str]:
    import pyarrow as pa

    return set(pa.table(table.get_add_actions(flatten=True))["path"].to_pylist())


def merge(
    rows: pa.Table,
    path: str,
    options: dict[str, str],
    *,
    keys: list[str],
    cursor: str | None,
    app_id: str,
    version: int,
    metadata: dict[str, Any],
    most: int,
) -> CommitInfo:
    """Upsert `rows` (one event per key) into the existing table at `path` by `keys`, forward-only, with
    soft deletes: `delta_merge.merge`'s clauses, narrowed to the rows' key range (`narrowed`: meeting at
    most `most` of the table's rows). Raises ArrowUnsupported, with nothing committed, when the table or
    the rows are not what this path writes exactly (KeysSpread, holding the rows conformed to the table,
    when their keys meet more)."""
    table = open_table(path, options)
    if (skipped := _committed(table, app_id, version)) is not None:
        return skipped
    rows = conformed(rows, table, every_column=False)
    on = key_match(keys)
    if rows.num_rows:
        on = f"{on} AND ({range_sql(narrowed(table, rows, keys, most))})"
    every = {c: f"s.{quoted(c)}" for c in rows.column_names}
    before = _files(table)
    builder = table.merge(
        rows,
        predicate=on,
        source_alias="s",
        target_alias="t",
        commit_properties=_commit_properties(app_id, version, metadata),
    )
    for clause in upsert_clauses(forward_only_condition(cursor), DELETED in rows.column_names):
        if clause.matched:
            builder = builder.when_matched_update(updates=clause.assign or every, predicate=clause.condition)
        else:
            builder = builder.when_not_matched_insert(updates=every, predicate=clause.condition)
    try:
        metrics = builder.execute()
    except Exception as err:  # noqa: BLE001 - delta-rs commits last: a failed MERGE changed nothing
        raise ArrowUnsupported(f"MERGE into {path}: {first_line(err)}") from None
    new_version, written = _added_bytes(path, options, before)
    files = {
        "in_table": len(before),
        "rewritten": int(metrics.get("num_target_files_removed", 0)),
        "marked": 0,  # delta-rs rewrites a file rather than marking it with a deletion vector
        "added": int(metrics.get("num_target_files_added", 0)),
    }
    rows_written = int(metrics.get("num_target_rows_inserted", 0)) + int(metrics.get("num_target_rows_updated", 0))
    return CommitInfo(
        version=new_version,
        rows_written=rows_written,
        bytes_written=written,
        files=files,
        narrowed_by="key range" if rows.num_rows else None,
    )


def append(
    rows: pa.Table, path: str, options: dict[str, str], *, app_id: str, version: int, metadata: dict[str, Any]
) -> CommitInfo:
    """Append `rows` to the existing table at `path` as one idempotent, annotated commit. Raises
    ArrowUnsupported, with nothing committed, when the rows do not hold exactly the table's columns."""
    table = open_table(path, options)
    if (skipped := _committed(table, app_id, version)) is not None:
        return skipped
    rows = conformed(rows, table, every_column=True)
    return _appended(table, path, options, rows, lambda: rows.num_rows, (app_id, version, metadata))


def append_stream(
    batches: Callable[[pa.Schema], Iterator[pa.RecordBatch]],
    path: str,
    options: dict[str, str],
    *,
    app_id: str,
    version: int,
    metadata: dict[str, Any],
    table: DeltaTable | None = None,
) -> CommitInfo:
    """`append` of a stream: `batches(schema)` yields record batches conformed to the table's Arrow schema,
    read as the write goes (memory does not grow with the rows). A stream that fails commits nothing.
    `table`: the table at `path` when the caller opened it already (its snapshot is the one written on)."""
    import pyarrow as pa

    table = open_table(path, options) if table is None else table
    if (skipped := _committed(table, app_id, version)) is not None:
        return skipped
    target = table_schema(table)
    rows = [0]

    def counted() -> Iterator[pa.RecordBatch]:
        for batch in batches(target):
            rows[0] += batch.num_rows
            yield batch

    reader = pa.RecordBatchReader.from_batches(target, counted())
    return _appended(table, path, options, reader, lambda: rows[0], (app_id, version, metadata))


def table_schema(table: DeltaTable) -> pa.Schema:
    """The table's columns as Arrow, every one nullable (what an append must hold)."""
    import pyarrow as pa

    target = pa.schema(table.schema().to_arrow())
    return pa.schema([field.with_nullable(True) for field in target])


def _appended(
    table: DeltaTable,
    path: str,
    options: dict[str, str],
    data: Any,
    rows: Callable[[], int],
    commit: tuple[str, int, dict[str, Any]],
) -> CommitInfo:
    from deltalake import write_deltalake

    before = _files(table)
    try:
        write_deltalake(table, data, mode="append", commit_properties=_commit_properties(*commit))
    except Exception as err:  # noqa: BLE001 - delta-rs commits last: a failed append changed nothing
        raise ArrowUnsupported(f"append to {path}: {first_line(err)}") from None
    new_version, written = _added_bytes(path, options, before)
    return CommitInfo(version=new_version, rows_written=rows(), bytes_written=written)
