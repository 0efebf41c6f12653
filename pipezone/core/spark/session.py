"""Spark session factory and the equivalent `spark-submit` command line, from one explicit settings object.

Both paths (an in-process `SparkSession` for tests and notebooks, `spark-submit` for jobs launched by
Airflow) come from the same `spark_conf()`, so a job behaves like its test. Settings are passed in:
this module reads no environment variables and no YAML (the config layer does that).
"""

from __future__ import annotations

import dataclasses
import logging
import logging.handlers
import os
import shlex
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from pipezone.core.spark.errors import summarize_error
from pipezone.core.spark.jars import pyspark_home, resolve_jars

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

REDACTED = "*****"
SENSITIVE_KEY_PARTS = ("secret", "password", "token")
UTC_JAVA_OPTION = "-Duser.timezone=UTC"
# Spark's log4j2 configuration when the settings name a log folder: INFO and up to the file, ERROR to the console.
LOG4J2_CONFIG = Path(__file__).with_name("log4j2.properties")
LOG_FILE_PROPERTY = "pipezone.spark.log"  # the file the configuration writes to (a JVM system property)
LOOPBACK = "127.0.0.1"
# The JVM prints this itself (Spark's launcher always adds the module): no log configuration reaches it.
JVM_NOISE = ("WARNING: Using incubator modules: jdk.incubator.vector",)
# pyspark's Python-side loggers (pyspark.errors): each logs the Spark errors raised with a query context.
PYSPARK_LOGGERS = ("SQLQueryContextLogger", "DataFrameQueryContextLogger")
# List-valued keys: a value in `extra_conf` is appended (with this separator) instead of replacing ours,
# so a user's JVM option or extra jar cannot silently drop UTC or the Delta jars.
APPEND_KEYS = {
    "spark.driver.extraJavaOptions": " ",
    "spark.executor.extraJavaOptions": " ",
    "spark.driver.extraClassPath": os.pathsep,
    "spark.executor.extraClassPath": os.pathsep,
    "spark.jars": ",",
}
# Keys that spark-submit takes as dedicated flags rather than `--conf`.
_FLAG_KEYS = {
    "spark.master": "--master",
    "spark.app.name": "--name",
    "spark.driver.memory": "--driver-memory",
    "spark.jars": "--jars",
    "spark.driver.extraClassPath": "--driver-class-path",
}


@dataclass(frozen=True, kw_only=True)
class S3Settings:
    """An S3-compatible store (MinIO by default: path-style, plain HTTP) reached through s3a."""

    endpoint: str
    access_key: str
    secret_key: str = field(repr=False)
    region: str = "us-east-1"
    path_style: bool = True
    ssl: bool = False


@dataclass(frozen=True, kw_only=True)
class SparkSettings:
    """Everything a PipeZone Spark session depends on.

    `driver_memory` only takes effect when the driver JVM starts: on `spark-submit` (as
    `--driver-memory`) or on the first session of a Python process. It cannot change for a JVM that
    is already running (a second `build_session` in the same process reuses that JVM).
    """

    jar_cache: Path
    master: str = "local[2]"
    app_name: str = "pipezone"
    driver_memory: str = "1g"
    shuffle_partitions: int = 4
    log_level: str = "WARN"  # Spark's level on the console when there is no log file (`log_dir` unset)
    log_dir: Path | None = None  # Spark's full log goes to <log_dir>/spark-<app>.log; the console gets ERROR only
    warehouse_dir: Path | None = None
    python: str | None = None  # interpreter for the driver/workers; build_session defaults it to this one
    shared_jars: bool = False  # workers have the jar cache at the same path: no per-application copy
    driver_host: str | None = None  # address executors call the driver back on (127.0.0.1 for a local cluster)
    s3: S3Settings | None = None
    extra_conf: Mapping[str, str] = field(default_factory=dict, hash=False)
    connect_url: str | None = None  # sc://host:port: sessions are clients of that Spark Connect server

    def __repr__(self) -> str:
        shown = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        shown["extra_conf"] = redact_conf(self.extra_conf)
        return f"SparkSettings({', '.join(f'{k}={v!r}' for k, v in shown.items())})"


