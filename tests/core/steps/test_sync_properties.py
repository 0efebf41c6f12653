"""Property: whatever the source does between runs, silver equals the source after every run.

Hypothesis generates sequences of batches of source changes: inserts (many rows sharing one cursor
value), updates (including rows committed "late" with a cursor older than the last watermark but inside
the lookback), deletes and re-inserts of deleted keys, each followed by a run of two flows over the same
table: `items_merge` (silver merge) and `items_scd2` (silver scd2), both with delete detection. After
each run:
- merge: the live (not deleted) silver rows are exactly the source rows, and every deleted key is kept
  with `_pz_deleted`;
- scd2: the current rows are exactly the source rows; each key's versions are ordered, contiguous and
  non-overlapping, at most one current, none for a deleted key;
- bronze holds no re-read version twice in a row.

Runs against SQLite, MariaDB and PostgreSQL (tests/services.py; a failure, not a skip, in CI). On MariaDB
the state store is MariaDB too; PostgreSQL is not a state store type, so its runs keep state in SQLite.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from pipezone.core.lake import delta_tables as dt
from pipezone.core.runs.flow_runner import run_flows
from pipezone.core.spec.settings import load_settings
from pipezone.core.steps import small_batch
from pipezone.core.steps.runtime import load_runtime

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from services import MariaDB, Postgres

pytestmark = pytest.mark.spark

REPO_ROOT = Path(__file__).resolve().parents[3]
LOOKBACK = timedelta(minutes=10)
FLOWS = ("items_merge", "items_scd2")
FLOW_YAML = """\
name: {name}
source:
  connection: src
  table: items
  primary_key: [id]
  incremental:
    cursor: updated_at
    lookback: 10m
  deletes:
    every: 0s
layers:
  silver:
    write_mode: {mode}
