"""What every benchmark shares: measured child processes, the benchmark's MariaDB tables, and a throwaway
PipeZone project (connections, profiles, one flow per table) whose runs are timed from the outside.

The source table is generated inside MariaDB (its SEQUENCE engine), so a 10M-row table takes about a
minute and needs no Python loop; it is kept between runs and rebuilt only when its row count is wrong.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipezone.core.sources.contract import PhysicalReference, ReadPlan
from pipezone.core.spec.settings import load_settings
from pipezone.core.steps.runtime import load_runtime

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = REPO / ".venv" / "bin"
DATABASE = "pz_bench"
LAYERS = ("raw", "bronze", "silver", "gold")

# ~12 mixed-type columns: keys, integers, a decimal, a nullable double, short and long (nullable) strings,
# a flag, a date and two time columns, one of which is the incremental cursor.
TABLE_DDL = """
CREATE TABLE {table} (
  id BIGINT NOT NULL PRIMARY KEY,
  customer_id INT NOT NULL,
  sku VARCHAR(32) NOT NULL,
  quantity SMALLINT NOT NULL,
  unit_price DECIMAL(10,2) NOT NULL,
  discount DOUBLE NULL,
  status VARCHAR(16) NOT NULL,
  note VARCHAR(200) NULL,
  is_gift TINYINT(1) NOT NULL,
  order_date DATE NOT NULL,
  created_at DATETIME(6) NOT NULL,
  updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  KEY by_updated_at (updated_at)
)"""

TABLE_ROWS = """
INSERT INTO {table}
SELECT seq, seq % 50000, CONCAT('SKU-', LPAD(seq % 9973, 6, '0')), 1 + seq % 9, (seq % 100000) / 100,
       IF(seq % 7 = 0, NULL, (seq % 30) / 100), ELT(1 + seq % 4, 'new', 'paid', 'shipped', 'returned'),
       IF(seq % 3 = 0, NULL, CONCAT('note for order ', seq, ' lorem ipsum dolor sit amet')), seq % 2,
       DATE '2024-01-01' + INTERVAL (seq % 700) DAY, TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq SECOND,
       TIMESTAMP '2024-06-01 00:00:00' + INTERVAL seq SECOND
FROM seq_1_to_{rows}"""


def table_name(rows: int) -> str:
    return f"orders_{rows}"


# --------------------------------------------------------------------------- measured processes


@dataclass
class Measured:
    """One child process: wall seconds, peak RSS of the largest process in its tree, its output."""

    seconds: float
    peak_rss_mb: float
    returncode: int
    stdout: str
    stderr: str

    def check(self, what: str) -> Measured:
        if self.returncode != 0:
            tail = "\n".join((self.stderr or self.stdout).strip().splitlines()[-15:])
            raise SystemExit(f"bench: {what} failed (exit {self.returncode}):\n{tail}")
        return self


def measured(
    cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None, discard_stdout: bool = False
) -> Measured:
    """Run `cmd` and measure it. Peak RSS comes from wait4: Linux reports the largest RSS among the child
    and every descendant it waited for (spark-submit's JVM and its Python driver included)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        stdout = subprocess.DEVNULL if discard_stdout else out
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=stdout, stderr=err, text=True)  # noqa: S603
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Measured(seconds, usage.ru_maxrss / 1024, proc.returncode, out.read(), err.read())


# --------------------------------------------------------------------------- services


def start_service(script: str) -> None:
    """A server from the project's own setup/local script; installed on first use."""
    for command in ("install", "start"):
        subprocess.run(["bash", str(REPO / "setup" / "local" / f"{script}.sh"), command], check=True)  # noqa: S603,S607


def start_services(minio: bool) -> None:
    """MariaDB (and MinIO for the MinIO lake)."""
    for script in ["mariadb"] + (["minio"] if minio else []):
        start_service(script)


