"""Per-layer row counts of every flow's tables, next to the source's own count.

What `pipezone tables` prints and `make demo` ends with: the quickest proof that silver matches the
source after incremental runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipezone.core.destinations.contract import TableName
from pipezone.core.destinations.registry import open_destination
from pipezone.core.lake import delta_tables as dt
from pipezone.core.spec.quality import row_level
from pipezone.core.steps.export import progress_layer
from pipezone.core.steps.runtime import Runtime

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def source_count(runtime: Runtime, spark: SparkSession, flow_name: str) -> int:
    """The number of rows the flow's source holds now, as its source counts them."""
    return runtime.source(runtime.flow(flow_name)).count(spark)


def _count(spark: SparkSession, path: str, *, live: bool = False) -> str:
    if not dt.table_exists(spark, path):
        return "-"
    return str(dt.live_count(spark, path) if live else dt.row_count(spark, path))


HELD_NOTE = "yes*: silver + dropped + quarantined = source (rows held back by the flow's row checks)"


def layer_rows(runtime: Runtime, spark: SparkSession) -> list[list[str]]:
    """Table rows: flow, source count, raw / bronze / silver counts, the rows silver's row checks held back
    (dropped over all runs, in quarantine now), and whether silver matches the source."""
    lake = runtime.lake
    rows = [["FLOW", "SOURCE", "RAW", "BRONZE", "SILVER", "DROPPED", "QUARANTINED", "SILVER = SOURCE"]]
    for name in sorted(runtime.catalog.flows):
        flow = runtime.flow(name)
        if flow.source is None:
            continue
        source = source_count(runtime, spark, name)
        silver = _count(spark, lake.silver(name), live=True)  # deleted rows and closed versions don't count
        raw, bronze = _count(spark, lake.raw(flow)), _count(spark, lake.bronze(name))
        if not any(row_level(check) for check in flow.quality):
            rows.append([name, str(source), raw, bronze, silver, "-", "-", "yes" if silver == str(source) else "NO"])
            continue
        dropped = runtime.state.detail_total(name, "silver", "rows_dropped")
        quarantined = _count(spark, lake.quarantine(name))
        held = dropped + (int(quarantined) if quarantined != "-" else 0)
        match = (
            "yes" if silver == str(source) else ("yes*" if silver.isdigit() and int(silver) + held == source else "NO")
        )
        rows.append([name, str(source), raw, bronze, silver, str(dropped), quarantined, match])
    return rows


def gold_rows(runtime: Runtime, spark: SparkSession) -> list[list[str]]:
    rows = [["GOLD TABLE", "FLOW", "ROWS", "LOCATION"]]
    for name in sorted(runtime.catalog.flows):
        for table in runtime.flow(name).layers.gold:
            path = runtime.lake.gold(table.name)
            rows.append([table.name, name, _count(spark, path), path])
    return rows


def export_rows(runtime: Runtime, spark: SparkSession) -> list[list[str]]:
    """Each export's destination table next to its lake table: rows on both sides and the lake version
    exported last (an append keeps every exported row, so only replace and upsert should match)."""
    rows = [["EXPORT", "FLOW", "DESTINATION", "MODE", "LAKE ROWS", "DESTINATION ROWS", "LAKE VERSION", "MATCH"]]
    for name in sorted(runtime.catalog.flows):
        flow = runtime.flow(name)
        for export in flow.exports:
            layer, table = export.source_table(flow)
            lake = _count(spark, runtime.lake.table(layer, table, flow), live=True)
            target = TableName(export.destination_table(flow), export.schema_)
            conn = runtime.connection(export.connection)
            destination = open_destination(conn, runtime.resolver, runtime.settings.project_root)
            try:
                count = destination.count(target)
            finally:
                destination.close()
            shown = "-" if count is None else str(count)
            progress = runtime.state.get_progress(name, progress_layer(export.export_name(flow)))
            version = str(progress - 1) if progress else "-"
            match = "-" if export.mode == "append" else ("yes" if shown == lake else "NO")
            where = f"{export.connection}:{target}"
            rows.append([export.step(flow), name, where, export.mode, lake, shown, version, match])
    return rows
