"""Shared fixtures. `spark` starts ONE local Spark session for the whole test run (a JVM start costs ~10 s)."""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# py4j logs "Closing down clientserver connection" from __del__ at interpreter exit, after pytest has
# closed its log handlers ("--- Logging error ---"); its INFO chatter is of no use in test output.
logging.getLogger("py4j").setLevel(logging.WARNING)

REPO_ROOT = Path(__file__).resolve().parents[1]
JAR_CACHE = REPO_ROOT / ".pipezone" / "jars"


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkSession]:
    """A local[2] Delta-enabled session with a throwaway warehouse; jars from the repo's cache."""
    from pipezone.core.spark.session import SparkSettings, build_session

    settings = SparkSettings(
        jar_cache=JAR_CACHE,
        app_name="pipezone-tests",
        shuffle_partitions=2,
        warehouse_dir=tmp_path_factory.mktemp("warehouse"),
        # One JVM hosts every test's tables: Delta keeps a DeltaLog (and its cached snapshot state) per table
        # path for an hour, so a long run's heap would fill with tables no test reads again. A small cache
        # (as Delta's own test suites set) keeps that in check, and _release_spark_memory below drops the rest
        # after each module. Without that release a 3g heap was 97% full by half the suite and the tests took
        # 85 minutes; with it the heap stayed under 0.9 GB in use and they took 50. 3g leaves room to spare.
        driver_memory="3g",
        extra_conf={
            "spark.ui.enabled": "false",
            "spark.driver.extraJavaOptions": "-Ddelta.log.cacheSize=16",
            # The status store keeps the last 1,000 SQL executions, jobs and stages and 100,000 tasks even with
            # the UI off: in a test run that is heap no test reads.
            "spark.sql.ui.retainedExecutions": "20",
            "spark.ui.retainedJobs": "50",
            "spark.ui.retainedStages": "50",
            "spark.ui.retainedTasks": "1000",
        },
    )
    session = build_session(settings)
    yield session
    session.stop()


@pytest.fixture(autouse=True, scope="module")
def _release_spark_memory() -> Iterator[None]:
    """After each module, drop what the shared session still holds for it.

    A heap dump of the test JVM (shark's paths to GC roots) showed where the plans stay: in DataFrames that
    Python objects still referenced (py4j keeps their Java side until Python collects them), in cached
    frames, and in Delta's DeltaLog cache (each entry holds its snapshots' state and plans). Releasing them
    once per module keeps the heap flat over the suite instead of filling it (and its collector taking a
    core from every test).
    """
    yield
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession()
    if session is None:  # the module used no Spark in this process
        return
    gc.collect()  # py4j frees a Java object when its Python proxy is collected
    session.catalog.clearCache()
    session._jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()  # type: ignore[union-attr]


if TYPE_CHECKING:
    from services import MariaDB, Postgres
    from stack import Mongo


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDB]:
    """The project's MariaDB (setup/local/mariadb.sh) as connection parameters; in CI it must be up."""
    from services import require_mariadb

    yield require_mariadb()


@pytest.fixture(scope="session")
def mongo() -> Iterator[Mongo]:
    """The project's MongoDB-wire server (FerretDB, setup/local/ferretdb.sh): `host`, `port`, `url`
    (mongodb://host:port/) and `client()`; in CI it must be up."""
    from stack import require_mongo

    yield require_mongo()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """The project's PostgreSQL (setup/local/postgres.sh) as connection parameters; in CI it must be up."""
    from services import require_postgres

    yield require_postgres()
