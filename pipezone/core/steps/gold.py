"""Gold: the flow's Spark SQL over silver (`silver.<flow>`) and gold (`gold.<table>`) tables.

References are rewritten to the tables' Delta paths (`delta.\\`s3a://silver/orders\\``), so the SQL the
analyst wrote runs unchanged on a local folder or on MinIO.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipezone.core.lake import delta_merge as dm
from pipezone.core.lake import delta_tables as dt
from pipezone.core.lake.layout import LakeLayout
from pipezone.core.spec.flow import GoldTable
from pipezone.core.spec.sql_references import rewrite_references
from pipezone.core.steps.context import StepContext, StepResult

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def resolve_references(sql: str, lake: LakeLayout, spark: SparkSession | None = None) -> str:
    """Replace silver.<flow> / gold.<table> with delta.`<path>`; a silver table with soft deletes or SCD2
    history becomes a subquery of its live rows (given `spark` to read its columns)."""

    def path(layer: str, name: str) -> str:
        location = lake.silver(name) if layer == "silver" else lake.gold(name)
        table = f"delta.`{location}`"
        if layer != "silver" or spark is None or not dt.table_exists(spark, location):
            return table
        condition = dt.live_condition(spark.read.format("delta").load(location).columns)
        return f"(SELECT * FROM {table} WHERE {condition})" if condition else table

    return rewrite_references(sql, path)


def _missing_inputs(ctx: StepContext, table: GoldTable) -> list[str]:
    lake = ctx.runtime.lake
    missing = []
    for layer, name in sorted(table.references()):
        location = lake.silver(name) if layer == "silver" else lake.gold(name)
        if not dt.table_exists(ctx.spark, location):
            missing.append(f"{layer}.{name}")
    return missing


def run_gold(ctx: StepContext) -> StepResult:
    from pyspark.sql import functions as F

    result = StepResult(details={"tables": {}})
    lake = ctx.runtime.lake
    for table in ctx.flow.layers.gold:
        missing = _missing_inputs(ctx, table)
        if missing:
            raise RuntimeError(f"gold table {table.name}: input tables not written yet: {', '.join(missing)}")
        df = ctx.spark.sql(resolve_references(table.sql, lake, ctx.spark))
        version = ctx.state.get_progress(ctx.flow.name, f"gold:{table.name}") + 1
        meta = ctx.metadata("gold", table=table.name, batch=version)
        common = {"app_id": ctx.app_id(f"gold:{table.name}"), "version": version, "metadata": meta}
        if table.write_mode == "merge":
            df = df.withColumn(dt.BATCH, F.lit(version))
            commit = dm.merge(
                df, lake.gold(table.name), keys=table.primary_key, cursor=None, changed_only=True, **common
            )
        else:
            commit = dt.append(df, lake.gold(table.name), overwrite=True, partition_by=table.partition_by, **common)
        ctx.state.set_progress(ctx.flow.name, f"gold:{table.name}", version, ctx.run_id)
        result.rows_written += commit.rows_written
        result.bytes_written += commit.bytes_written
        result.details["tables"][table.name] = {"rows": commit.rows_written, "delta_version": commit.version}
    return result
