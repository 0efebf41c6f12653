"""Spark session factory, jar cache and spark-submit path, against real Spark (no mocks)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipezone.core.spark import jars as spark_jars
from pipezone.core.spark.jars import (
    DEPENDENCIES,
    JDBC_DRIVERS,
    MavenDep,
    cached_jars,
    manifest_key,
    resolve_jars,
)
from pipezone.core.spark.session import (
    S3Settings,
    SparkSettings,
    find_spark_submit,
    printable_args,
    redact_args,
    spark_conf,
    submit_args,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
JAR_CACHE = REPO_ROOT / ".pipezone" / "jars"
FAKE_JARS = [Path("/cache/lib/delta-spark.jar"), Path("/cache/lib/sqlite-jdbc.jar")]
SECRET = "s3cr3t-do-not-print"


def _conf_pairs(args: list[str]) -> dict[str, str]:
    pairs = [args[i + 1] for i, a in enumerate(args) if a == "--conf"]
    return dict(p.split("=", 1) for p in pairs)


def _flag(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


# --------------------------------------------------------------------------- real session


@pytest.mark.spark
def test_delta_round_trip_merge_and_time_travel(spark, tmp_path: Path) -> None:
    from delta.tables import DeltaTable

    path = str(tmp_path / "customers")
    spark.createDataFrame([(1, "ann"), (2, "bob")], "id INT, name STRING").write.format("delta").save(path)

    updates = spark.createDataFrame([(2, "bobby"), (3, "cy")], "id INT, name STRING")
    (
        DeltaTable.forPath(spark, path)
        .alias("t")
        .merge(updates.alias("s"), "t.id = s.id")
        .whenMatchedUpdateAll()
        .whenNotMatchedInsertAll()
        .execute()
    )

    current = {r.id: r.name for r in spark.read.format("delta").load(path).collect()}
    assert current == {1: "ann", 2: "bobby", 3: "cy"}
    first = {r.id: r.name for r in spark.read.format("delta").option("versionAsOf", 0).load(path).collect()}
    assert first == {1: "ann", 2: "bob"}
    assert DeltaTable.forPath(spark, path).history().count() == 2


@pytest.mark.spark
def test_session_and_jvm_are_utc(spark) -> None:
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert spark.sparkContext._jvm.java.util.TimeZone.getDefault().getID() == "UTC"
    epoch = spark.sql("SELECT CAST(TIMESTAMP'2024-01-01 00:00:00' AS BIGINT) AS s").first().s
    assert epoch == 1_704_067_200


@pytest.mark.spark
def test_jdbc_read_from_sqlite_file(spark, tmp_path: Path) -> None:
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, qty INTEGER NOT NULL, updated_at TIMESTAMP)")
        conn.executemany(
            "INSERT INTO orders VALUES (?, ?, ?)",
            [(1, 5, "2024-01-02 03:04:05"), (2, 7, "2024-06-30 23:59:59.123"), (3, 0, None)],
        )
    df = (
        spark.read.format("jdbc")
        .option("url", f"jdbc:sqlite:{db}")
        .option("dbtable", "orders")
        .option("driver", JDBC_DRIVERS["sqlite"])
        .load()
    )
    assert dict(df.dtypes) == {"id": "int", "qty": "int", "updated_at": "timestamp"}
    rows = df.selectExpr("id", "qty", "CAST(updated_at AS DOUBLE) AS epoch").orderBy("id").collect()
    # Epoch seconds prove the text was read as UTC wall time, whatever this machine's zone.
    assert [(r.id, r.qty, r.epoch) for r in rows] == [
        (1, 5, 1_704_164_645.0),
        (2, 7, 1_719_791_999.123),
        (3, 0, None),
    ]


@pytest.mark.spark
def test_every_pinned_jdbc_driver_loads(spark) -> None:
    jvm = spark.sparkContext._jvm
    loader = jvm.Thread.currentThread().getContextClassLoader()
    for driver in JDBC_DRIVERS.values():
        assert jvm.java.lang.Class.forName(driver, True, loader).getName() == driver
    assert jvm.java.lang.Class.forName("org.apache.hadoop.fs.s3a.S3AFileSystem", True, loader)


@pytest.mark.spark
def test_spark_submit_writes_delta_with_cached_jars(spark, tmp_path: Path) -> None:
    """The path jobs take in production: pyspark's spark-submit + submit_args, jars from the cache only."""
    script = tmp_path / "job.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys
            from pyspark.sql import SparkSession

            spark = SparkSession.builder.getOrCreate()
            spark.range(3).selectExpr("id", "CAST(id * 2 AS INT) AS v").write.format("delta").save(sys.argv[1])
            tz = spark.sparkContext._jvm.java.util.TimeZone.getDefault().getID()
            print("JOB-OK", spark.conf.get("spark.sql.session.timeZone"), tz)
            spark.stop()
            """
        )
    )
    out = tmp_path / "submitted"
    settings = SparkSettings(
        jar_cache=JAR_CACHE,
        master="local[1]",
        app_name="pipezone-submit-test",
        driver_memory="512m",
        warehouse_dir=tmp_path / "wh",
        python=sys.executable,
        extra_conf={"spark.ui.enabled": "false"},
    )
    cmd = [str(find_spark_submit()), *submit_args(settings), str(script), str(out)]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)

    assert result.returncode == 0, result.stderr[-3000:]
    assert "JOB-OK UTC UTC" in result.stdout
    rows = spark.read.format("delta").load(str(out)).orderBy("id").collect()
    assert [(r.id, r.v) for r in rows] == [(0, 0), (1, 2), (2, 4)]


# --------------------------------------------------------------------------- jar cache


@pytest.mark.spark
def test_second_resolve_is_a_noop(spark) -> None:
    manifest = JAR_CACHE / spark_jars.MANIFEST_NAME
    before = manifest.stat().st_mtime_ns
    started = time.monotonic()
    paths = resolve_jars(JAR_CACHE)
    elapsed = time.monotonic() - started

    assert elapsed < 1.0
    assert manifest.stat().st_mtime_ns == before
    assert paths == cached_jars(JAR_CACHE)
    names = {p.name for p in paths}
    for dep in DEPENDENCIES:
        assert any(n.startswith(f"{dep.artifact}-{dep.version}") for n in names), dep.coordinate
    assert json.loads(manifest.read_text())["coordinates"] == [d.coordinate for d in DEPENDENCIES]


def test_jars_pyspark_already_ships_are_not_cached() -> None:
    paths = cached_jars(JAR_CACHE)
    if paths is None:
        pytest.skip("jar cache not resolved yet (the spark fixture or `make jars` does it)")
    names = " ".join(p.name for p in paths)
    for shipped_by_pyspark in ("hadoop-client-runtime", "parquet-hadoop", "jackson-databind", "scala-library"):
        assert shipped_by_pyspark not in names


def test_changed_pin_invalidates_the_manifest(tmp_path: Path) -> None:
    jar = tmp_path / "lib" / "sqlite-jdbc-1.jar"
    jar.parent.mkdir()
    jar.write_bytes(b"")
    pins = (MavenDep("org.xerial", "sqlite-jdbc", "1"),)
    manifest = {"format": spark_jars.MANIFEST_FORMAT, "key": manifest_key(pins), "jars": ["lib/sqlite-jdbc-1.jar"]}
    (tmp_path / spark_jars.MANIFEST_NAME).write_text(json.dumps(manifest))

    assert cached_jars(tmp_path, manifest_key(pins)) == [jar]
    bumped = (MavenDep("org.xerial", "sqlite-jdbc", "2"),)
    assert manifest_key(bumped) != manifest_key(pins)
    assert cached_jars(tmp_path, manifest_key(bumped)) is None
    jar.unlink()
    assert cached_jars(tmp_path, manifest_key(pins)) is None  # a deleted jar also forces a re-resolve


def test_resolution_errors_are_one_line(tmp_path: Path) -> None:
    mvn_output = (  # what `mvn -B -q` prints for a pin that Maven Central does not have
        "\x1b[0m\x1b[0m[ERROR] Failed to execute goal on project pipezone-spark-jars: Could not resolve "
        "dependencies for project pipezone.local:pipezone-spark-jars:pom:0: Could not find artifact "
        "io.delta:delta-spark_2.13:jar:4.4.1 in central (https://repo.maven.apache.org/maven2) -> [Help 1]\n"
        "[ERROR] \n[ERROR] To see the full stack trace of the errors, re-run Maven with the -e switch.\n"
    )
    pins = (MavenDep("io.delta", "delta-spark_2.13", "4.4.1"), spark_jars.SQLITE)
    line = spark_jars._failure_line(pins, spark_jars._mvn_cause(mvn_output))
    assert "\n" not in line
    assert line == (
        "could not resolve io.delta:delta-spark_2.13:4.4.1 from Maven Central: Could not find artifact "
        "io.delta:delta-spark_2.13:jar:4.4.1 in central (https://repo.maven.apache.org/maven2)"
    )
    with pytest.raises(spark_jars.JarResolutionError, match="unknown jar resolver 'gradle'"):
        resolve_jars(tmp_path, resolvers=("gradle",))


# --------------------------------------------------------------------------- settings -> conf / args


def test_submit_args_for_local_master() -> None:
    settings = SparkSettings(jar_cache=Path("/cache"), driver_memory="2g", warehouse_dir=Path("/wh"))
    args = submit_args(settings, jars=FAKE_JARS)

    assert _flag(args, "--master") == "local[2]"
    assert _flag(args, "--name") == "pipezone"
    assert _flag(args, "--driver-memory") == "2g"
    # Local mode: jars go on the driver classpath (no per-run copy of the 690 MB AWS bundle).
    assert _flag(args, "--driver-class-path") == os.pathsep.join(map(str, FAKE_JARS))
    assert "--jars" not in args
    conf = _conf_pairs(args)
    assert conf["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    assert conf["spark.sql.catalog.spark_catalog"] == "org.apache.spark.sql.delta.catalog.DeltaCatalog"
    assert conf["spark.sql.session.timeZone"] == "UTC"
    assert conf["spark.driver.extraJavaOptions"] == "-Duser.timezone=UTC"
    assert conf["spark.executor.extraJavaOptions"] == "-Duser.timezone=UTC"
    assert conf["spark.sql.shuffle.partitions"] == "4"
    assert conf["spark.ui.showConsoleProgress"] == "false"
    assert conf["spark.sql.warehouse.dir"] == "/wh"
    assert not any(k.startswith("spark.hadoop.fs.s3a") for k in conf)
    for dedicated in ("spark.master", "spark.app.name", "spark.driver.memory", "spark.jars"):
        assert dedicated not in conf


def test_submit_args_for_cluster_master_ship_jars() -> None:
    settings = SparkSettings(jar_cache=Path("/cache"), master="spark://spark-master:7077")
    args = submit_args(settings, jars=FAKE_JARS)
    assert _flag(args, "--master") == "spark://spark-master:7077"
    assert _flag(args, "--jars") == ",".join(map(str, FAKE_JARS))
    assert "--driver-class-path" not in args


def test_s3_and_extra_conf() -> None:
    settings = SparkSettings(
        jar_cache=Path("/cache"),
        s3=S3Settings(endpoint="http://minio:9000", access_key="pipezone", secret_key=SECRET),
        extra_conf={
            "spark.sql.shuffle.partitions": "8",
            "spark.driver.extraJavaOptions": "-Dfoo=bar",
            "spark.executor.memory": "1g",
            "spark.driver.extraClassPath": "/opt/extra.jar",
        },
    )
    conf = spark_conf(settings, FAKE_JARS)
    s3a = {k.removeprefix("spark.hadoop.fs.s3a."): v for k, v in conf.items() if "fs.s3a." in k}
    assert s3a == {
        "endpoint": "http://minio:9000",
        "endpoint.region": "us-east-1",
        "path.style.access": "true",
        "connection.ssl.enabled": "false",
        "aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        "access.key": "pipezone",
        "secret.key": SECRET,
        # fail fast when the store is down (Hadoop's defaults retried a stopped MinIO for 325 s)
        "attempts.maximum": "2",
        "retry.limit": "3",
        "retry.interval": "500ms",
        "connection.establish.timeout": "5s",
    }
    assert conf["spark.sql.shuffle.partitions"] == "8"  # extra_conf wins...
    assert conf["spark.driver.extraJavaOptions"] == "-Duser.timezone=UTC -Dfoo=bar"  # ...but keeps UTC
    assert conf["spark.executor.memory"] == "1g"
    assert conf["spark.driver.extraClassPath"].split(os.pathsep) == [*map(str, FAKE_JARS), "/opt/extra.jar"]


def test_secrets_never_printed() -> None:
    s3 = S3Settings(endpoint="http://minio:9000", access_key="pipezone", secret_key=SECRET)
    settings = SparkSettings(
        jar_cache=Path("/cache"), s3=s3, extra_conf={"spark.hadoop.javax.jdo.option.ConnectionPassword": SECRET}
    )
    args = submit_args(settings, jars=FAKE_JARS)
    assert f"spark.hadoop.fs.s3a.secret.key={SECRET}" in args  # the real list carries it to spark-submit

    shown = printable_args(args)
    assert SECRET not in shown
    assert "spark.hadoop.fs.s3a.secret.key=*****" in shown
    assert "spark.hadoop.fs.s3a.access.key=pipezone" in shown
    assert SECRET not in " ".join(redact_args(["--conf=spark.hadoop.fs.s3a.secret.key=" + SECRET]))
    assert SECRET not in repr(settings)
    assert SECRET not in repr(s3)


def test_find_spark_submit_is_pyspark_own() -> None:
    import pyspark

    path = find_spark_submit()
    assert path == Path(pyspark.__file__).parent / "bin" / "spark-submit"
    assert os.access(path, os.X_OK)


def test_profile_conf_overrides_the_s3a_retry_defaults() -> None:
    settings = SparkSettings(
        jar_cache=Path("/cache"),
        s3=S3Settings(endpoint="http://minio:9000", access_key="k", secret_key=SECRET),
        extra_conf={"spark.hadoop.fs.s3a.retry.limit": "7"},
    )
    assert spark_conf(settings, FAKE_JARS)["spark.hadoop.fs.s3a.retry.limit"] == "7"


def test_shared_jars_put_the_cache_on_the_executor_classpath_and_driver_host_binds() -> None:
    master = "spark://127.0.0.1:7077"
    settings = SparkSettings(jar_cache=Path("/cache"), master=master, shared_jars=True, driver_host="127.0.0.1")
    conf = spark_conf(settings, FAKE_JARS)
    classpath = os.pathsep.join(str(j) for j in FAKE_JARS)
    assert conf["spark.executor.extraClassPath"] == conf["spark.driver.extraClassPath"] == classpath
    assert "spark.jars" not in conf
    assert conf["spark.driver.host"] == conf["spark.driver.bindAddress"] == "127.0.0.1"
    shipped = spark_conf(SparkSettings(jar_cache=Path("/cache"), master=master), FAKE_JARS)
    assert shipped["spark.jars"] == ",".join(str(j) for j in FAKE_JARS)
    assert "spark.executor.extraClassPath" not in shipped and "spark.driver.host" not in shipped
