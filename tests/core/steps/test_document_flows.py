"""Document sources through every layer, live: a MongoDB collection on FerretDB (setup/local/ferretdb.sh)
and a REST API on a real local HTTP server (tests/api_server.py: paginated, rate limited
with 429, 5xx faults). Each is loaded in full, changed at the source (inserts, updates, a new nested field,
a value of another type, deletes) and rerun: silver must equal the source after every run. Then a run is
SIGKILLed after raw's commit (a real `pipezone run` process, killed by the failpoint) and rerun: still
exact, no row version twice. The API's bearer token must appear in no output and no log.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from api_server import ApiServer
from stack import Mongo

from pipezone.core.lake import delta_tables as dt
from pipezone.core.runs.flow_runner import RunReport, run_flows
from pipezone.core.spec.settings import load_settings
from pipezone.core.steps.runtime import load_runtime

pytestmark = pytest.mark.spark

REPO_ROOT = Path(__file__).resolve().parents[3]
FLOW = "orders"
TOKEN = "pz-test-token-4f9c1e7a2b"  # what the API demands; no output or log may show it
TOKEN_ENV = "PZ_TEST_API_TOKEN"
MONGO_FLOW = """\
name: orders
source:
  connection: src
  table: orders
  primary_key: [_id]
  incremental: {cursor: updatedAt, safety_buffer: 0s}
  deletes: {every: 0s}
  read: {num_partitions: 2}
"""
REST_FLOW = """\
name: orders
source:
  connection: src
  primary_key: [id]
  incremental: {cursor: updated_at, safety_buffer: 0s}
  deletes: {every: 0s}
  endpoint:
    path: /v1/orders
    records: data.items
    pagination: {style: cursor, next_path: meta.next_cursor}
    params: {per_page: 7}
    incremental_param: updated_since
    max_retry_wait: 2s
