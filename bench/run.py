"""`make bench` / `make bench-quick`: every benchmark in one run, one JSON file per run, and a Markdown report.

    .venv/bin/python bench/run.py [--quick] [--dag-factory-python PY] [--docs docs/benchmarks.md]

Full run: ingest of 1M and 10M rows (numPartitions 1, 2, 4 on the local lake; the best on MinIO), the same
sizes from PostgreSQL (against psql's COPY),
incremental latency on the 10M-row table, DAG parse at 10, 100 and 1,000 flows, and the peak memory of a
30M-row first load, CDC: 1M changes end to end against the databases' own log readers, exports of a
1M-row silver table to PostgreSQL and MariaDB against their own bulk loads, the quality step on
Great Expectations against one aggregate pass over a 10M-row table, and document sources: a MongoDB
collection's first load (FerretDB) against pymongo alone, a paginated REST endpoint against httpx alone, and
an estate of 50 small flows triggered together through the real Airflow scheduler (Connect server against
spark-submit per task).
Quick run (under 10 minutes): 200k rows, 2 partitions, local lake, parse at 10 and 100 flows. The JSON lands in
.pipezone/bench/results/; the report in --docs (the full run: docs/benchmarks.md) or, for a quick run,
.pipezone/bench/quick.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cdc  # noqa: E402
import dag_parse  # noqa: E402
import documents  # noqa: E402
import export  # noqa: E402
import incremental  # noqa: E402
import ingest  # noqa: E402
import many_flows  # noqa: E402
import quality  # noqa: E402
import report  # noqa: E402
from harness import REPO, MariaDB, Project, start_services  # noqa: E402
from pg_source import Postgres, start_postgres  # noqa: E402

FULL = {
    "sizes": [1_000_000, 10_000_000],
    "partitions": [1, 2, 4],
    "lakes": ["local", "minio"],
    "incremental_rows": 10_000_000,
    "incremental_changed": [0, 1000, 1000],  # a second 1,000-row sample per launcher
    "parse_sizes": [10, 100, 1000],
    "parse_repeat": 3,
    "jdbc": True,
    "memory_rows": 30_000_000,
    "cdc_changes": 1_000_000,
    "export_rows": 1_000_000,
    "export_changed": 10_000,
    "quality_rows": 10_000_000,
    "mongo_docs": 200_000,  # FerretDB (SQLite) scans ~5,000 documents/s, and 2 partitions cost 4 scans
    "rest_records": 100_000,
    "many_flows": 50,  # flows on tables of many_rows rows, each with many_changed changed rows
    "many_rows": 200_000,
    "many_changed": 1_000,
}
QUICK = {
    "sizes": [200_000],
    "partitions": [2],
    "lakes": ["local"],
    "incremental_rows": 200_000,
    "incremental_changed": [0, 1000],
    "parse_sizes": [10, 100],
    "parse_repeat": 1,
    "jdbc": False,
    "memory_rows": None,
    "cdc_changes": None,
    "export_rows": 200_000,
    "export_changed": 1_000,
    "quality_rows": 200_000,
    "mongo_docs": 20_000,
    "rest_records": 20_000,
    "many_flows": 0,  # the estate's first load alone passes the quick run's 10 minutes: full run only
    "many_rows": 200_000,
    "many_changed": 1_000,
}


def _command_output(cmd: list[str]) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
    except OSError:
        return "?"
    return (proc.stdout + proc.stderr).strip().splitlines()[0] if (proc.stdout + proc.stderr).strip() else "?"


def environment(source: MariaDB) -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    packages = {
        name: metadata.version(name)
        for name in ("pyspark", "delta-spark", "apache-airflow", "connectorx", "deltalake", "pyarrow", "pandas")
    }
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _command_output(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]),
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(memory / 1024 / 1024, 1),
        "load_average_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "java": _command_output(["java", "-version"]),
        "mariadb": source.execute("SELECT VERSION()", database=None)[0][0],
        "packages": packages,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small run (under 10 minutes)")
    parser.add_argument("--dag-factory-python", help="python of a venv with dag-factory 1.1.0 (make bench makes one)")
    parser.add_argument("--docs", help="where the Markdown report goes")
    parser.add_argument(
        "--only",
        help="comma-separated subset: ingest,postgres,incremental,parse,memory,cdc,export,quality,documents,many",
    )
    parser.add_argument("--add-to", help="a run's JSON: add this invocation's results to it (a section that failed)")
    parser.add_argument(
        "--replace", action="store_true", help="with --add-to: the sections' earlier results are dropped (re-measured)"
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    only = (
        set(args.only.split(","))
        if args.only
        else {"ingest", "postgres", "incremental", "parse", "memory", "cdc", "export", "quality", "documents", "many"}
    )
    start_services(minio="minio" in plan["lakes"] and "ingest" in only)
    source = MariaDB()
    run: dict[str, Any] = {
        "kind": "quick" if args.quick else "full",
        "plan": plan,
        "environment": environment(source),
        "results": [],
    }
    if args.add_to:
        run = json.loads(Path(args.add_to).read_text())
        if args.replace:  # the sections' earlier results, and notes of earlier additions of them, go
            run["results"] = [r for r in run["results"] if r["bench"] not in only]
            run["added"] = [a for a in run.get("added", []) if not set(a["sections"]) <= only]
        added = {"sections": sorted(only), "environment": environment(source), "replaced": args.replace}
        run.setdefault("added", []).append(added)
    # absolute, not resolved: a venv's python is a symlink to the base interpreter, which lacks its packages
    dag_factory = str(Path(args.dag_factory_python).absolute()) if args.dag_factory_python else None
    results_dir = REPO / ".pipezone" / "bench" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    json_path = (
        Path(args.add_to).absolute()
        if args.add_to
        else results_dir / f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{run['kind']}.json"
    )
    project = Project.create(source)
    try:
        if "ingest" in only:
            run["results"] += ingest.run(
                source, project, plan["sizes"], plan["partitions"], plan["lakes"], repeat=1, jdbc=plan["jdbc"]
            )
        if "postgres" in only:
            start_postgres()
            run["results"] += ingest.run_postgres(Postgres(), project, plan["sizes"], repeat=1)
        if "incremental" in only:
            launchers = ["spark-submit", "in-process", "spark-connect", incremental.CONNECT_RUN]
            changed = plan["incremental_changed"]
            run["results"] += incremental.run(source, project, plan["incremental_rows"], changed, launchers)
        if "parse" in only:
            run["results"] += dag_parse.run(plan["parse_sizes"], plan["parse_repeat"], dag_factory)
        if "cdc" in only and plan.get("cdc_changes"):
            start_postgres()
            run["results"] += cdc.run("mariadb", source, project, plan["cdc_changes"])
            run["results"] += cdc.run("postgres", Postgres(), project, plan["cdc_changes"])
        if "export" in only:
            start_postgres()
            run["results"] += export.run(source, Postgres(), project, plan["export_rows"], plan["export_changed"])
        if "quality" in only:
            run["results"] += quality.run(project, plan["quality_rows"])
        if "documents" in only:
            run["results"] += documents.run(project, plan["mongo_docs"], plan["rest_records"])
        if "many" in only and plan["many_flows"]:
            base = source.ensure_table(plan["many_rows"])
            run["results"] += many_flows.run(source, project, base, plan["many_flows"], plan["many_changed"])
        if "memory" in only and plan.get("memory_rows"):
            run["results"] += ingest.memory(source, project, plan["memory_rows"])
    finally:
        project.close()
        json_path.write_text(json.dumps(run, indent=1, default=str))  # what was measured, even after a failure
    docs = Path(args.docs) if args.docs else REPO / ".pipezone" / "bench" / f"{run['kind']}.md"
    docs.write_text(report.render(run, json_path.relative_to(REPO)))
    print(report.summary(run))
    print(f"bench: results {json_path.relative_to(REPO)}, report {docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
