"""Airflow entry file of PipeZone: one DAG per flow in metadata/flows (see pipezone.core.airflow.dag_factory).

The factory never raises: an invalid flow file becomes a paused placeholder DAG listing its problems,
and the other flows keep their DAGs. When Airflow runs a task, only that task's DAG is built.
"""

from pipezone.core.airflow.dag_factory import build_dags

globals().update(build_dags())
