"""Incremental latency: the end-to-end time of one flow run (extract, bronze, silver, quality) when 0 and
when 1,000 rows changed in an N-row table already loaded through silver, broken down per step.

Three launchers: `spark-submit` (one JVM per step, as an Airflow worker runs them), `in-process` (one
Spark session for the whole run) and `spark-connect` (each step a Python process, as Airflow runs them,
that is a client of one long-running Spark Connect server: `pipezone spark-server start`). Each step
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


def change(source: MariaDB, table: str, rows: int, count: int, round_: int) -> None:
    """Update `count` rows spread over the whole table, stamped a minute ago (outside the safety buffer)."""
    stride = max(1, rows // count)
    source.execute(
        f"UPDATE {table} SET status = 'paid', quantity = quantity + 1, "
        f"updated_at = UTC_TIMESTAMP(6) - INTERVAL 1 MINUTE WHERE id % {stride} = {round_ % stride} LIMIT {count}"
    )


def _run_id(output: str) -> str:
    return next(line.split()[1] for line in output.splitlines() if line.startswith("run "))


def flow_run(project: Project, flow: str, launcher: str, steps: str | None = None) -> dict[str, Any]:
    args = ["--in-process"] if launcher == "in-process" else []
    args += ["--steps", steps] if steps else []
    profile = CONNECT_PROFILE if launcher == "spark-connect" else PROFILE
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
        with project.connect_server(launcher == "spark-connect") as server:
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
    for count in changed:
        if count:
            round_ += 1
            change(source, table, rows, count, round_)
        result = flow_run(project, flow, launcher)
        if result["rows_read"].get("extract", 0) != count:
            raise SystemExit(f"bench: extract read {result['rows_read']} rows after {count} changes")
        record = {"bench": "incremental", "rows": rows, "changed": count, "launcher": launcher, **result}
        results.append(record | server)
        print(
            f"bench: incremental, {count:,} changed of {rows:,}, {launcher}: {result['seconds']:.1f} s "
            f"{result['steps_s']}",
            flush=True,
        )
    return round_
