"""Exactly-once across crashes, on the real stack (`services` profile: every step a client of the warm Spark
Connect server on the standalone cluster, MinIO lake, MariaDB state, Vault credentials), as Airflow runs it. The source is MariaDB,
then PostgreSQL (the `shop` fixture's params; the suite runs once per source, its login in Vault too).

For each failpoint (pipezone/core/failpoints.py) the source changes (inserts, updates, deletes), the flow
runs with that point armed, so the step's driver process is SIGKILLed there: before its Delta commit,
after the commit but before the state update, or inside the state store's transaction. Points come in
short chains (the run after one kill is killed at the next point); then the flow runs again, unarmed,
with a new run id (in one Spark application, to keep the suite short). After every chain, each layer
must equal the source:

- raw: no row version twice (the flow has no lookback, so raw re-reads nothing by design), and its
  latest event per key is the source;
- bronze: no row version twice, and its latest event per key is the source;
- silver: its live rows are the source, row for row; deleted keys are flagged, never duplicated.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pipezone.core.lake import delta_tables as dt

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from services import MariaDB, Postgres
    from stack import Stack

pytestmark = [pytest.mark.services, pytest.mark.spark]

REPO = Path(__file__).resolve().parents[2]
PIPEZONE = str(Path(sys.executable).with_name("pipezone"))
STATE_DB = "pz_fault_state"
SHOP_DB = "pz_fault_shop"
FLOW = "fault_orders"
PREFIXES = {"raw": ["fault_shop/"], "bronze": [f"{FLOW}/"], "silver": [f"{FLOW}/"]}
# Extract's points are hit with each step its own client process (the step's process is killed, as under
# Airflow; the server goes on); the later steps' in an in-process run (`pipezone run --in-process`: one
# client process for the whole job, which is killed). Points come in chains: the run after a kill is itself killed at the
# chain's next point (it must first repair what the kill left, then dies further on), and a clean run ends
# the chain. Every point is killed once and every kill is repaired by a real restart; a chain costs one
# clean run and one comparison instead of one per point, which keeps the suite inside CI's budget.
CHAINS = (
    (("extract.before_commit", "extract.after_commit", "extract.state_update"), "per-step"),
    (("bronze.after_commit", "silver.before_commit"), "in-process"),
    (("bronze.state_update", "silver.after_commit"), "in-process"),
    (("silver.state_update",), "in-process"),
)

# The source's part in a crash is the extract (its read, its window, the key snapshot for deletes), so
# PostgreSQL runs the extract's point between its two writes (raw committed, watermark not); the other
# points read the lake, whatever the source, and are killed on MariaDB only (each costs a few Spark
# launches, and CI's budget counts them).
CASES = [("mariadb", points, launcher) for points, launcher in CHAINS] + [
    ("postgres", ("extract.after_commit",), "per-step")
]
# PostgreSQL's `orders` in its own types (MariaDB's is services.orders_table_sql, shared with the stack test).
POSTGRES_ORDERS = (
    "CREATE TABLE orders (id integer PRIMARY KEY, customer varchar(40) NOT NULL, amount numeric(12,2) NOT NULL, "
    "status varchar(10) NOT NULL, updated_at timestamp(6) NOT NULL)"
)

FLOW_YAML = f"""\
name: {FLOW}
source:
  connection: fault_shop
  table: orders
  primary_key: [id]
  incremental:
    cursor: updated_at
  deletes:
    every: 0s