class BenchServer:
    """What the ingest benchmark needs of a source server: its generated `orders_<rows>` table, kept between
    runs and rebuilt only when its row count is wrong. Each server says how in its own SQL."""

    def execute(self, *statements: str) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def ensure_database(self) -> None:
        raise NotImplementedError

    def has_table(self, table: str) -> bool:
        raise NotImplementedError

    def generate(self, table: str, rows: int) -> list[str]:
        """The statements that (re)build `table` with `rows` rows inside the server."""
        raise NotImplementedError

    def ensure_table(self, rows: int) -> str:
        """`orders_<rows>` in the bench database, generated when missing or of the wrong size."""
        table = table_name(rows)
        self.ensure_database()
        if self.has_table(table) and self.execute(f"SELECT COUNT(*) FROM {table}")[0][0] == rows:
            return table
        started = time.perf_counter()
        self.execute(*self.generate(table, rows))
        name = type(self).__name__
        print(f"bench: generated {name} {table} ({rows:,} rows) in {time.perf_counter() - started:.0f} s", flush=True)
        return table


@dataclass(frozen=True)
class MariaDB(BenchServer):
    host: str = "127.0.0.1"
    port: int = int(os.environ.get("PIPEZONE_MARIADB_PORT") or 3307)
    user: str = "pipezone"
    password: str = field(default=os.environ.get("PIPEZONE_MARIADB_PASSWORD") or "pipezone-dev", repr=False)

    def connect(self, database: str | None = DATABASE) -> Any:
        import pymysql

        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            database=database,
            autocommit=True,
            init_command="SET time_zone = '+00:00'",
        )

    def execute(self, *statements: str, database: str | None = DATABASE) -> list[tuple[Any, ...]]:
        conn = self.connect(database)
        try:
            with conn.cursor() as cur:
                for statement in statements:
                    cur.execute(statement)
                return list(cur.fetchall())
        finally:
            conn.close()

    def ensure_database(self) -> None:
        self.execute(f"CREATE DATABASE IF NOT EXISTS {DATABASE}", database=None)

    def has_table(self, table: str) -> bool:
        return bool(
            self.execute(
                f"SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = '{DATABASE}' "
                f"AND table_name = '{table}'"
            )[0][0]
        )

    def generate(self, table: str, rows: int) -> list[str]:
        rows_sql = TABLE_ROWS.format(table=table, rows=rows)
        return [f"DROP TABLE IF EXISTS {table}", TABLE_DDL.format(table=table), rows_sql, f"ANALYZE TABLE {table}"]

    def table_mb(self, table: str) -> float:
        """InnoDB's data size of the table (primary index), the common yardstick for MB/s."""
        return self.execute(
            f"SELECT data_length / 1e6 FROM information_schema.tables "
            f"WHERE table_schema = '{DATABASE}' AND table_name = '{table}'"
        )[0][0]

    def client_env(self) -> dict[str, str]:
        return {**os.environ, "MYSQL_PWD": self.password}


# --------------------------------------------------------------------------- a throwaway PipeZone project

SOURCE_CONNECTION = """\
name: bench_source
type: mariadb
host: {host}
port: {port}
database: {database}
user: {user}
password: ${{env:PIPEZONE_BENCH_SOURCE_PASSWORD}}
"""

PG_SOURCE_CONNECTION = """\
name: bench_pg_source
type: postgres
host: 127.0.0.1
port: {port}
database: {database}
user: pipezone
password: ${{env:PIPEZONE_BENCH_PG_PASSWORD}}
"""

