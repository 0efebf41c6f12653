"""Extra links on every PipeZone task: the Spark UI, the lake location of the table the step writes, and
the flow's Great Expectations Data Docs (quality: the table checks' site; silver: the row checks' site).

Airflow 3 evaluates an operator's links on the worker when the task finishes and stores them in XCom,
so they are computed from the runtime (the profile chosen by PIPEZONE_PROFILE) at execution time, never
at parse time. An empty link shows as disabled in the UI (e.g. no Spark UI configured for local runs).
`plugins/pipezone_links.py` registers the same classes with Airflow's plugin manager.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

from pipezone.core.lake.layout import browse_url
from pipezone.core.quality import data_docs

if TYPE_CHECKING:
    from pipezone.core.spec.flow import FlowSpec
    from pipezone.core.steps.runtime import Runtime

SPARK_UI = "spark_ui"
LAKE = "lake"
DATA_DOCS = "data_docs"


class SparkUiLink(BaseOperatorLink):
    """The Spark UI: the Connect server's (`spark.connect_ui_url`), the profile's `spark.ui_url` (master or
    history server), or the driver UI seen in the log."""

    name = "Spark UI"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        return (getattr(operator, "links", None) or {}).get(SPARK_UI, "")


class LakeLocationLink(BaseOperatorLink):
    """Where the step's table lives: the MinIO console (profile `lake_console_url`), S3 console or the folder."""

    name = "Lake location"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        return (getattr(operator, "links", None) or {}).get(LAKE, "")


class DataDocsLink(BaseOperatorLink):
    """The flow's Data Docs the step rendered (an index page on a local lake, the folder in the console)."""

    name = "Data Docs"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        return (getattr(operator, "links", None) or {}).get(DATA_DOCS, "")


def step_table(runtime: Runtime, flow: FlowSpec, step: str) -> str:
    """The lake URI of the table `step` writes (quality: the table it checks first)."""
    lake = runtime.lake
    if step == "extract":
        return lake.raw(flow)
    if step in ("bronze", "silver"):
        return lake.table(step, flow.name)
    export = flow.export_of(step)
    if export is not None:  # the lake table it exports
        return lake.table(*export.source_table(flow), flow)
    if step == "quality" and flow.quality:
        check = flow.quality[0]
        if check.layer != "gold" and flow.source is not None:
            return lake.table(check.layer, flow.name)
        if check.layer == "gold" and check.table:
            return lake.gold(check.table)
    if flow.layers.gold:
        return lake.gold(flow.layers.gold[0].name)
    return lake.silver(flow.name)


def spark_ui_url(runtime: Runtime) -> str | None:
    """The UI where a step's Spark work shows: the Connect server's when steps run through one."""
    spark = runtime.profile.spark
    return (spark.connect_ui_url if spark.connect_url else None) or spark.ui_url


def task_links(runtime: Runtime, flow: FlowSpec, step: str, spark_ui: str | None = None) -> dict[str, str]:
    """The links of one task, from the runtime's profile."""
    return {
        SPARK_UI: spark_ui_url(runtime) or spark_ui or "",
        LAKE: browse_url(step_table(runtime, flow, step), runtime.profile.lake_console_url),
        DATA_DOCS: data_docs.site_link(data_docs.site_uri(runtime.lake, flow, step), runtime.profile.lake_console_url),
    }