# --------------------------------------------------------------------------- configuration


def spark_conf(settings: SparkSettings, jars: Sequence[Path]) -> dict[str, str]:
    """The full Spark configuration for `settings`; `extra_conf` wins, except list keys are appended to."""
    conf: dict[str, str] = {
        "spark.master": settings.master,
        "spark.app.name": settings.app_name,
        "spark.driver.memory": settings.driver_memory,
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        # UTC everywhere: session, and the JVM default zone used by JDBC drivers and Java date APIs.
        "spark.sql.session.timeZone": "UTC",
        "spark.driver.extraJavaOptions": UTC_JAVA_OPTION,
        "spark.executor.extraJavaOptions": UTC_JAVA_OPTION,
        # Small-machine defaults: 200 shuffle partitions / 50 Delta snapshot partitions are for clusters.
        "spark.sql.shuffle.partitions": str(settings.shuffle_partitions),
        "spark.databricks.delta.snapshotPartitions": str(settings.shuffle_partitions),
        "spark.ui.showConsoleProgress": "false",
        # Source values as the database returns them: Spark would pad a JDBC CHAR(n) column (MySQL also
        # reports ENUM and SET as CHAR) to n with spaces on read, so `WHERE rating = 'PG'` found nothing.
        "spark.sql.readSideCharPadding": "false",
    }
    log_file = spark_log_file(settings)
    if log_file is None:
        conf["spark.log.level"] = settings.log_level
    else:  # the level comes from the configuration (INFO): spark.log.level would cut the file down to it
        conf["spark.driver.extraJavaOptions"] += " " + " ".join(log_java_options(log_file))
    conf.update(jar_conf(settings.master, jars, shared=settings.shared_jars))
    if settings.driver_host is not None:
        conf["spark.driver.host"] = settings.driver_host
        conf["spark.driver.bindAddress"] = settings.driver_host
    if settings.warehouse_dir is not None:
        conf["spark.sql.warehouse.dir"] = str(settings.warehouse_dir)
    if settings.python is not None:
        conf["spark.pyspark.python"] = settings.python
        conf["spark.pyspark.driver.python"] = settings.python
    if settings.s3 is not None:
        conf.update(s3a_conf(settings.s3))
    for key, value in settings.extra_conf.items():
        conf[key] = f"{conf[key]}{APPEND_KEYS[key]}{value}" if key in APPEND_KEYS and key in conf else str(value)
    return conf


def spark_log_file(settings: SparkSettings) -> Path | None:
    """Where the driver JVM writes Spark's log: `<log_dir>/spark-<app name>.log`, or None without a log folder."""
    if settings.log_dir is None:
        return None
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in settings.app_name).strip(".") or "spark"
    return settings.log_dir / f"spark-{name}.log"


def log_java_options(log_file: Path) -> list[str]:
    """JVM options that load PipeZone's log4j2 configuration, writing Spark's log to `log_file`."""
    return [
        java_property("log4j2.configurationFile", str(LOG4J2_CONFIG)),
        java_property(LOG_FILE_PROPERTY, str(log_file)),
    ]


def java_property(name: str, value: str) -> str:
    """`-Dname=value`, quoted when the value has blanks (Spark splits extraJavaOptions as a shell would)."""
    option = f"-D{name}={value}"
    return shlex.quote(option) if any(c.isspace() or c in "'\"" for c in value) else option


def jvm_env(master: str) -> dict[str, str]:
    """Environment the driver JVM needs before it starts: a local master's driver binds the loopback address
    (SPARK_LOCAL_IP), so Spark neither looks for another interface nor warns that the hostname resolves to
    127.0.0.1. Callers keep a value the environment already has."""
    return {"SPARK_LOCAL_IP": LOOPBACK} if is_local_master(master) else {}