"""


@dataclass
class Shop:
    root: Path
    stack: Stack
    server: MariaDB | Postgres  # the source
    env: dict[str, str] = field(repr=False)
    clock: datetime = field(default_factory=lambda: datetime.now(UTC).replace(tzinfo=None, microsecond=0))
    next_id: int = 1

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PIPEZONE, *args],
            cwd=self.root,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=1200,
            check=False,
        )

    def sql(self, statement: str, rows: list[tuple[Any, ...]] | None = None) -> list[tuple[Any, ...]]:
        from services import query

        conn = self.server.connect(SHOP_DB)
        try:
            if rows is None:
                return query(conn, statement)
            with conn.cursor() as cur:
                cur.executemany(statement, rows)
            return []
        finally:
            conn.close()

    def change(self, inserts: int, updates: int, deletes: int) -> None:
        """Source changes stamped in the past (the extract's safety buffer never hides them): new rows, the
        lowest ids updated, the highest deleted (keys chosen here: UPDATE/DELETE ... LIMIT is MySQL's only)."""
        self.clock += timedelta(minutes=1)
        when = self.clock - timedelta(days=1)
        rows = [(i, f"c{i % 7}", Decimal(i) / 4, "new", when) for i in range(self.next_id, self.next_id + inserts)]
        self.next_id += inserts
        self.sql("INSERT INTO orders VALUES (%s, %s, %s, %s, %s)", rows)
        lowest = self.sql(f"SELECT id FROM orders ORDER BY id LIMIT {updates}")
        self.sql(
            "UPDATE orders SET status = 'paid', amount = amount + 1, updated_at = %s WHERE id = %s",
            [(when, key) for (key,) in lowest],
        )
        highest = self.sql(f"SELECT id FROM orders ORDER BY id DESC LIMIT {deletes}")
        self.sql("DELETE FROM orders WHERE id = %s", highest)

    def source(self) -> dict[int, tuple[Any, ...]]:
        rows = self.sql("SELECT id, customer, amount, status, updated_at FROM orders")
        return {r[0]: (r[1], r[2], r[3], r[4].replace(tzinfo=UTC)) for r in rows}


@pytest.fixture(scope="module")
def shop(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    """A scratch project whose flow reads `orders` on the case's source (request.param: its kind)."""
    from services import query, require_postgres
    from stack import orders_table_sql, require_stack

    stack = require_stack()
    kind = request.param
    server: MariaDB | Postgres = stack.mariadb if kind == "mariadb" else require_postgres()
    if kind != "mariadb":  # vault.sh seeds MariaDB's login; the others' are written here
        stack.put_secret(f"pipezone/{kind}", user=server.user, password=server.password)
    root = tmp_path_factory.mktemp(f"faults-{kind}") / "project"
    shutil.copytree(REPO / "metadata", root / "metadata")
    for demo in (root / "metadata" / "flows").glob("retail_*.yaml"):  # the demo's flows: not this test's
        demo.unlink()
    state = root / "metadata" / "connections" / "services_state.yaml"
    state.write_text(state.read_text().replace("database: pipezone\n", f"database: {STATE_DB}\n"))
    login = (f"${{vault:secret/pipezone/{kind}#{key}}}" for key in ("user", "password"))
    (root / "metadata" / "connections" / "fault_shop.yaml").write_text(
        server.connection_yaml("fault_shop", SHOP_DB, *login)
    )
    (root / "metadata" / "flows" / f"{FLOW}.yaml").write_text(FLOW_YAML)
    stack.recreate_databases(STATE_DB)
    server.drop_database(SHOP_DB)
    server.create_database(SHOP_DB)
    conn = server.connect(SHOP_DB)
    try:
        query(conn, orders_table_sql(SHOP_DB) if kind == "mariadb" else POSTGRES_ORDERS)
    finally:
        conn.close()
    stack.delete_prefixes(PREFIXES)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPEZONE_", "VAULT_"))}
    env |= stack.env() | {"PIPEZONE_HOME": str(root), "PIPEZONE_JAR_CACHE": str(REPO / ".pipezone" / "jars")}
    yield Shop(root, stack, server, env)
    server.drop_database(SHOP_DB)
    stack.mariadb.drop_database(STATE_DB)


@pytest.fixture(scope="module")
def lake(spark: SparkSession, shop: Shop) -> SparkSession:
    """The tests' Spark session, reading MinIO's buckets through s3a."""
    conf = spark.sparkContext._jsc.hadoopConfiguration()  # noqa: SLF001 - the public way to set it at runtime
    for key, value in {
        "fs.s3a.endpoint": shop.stack.minio_endpoint,
        "fs.s3a.access.key": shop.stack.minio_user,
        "fs.s3a.secret.key": shop.stack.minio_password,
        "fs.s3a.path.style.access": "true",
        "fs.s3a.connection.ssl.enabled": "false",
        "fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
    }.items():
        conf.set(key, value)
    return spark


def _events(spark: SparkSession, path: str) -> list[Any]:
    return spark.read.format("delta").load(path).collect()


def _latest_live(rows: list[Any]) -> dict[int, tuple[Any, ...]]:
    """Per key, the newest event (by batch; a tombstone after the live row of its batch), if live."""
    latest: dict[int, Any] = {}
    for r in sorted(rows, key=lambda r: (r[dt.BATCH], bool(r[dt.DELETED]))):
        latest[r["id"]] = r
    return {
        k: (r["customer"], r["amount"], r["status"], r["updated_at"].astimezone(UTC))
        for k, r in latest.items()
        if not r[dt.DELETED]
    }


def _no_version_twice(rows: list[Any], where: str) -> None:
    versions = [(r["id"], r["updated_at"], bool(r[dt.DELETED])) for r in rows if not r[dt.DELETED]]
    assert len(versions) == len(set(versions)), f"{where}: a row version appears twice"


def assert_every_layer_equals_the_source(spark: SparkSession, shop: Shop) -> None:
    source = shop.source()
    raw = _events(spark, f"s3a://raw/{PREFIXES['raw'][0]}orders")
    bronze = _events(spark, f"s3a://bronze/{FLOW}")
    silver = _events(spark, f"s3a://silver/{FLOW}")
    for name, rows in (("raw", raw), ("bronze", bronze)):
        _no_version_twice(rows, name)
        assert _latest_live(rows) == source, f"{name}: latest events differ from the source"
    live = {
        r["id"]: (r["customer"], r["amount"], r["status"], r["updated_at"].astimezone(UTC))
        for r in silver
        if not r[dt.DELETED]
    }
    assert live == source, "silver differs from the source"
    assert len(silver) == len({r["id"] for r in silver}), "silver: a key twice"


@pytest.fixture(scope="module")
def loaded(shop: Shop) -> Shop:
    shop.change(inserts=60, updates=0, deletes=0)
    proc = shop.run("run", FLOW)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return shop


# `shop` is module-scoped per source; each case names its source too, so pytest's reordering (which groups
# items sharing a module-scoped parameter) keeps a source's cases together instead of pairing equal points.
@pytest.mark.parametrize(
    ("shop", "case"),
    [(c[0], c) for c in CASES],
    indirect=["shop"],
    scope="module",
    ids=["-".join([c[0], "+".join(c[1]), c[2]]) for c in CASES],
)
def test_a_step_killed_at_any_point_then_rerun_leaves_every_layer_equal_to_the_source(
    loaded: Shop, lake: SparkSession, case: tuple[str, tuple[str, ...], str]
) -> None:
    _, points, launcher = case
    for point in points:  # the source changes before each kill, so every run has rows to lose or duplicate
        loaded.change(inserts=7, updates=5, deletes=2)
        step = point.split(".")[0]
        args = ("run", FLOW) if launcher == "per-step" else ("run", FLOW, "--in-process")
        killed = loaded.run(*args, env={"PIPEZONE_FAILPOINTS": point})
        out = killed.stdout + killed.stderr
        if launcher == "per-step":
            assert killed.returncode != 0 and f"{FLOW}: {step} FAILED" in out, out[-2000:]  # died in that step
        else:
            assert killed.returncode == -signal.SIGKILL, out[-2000:]
            assert f"{FLOW}: {step} ..." in out and f"{FLOW}: {step} ok" not in out, out[-2000:]

    # The rerun: a new run id, all steps in one client process.
    rerun = loaded.run("run", FLOW, "--in-process")
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    assert_every_layer_equals_the_source(lake, loaded)
