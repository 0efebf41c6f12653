"""Airflow plugin: PipeZone's operator extra links (Spark UI, lake location of the task's table, Data Docs).

The links are computed on the worker when a PipeZone task finishes (Airflow 3 stores them in XCom);
registering them here lists them among the plugin's operator extra links in the Airflow UI.
"""

from airflow.plugins_manager import AirflowPlugin

from pipezone.core.airflow.links import DataDocsLink, LakeLocationLink, SparkUiLink


class PipeZoneLinksPlugin(AirflowPlugin):
    name = "pipezone_links"
    operator_extra_links = [SparkUiLink(), LakeLocationLink(), DataDocsLink()]