LOCAL_LAKE = "name: bench_local_lake\ntype: local\npath: .pipezone/lake\n"
MINIO_LAKE = """\
name: bench_minio_lake
type: minio
endpoint: {endpoint}
region: us-east-1
access_key: ${{env:PIPEZONE_BENCH_MINIO_USER}}
secret_key: ${{env:PIPEZONE_BENCH_MINIO_PASSWORD}}
path_style: true
"""
STATE = "name: bench_state\ntype: sqlite\npath: .pipezone/state.db\n"
PROFILE = """\
name: {name}
lake: {lake}
state_store: bench_state
spark:
  master: local[2]
  driver_memory: {driver_memory}
  shuffle_partitions: 4
"""
CONNECT_PORT = int(os.environ.get("PIPEZONE_BENCH_CONNECT_PORT") or 15012)
CONNECT_PROFILE = PROFILE + "  connect_url: sc://127.0.0.1:{port}\n"
CONNECT_PROFILE_NAME = "bench_local_connect_2g"
FLOW = """\
name: {name}
source:
  connection: {connection}
  table: {table}
  primary_key: [id]
  incremental:
    cursor: updated_at
  read:
    num_partitions: {partitions}
    initial_load: {initial_load}
layers:
  silver:
    write_mode: merge
quality:
  - check: not_null
    columns: [id]
schedule: "@daily"
"""