"""

# ------------------------------------------------------------------------------------------ the source


@dataclass
class Source:
    """The `items` table in SQLite or MariaDB, and a model of it (what silver must equal)."""

    kind: str
    execute: Any  # (sql with ? marks, params) -> None
    rows: dict[int, tuple[str, int, datetime]] = field(default_factory=dict)

    def upsert(self, key: int, val: str, n: int, at: datetime) -> None:
        stamp = at.replace(tzinfo=None)
        if key in self.rows:
            self.execute("UPDATE items SET val = ?, n = ?, updated_at = ? WHERE id = ?", (val, n, stamp, key))
        else:
            self.execute("INSERT INTO items (id, val, n, updated_at) VALUES (?, ?, ?, ?)", (key, val, n, stamp))
        self.rows[key] = (val, n, at)

    def delete(self, key: int) -> None:
        self.execute("DELETE FROM items WHERE id = ?", (key,))
        del self.rows[key]


def sqlite_source(root: Path) -> tuple[Source, str]:
    path = root / "source.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, val TEXT, n INTEGER, updated_at TIMESTAMP NOT NULL)")

    def execute(sql: str, params: tuple[Any, ...]) -> None:
        conn.execute(sql, tuple(p.isoformat(sep=" ") if isinstance(p, datetime) else p for p in params))

    return Source("sqlite", execute), f"name: src\ntype: sqlite\npath: {path}\n"


# The items table in each server's own types: microsecond timestamps (PostgreSQL's with a time zone).
ITEMS_DDL = {
    "mariadb": "CREATE TABLE items (id INT PRIMARY KEY, val VARCHAR(40), n INT, updated_at DATETIME(6) NOT NULL)",
    "postgres": "CREATE TABLE items (id integer PRIMARY KEY, val varchar(40), n integer, updated_at timestamptz(6) NOT NULL)",
}
STATE_KINDS = ("mariadb",)  # servers that can also hold the state store
CREDENTIALS = ("${env:PZ_PROP_USER}", "${env:PZ_PROP_PASSWORD}")


def server_source(server: MariaDB | Postgres, database: str) -> tuple[Source, str]:
    """The items table in a scratch database of `server`; naive timestamps are UTC (the sessions are)."""
    from services import query

    conn = server.connect(database)
    query(conn, ITEMS_DDL[server.kind])

    def execute(sql: str, params: tuple[Any, ...]) -> None:
        query(conn, sql.replace("?", "%s"), params)

    return Source(server.kind, execute), server.connection_yaml("src", database, *CREDENTIALS)


# ------------------------------------------------------------------------------------------ generated changes

# One batch of source changes: ("insert", count, shared cursor?), ("update", pick, late?), ("delete", pick),
# ("reinsert", pick). `pick` chooses among existing (or deleted) keys by index modulo their number.
operation = st.one_of(
    st.tuples(st.just("insert"), st.integers(1, 6), st.booleans()),
    st.tuples(st.just("update"), st.integers(0, 1000), st.booleans()),
    st.tuples(st.just("delete"), st.integers(0, 1000)),
    st.tuples(st.just("reinsert"), st.integers(0, 1000)),
)
batches = st.lists(st.lists(operation, min_size=1, max_size=8), min_size=2, max_size=3)


@dataclass
class Clock:
    """Simulated source time, far behind the real clock (so the safety buffer never hides a row)."""

    now: datetime
    last_watermark: datetime | None = None
    next_key: int = 1
    deleted: list[int] = field(default_factory=list)

    def tick(self) -> datetime:
        self.now += timedelta(seconds=7)
        return self.now


def apply_batch(source: Source, clock: Clock, ops: list[tuple[Any, ...]]) -> None:
    clock.now += timedelta(hours=1)
    tie = clock.tick()  # many rows of this batch share this cursor value
    for op in ops:
        kind = op[0]
        if kind == "insert":
            for _ in range(op[1]):
                source.upsert(clock.next_key, f"v{clock.next_key}", 0, tie if op[2] else clock.tick())
                clock.next_key += 1
        elif kind == "update" and source.rows:
            key = sorted(source.rows)[op[1] % len(source.rows)]
            val, n, at = source.rows[key]
            when = clock.tick()
            if op[2] and clock.last_watermark is not None:
                # Committed late: stamped before the last watermark, but inside the lookback.
                when = max(at, clock.last_watermark - LOOKBACK / 2)
            source.upsert(key, val, n + 1, when)
        elif kind == "delete" and source.rows:
            key = sorted(source.rows)[op[1] % len(source.rows)]
            source.delete(key)
            clock.deleted.append(key)
        elif kind == "reinsert" and clock.deleted:
            key = clock.deleted.pop(op[1] % len(clock.deleted))
            source.upsert(key, f"again{key}", 100, clock.tick())
    clock.last_watermark = max((r[2] for r in source.rows.values()), default=clock.last_watermark)


# ------------------------------------------------------------------------------------------ checks


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def layer_rows(spark: SparkSession, path: str) -> list[Any]:
    """A layer's rows; none before its first write (a run over a still empty source writes no table)."""
    return spark.read.format("delta").load(path).collect() if dt.table_exists(spark, path) else []


def check_merge(spark: SparkSession, path: str, source: Source) -> None:
    rows = layer_rows(spark, path)
    live = {r["id"]: (r["val"], r["n"], _utc(r["updated_at"])) for r in rows if not r[dt.DELETED]}
    assert live == source.rows
    assert len(rows) == len({r["id"] for r in rows}), "one silver row per key"
    assert {r["id"] for r in rows if r[dt.DELETED]}.isdisjoint(source.rows)


