"""Incremental latency: the end-to-end time of one flow run (extract, bronze, silver, quality) when 0 and
when 1,000 rows changed in an N-row table already loaded through silver, broken down per step.

Four launchers: `spark-submit` (one JVM per step, as an Airflow worker runs them without a Connect
server), `in-process` (one Spark session for the whole run), `spark-connect` (each step its own Python
process, a client of one long-running Spark Connect server: `pipezone spark-server start`) and
`spark-connect, one client` (`pipezone run --in-process` on the Connect profile: one client process for
the whole run, as an Airflow task is one process that is the client). Changes are `spread` over the
whole table (every key range, so every file of silver holds some) or `recent` (the newest keys, as
orders change while they are fresh); silver's MERGE records how many of its files it rewrote or marked. Each step
records its phases in the run history: `session` (Spark session start inside the job, or the client's
connection), `prepare` (Delta history, the source's bounds query, schema checks),
`read_write` (the one Spark action that reads, writes the files and commits), `state` (the watermark
or layer progress update). A step's wall time minus its phases is the process and JVM start.
"""

from __future__ import annotations

from typing import Any

from harness import CONNECT_PROFILE_NAME as CONNECT_PROFILE
from harness import MariaDB, Project, step_seconds

PROFILE = "bench_local_2g"


CONNECT_RUN = "spark-connect, one client"
SPREAD, RECENT = "spread", "recent"


def change(source: MariaDB, table: str, rows: int, count: int, round_: int, pattern: str = SPREAD) -> None:
    """Update `count` rows, stamped a minute ago (outside the safety buffer): spread over the whole table,
    or every other key among the newest 2 x `count`."""
    stamp = "status = 'paid', quantity = quantity + 1, updated_at = UTC_TIMESTAMP(6) - INTERVAL 1 MINUTE"
    if pattern == RECENT:
        newest = source.execute(f"SELECT MAX(id) FROM {table}")[0][0]
        where = f"id > {newest - 2 * count} AND id % 2 = {round_ % 2}"
    else:
        stride = max(1, rows // count)
        where = f"id % {stride} = {round_ % stride}"
    source.execute(f"UPDATE {table} SET {stamp} WHERE {where} LIMIT {count}")


def _run_id(output: str) -> str:
    return next(line.split()[1] for line in output.splitlines() if line.startswith("run "))


def flow_run(project: Project, flow: str, launcher: str, steps: str | None = None) -> dict[str, Any]:
    args = ["--in-process"] if launcher in ("in-process", CONNECT_RUN) else []
    args += ["--steps", steps] if steps else []
    profile = CONNECT_PROFILE if launcher in ("spark-connect", CONNECT_RUN) else PROFILE
    m = project.run(profile, flow, *args).check(f"pipezone run {flow}")
    run_id = _run_id(m.stdout)
    logs = [log for log in project.step_logs() if log["run_id"] == run_id]
    return {
        "seconds": round(m.seconds, 3),
        "peak_rss_mb": round(m.peak_rss_mb),
        "steps_s": step_seconds(m.stdout, flow),
        "phases_s": {log["step"]: log["details"].get("phases_s") for log in logs},
        "rows_read": {log["step"]: log["rows_read"] for log in logs},
        "rows_written": {log["step"]: log["rows_written"] for log in logs},
        "silver_files": next((log["details"].get("files") for log in logs if log["step"] == "silver"), None),
    }


def run(source: MariaDB, project: Project, rows: int, changed: list[int], launchers: list[str]) -> list[dict[str, Any]]:
    table = source.ensure_table(rows)
    flow = project.flow(table, partitions=2)
    project.wipe(flow, table)
    initial = flow_run(project, flow, "spark-submit")
    results: list[dict[str, Any]] = [
        {
            "bench": "incremental",
            "rows": rows,
            "changed": rows,
            "launcher": "spark-submit",
            "initial_load": True,
            **initial,
        }
    ]
    print(f"bench: incremental, initial load of {rows:,} rows through silver: {initial['seconds']:.1f} s", flush=True)
    round_ = 0
    for launcher in launchers:
        with project.connect_server(launcher in ("spark-connect", CONNECT_RUN)) as server:
            round_ = _launcher_runs(source, project, table, flow, rows, changed, launcher, round_, server, results)
    return results


def _launcher_runs(
    source: MariaDB,
    project: Project,
    table: str,
    flow: str,
    rows: int,
    changed: list[int],
    launcher: str,
    round_: int,
    server: dict[str, Any],
    results: list[dict[str, Any]],
) -> int:
    # the one-client Connect runs (the warm path's targets) also measure changes among the newest keys
    plan = [(count, SPREAD) for count in changed]
    plan += [(count, RECENT) for count in changed if count and launcher == CONNECT_RUN]
    for count, pattern in plan:
        if count:
            round_ += 1
            change(source, table, rows, count, round_, pattern)
        result = flow_run(project, flow, launcher)
        if result["rows_read"].get("extract", 0) != count:
            raise SystemExit(f"bench: extract read {result['rows_read']} rows after {count} changes")
        record = {"bench": "incremental", "rows": rows, "changed": count, "launcher": launcher, **result}
        results.append(record | server | ({"pattern": pattern} if count else {}))
        print(
            f"bench: incremental, {count:,} changed ({pattern}) of {rows:,}, {launcher}: {result['seconds']:.1f} s "
            f"{result['steps_s']} silver files {result['silver_files']}",
            flush=True,
        )
    return round_
