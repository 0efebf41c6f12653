"""Export: one of a flow's `exports:` (a silver or gold table) into a database, exactly once.

Order of events, so that no row is lost or written twice:
1. The destination's marker (table `pipezone_exports`, written in the same transaction as the data:
   destinations/contract.py) names the lake version exported last, E. The state store's record of it is
   repaired from the marker when a crash came between the destination's commit and the state update.
2. The lake table is pinned at its newest version V. Nothing new (V == E): done.
3. What travels: the first export, `--full` or mode `replace` read the live rows at V. Otherwise only the
   changes in E+1..V (Delta's change data feed, lake/change_feed.py): mode `upsert` writes each changed
   key's newest live row and deletes keys that were deleted or tombstoned; mode `append` appends the rows
   inserted or updated. A table without the feed for those versions is read whole (an upsert of a whole
   read is a replace: keys the lake no longer has must go too).
4. The destination creates or evolves its table (additive), writes in one transaction with the marker
   (export id, V), and only then is V recorded in the state store (`layer_progress`, layer
   `export.<name>`, as V + 1: 0 means never exported).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pipezone.core import failpoints
from pipezone.core.destinations.contract import Destination, ExportBatch, ExportMarker, TableName, WriteMode
from pipezone.core.destinations.registry import open_destination
from pipezone.core.lake import change_feed
from pipezone.core.lake.delta_tables import METADATA_COLUMNS, table_exists
from pipezone.core.spec.export import ExportSpec
from pipezone.core.steps.context import StepContext, StepResult

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame

ARROW_BATCH_ROWS = 100_000


def progress_layer(export_name: str) -> str:
    """The state store's layer key of an export's position."""
    return f"export.{export_name}"


def run_export(ctx: StepContext, export: ExportSpec) -> StepResult:
    flow = ctx.flow
    layer, name = export.source_table(flow)
    path = ctx.runtime.lake.table(layer, name, flow)
    if not table_exists(ctx.spark, path):
        raise ValueError(f"export {export.export_name(flow)}: the lake table {layer}.{name} does not exist yet")
    destination = open_destination(
        ctx.runtime.connection(export.connection), ctx.runtime.resolver, ctx.runtime.settings.project_root
    )
    try:
        return _export(ctx, export, destination, path)
    finally:
        destination.close()


def _export(ctx: StepContext, export: ExportSpec, destination: Destination, path: str) -> StepResult:
    flow, export_id = ctx.flow, export.export_id(ctx.flow)
    layer_key = progress_layer(export.export_name(flow))
    with ctx.timed("prepare"):
        exported = destination.exported_version(export_id)
        if exported is not None and ctx.state.get_progress(flow.name, layer_key) != exported + 1:
            ctx.state.set_progress(flow.name, layer_key, exported + 1, ctx.run_id)  # lost after the commit
        full = exported is None or ctx.full_refresh or export.mode == "replace"
        if export.mode != "replace":
            change_feed.enable_change_feed(ctx.spark, path)  # the next export reads changes from here
        version = change_feed.current_version(ctx.spark, path)
    details: dict[str, Any] = {"version": version, "exported_before": exported, "export_id": export_id}
    if exported is not None and exported >= version and not ctx.full_refresh:
        return StepResult(skipped=True, note=f"up to date at lake version {version}", details=details)
    rows, deletes, mode, read = _what_travels(ctx, export, path, exported, version, full)
    table = TableName(export.destination_table(flow), export.schema_)
    keys = [] if export.mode == "append" else export.key_columns(flow)  # an append is a log: a key repeats
    with ctx.timed("read_write"):
        destination.prepare(table, rows.schema, keys)
        batch = ExportBatch(rows.schema, _arrow(rows), _arrow(deletes) if deletes is not None else None)
        failpoints.reach("export.before_commit")
        report = destination.write(table, batch, mode, keys, ExportMarker(export_id, version))
    failpoints.reach("export.after_commit")
    with ctx.timed("state"):
        ctx.state.set_progress(flow.name, layer_key, version + 1, ctx.run_id)
    details |= {"table": str(table), "mode": mode, "rows_deleted": report.rows_deleted, "read": read}
    return StepResult(
        rows_read=report.rows_written + report.rows_deleted,
        rows_written=report.rows_written,
        bytes_written=report.bytes_written,
        note=f"{mode} into {export.connection}:{table} at lake version {version}",
        details=details,
    )


def _what_travels(
    ctx: StepContext, export: ExportSpec, path: str, exported: int | None, version: int, full: bool
) -> tuple[DataFrame, DataFrame | None, WriteMode, str]:
    """(rows, keys to delete, write mode, what was read): the whole live table, or the changes after
    `exported` (a range the change feed doesn't cover is read whole, and says so)."""
    lake_names = {new: old for old, new in (export.rename or {}).items()}
    keys_in_lake = [lake_names.get(k, k) for k in export.key_columns(ctx.flow)]
    if not full:
        assert exported is not None
        try:
            if export.mode == "append":
                rows = _shaped(export, change_feed.new_rows(ctx.spark, path, exported + 1, version))
                return rows, None, "append", "changes"
            changes = change_feed.keyed_changes(ctx.spark, path, exported + 1, version, keys_in_lake)
            deletes = _shaped(export, changes.deletes, only=keys_in_lake)
            return _shaped(export, changes.upserts), deletes, "upsert", "changes"
        except change_feed.ChangeFeedUnavailable:
            pass  # read whole below
    rows = _shaped(export, change_feed.read_version(ctx.spark, path, version))
    return rows, None, "replace" if export.mode == "upsert" else export.mode, "whole table"


def _shaped(export: ExportSpec, df: DataFrame, only: list[str] | None = None) -> DataFrame:
    """The exported columns (selected, PipeZone's own left out) under their destination names."""
    from pyspark.sql import functions as F  # noqa: N812

    own = (*METADATA_COLUMNS, *change_feed.FEED_COLUMNS)
    columns = only or export.columns or [c for c in df.columns if c not in own and not c.startswith("_pz_")]
    missing = [c for c in columns if c not in df.columns]
    if missing:
        has = ", ".join(c for c in df.columns if c not in own)
        raise ValueError(f"export: column(s) {', '.join(missing)} not in the lake table (it has: {has})")
    renames = export.rename or {}

    return df.select(*[F.col(f"`{c}`").alias(renames.get(c, c)) for c in columns])


def _arrow(df: DataFrame) -> Iterator[pa.RecordBatch]:
    """The rows as Arrow record batches (Spark's Arrow collect), in bounded chunks."""
    table = df.toArrow()
    yield from table.to_batches(max_chunksize=ARROW_BATCH_ROWS)
