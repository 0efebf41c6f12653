"""Profiles (`metadata/profiles/*.yaml`): which lake, state store and Spark master a run uses.

The same flows run embedded (`default`: local Spark, lake folder, SQLite state) or on the real stack
(`services`: Spark standalone, MinIO, MariaDB) by switching the profile alone (PIPEZONE_PROFILE).
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from pipezone.core.spec.connection import HttpUrl
from pipezone.core.spec.secret_scan import secret_name
from pipezone.core.spec.value_types import Name, SpecModel, patterned

MASTER_PATTERN = (
    r"^(?:local(?:\[(?:\*|\d{1,4})(?:,\d{1,3})?\])?|yarn|spark://[A-Za-z0-9.\-]+:\d{1,5}(?:,[A-Za-z0-9.\-]+:\d{1,5})*"
    r"|k8s://https?://[A-Za-z0-9.\-]+(?::\d{1,5})?)$"
)
CONF_KEY_PATTERN = r"^spark\.[A-Za-z0-9_.\-]{1,200}$"
_CONF_KEY = re.compile(CONF_KEY_PATTERN)
MemorySize = patterned(r"\d{1,6}[kmgt]", "a memory size such as 2g or 512m")
Master = patterned(
    MASTER_PATTERN, "not a Spark master: local, local[N], local[*], spark://host:port, yarn or k8s://URL"
)


class SparkProfile(SpecModel):
    """Spark settings for jobs; small-machine defaults."""

    master: Master = Field(default="local[2]", description="local[N] or spark://host:7077")  # type: ignore[valid-type]
    driver_memory: MemorySize = "2g"  # type: ignore[valid-type]
    executor_memory: MemorySize = "2g"  # type: ignore[valid-type]
    shuffle_partitions: int = Field(default=4, ge=1, le=10000)
    ui_url: HttpUrl | None = Field(  # type: ignore[valid-type]
        default=None, description="Spark (master) UI, for links from Airflow."
    )
    shared_jars: bool = Field(
        default=False,
        description="Workers hold the jar cache at the driver's path (same machine or same image): executors "
        "read it in place instead of each application copying ~700 MB of jars.",
    )
    driver_host: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9.:\[\]\-]{1,253}$",
        description="Address executors reach the driver on, e.g. 127.0.0.1 for a cluster on this host.",
    )
    conf: dict[str, str] = Field(
        default_factory=dict,
        max_length=500,
        description="Extra spark.* settings. Never a secret: the lake's credentials come from its connection.",
    )
    connect_url: str | None = Field(
        default=None,
        pattern=r"^sc://[A-Za-z0-9.\-]+:\d+/?$",
        description="A Spark Connect server (sc://host:port) that runs every step: steps are thin Python "
        "clients of one long-running, warm Spark driver instead of one JVM each. `pipezone spark-server "
        "start` runs it from this profile's other settings.",
    )
    parallel_steps: int = Field(
        default=2,
        ge=1,
        le=256,
        description="How many steps may run at once on this Spark: the slots of the Airflow pool "
        "`pipezone_spark` that every PipeZone task takes one of (`pipezone airflow-pool` sizes it), so many "
        "flows scheduled together queue in Airflow instead of oversubscribing the machine.",
    )
    connect_ui_url: HttpUrl | None = Field(  # type: ignore[valid-type]
        default=None,
        description="The Connect server's own Spark UI (its jobs and SQL plans), linked from Airflow tasks "
        "instead of ui_url when steps run through spark.connect_url.",
    )

    @field_validator("conf")
    @classmethod
    def _spark_keys(cls, conf: dict[str, str]) -> dict[str, str]:
        for key in conf:
            if not _CONF_KEY.fullmatch(key):
                raise PydanticCustomError("conf_key", "a Spark setting's name starts with 'spark.'", {"at": (key,)})
            if secret_name(key):
                raise PydanticCustomError(
                    "conf_secret",
                    "'{key}' looks like a secret, and spark.conf is passed on command lines and shown in the "
                    "Spark UI: set credentials on the lake connection, as references",
                    {"key": key, "at": (key,)},
                )
        return conf


class ProfileSpec(SpecModel):
    """A deployment: the connections that serve as lake and state store, and the Spark settings."""

    name: Name
    description: str = ""
    lake: Name = Field(description="A lake connection (type local, s3 or minio).")
    state_store: Name = Field(description="A state-store connection (type sqlite, mysql or mariadb).")
    spark: SparkProfile = Field(default_factory=SparkProfile)
    lake_console_url: HttpUrl | None = Field(  # type: ignore[valid-type]
        default=None, description="e.g. the MinIO console, for links."
    )