def check_scd2(spark: SparkSession, path: str, source: Source) -> None:
    rows = layer_rows(spark, path)
    current = {r["id"]: (r["val"], r["n"], _utc(r["updated_at"])) for r in rows if r[dt.IS_CURRENT]}
    assert current == source.rows
    history: dict[int, list[Any]] = {}
    for r in rows:
        history.setdefault(r["id"], []).append(r)
    for key, versions in history.items():
        versions.sort(key=lambda r: (r[dt.VALID_FROM], r[dt.VALID_TO] is None))
        assert sum(1 for v in versions if v[dt.IS_CURRENT]) <= 1, f"key {key}: more than one current version"
        for before, after in zip(versions, versions[1:], strict=False):
            assert before[dt.VALID_TO] is not None, f"key {key}: an open version before another"
            assert before[dt.VALID_TO] <= after[dt.VALID_FROM], f"key {key}: overlapping versions"
            if not before[dt.DELETED]:
                assert before[dt.VALID_TO] == after[dt.VALID_FROM], f"key {key}: a gap without a delete"
        if key not in source.rows:
            assert not any(v[dt.IS_CURRENT] for v in versions)


def check_bronze(spark: SparkSession, path: str) -> None:
    rows = layer_rows(spark, path)
    seen: dict[int, list[Any]] = {}
    for r in sorted(rows, key=lambda r: r[dt.BATCH]):
        seen.setdefault(r["id"], []).append(r[dt.ROW_HASH])
    for key, hashes in seen.items():
        assert all(a != b for a, b in zip(hashes, hashes[1:], strict=False)), f"key {key}: a re-read version twice"


# ------------------------------------------------------------------------------------------ the property


def write_project(root: Path, connection: str, state: str | None) -> None:
    meta = root / "metadata"
    for sub in ("connections", "flows", "profiles"):
        (meta / sub).mkdir(parents=True, exist_ok=True)
    (meta / "connections" / "src.yaml").write_text(connection)
    (meta / "connections" / "lake.yaml").write_text("name: lake\ntype: local\npath: lake\n")
    (meta / "connections" / "state.yaml").write_text(state or "name: state\ntype: sqlite\npath: state.db\n")
    (meta / "profiles" / "default.yaml").write_text(
        "name: default\nlake: lake\nstate_store: state\nspark:\n  master: local[2]\n  shuffle_partitions: 2\n"
    )
    for name in FLOWS:
        mode = "scd2" if name.endswith("scd2") else "merge"
        (meta / "flows" / f"{name}.yaml").write_text(FLOW_YAML.format(name=name, mode=mode))
    (root / ".pipezone").mkdir(exist_ok=True)
    (root / ".pipezone" / "jars").symlink_to(REPO_ROOT / ".pipezone" / "jars", target_is_directory=True)


def run_property(spark: SparkSession, root: Path, source: Source, environ: dict[str, str], plan: Any) -> None:
    runtime = load_runtime(load_settings(environ=environ, cwd=root))
    clock = Clock(now=datetime.now(UTC).replace(microsecond=0) - timedelta(days=10))
    try:
        for number, ops in enumerate(plan, start=1):
            apply_batch(source, clock, ops)
            report = run_flows(runtime, list(FLOWS), in_process=True, run_id=f"r{number}", progress=lambda _: None)
            assert report.ok, [o.line for o in report.outcomes if not o.ok]
            lake = runtime.lake
            check_merge(spark, lake.silver("items_merge"), source)
            check_scd2(spark, lake.silver("items_scd2"), source)
            check_bronze(spark, lake.bronze("items_merge"))
    finally:
        if "state" in runtime.__dict__:
            runtime.state.close()


