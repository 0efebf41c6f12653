"""Profiles (`metadata/profiles/*.yaml`): which lake, state store and Spark master a run uses.

The same flows run embedded (`default`: local Spark, lake folder, SQLite state) or on the real stack
(`services`: Spark standalone, MinIO, MariaDB) by switching the profile alone (PIPEZONE_PROFILE).
"""

from __future__ import annotations

from pydantic import Field

from pipezone.core.spec_types import Name, SpecModel


class SparkProfile(SpecModel):
    """Spark settings for jobs; small-machine defaults."""

    master: str = Field(default="local[2]", description="local[N] or spark://host:7077")
    driver_memory: str = Field(default="2g", pattern=r"^\d+[kmgt]$")
    executor_memory: str = Field(default="2g", pattern=r"^\d+[kmgt]$")
    shuffle_partitions: int = Field(default=4, ge=1, le=10000)
    ui_url: str | None = Field(default=None, description="Spark (master) UI, for links from Airflow.")
    shared_jars: bool = Field(
        default=False,
        description="Workers hold the jar cache at the driver's path (same machine or same image): executors "
        "read it in place instead of each application copying ~700 MB of jars.",
    )
    driver_host: str | None = Field(
        default=None, description="Address executors reach the driver on, e.g. 127.0.0.1 for a cluster on this host."
    )
    conf: dict[str, str] = Field(default_factory=dict, description="Extra spark.* settings.")
    connect_url: str | None = Field(
        default=None,
        pattern=r"^sc://[A-Za-z0-9.\-]+:\d+/?$",
        description="A Spark Connect server (sc://host:port) that runs every step: steps are thin Python "
        "clients of one long-running, warm Spark driver instead of one JVM each. `pipezone spark-server "
        "start` runs it from this profile's other settings.",
    )


class ProfileSpec(SpecModel):
    """A deployment: the connections that serve as lake and state store, and the Spark settings."""

    name: Name
    description: str = ""
    lake: Name = Field(description="A lake connection (type local, s3 or minio).")
    state_store: Name = Field(description="A state-store connection (type sqlite, mysql or mariadb).")
    spark: SparkProfile = Field(default_factory=SparkProfile)
    lake_console_url: str | None = Field(default=None, description="e.g. the MinIO console, for links.")
