"""Airflow on top: one DAG per flow, the step operator, Assets, DAG docs and task links."""