def jar_conf(master: str, jars: Sequence[Path], *, shared: bool = False) -> dict[str, str]:
    """How the cached jars reach the JVMs.

    Local masters run executors inside the driver JVM, so the jars go on the driver's classpath at
    launch. With `spark.jars`, Spark would copy every jar (the AWS SDK bundle is ~690 MB) into a
    per-application folder on each start, and leave it behind when the process is killed. A cluster
    whose workers hold the cache at the same path (same machine, or the same image) reads it in place
    (`shared`); other clusters need `spark.jars` so executors fetch the jars from the driver.
    """
    if not jars:
        return {}
    classpath = os.pathsep.join(str(p) for p in jars)
    if is_local_master(master):
        return {"spark.driver.extraClassPath": classpath}
    if shared:
        return {"spark.driver.extraClassPath": classpath, "spark.executor.extraClassPath": classpath}
    return {"spark.jars": ",".join(str(p) for p in jars)}


def is_local_master(master: str) -> bool:
    """`local`, `local[N]`, `local[*]`, `local[N,F]`: driver and executors share one JVM."""
    return master == "local" or master.startswith("local[")


def s3a_conf(s3: S3Settings) -> dict[str, str]:
    """Hadoop s3a settings for an S3-compatible endpoint (path-style avoids `UnknownHostException bucket.host`)."""
    prefix = "spark.hadoop.fs.s3a."
    return {
        prefix + "endpoint": s3.endpoint,
        prefix + "endpoint.region": s3.region,
        prefix + "path.style.access": _bool(s3.path_style),
        prefix + "connection.ssl.enabled": _bool(s3.ssl),
        prefix + "aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        prefix + "access.key": s3.access_key,
        prefix + "secret.key": s3.secret_key,
        # Fail in about a minute, not five, when the store is down: Hadoop's defaults (7 s3a retries around
        # 5 SDK attempts each, 30 s connect timeout) kept a step retrying a stopped MinIO for 325 s. Throttling
        # keeps its own, larger retry budget (fs.s3a.retry.throttle.*). A profile's spark.conf overrides these.
        prefix + "attempts.maximum": "2",
        prefix + "retry.limit": "3",
        prefix + "retry.interval": "500ms",
        prefix + "connection.establish.timeout": "5s",
    }


def _bool(value: bool) -> str:
    return "true" if value else "false"


# --------------------------------------------------------------------------- in-process session


def build_session(settings: SparkSettings, jars: Sequence[Path] | None = None) -> SparkSession:
    """Start (or reuse) this process's SparkSession configured from `settings`.

    Jars come from the cache (resolved on first use, then no network). If a session already exists
    in this process, Spark reuses its JVM: static settings (master, jars, driver memory, logging) then
    keep their first values and only SQL settings are applied. With `log_dir`, the first session of a
    process prints one line naming Spark's log file (on stderr).
    """
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    if settings.connect_url is not None:
        spark = connect_session(settings.connect_url)
        if (log_file := spark_log_file(settings)) is not None:  # a client has no JVM: only pyspark's own log
            python_log_to(log_file)
        return spark
    if settings.python is None:
        settings = dataclasses.replace(settings, python=sys.executable)
    # An in-process SparkContext takes the workers' Python from this variable only (not spark.pyspark.python).
    os.environ["PYSPARK_PYTHON"] = settings.python
    if jars is None:
        jars = resolve_jars(settings.jar_cache)
    conf = spark_conf(settings, jars)
    first = SparkContext._active_spark_context is None
    if "PYSPARK_GATEWAY_PORT" in os.environ:  # a spark-submit job: its JVM's logging is spark-submit's to set
        conf.pop("spark.log.level", None)
    elif SparkContext._gateway is None:
        launch_jvm(settings, conf)  # else this process's JVM runs already
    builder = SparkSession.builder
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    if first:  # the JVM's own property: right for spark-submit's JVM too, whatever these settings say
        log_file = spark.sparkContext._jvm.java.lang.System.getProperty(LOG_FILE_PROPERTY)
        if log_file:
            python_log_to(Path(log_file))
            print(f"pipezone: Spark log: {shown_path(Path(log_file))}", file=sys.stderr, flush=True)
    return spark


