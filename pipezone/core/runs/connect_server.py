"""`pipezone spark-server start|stop|status|run`: the Spark Connect server a profile's `spark.connect_url` names,
run from that profile's own Spark settings (master, driver memory, jars, lake credentials, extra conf).

Why a server: a step run as its own spark-submit pays a JVM start, a Spark session and Delta's cold
snapshot and planning code (5-15 s per step) before a row moves, which is most of a small incremental
run. One long-running driver keeps all of that warm, and each step becomes a Python client that
connects in well under a second (docs/benchmarks.md, "Incremental latency").

The server listens on the URL's host and port only (127.0.0.1 by default): it is started without
authentication, and the connections' credentials travel to it as read options.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

from pipezone.core.runs.flow_runner import child_env
from pipezone.core.spark.session import find_spark_submit, listening, submit_args
from pipezone.core.steps.runtime import RunError, Runtime

SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
START_WAIT_S = 120.0
STOP_WAIT_S = 30.0


@dataclass(frozen=True)
class Server:
    """The server of one profile: where it listens, and its pid and log files."""

    url: str
    host: str
    port: int
    pid_file: Path
    log_file: Path


def server_for(runtime: Runtime) -> Server:
    url = runtime.profile.spark.connect_url
    if url is None:
        raise RunError(f"profile {runtime.profile.name} has no spark.connect_url: it runs steps without a server")
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        raise RunError(f"profile {runtime.profile.name}: spark.connect_url {url!r} is not sc://host:port")
    base = runtime.settings.project_root / ".pipezone" / "services" / "spark-connect"
    return Server(url, parts.hostname, parts.port, base / f"{parts.port}.pid", base / f"{parts.port}.log")


def server_command(runtime: Runtime, server: Server) -> list[str]:
    """spark-submit of the Connect server with the profile's settings (its own, not a client's)."""
    settings = dataclasses.replace(runtime.spark_settings("pipezone-spark-connect"), connect_url=None)
    # Delta keeps each table's log state for an hour after its last use; a flow that runs daily finds it warm.
    defaults = {"spark.databricks.delta.delta.log.cacheRetentionMinutes": "1440"}
    settings = dataclasses.replace(settings, extra_conf={**defaults, **settings.extra_conf})
    binding = {"spark.connect.grpc.binding.address": server.host, "spark.connect.grpc.binding.port": str(server.port)}
    conf = [arg for key, value in binding.items() for arg in ("--conf", f"{key}={value}")]
    return [str(find_spark_submit()), *submit_args(settings), *conf, "--class", SERVER_CLASS, "spark-internal"]


def running_pid(server: Server) -> int | None:
    """The live pid recorded for this server (a recycled pid of another program does not count)."""
    try:
        pid = int(server.pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if SERVER_CLASS.encode() in cmdline else None


# Run in a child: a process holding a local Spark session cannot open a Connect session too, and one that
# opened a Connect session stays in Connect mode.
_PROBE = """
import sys
from pipezone.core.spark.session import connect_session
spark = connect_session(sys.argv[1])
spark.range(1).collect()
spark.stop()
"""


# Delta's write, MERGE (with deletion vectors) and log code, Spark's JDBC reader and planner are cold in a
# new JVM, and the JIT compiles what runs repeatedly: an overwrite and two small MERGEs of a scratch table
# in the lake and a JDBC read of an in-memory SQLite database warm the code; then the log of each of the
# profile's flow tables is loaded (for at most TABLES_WARM_UP_S), which Delta caches per table.
_WARM_UP = """
import sys, time
from pipezone.core.lake import delta_merge as dm
from pipezone.core.lake import delta_tables as dt
from pipezone.core.spark.session import connect_session
spark = connect_session(sys.argv[1])
path, run = sys.argv[2], int(time.time())
jdbc = spark.read.format("jdbc").option("url", "jdbc:sqlite::memory:")
jdbc.option("query", "SELECT 1 AS x").load().collect()
for round in range(3):
    batch = f"CAST({run * 10 + round} AS BIGINT) AS _pz_batch"
    rows = dm.with_row_hash(spark.range(20000).selectExpr("id", f"(id + {round}) % 7 AS v", batch))
    common = dict(app_id="pipezone-warm-up", version=run * 10 + round, metadata={"warm_up": run})
    if round == 0:  # the table stays small: each start overwrites it
        dt.append(rows, path, overwrite=True, merged=True, **common)
    else:
        dm.merge(rows.limit(2000), path, keys=["id"], cursor=None, narrow=True, **common)
    spark.read.format("delta").load(path).groupBy("v").count().collect()
started = time.monotonic()
for table in sys.stdin.read().split():  # the flows' tables: their log state is then cached in the server
    if time.monotonic() - started > float(sys.argv[3]):
        break
    if dt.table_exists(spark, table):
        spark.sql(f"DESCRIBE HISTORY {dt.sql_table(table)} LIMIT 1").collect()