# Each example runs Spark several times: a few per suite run (derandomized, so CI is repeatable); set
# PIPEZONE_PROPERTY_EXAMPLES (and unset derandomization with PIPEZONE_PROPERTY_RANDOM=1) to search deeper.
SETTINGS = settings(
    max_examples=int(os.environ.get("PIPEZONE_PROPERTY_EXAMPLES", "2")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=os.environ.get("PIPEZONE_PROPERTY_RANDOM") != "1",
)


# Found by this test on MariaDB: a key deleted in one run and re-inserted in a later one with a cursor value
# older than the time its tombstone was stamped (the source clock runs 10 days behind here) once got a
# version overlapping the deleted one. Every suite run replays it explicitly.
REINSERTED_BEHIND_ITS_DELETE = [[("insert", 2, False)], [("delete", 0)], [("reinsert", 0)]]


@SETTINGS
@example(plan=REINSERTED_BEHIND_ITS_DELETE)
@given(plan=batches)
def test_silver_equals_the_source_after_every_run_sqlite(spark: SparkSession, tmp_path_factory: Any, plan: Any) -> None:
    root = tmp_path_factory.mktemp("sync-sqlite")
    source, connection = sqlite_source(root)
    write_project(root, connection, None)
    run_property(spark, root, source, {}, plan)


# Updates, late updates, deletes and a re-insert in runs after the first load: tombstones and re-inserts
# through each clause of the MERGE.
EVERY_CLAUSE = [
    [("insert", 6, False), ("insert", 3, True)],
    [("update", 1, False), ("update", 4, True), ("delete", 2), ("delete", 5), ("insert", 2, True)],
    [("reinsert", 0), ("update", 3, False), ("delete", 0)],
]


def test_keys_spread_over_silver_sync_through_sparks_merge_of_the_arrow_batch(
    spark: SparkSession, tmp_path_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Silver's batches as when their keys meet more of the table than delta-rs should copy: Spark's MERGE
    of the rows prepared in Arrow writes each (small_batch._marked_by_spark), and silver still equals the
    source after every run."""
    monkeypatch.setattr(small_batch, "RANGE_ROWS", 0)
    marked = []
    by_spark = small_batch._marked_by_spark
    monkeypatch.setattr(small_batch, "_marked_by_spark", lambda *a, **k: marked.append(1) or by_spark(*a, **k))
    root = tmp_path_factory.mktemp("sync-spread")
    source, connection = sqlite_source(root)
    write_project(root, connection, None)
    run_property(spark, root, source, {}, EVERY_CLAUSE)
    assert len(marked) == len(EVERY_CLAUSE) - 1  # every run after the first load


def _scratch(server: MariaDB | Postgres) -> Iterator[tuple[Any, list[str]]]:
    """The server plus the list of scratch databases the examples create (dropped at the end)."""
    created: list[str] = []
    yield server, created
    for name in created:
        server.drop_database(name)


@pytest.fixture(scope="module")
def scratch_mariadb(mariadb: MariaDB) -> Iterator[tuple[MariaDB, list[str]]]:
    yield from _scratch(mariadb)


@pytest.fixture(scope="module")
def scratch_postgres(postgres: Postgres) -> Iterator[tuple[Postgres, list[str]]]:
    yield from _scratch(postgres)


def run_on_server(spark: SparkSession, tmp_path_factory: Any, scratch: tuple[Any, list[str]], plan: Any) -> None:
    """One example on a server: the source in a fresh scratch database, state beside it where it can be."""
    server, created = scratch
    database = f"pz_test_{uuid.uuid4().hex[:10]}"
    with_state = server.kind in STATE_KINDS
    for name in (database, f"{database}_state") if with_state else (database,):
        server.create_database(name)
        created.append(name)
    root = tmp_path_factory.mktemp(f"sync-{server.kind}")
    source, connection = server_source(server, database)
    state = server.connection_yaml("state", f"{database}_state", *CREDENTIALS) if with_state else None
    write_project(root, connection, state)
    environ = {"PZ_PROP_USER": server.user, "PZ_PROP_PASSWORD": server.password}
    run_property(spark, root, source, environ, plan)


@pytest.mark.services
@settings(SETTINGS, phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(plan=batches)
def test_silver_equals_the_source_after_every_run_mariadb(
    spark: SparkSession, tmp_path_factory: Any, scratch_mariadb: tuple[MariaDB, list[str]], plan: Any
) -> None:
    run_on_server(spark, tmp_path_factory, scratch_mariadb, plan)


@pytest.mark.services
@SETTINGS
@given(plan=batches)
def test_silver_equals_the_source_after_every_run_postgres(
    spark: SparkSession, tmp_path_factory: Any, scratch_postgres: tuple[Postgres, list[str]], plan: Any
) -> None:
    run_on_server(spark, tmp_path_factory, scratch_postgres, plan)
