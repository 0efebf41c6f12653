"""The real stack end to end (`make services-up`): the `services` profile runs the demo flows and a MariaDB
source flow through the warm Spark Connect server on the standalone cluster (the shop flow's first run by
spark-submit per step, the `services_submit` profile), the lake in MinIO's buckets (through s3a), state and run logs in
MariaDB, every credential read from Vault (OpenBao). Nothing is mocked; every process is a `pipezone` CLI
run, as a user would start it.

A scratch project holds the repo's metadata with two changes: the state store uses the database
`pz_it_state` (recreated here), and a MariaDB shop (`pz_it_shop`) with its flow `shop_orders` is added.
The lake is MinIO's real `raw`/`bronze`/`silver`/`gold` buckets: this module first deletes the tables its
flows write, and leaves the results in place afterwards, for inspection in the MinIO console.

The last test stops MinIO while a step runs: the step must fail naming the lake endpoint, and the rerun
after MinIO is back must leave no duplicate row.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pipezone.core.demo.shop import apply_change_batch, create_retail_db, table_counts

if TYPE_CHECKING:
    from stack import Stack

pytestmark = [pytest.mark.services, pytest.mark.spark]

REPO = Path(__file__).resolve().parents[2]
PIPEZONE = str(Path(sys.executable).with_name("pipezone"))
STATE_DB = "pz_it_state"
SHOP_DB = "pz_it_shop"
GOLD_FLOW = "retail_daily_revenue"
SOURCE_FLOWS = tuple(sorted(p.stem for p in (REPO / "metadata" / "flows").glob("retail_*.yaml") if p.stem != GOLD_FLOW))
DEMO_FLOWS = (*SOURCE_FLOWS, GOLD_FLOW)
LAKE_TABLES = {  # what the flows of this module write, per bucket
    "raw": ["retail_demo/", "it_shop/"],
    "bronze": [f"{f}/" for f in (*SOURCE_FLOWS, "shop_orders")],
    "silver": [f"{f}/" for f in (*SOURCE_FLOWS, "shop_orders")],
    "gold": ["daily_revenue/"],
    "quarantine": ["retail_reviews/"],  # the reviews' bad ratings
}
SHOP_ROWS = 300

SHOP_CONNECTION = """\
# yaml-language-server: $schema=../schemas/connection.schema.json
name: it_shop
type: mariadb
description: The integration tests' MariaDB shop
host: 127.0.0.1
port: {port}
database: pz_it_shop
user: ${{vault:secret/pipezone/mariadb#user}}
password: ${{vault:secret/pipezone/mariadb#password}}
"""

SHOP_FLOW = """\
# yaml-language-server: $schema=../schemas/flow.schema.json
name: shop_orders
description: Orders from the MariaDB shop
source:
  connection: it_shop
  table: orders
  primary_key: [id]
  incremental:
    cursor: updated_at
    initial_value: "2000-01-01 00:00:00"
    lookback: 1m
layers:
  silver:
    write_mode: merge
schedule: "@hourly"
"""


@dataclass
class Project:
    root: Path
    stack: Stack
    env: dict[str, str] = field(repr=False)
    outputs: dict[str, str] = field(default_factory=dict)
    apps_before: set[str] = field(default_factory=set)  # the master's application ids before `ran`

    def run(
        self, *args: str, timeout: int = 1500, check: bool = True, profile: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = self.env if profile is None else {**self.env, "PIPEZONE_PROFILE": profile}
        proc = subprocess.run(
            [PIPEZONE, *args], cwd=self.root, env=env, capture_output=True, text=True, timeout=timeout
        )
        if check:
            assert proc.returncode == 0, f"pipezone {' '.join(args)} exited {proc.returncode}:\n{_tail(proc)}"
        return proc


def _tail(proc: subprocess.CompletedProcess[str], lines: int = 40) -> str:
    text = [ln for ln in (proc.stdout + proc.stderr).splitlines() if " WARN " not in ln]
    return "\n".join(text[-lines:])


def _shop_rows(start: int, count: int, when: datetime) -> list[tuple[object, ...]]:
    return [
        (i, f"customer-{i % 37}", f"{(i * 7) % 1000}.{i % 100:02d}", "paid" if i % 3 else "new", when)
        for i in range(start, start + count)
    ]


def _prepare_mariadb(stack: Stack) -> None:
    from stack import orders_table_sql

    stack.recreate_databases(STATE_DB, SHOP_DB, table_sql=orders_table_sql(SHOP_DB))
    conn = stack.mariadb.connect(SHOP_DB)
    try:
        with conn.cursor() as cur:
            when = datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=1)
            cur.executemany("INSERT INTO orders VALUES (%s, %s, %s, %s, %s)", _shop_rows(1, SHOP_ROWS, when))
    finally:
        conn.close()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    from stack import require_stack

    stack = require_stack()
    root = tmp_path_factory.mktemp("stack") / "project"
    shutil.copytree(REPO / "metadata", root / "metadata")
    state = root / "metadata" / "connections" / "services_state.yaml"
    state.write_text(state.read_text().replace("database: pipezone\n", f"database: {STATE_DB}\n"))
    (root / "metadata" / "connections" / "it_shop.yaml").write_text(SHOP_CONNECTION.format(port=stack.mariadb.port))
    (root / "metadata" / "flows" / "shop_orders.yaml").write_text(SHOP_FLOW)
    create_retail_db(root / ".pipezone" / "demo" / "retail.db")
    _prepare_mariadb(stack)
    stack.delete_prefixes(LAKE_TABLES)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPEZONE_", "VAULT_"))}
    env |= stack.env() | {"PIPEZONE_HOME": str(root), "PIPEZONE_JAR_CACHE": str(REPO / ".pipezone" / "jars")}
    yield Project(root, stack, env)


@pytest.fixture(scope="module")
def ran(project: Project) -> Project:
    """Demo flows twice (change batch between) in one client of the Connect server; the MariaDB flow by
    spark-submit per step (services_submit)."""
    project.apps_before = {app["id"] for app in project.stack.spark_apps()}
    project.outputs["run1"] = project.run("run", *DEMO_FLOWS, "--in-process").stdout
    apply_change_batch(project.root / ".pipezone" / "demo" / "retail.db", batch=1)
    project.outputs["run2"] = project.run("run", *DEMO_FLOWS, "--in-process").stdout
    project.outputs["shop"] = project.run("run", "shop_orders", profile="services_submit").stdout
    project.outputs["tables"] = project.run("tables", "--check").stdout
    return project


def _silver_rows(tables_output: str) -> dict[str, tuple[int, int, bool]]:
    """FLOW -> (source, silver, equal) from `pipezone tables`."""
    rows = {}
    for line in tables_output.splitlines():
        cells = line.split()
        if len(cells) == 8 and cells[1].isdigit():
            rows[cells[0]] = (int(cells[1]), int(cells[4]), cells[-1] == "yes")
    return rows


def test_silver_equals_every_source_after_full_and_incremental_runs(ran: Project) -> None:
    silver = _silver_rows(ran.outputs["tables"])
    demo = table_counts(ran.root / ".pipezone" / "demo" / "retail.db")
    assert silver["retail_customers"] == (demo["customers"], demo["customers"], True)
    assert silver["retail_orders"] == (demo["orders"], demo["orders"], True)
    assert silver["retail_order_items"] == (demo["order_items"], demo["order_items"], True)
    assert silver["retail_products"] == (demo["products"], demo["products"], True)
    assert silver["shop_orders"] == (SHOP_ROWS, SHOP_ROWS, True)
    assert re.search(
        r"daily_revenue\s+retail_daily_revenue\s+[1-9]\d*\s+s3a://gold/daily_revenue", ran.outputs["tables"]
    )
    reviews = next(line.split() for line in ran.outputs["tables"].splitlines() if line.startswith("retail_reviews "))
    source, silver_rows, dropped, quarantined = (int(reviews[i]) for i in (1, 4, 5, 6))
    assert dropped > 0 and quarantined > 0 and silver_rows + dropped + quarantined == source, reviews
    assert reviews[-1] == "yes*"
    docs = ran.stack.s3().list_objects_v2(Bucket="quality", Prefix="retail_reviews/").get("Contents", [])
    assert {"retail_reviews/silver/index.html", "retail_reviews/quality/index.html"} <= {o["Key"] for o in docs}
    exported = (
        r"export_retail_bi_daily_revenue\s+retail_daily_revenue\s+retail_bi:daily_revenue\s+replace\s+(\d+)\s+(\d+)"
    )
    lake, destination = re.search(exported, ran.outputs["tables"]).groups()  # the demo's gold table in SQLite
    assert int(lake) > 0 and lake == destination


def test_lake_tables_are_delta_tables_in_the_minio_buckets(ran: Project) -> None:
    s3 = ran.stack.s3()
    for bucket, prefixes in LAKE_TABLES.items():
        for prefix in prefixes:
            keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
            logs = [k for k in keys if "/_delta_log/" in k and k.endswith(".json")]
            data = [k for k in keys if k.endswith(".parquet")]
            assert logs and data, f"s3://{bucket}/{prefix}: no Delta table ({keys[:5]})"


def test_state_and_run_history_are_in_mariadb(ran: Project) -> None:
    conn = ran.stack.mariadb.connect(STATE_DB)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT flow, cursor_column FROM incremental_state ORDER BY flow")
            marks = dict(cur.fetchall())
            cur.execute("SELECT flow, step, status, COUNT(*) FROM pipeline_execution_logs GROUP BY flow, step, status")
            runs = {(f, s, st): n for f, s, st, n in cur.fetchall()}
    finally:
        conn.close()
    assert marks == {f: "updated_at" for f in (*SOURCE_FLOWS, "shop_orders")}
    assert runs[("retail_orders", "silver", "success")] == 2  # two runs of the demo flows
    assert runs[("shop_orders", "extract", "success")] == 1
    assert not [k for k in runs if k[2] == "failed"]


def test_steps_ran_through_the_connect_server_and_spark_submit_on_the_standalone_master(ran: Project) -> None:
    """The demo runs and `pipezone tables` started no application (they ran in the Connect server's, alive on
    the master); the services_submit run started one per step."""
    apps = ran.stack.spark_apps()
    new = sorted(app["name"] for app in apps if app["id"] not in ran.apps_before)
    assert new == ["pipezone-shop_orders-bronze", "pipezone-shop_orders-extract", "pipezone-shop_orders-silver"]
    assert "pipezone-spark-connect" in {app["name"] for app in apps if app.get("state") == "RUNNING"}


def test_credentials_come_from_vault(ran: Project) -> None:
    """The profile's connections hold only ${vault:...} references; a wrong token fails in one line."""
    for name in ("services_lake", "services_state"):
        text = (ran.root / "metadata" / "connections" / f"{name}.yaml").read_text()
        assert "${vault:secret/pipezone/" in text and "pipezone-dev" not in text
    env = {**ran.env, "VAULT_TOKEN": "not-the-token"}
    proc = subprocess.run(
        [PIPEZONE, "state"], cwd=ran.root, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode != 0
    assert proc.stderr.count("\n") == 1 and "Vault http://127.0.0.1:8200" in proc.stderr, proc.stderr


def _stop_minio_when(proc: subprocess.Popen[str], marker: str, delay_s: float, lines: list[str]) -> threading.Thread:
    """Read the run's output; `delay_s` after `marker` appears, stop MinIO (the step is running then)."""

    def follow() -> None:
        assert proc.stdout is not None
        stopped = False
        for line in proc.stdout:
            lines.append(line)
            if not stopped and marker in line:
                time.sleep(delay_s)
                subprocess.run(["bash", "setup/local/minio.sh", "stop"], cwd=REPO, check=True, capture_output=True)
                stopped = True

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    return thread


def test_minio_stopped_mid_step_fails_naming_the_endpoint_and_rerun_has_no_duplicates(ran: Project) -> None:
    conn = ran.stack.mariadb.connect(SHOP_DB)
    try:
        with conn.cursor() as cur:
            when = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=10)
            cur.executemany("INSERT INTO orders VALUES (%s, %s, %s, %s, %s)", _shop_rows(SHOP_ROWS + 1, 40, when))
            cur.execute("UPDATE orders SET status = 'shipped', updated_at = %s WHERE id <= 20", (when,))
    finally:
        conn.close()
    lines: list[str] = []
    proc = subprocess.Popen(
        [PIPEZONE, "run", "shop_orders"],
        cwd=ran.root,
        env=ran.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        reader = _stop_minio_when(proc, "shop_orders: extract ...", 0.5, lines)  # the step takes ~5 s
        code = proc.wait(timeout=900)
        reader.join(timeout=60)
    finally:
        subprocess.run(["bash", "setup/local/minio.sh", "start"], cwd=REPO, check=True, capture_output=True)
    out = "".join(lines)
    assert code != 0, out[-3000:]
    failed = [ln for ln in out.splitlines() if "shop_orders: extract FAILED" in ln]
    assert failed and "(lake services_lake at http://127.0.0.1:9000)" in failed[0], out[-3000:]

    ran.run("run", "shop_orders")
    silver = _silver_rows(ran.run("tables", "--check").stdout)
    assert silver["shop_orders"] == (SHOP_ROWS + 40, SHOP_ROWS + 40, True)
    conn = ran.stack.mariadb.connect(STATE_DB)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT status, COUNT(*), COALESCE(SUM(rows_written), 0) FROM pipeline_execution_logs "
                "WHERE flow = 'shop_orders' AND step = 'extract' GROUP BY status"
            )
            extract = {status: (n, int(rows)) for status, n, rows in cur.fetchall()}
    finally:
        conn.close()
    assert extract["failed"][0] == 1
    # raw holds exactly what the successful extracts wrote: the failed attempt left nothing behind
    raw = re.search(r"shop_orders\s+\d+\s+(\d+)\s+(\d+)\s+(\d+)", ran.run("tables").stdout)
    assert raw is not None
    assert int(raw.group(1)) == extract["success"][1]
    # bronze holds each row version once: the 300 first versions, then the 40 inserted and 20 updated rows
    # (the 1m lookback re-read the other 280 into raw, unchanged, and bronze did not append them again)
    assert int(raw.group(2)) == SHOP_ROWS + 40 + 20