def launch_jvm(settings: SparkSettings, conf: Mapping[str, str]) -> None:
    """Start this process's driver JVM and its SparkContext, as `SparkSession.builder.getOrCreate()` would,
    with the environment it must inherit (`jvm_env`) and its stderr forwarded less `JVM_NOISE`."""
    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway

    for key, value in jvm_env(settings.master).items():
        os.environ.setdefault(key, value)  # the JVM inherits this process's environment
    log_file = spark_log_file(settings)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
    launch_conf = SparkConf(loadDefaults=False).setAll(list(conf.items()))
    # Read from before the start: what a JVM that fails to start prints is the reason, and a full pipe would stall it.
    read_end, write_end = os.pipe()
    stderr = os.fdopen(read_end, "rb")
    threading.Thread(target=forward_jvm_stderr, args=(stderr,), name="pipezone-jvm-stderr", daemon=True).start()
    try:
        gateway = launch_gateway(launch_conf, popen_kwargs={"stderr": write_end})
    finally:
        os.close(write_end)  # the JVM holds its own copy: its exit ends the forwarding
    SparkContext(conf=launch_conf, gateway=gateway)


def forward_jvm_stderr(stream: IO[bytes]) -> None:
    """Copy the JVM's stderr to this process's, line by line, except the JVM's own notices (`JVM_NOISE`).
    Reads to the end even when stderr is gone: a JVM blocked on a full pipe would hang the session."""
    for raw in stream:
        line = raw.decode(errors="replace")
        if line.rstrip("\r\n") in JVM_NOISE:
            continue
        try:
            sys.stderr.write(line)
            sys.stderr.flush()
        except (OSError, ValueError):  # stderr closed (interpreter exit): keep draining
            pass


def python_log_to(log_file: Path) -> None:
    """Send pyspark's Python-side loggers to `log_file` instead of stderr: they print every Spark error with a
    query context as a JSON record, even one the caller catches (as a probe of a table that does not exist)."""
    from pyspark.logger import PySparkLogger

    log_file.parent.mkdir(parents=True, exist_ok=True)
    for name in PYSPARK_LOGGERS:
        logger = PySparkLogger.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.addHandler(logging.handlers.WatchedFileHandler(log_file, encoding="utf-8", delay=True))
        logger.propagate = False


def shown_path(path: Path) -> str:
    """`path` relative to the working folder when it lies under it (as a person typed it), else absolute."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


class ConnectUnavailable(RuntimeError):
    """The profile's Spark Connect server does not answer; the message is one line with the remedy."""


_connect_sessions: dict[str, SparkSession] = {}  # this process's client session per server URL


