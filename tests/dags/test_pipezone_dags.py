"""dags/pipezone_dags.py end to end: `dag.test()` of a demo DAG runs its steps on real Spark + Delta, with
Airflow's run id (its tasks in the pool `pipezone airflow-pool` sized), and the tasks' extra links land in XCom: through spark-submit (the default profile), and
as clients of a Spark Connect server (the `warm` profile, its server started by `pipezone spark-server`).

Runs in a child process with its own AIRFLOW_HOME (a throwaway SQLite metadata database, migrated once),
the dags folder pointing at dags/ and PIPEZONE_HOME at a scratch project with a fresh demo shop.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DAG_TEST = """
import json, sys
from pipezone.core.airflow.dag_factory import build_dags
dag = build_dags(use_context=False)[sys.argv[1]]
run = dag.test()
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
with create_session() as session:
    rows = session.query(XComModel).filter(XComModel.dag_id == dag.dag_id, XComModel.run_id == run.run_id)
    xcoms = {f"{x.task_id}.{x.key}": x.value for x in rows}
from airflow.models.pool import Pool
pools = {p.pool: p.slots for p in Pool.get_pools()}
print(json.dumps({"state": str(run.state), "run_id": run.run_id, "xcoms": xcoms, "pools": pools}, default=str))
"""


def _warm_profile(home: Path) -> None:
    """The `warm` profile on a free port (a server of another test or user may hold 15002)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = home / "metadata" / "profiles" / "warm.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["spark"]["connect_url"] = f"sc://127.0.0.1:{port}"
    path.write_text(yaml.safe_dump(spec))


@pytest.mark.spark
@pytest.mark.parametrize("profile", ["default", "warm"])
def test_dag_test_runs_a_demo_flow(tmp_path: Path, profile: str) -> None:
    home = tmp_path / "project"
    shutil.copytree(REPO / "metadata", home / "metadata")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PIPEZONE_HOME": str(home),
        "PIPEZONE_JAR_CACHE": str(REPO / ".pipezone" / "jars"),
        "PIPEZONE_PROFILE": profile,
    }
    env.pop("PIPEZONE_METADATA", None)

    def run(*args: str, timeout: int = 900) -> str:
        proc = subprocess.run(args, cwd=home, env=env, capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
        return proc.stdout

    pipezone = str(Path(sys.executable).with_name("pipezone"))
    run(sys.executable, "-m", "pipezone.core.demo.shop", "create", ".pipezone/demo/retail.db")
    run(str(Path(sys.executable).with_name("airflow")), "db", "migrate", timeout=300)
    assert run(pipezone, "airflow-pool").startswith("airflow pool pipezone_spark: ")  # every task's pool
    if profile == "warm":
        _warm_profile(home)
        run(pipezone, "spark-server", "start", timeout=300)
    try:
        out = json.loads(run(sys.executable, "-c", DAG_TEST, "pipezone_retail_products").strip().splitlines()[-1])
    finally:
        if profile == "warm":
            run(pipezone, "spark-server", "stop")

    assert out["state"] == "success"
    assert out["pools"]["pipezone_spark"] == {"default": 2, "warm": 4}[profile]  # spark.parallel_steps
    run_id, xcoms = out["run_id"], out["xcoms"]
    for step in ("extract", "bronze", "silver"):
        assert xcoms[f"{step}.return_value"].startswith(f"pipezone {step} retail_products run={run_id}: ")
    assert "rows in 50, rows out 50" in xcoms["silver.return_value"]  # the demo shop has 50 products
    assert xcoms["silver._link_LakeLocationLink"] == (home / ".pipezone/lake/silver/retail_products").as_uri()
    assert xcoms["silver._link_SparkUiLink"] == ""  # neither profile names a Spark UI