spark.stop()
"""
TABLES_WARM_UP_S = 60.0  # loading the flows' table logs stops after this long


def warm_up(runtime: Runtime, server: Server) -> str:
    """Run _WARM_UP against the server; a failure is reported, not raised (the server itself is fine)."""
    path = f"{runtime.lake.roots['raw']}/_pipezone/spark-connect-warm-up"
    started = time.monotonic()
    done = subprocess.run(  # noqa: S603 - this interpreter, our own script
        [sys.executable, "-c", _WARM_UP, server.url, path, str(TABLES_WARM_UP_S)],
        input="\n".join(flow_tables(runtime)),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        return f"warm-up failed ({(lines or ['no output'])[-1][:200]})"
    return f"warmed up in {time.monotonic() - started:.0f} s"


def flow_tables(runtime: Runtime) -> list[str]:
    """Every lake table of the profile's valid flows: silver and bronze first (a MERGE reads all of them)."""
    tables: list[str] = []
    for layer in ("silver", "bronze", "raw"):
        for name in sorted(runtime.catalog.flows):
            try:
                flow = runtime.flow(name)
            except Exception:  # noqa: BLE001 - an invalid flow has no tables to warm
                continue
            if layer != "raw" or flow.source is not None:
                tables.append(runtime.lake.table(layer, name, flow))
    return tables


def answers(server: Server) -> bool:
    """Whether the server runs a query (a session alone can open before the server is ready)."""
    if not listening(server.host, server.port):
        return False
    try:
        probe = subprocess.run(  # noqa: S603 - this interpreter, our own probe
            [sys.executable, "-c", _PROBE, server.url], capture_output=True, timeout=60, check=False
        )
    except subprocess.TimeoutExpired:
        return False
    return probe.returncode == 0


def _log_cause(server: Server) -> str:
    """The log's last error line (else its last line): why the server stopped, in one line."""
    try:
        lines = [line for line in server.log_file.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    errors = [line for line in lines if "Exception" in line or "ERROR" in line or "Error:" in line]
    return ((errors or lines or ["empty log"])[-1]).strip()[:300]


def start(runtime: Runtime) -> str:
    """Start the server detached and wait until it serves; a no-op when it already does."""
    server = server_for(runtime)
    if answers(server):
        return f"already running at {server.url}"
    if running_pid(server) is None and listening(server.host, server.port):
        raise RunError(f"{server.host}:{server.port} is taken by another program: pick another spark.connect_url port")
    server.pid_file.parent.mkdir(parents=True, exist_ok=True)
    process = None
    if running_pid(server) is None:
        with server.log_file.open("ab") as log:
            log.write(f"---- {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} start\n".encode())
            log.flush()
            process = subprocess.Popen(  # noqa: S603 - our own spark-submit command line
                server_command(runtime, server),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=child_env(runtime),
                cwd=runtime.settings.project_root,  # its spark-warehouse and metastore stay in the project
                start_new_session=True,  # outlives this command; `stop` ends its whole process group
            )
        server.pid_file.write_text(str(process.pid))
    started = time.monotonic()
    while not answers(server):
        # our child: its exit status (its /proc cmdline reads empty for a moment while spark-submit execs)
        if process.poll() is not None if process is not None else running_pid(server) is None:
            raise RunError(f"the Spark Connect server exited during start-up: {_log_cause(server)} ({server.log_file})")
        if time.monotonic() - started > START_WAIT_S:
            raise RunError(f"no answer at {server.url} in {START_WAIT_S:.0f} s; still running, see {server.log_file}")
        time.sleep(1.0)
    took = time.monotonic() - started
    warm = warm_up(runtime, server)
    return f"running at {server.url} (pid {running_pid(server)}, log {server.log_file}): up in {took:.0f} s, {warm}"


def run_foreground(runtime: Runtime) -> NoReturn:
    """Become the server (exec, no warm-up): for a container or a service manager that supervises the
    process itself (the compose stack's `spark-connect` service)."""
    server = server_for(runtime)
    command = server_command(runtime, server)
    os.chdir(runtime.settings.project_root)
    os.execve(command[0], command, child_env(runtime))  # noqa: S606 - our own spark-submit command line


def stop(runtime: Runtime) -> str:
    """TERM the server's process group, KILL it after STOP_WAIT_S."""
    server = server_for(runtime)
    pid = running_pid(server)
    if pid is None:
        server.pid_file.unlink(missing_ok=True)
        return "not running"
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT_S
    while running_pid(server) is not None and time.monotonic() < deadline:
        time.sleep(0.5)
    if running_pid(server) is not None:
        os.killpg(pid, signal.SIGKILL)
    server.pid_file.unlink(missing_ok=True)
    return f"stopped (pid {pid})"


def status(runtime: Runtime) -> tuple[bool, str]:
    server = server_for(runtime)
    if answers(server):
        return True, f"running at {server.url} (pid {running_pid(server) or 'not ours'})"
    if running_pid(server) is not None:
        return False, f"starting or stuck: pid {running_pid(server)} does not answer at {server.url}"
    return False, f"not running ({server.url})"