def connect_session(url: str) -> SparkSession:
    """A client session of the Spark Connect server at `url`: no JVM in this process. The server holds the
    Spark configuration (it was started from the same profile), so nothing is set here. A process that
    runs several steps (`pipezone run --in-process`) keeps its session: the probes below and the first
    round trip cost 0.2-0.7 s per step, and a server gone since then fails the step's first action."""
    from urllib.parse import urlsplit

    from pyspark.sql import SparkSession

    held = _connect_sessions.get(url)
    if held is not None and not held.is_stopped:  # a process running several steps: one connection
        return held
    address = urlsplit(url)
    if not listening(address.hostname or "", address.port or 0):  # the client would retry for minutes
        raise ConnectUnavailable(
            f"Spark Connect server {url} does not answer (nothing listens there): "
            "start it with `pipezone spark-server start`"
        )
    if not speaks_grpc(address.hostname or "", address.port or 0):  # so would it for a program that never answers
        raise ConnectUnavailable(
            f"Spark Connect server {url} does not answer as a Spark Connect server (something accepts connections "
            "there but completes no gRPC handshake in 10 s): check the port, or `pipezone spark-server status`"
        )
    try:
        spark = SparkSession.builder.remote(url).getOrCreate()
        spark.conf.get("spark.sql.session.timeZone")  # the first call reaches the server
    except Exception as err:  # noqa: BLE001 - grpc's errors are many and long: one line with the cause
        first = summarize_error(err)[:200]
        raise ConnectUnavailable(
            f"Spark Connect server {url} does not answer ({first}): start it with `pipezone spark-server start`"
        ) from None
    _connect_sessions[url] = spark
    return spark


def listening(host: str, port: int) -> bool:
    """Whether something accepts TCP connections at host:port (within a second)."""
    import socket

    try:
        with socket.socket() as probe:
            probe.settimeout(1.0)
            return probe.connect_ex((host, port)) == 0
    except OSError:  # a host name that does not resolve: nothing listens there either
        return False


def speaks_grpc(host: str, port: int, timeout: float = 10.0) -> bool:
    """Whether host:port completes a gRPC (HTTP/2) handshake within `timeout` seconds."""
    import grpc

    channel = grpc.insecure_channel(f"{host}:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError:
        return False
    finally:
        channel.close()
    return True


# --------------------------------------------------------------------------- spark-submit


def find_spark_submit() -> Path:
    """pyspark's own `bin/spark-submit`: the one whose Spark version matches the installed pyspark."""
    path = pyspark_home() / "bin" / "spark-submit"
    if not path.is_file():
        raise FileNotFoundError(f"spark-submit not found at {path} (is pyspark installed completely?)")
    return path


def submit_args(settings: SparkSettings, jars: Sequence[Path] | None = None) -> list[str]:
    """`spark-submit` options equivalent to `build_session(settings)` (without the program and its args).

    Returns real values, secrets included: pass the list to a process, and use `printable_args`
    for anything a person or a log will see.
    """
    if jars is None:
        jars = resolve_jars(settings.jar_cache)
    args: list[str] = []
    conf = spark_conf(settings, jars)
    for key, flag in _FLAG_KEYS.items():
        if key in conf:
            args += [flag, conf.pop(key)]
    for key, value in conf.items():
        args += ["--conf", f"{key}={value}"]
    return args


def is_sensitive(key: str) -> bool:
    """Whether a configuration key holds a secret (its value must never be printed)."""
    lowered = key.lower()
    return any(part in lowered for part in SENSITIVE_KEY_PARTS)


def redact_conf(conf: Mapping[str, str]) -> dict[str, str]:
    """A copy of `conf` with sensitive values replaced by `*****`."""
    return {k: (REDACTED if is_sensitive(k) else v) for k, v in conf.items()}


def redact_args(args: Sequence[str]) -> list[str]:
    """A copy of a `spark-submit` argument list with `--conf key=value` secrets replaced by `*****`."""
    out: list[str] = []
    for i, arg in enumerate(args):
        if arg.startswith("--conf="):
            out.append("--conf=" + _redact_pair(arg.removeprefix("--conf=")))
        elif i > 0 and args[i - 1] in ("--conf", "-c"):
            out.append(_redact_pair(arg))
        else:
            out.append(arg)
    return out


def _redact_pair(pair: str) -> str:
    key, sep, _ = pair.partition("=")
    return f"{key}={REDACTED}" if sep and is_sensitive(key) else pair


def printable_args(args: Sequence[str]) -> str:
    """A shell-quoted, redacted rendering of a `spark-submit` argument list, safe for logs and UIs."""
    return shlex.join(redact_args(args))
