"""Parse-time benchmark: Airflow's DagBag over dags/ with N generated flow files (validation included).

    .venv/bin/python bench/dag_parse.py [--sizes 10,100,1000] [--repeat 3]
                                        [--dag-factory-python /tmp/dagfactory-venv/bin/python]

Each measurement runs in a fresh process: Airflow is imported first (the dag-processor has it loaded
already), then `DagBag(dags/)` is timed: for PipeZone that is importing the factory, reading and
validating every flow and connection file (cross-file checks included) and building the DAGs. The
process wall time (interpreter start and Airflow import included) is reported beside it.

With `--dag-factory-python` (a Python whose environment has dag-factory 1.1.0 and Airflow, never this
project's venv), the same N DAGs are also loaded by dag-factory from equivalent YAML: one file per DAG,
4 chained tasks (BashOperator), same schedule, default args and tags, one entry file calling
`load_yaml_dags`. The PipeZone flows run extract > bronze > silver > quality: 4 chained tasks too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STEPS = ("extract", "bronze", "silver", "quality")

MEASURE = """
import json, sys, time
started = time.perf_counter()
from airflow.dag_processing.dagbag import DagBag
imported = time.perf_counter()
bag = DagBag(sys.argv[1])
parsed = time.perf_counter()
tasks = sum(len(d.tasks) for d in bag.dags.values())
print(json.dumps({"airflow_import_s": imported - started, "parse_s": parsed - imported,
                  "dags": len(bag.dags), "tasks": tasks, "errors": len(bag.import_errors)}))
"""

FLOW = """\
# yaml-language-server: $schema=../schemas/flow.schema.json
name: {name}
description: Benchmark flow {i}
owner: data-eng
tags: [bench]
source:
  connection: retail_demo
  table: table_{i:04d}
  primary_key: [id]
  incremental:
    cursor: updated_at
    lookback: 5m
layers:
  silver:
    transforms:
      - cast: {{amount: "decimal(12,2)"}}
      - trim: [label]
quality:
  - check: not_null
    columns: [id]
schedule: "0 * * * *"
retries: 2
retry_delay: 5m
timeout: 2h
"""

DAG_FACTORY_YAML = """\
{name}:
  default_args:
    owner: data-eng
    start_date: 2024-01-01
    retries: 2
    retry_delay_sec: 300
    retry_exponential_backoff: 2.0
    execution_timeout_secs: 7200
  schedule: "0 * * * *"
  catchup: false
  max_active_runs: 1
  description: Benchmark flow {i}
  tags: [pipezone, bench]
  tasks:
{tasks}
"""

DAG_FACTORY_ENTRY = """\
# Airflow DAG file: dag-factory builds one DAG per YAML file in the config folder.
from dagfactory import load_yaml_dags

load_yaml_dags(globals_dict=globals(), dags_folder={config!r})
"""


def pipezone_project(root: Path, n: int) -> Path:
    """A project with the repo's connections and profiles and `n` generated flows."""
    meta = root / "metadata"
    for folder in ("connections", "profiles"):
        shutil.copytree(REPO / "metadata" / folder, meta / folder)
    flows = meta / "flows"
    flows.mkdir(parents=True)
    for i in range(n):
        name = f"bench_flow_{i:04d}"
        (flows / f"{name}.yaml").write_text(FLOW.format(name=name, i=i))
    return root


def dag_factory_folder(root: Path, n: int) -> Path:
    """A DAG folder with one dag-factory entry file, and `n` YAML files with 4 chained tasks each."""
    config, dags = root / "config", root / "dags"
    config.mkdir(parents=True)
    dags.mkdir(parents=True)
    for i in range(n):
        name = f"bench_flow_{i:04d}"
        lines = []
        for index, step in enumerate(STEPS):
            lines += [
                f"    {step}:",
                "      operator: airflow.providers.standard.operators.bash.BashOperator",
                f"      bash_command: echo {step} {name}",
            ]
            if index:
                lines.append(f"      dependencies: [{STEPS[index - 1]}]")
        (config / f"{name}.yml").write_text(DAG_FACTORY_YAML.format(name=name, i=i, tasks="\n".join(lines)))
    (dags / "dagfactory_dags.py").write_text(DAG_FACTORY_ENTRY.format(config=str(config)))
    return dags


def measure(python: str, dags: Path, env: dict[str, str]) -> dict[str, float]:
    started = time.perf_counter()
    proc = subprocess.run(
        [python, "-c", MEASURE, str(dags)], capture_output=True, text=True, env=env, cwd=tempfile.gettempdir()
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"measurement failed ({python}):\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall_s"] = wall
    return result


def median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def run(sizes: list[int], repeat: int, dag_factory_python: str | None) -> list[dict[str, object]]:
    """One record per size: medians of `repeat` fresh processes, contenders alternating."""
    work = Path(tempfile.mkdtemp(prefix="pipezone-dag-parse-"))
    base_env = {
        **os.environ,
        "AIRFLOW_HOME": str(work / "airflow-home"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "600",
    }
    for key in ("PIPEZONE_METADATA", "PIPEZONE_PROFILE", "_AIRFLOW_PARSING_CONTEXT_DAG_ID"):
        base_env.pop(key, None)
    records: list[dict[str, object]] = []
    try:
        for n in sizes:
            project = pipezone_project(work / f"pipezone-{n}", n)
            pz_env = {**base_env, "PIPEZONE_HOME": str(project)}
            df_dags = dag_factory_folder(work / f"dagfactory-{n}", n) if dag_factory_python else None
            pz_runs, df_runs = [], []
            for _ in range(repeat):  # alternate, so both see the same machine load
                pz_runs.append(measure(sys.executable, REPO / "dags", pz_env))
                if df_dags is not None and dag_factory_python:
                    df_runs.append(measure(dag_factory_python, df_dags, base_env))
            for label, runs in (("pipezone", pz_runs), ("dag-factory", df_runs)):
                if runs and (runs[0]["dags"] != n or runs[0]["errors"] or runs[0]["tasks"] != 4 * n):
                    raise SystemExit(f"{label} at N={n}: {runs[0]}")
            record: dict[str, object] = {
                "bench": "parse",
                "flows": n,
                "repeat": repeat,
                "pipezone_parse_s": round(median(pz_runs, "parse_s"), 3),
                "pipezone_process_s": round(median(pz_runs, "wall_s"), 3),
            }
            if df_runs:
                record["dag_factory_parse_s"] = round(median(df_runs, "parse_s"), 3)
                record["dag_factory_process_s"] = round(median(df_runs, "wall_s"), 3)
            records.append(record)
            print(f"bench: parse {n} flows: {record}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000", help="comma-separated flow counts")
    parser.add_argument("--repeat", type=int, default=3, help="fresh-process runs per size (median reported)")
    parser.add_argument("--dag-factory-python", help="python of a separate venv with dag-factory==1.1.0")
    args = parser.parse_args(argv)
    records = run([int(s) for s in args.sizes.split(",")], args.repeat, args.dag_factory_python)
    print(json.dumps(records, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
