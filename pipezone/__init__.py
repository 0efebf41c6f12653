"""PipeZone: YAML flows to Airflow DAGs running Spark jobs into a Delta Lake medallion."""

__version__ = "0.1.0"