@dataclass
class Project:
    """A PipeZone project in a temporary folder; runs go through the real `pipezone` CLI."""

    root: Path
    source: MariaDB
    minio_endpoint: str = f"http://127.0.0.1:{os.environ.get('PIPEZONE_MINIO_PORT') or 9000}"
    minio_user: str = os.environ.get("PIPEZONE_MINIO_USER") or "pipezone"
    minio_password: str = field(default=os.environ.get("PIPEZONE_MINIO_PASSWORD") or "pipezone-dev-secret", repr=False)

    @classmethod
    def create(cls, source: MariaDB) -> Project:
        project = cls(Path(tempfile.mkdtemp(prefix="pipezone-bench-")), source)
        meta = project.root / "metadata"
        for folder in ("connections", "flows", "profiles"):
            (meta / folder).mkdir(parents=True)
        (meta / "connections" / "bench_source.yaml").write_text(
            SOURCE_CONNECTION.format(host=source.host, port=source.port, database=DATABASE, user=source.user)
        )
        (meta / "connections" / "bench_pg_source.yaml").write_text(
            PG_SOURCE_CONNECTION.format(port=os.environ.get("PIPEZONE_POSTGRES_PORT") or 5433, database=DATABASE)
        )
        (meta / "connections" / "bench_local_lake.yaml").write_text(LOCAL_LAKE)
        (meta / "connections" / "bench_minio_lake.yaml").write_text(MINIO_LAKE.format(endpoint=project.minio_endpoint))
        (meta / "connections" / "bench_state.yaml").write_text(STATE)
        for lake in ("local", "minio"):
            for memory in ("2g", "1g"):
                name = f"bench_{lake}_{memory}"
                (meta / "profiles" / f"{name}.yaml").write_text(
                    PROFILE.format(name=name, lake=f"bench_{lake}_lake", driver_memory=memory)
                )
        (meta / "profiles" / f"{CONNECT_PROFILE_NAME}.yaml").write_text(
            CONNECT_PROFILE.format(
                name=CONNECT_PROFILE_NAME, lake="bench_local_lake", driver_memory="2g", port=CONNECT_PORT
            )
        )
        return project

    def flow(self, table: str, partitions: int, initial_load: str = "auto", connection: str = "bench_source") -> str:
        name = f"bench_{table}" if connection == "bench_source" else f"bench_pg_{table}"
        (self.root / "metadata" / "flows" / f"{name}.yaml").write_text(
            FLOW.format(name=name, connection=connection, table=table, partitions=partitions, initial_load=initial_load)
        )
        return name

    def env(self, profile: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPEZONE_", "VAULT_"))}
        return env | {
            "PIPEZONE_HOME": str(self.root),
            "PIPEZONE_PROFILE": profile,
            "PIPEZONE_JAR_CACHE": str(REPO / ".pipezone" / "jars"),
            "PIPEZONE_BENCH_SOURCE_PASSWORD": self.source.password,
            "PIPEZONE_BENCH_PG_PASSWORD": os.environ.get("PIPEZONE_POSTGRES_PASSWORD") or "pipezone-dev",
            "PIPEZONE_BENCH_MINIO_USER": self.minio_user,
            "PIPEZONE_BENCH_MINIO_PASSWORD": self.minio_password,
        }

    def physical_reference(self, flow: str, profile: str) -> PhysicalReference:
        """The flow's source's own client reading the whole source table, as the source contract names it."""
        runtime = load_runtime(load_settings(environ=self.env(profile), cwd=self.root))
        reference = runtime.source(runtime.flow(flow)).physical_reference(ReadPlan.full())
        if reference is None:
            raise SystemExit(f"bench: flow {flow}'s source names no physical reference")
        return reference

    def run(self, profile: str, *args: str) -> Measured:
        return measured([str(VENV_BIN / "pipezone"), "run", *args], env=self.env(profile), cwd=self.root)

    def spark_server(self, profile: str, action: str) -> Measured:
        """`pipezone spark-server start|stop` for a profile with a Spark Connect URL."""
        return measured([str(VENV_BIN / "pipezone"), "spark-server", action], env=self.env(profile), cwd=self.root)

    @contextmanager
    def connect_server(self, wanted: bool = True) -> Iterator[dict[str, Any]]:
        """The bench's Spark Connect server, started (and warmed up) once for the runs inside, as a deployment
        keeps it running, and stopped after them; yields how long the start took and what it said ({} when
        not `wanted`)."""
        if not wanted:
            yield {}
            return
        started = self.spark_server(CONNECT_PROFILE_NAME, "start").check("pipezone spark-server start")
        server = {"server_start_s": round(started.seconds, 1), "server": started.stdout.strip().splitlines()[-1]}
        print(f"bench: {server['server']}", flush=True)
        try:
            yield server
        finally:
            self.spark_server(CONNECT_PROFILE_NAME, "stop")

    def wipe(self, flow: str, table: str) -> None:
        """Forget a flow: its lake tables (local and MinIO) and the state store."""
        shutil.rmtree(self.root / ".pipezone" / "lake", ignore_errors=True)
        (self.root / ".pipezone" / "state.db").unlink(missing_ok=True)
        raw = [("raw", f"{source}/{table}/") for source in ("bench_source", "bench_pg_source")]
        self._delete_minio_prefixes([*raw, ("bronze", f"{flow}/"), ("silver", f"{flow}/")])

    def _delete_minio_prefixes(self, prefixes: list[tuple[str, str]]) -> None:
        import boto3
        from botocore.exceptions import EndpointConnectionError

        s3 = boto3.client(
            "s3",
            endpoint_url=self.minio_endpoint,
            aws_access_key_id=self.minio_user,
            aws_secret_access_key=self.minio_password,
            region_name="us-east-1",
        )
        try:
            for bucket, prefix in prefixes:
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                    keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                    if keys:
                        s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})
        except EndpointConnectionError:
            pass  # MinIO not running: nothing of ours is in it

    def step_logs(self) -> list[dict[str, Any]]:
        """Every step run in the state store, oldest first, with its details (phases_s, duration_s)."""
        db = sqlite3.connect(self.root / ".pipezone" / "state.db")
        try:
            rows = db.execute(
                "SELECT run_id, step, status, rows_read, rows_written, details FROM pipeline_execution_logs ORDER BY id"
            ).fetchall()
        finally:
            db.close()
        return [
            {
                "run_id": r[0],
                "step": r[1],
                "status": r[2],
                "rows_read": r[3],
                "rows_written": r[4],
                "details": json.loads(r[5] or "{}"),
            }
            for r in rows
        ]

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def step_seconds(output: str, flow: str) -> dict[str, float]:
    """Per-step wall time as `pipezone run` prints it (`FLOW  STEP  ok  SECONDS ...`), JVM start included."""
    seconds = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[0] == flow and parts[2] in ("ok", "skipped"):
            try:
                seconds[parts[1]] = float(parts[3])
            except ValueError:
                continue
    return seconds