"""


class Project:
    """A scratch project whose one flow reads `connection` (YAML), run in this process's Spark session."""

    def __init__(self, root: Path, spark: Any, connection: str, flow: str) -> None:
        self.root, self.spark = root, spark
        meta = root / "metadata"
        for sub in ("connections", "flows", "profiles"):
            (meta / sub).mkdir(parents=True, exist_ok=True)
        (meta / "connections" / "src.yaml").write_text(connection)
        (meta / "connections" / "lake.yaml").write_text("name: lake\ntype: local\npath: lake\n")
        (meta / "connections" / "state.yaml").write_text("name: state\ntype: sqlite\npath: state.db\n")
        (meta / "profiles" / "default.yaml").write_text(
            "name: default\nlake: lake\nstate_store: state\nspark:\n  master: local[2]\n  shuffle_partitions: 2\n"
        )
        (meta / "flows" / f"{FLOW}.yaml").write_text(flow)
        (root / ".pipezone").mkdir(exist_ok=True)
        (root / ".pipezone" / "jars").symlink_to(REPO_ROOT / ".pipezone" / "jars", target_is_directory=True)
        self.runtime = load_runtime(load_settings(environ={TOKEN_ENV: TOKEN}, cwd=root))
        self.printed: list[str] = []

    def run(self, run_id: str) -> RunReport:
        report = run_flows(self.runtime, [FLOW], in_process=True, run_id=run_id, progress=self.printed.append)
        assert report.ok, [o.line for o in report.outcomes if not o.ok]
        return report

    def killed_run(self, point: str) -> subprocess.CompletedProcess[str]:
        """`pipezone run` in its own process with `point` armed: it dies there by SIGKILL."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIPEZONE_")}
        env.update({"PIPEZONE_FAILPOINTS": point, TOKEN_ENV: TOKEN})
        command = [sys.executable, "-m", "pipezone.core.cli.main", "run", FLOW, "--in-process"]
        return subprocess.run(command, cwd=self.root, env=env, capture_output=True, text=True, timeout=600)

    def rows(self, layer: str) -> list[Any]:
        lake = self.runtime.lake
        path = lake.raw(self.runtime.flow(FLOW)) if layer == "raw" else lake.table(layer, FLOW)
        return self.spark.read.format("delta").load(path).collect()

    def details(self, step: str, run_id: str) -> dict[str, Any]:
        found = [r for r in self.runtime.state.recent_runs(FLOW, 100) if (r.step, r.run_id) == (step, run_id)]
        assert found and found[0].status == "success", found
        return found[0].details

    def close(self) -> None:
        if "state" in self.runtime.__dict__:
            self.runtime.state.close()


def live_silver(project: Project, key: str, fields: tuple[str, ...]) -> dict[str, tuple[Any, ...]]:
    rows = project.rows("silver")
    keys = [r[key] for r in rows]
    assert len(keys) == len(set(keys)), "a key twice in silver"
    return {str(r[key]): tuple(_field(r, f) for f in fields) for r in rows if not r[dt.DELETED]}


def _field(row: Any, dotted: str) -> Any:
    value = row.asDict(recursive=True)
    for part in dotted.split("."):
        value = None if value is None else value.get(part)  # a field no record had yet: None
    return value


def no_version_twice(project: Project, key: str, cursor: str) -> None:
    versions = [(r[key], r[cursor]) for r in project.rows("bronze") if not r[dt.DELETED]]
    assert len(versions) == len(set(versions)), "bronze: a row version twice"


# ------------------------------------------------------------------------------------------ MongoDB


@pytest.fixture(scope="module")
def mongo_db(mongo: Mongo) -> Iterator[Any]:
    client = mongo.client()
    name = f"pz_flow_{os.getpid()}"
    client.drop_database(name)
    yield client[name]
    client.drop_database(name)
    client.close()


@pytest.fixture(scope="module")
def mongo_project(
    mongo: Mongo, mongo_db: Any, spark: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Project]:
    connection = f"name: src\ntype: mongodb\nhost: {mongo.host}\nport: {mongo.port}\ndatabase: {mongo_db.name}\n"
    project = Project(tmp_path_factory.mktemp("mongo") / "project", spark, connection, MONGO_FLOW)
    yield project
    project.close()


def _order(i: int, at: datetime) -> dict[str, Any]:
    return {
        "customer": {"name": f"c{i}", "tier": i % 3},
        "items": [{"sku": f"s{i}-{n}", "qty": n} for n in range(1 + i % 3)],
        "amount": i * 1.5,
        "status": "open",
        "updatedAt": at,
    }


def mongo_source(db: Any) -> dict[str, tuple[Any, ...]]:
    return {
        str(d["_id"]): (d["customer"]["name"], d["customer"].get("vip"), d["status"], d["amount"], len(d["items"]))
        for d in db.orders.find()
    }


def mongo_silver(project: Project) -> dict[str, tuple[Any, ...]]:
    rows = live_silver(project, "id", ("customer.name", "customer.vip", "status", "amount", "amount_text", "items"))
    return {
        k: (name, vip, status, text if amount is None else amount, len(items))
        for k, (name, vip, status, amount, text, items) in rows.items()
    }


def test_a_collection_through_every_layer_equals_the_source(mongo_project: Project, mongo_db: Any) -> None:
    start = datetime.now(UTC) - timedelta(hours=1)
    mongo_db.orders.insert_many([_order(i, start + timedelta(seconds=i)) for i in range(60)])
    mongo_project.run("m1")
    assert mongo_project.details("extract", "m1")["read_path"] == "arrow"  # first load: the bulk path
    assert mongo_silver(mongo_project) == mongo_source(mongo_db)

    now = datetime.now(UTC) - timedelta(seconds=5)
    mongo_db.orders.insert_many([_order(100 + i, now) for i in range(3)])
    ids = [d["_id"] for d in mongo_db.orders.find().sort("_id", 1)]
    mongo_db.orders.update_one({"_id": ids[0]}, {"$set": {"status": "shipped", "updatedAt": now}})
    mongo_db.orders.update_one({"_id": ids[1]}, {"$set": {"customer.vip": True, "updatedAt": now}})  # new nested
    mongo_db.orders.update_one({"_id": ids[2]}, {"$set": {"amount": "free", "updatedAt": now}})  # another type
    mongo_db.orders.delete_many({"_id": {"$in": ids[5:8]}})
    mongo_project.run("m2")
    assert mongo_project.details("extract", "m2")["batch"] == 2
    assert mongo_silver(mongo_project) == mongo_source(mongo_db)
    by_id = {r["id"]: r for r in mongo_project.rows("silver")}
    assert by_id[str(ids[2])]["amount"] is None and by_id[str(ids[2])]["amount_text"] == "free"
    assert sum(1 for r in by_id.values() if r[dt.DELETED]) == 3


def test_a_killed_mongodb_run_rerun_is_exact(mongo_project: Project, mongo_db: Any) -> None:
    now = datetime.now(UTC) - timedelta(seconds=5)
    mongo_db.orders.insert_one(_order(500, now))
    first = mongo_db.orders.find_one(sort=[("_id", 1)])
    mongo_db.orders.update_one({"_id": first["_id"]}, {"$set": {"status": "returned", "updatedAt": now}})
    killed = mongo_project.killed_run("extract.after_commit")
    assert killed.returncode == -9, killed.stdout[-2000:] + killed.stderr[-2000:]
    mongo_project.run("m3")
    assert mongo_silver(mongo_project) == mongo_source(mongo_db)
    no_version_twice(mongo_project, "id", "updated_at")


# ------------------------------------------------------------------------------------------ REST


@pytest.fixture(scope="module")
def api() -> Iterator[ApiServer]:
    with ApiServer(count=45, style="cursor", page_size=7, token=TOKEN) as server:
        yield server


@pytest.fixture(scope="module")
def rest_project(api: ApiServer, spark: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    connection = f"name: src\ntype: rest\nbase_url: {api.url}\nauth:\n  type: bearer\n  token: ${{env:{TOKEN_ENV}}}\n"
    project = Project(tmp_path_factory.mktemp("rest") / "project", spark, connection, REST_FLOW)
    yield project
    project.close()


def rest_source(api: ApiServer) -> dict[str, tuple[Any, ...]]:
    return {
        str(k): (r["status"], r["customer"]["name"], r["customer"].get("vip"), len(r["items"]))
        for k, r in api.records.items()
    }


def rest_silver(project: Project) -> dict[str, tuple[Any, ...]]:
    rows = live_silver(project, "id", ("status", "customer.name", "customer.vip", "items"))
    return {k: (status, name, vip, len(items)) for k, (status, name, vip, items) in rows.items()}


def test_an_endpoint_through_every_layer_equals_the_source(rest_project: Project, api: ApiServer) -> None:
    rest_project.run("r1")
    assert rest_silver(rest_project) == rest_source(api)
    assert len(api.requests) >= 7  # 45 records, 7 a page

    api.insert(status="new")
    api.update(1, status="shipped")
    api.update(2, customer={"name": "customer 2", "tier": "gold", "vip": True})  # a new nested field
    for gone in (10, 11, 12):
        api.delete(gone)
    api.rate_limit_next(1, retry_after=1)
    api.fail_next(2, status=503)
    sent = len(api.requests)
    rest_project.run("r2")
    assert rest_silver(rest_project) == rest_source(api)
    statuses = [r.status for r in api.requests[sent:]]
    assert statuses[:3] == [429, 503, 503], statuses
    incremental = [r for r in api.requests[sent:] if "updated_since" in r.query]
    assert incremental, "the window's lower bound goes to the API as updated_since"


def test_a_killed_rest_run_rerun_is_exact_and_the_token_never_shows(rest_project: Project, api: ApiServer) -> None:
    api.insert(status="late")
    api.update(3, status="returned")
    killed = rest_project.killed_run("extract.after_commit")
    assert killed.returncode == -9, killed.stdout[-2000:] + killed.stderr[-2000:]
    rest_project.run("r3")
    assert rest_silver(rest_project) == rest_source(api)
    no_version_twice(rest_project, "id", "updated_at")
    printed = killed.stdout + killed.stderr + "\n".join(rest_project.printed)
    logs = "".join(p.read_text(errors="replace") for p in (rest_project.root / ".pipezone").rglob("*.log"))
    assert TOKEN not in printed and TOKEN not in logs
    assert all(TOKEN not in r.path + str(r.query) for r in api.requests)
