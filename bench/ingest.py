"""Bulk ingest: a generated MariaDB table of N rows into bronze Delta, next to the physical reference (the
MariaDB client streaming the same SELECT to /dev/null) and a pandas read_sql -> Parquet baseline.

Contenders alternate within each repeat, so all of them see the same machine load. PipeZone runs are
the real `pipezone run FLOW --steps extract,bronze` on an empty lake, with two launchers: `spark-submit`
(two spark-submit applications, JVM starts included) and `spark-connect` (two Python processes, clients of
a Spark Connect server started once before the runs, as a deployment keeps it running). Its throughput is
quoted to bronze (the whole run) and to raw (the extract step).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from harness import CONNECT_PROFILE_NAME, REPO, MariaDB, Project, measured, step_seconds
from pg_source import Postgres

PG = "bench_pg_source"


def _record(contender: str, rows: int, mb: float, m: Any, **extra: Any) -> dict[str, Any]:
    return {
        "bench": "ingest",
        "contender": contender,
        "rows": rows,
        "seconds": round(m.seconds, 3),
        "rows_per_s": round(rows / m.seconds),
        "mb_per_s": round(mb / m.seconds, 2),
        "peak_rss_mb": round(m.peak_rss_mb),
        **extra,
    }


def client(project: Project, table: str, rows: int, mb: float, connection: str = "bench_source") -> dict[str, Any]:
    """The physical reference: the source's own client (the `mariadb` client streaming the same SELECT over
    TCP; `psql \\copy (SELECT ...) TO '/dev/null'` for PostgreSQL, as the source contract names them) reading
    the table to /dev/null."""
    reference = project.physical_reference(project.flow(table, 1, connection=connection), "bench_local_2g")
    m = measured(reference.argv, env={**os.environ, **reference.env}, discard_stdout=True)
    return _record(reference.name, rows, mb, m.check(reference.name))


def pandas(source: MariaDB, table: str, rows: int, mb: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="pipezone-bench-pandas-") as out:
        cmd = [
            sys.executable,
            str(REPO / "bench" / "pandas_baseline.py"),
            "--table",
            table,
            "--out",
            str(Path(out) / "part.parquet"),
        ]
        env = source.client_env() | {"BENCH_PORT": str(source.port), "BENCH_USER": source.user}
        m = measured(cmd, env=env).check("pandas baseline")
    return _record("pandas read_sql -> parquet", rows, mb, m)


def pipezone(
    project: Project,
    table: str,
    rows: int,
    mb: float,
    partitions: int,
    lake: str,
    path: str = "auto",
    launcher: str = "spark-submit",
    connection: str = "bench_source",
) -> dict[str, Any]:
    memory = "2g"
    flow = project.flow(table, partitions, initial_load=path, connection=connection)
    project.wipe(flow, table)
    profile = CONNECT_PROFILE_NAME if launcher == "spark-connect" else f"bench_{lake}_{memory}"
    m = project.run(profile, flow, "--steps", "extract,bronze").check(f"pipezone run {flow}")
    steps = step_seconds(m.stdout, flow)
    logs = {log["step"]: log for log in project.step_logs()}
    if logs["bronze"]["rows_written"] != rows:
        raise SystemExit(f"bench: bronze has {logs['bronze']['rows_written']} rows, expected {rows}")
    extract = steps["extract"]
    return _record(
        "pipezone",
        rows,
        mb,
        m,
        path="arrow" if path == "auto" else "jdbc",
        launcher=launcher,
        bronze_path=logs["bronze"]["details"].get("write_path"),
        lake=lake,
        partitions=partitions,
        driver_memory=memory,
        steps_s=steps,
        phases_s={step: log["details"].get("phases_s") for step, log in logs.items()},
        raw_rows_per_s=round(rows / extract),
        raw_mb_per_s=round(mb / extract, 2),
    )


def _say(r: dict[str, Any]) -> dict[str, Any]:
    pz = r["contender"] == "pipezone"
    where = f" ({r['path']}, {r['launcher']}, {r['lake']}, {r['partitions']} partitions)" if pz else ""
    print(
        f"bench: ingest {r['rows']:,} rows, {r['contender']}{where}: {r['seconds']:.1f} s, "
        f"{r['rows_per_s']:,} rows/s, peak RSS {r['peak_rss_mb']} MB",
        flush=True,
    )
    return r


def run(
    source: MariaDB,
    project: Project,
    sizes: list[int],
    partitions: list[int],
    lakes: list[str],
    repeat: int,
    jdbc: bool = True,
    connect: bool = True,
) -> list[dict[str, Any]]:
    """Per size and repeat: the client, pandas, PipeZone's bulk path at each partition count (local lake),
    PipeZone's JDBC path at 2 partitions (`jdbc`), the best partition count again through a Spark Connect
    server (`connect`, local lake) and on every other lake."""
    results = []
    with project.connect_server(connect) as server:
        for rows in sizes:
            table = source.ensure_table(rows)
            mb = source.table_mb(table)
            for attempt in range(repeat):
                runs = [_say(client(project, table, rows, mb)), _say(pandas(source, table, rows, mb))]
                local = [_say(pipezone(project, table, rows, mb, p, "local")) for p in partitions]
                best = max(local, key=lambda r: r["rows_per_s"])["partitions"]
                runs += local + ([_say(pipezone(project, table, rows, mb, 2, "local", path="jdbc"))] if jdbc else [])
                if connect:
                    warm = pipezone(project, table, rows, mb, best, "local", launcher="spark-connect")
                    runs.append(_say(warm | server))
                runs += [_say(pipezone(project, table, rows, mb, best, lake)) for lake in lakes if lake != "local"]
                results += [r | {"repeat": attempt, "table_mb": round(mb, 1)} for r in runs]
    return results


def run_postgres(source: Postgres, project: Project, sizes: list[int], repeat: int) -> list[dict[str, Any]]:
    """The same table in PostgreSQL: psql's `\\copy ... TO '/dev/null'` (the COPY protocol, the fastest way out)
    as the physical reference, PipeZone's Arrow bulk path (connectorx, binary COPY) and its JDBC path, each at
    2 partitions on the local lake. Records carry `source: postgres`."""
    results = []
    for rows in sizes:
        table = source.ensure_table(rows)
        mb = source.table_mb(table)
        for attempt in range(repeat):
            runs = [_say(client(project, table, rows, mb, connection=PG))]
            runs += [
                _say(pipezone(project, table, rows, mb, 2, "local", path=p, connection=PG)) for p in ("auto", "jdbc")
            ]
            results += [r | {"repeat": attempt, "table_mb": round(mb, 1), "source": "postgres"} for r in runs]
    return results


def memory(source: MariaDB, project: Project, rows: int) -> list[dict[str, Any]]:
    """The largest table: a first load to bronze with `spark.driver.memory=2g`, both launchers, to show how
    peak memory follows the table's size (compare the ingest section's smaller tables). The generated table
    is dropped afterwards (it takes several GB)."""
    table = source.ensure_table(rows)
    mb = source.table_mb(table)
    try:
        with project.connect_server() as server:
            runs = [
                _say(pipezone(project, table, rows, mb, 1, "local")),
                _say(pipezone(project, table, rows, mb, 1, "local", launcher="spark-connect") | server),
            ]
    finally:
        project.wipe(project.flow(table, 1), table)
    source.execute(f"DROP TABLE {table}")
    return [r | {"bench": "memory", "table_mb": round(mb, 1)} for r in runs]
