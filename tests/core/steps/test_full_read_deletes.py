"""Full-read flows (no `incremental`) infer deletes from the read itself: real Spark + Delta over SQLite.

A shared scenario runs five flows over two SQLite tables through phases of source changes: deletes on a
single and a composite key, re-inserts, two extracts before one bronze/silver run, an emptied table. Each
flow's silver is compared with the source after every phase (merge: deleted keys soft-deleted, their data
kept; scd2: the key's version closed), a flow without a primary key keeps today's behaviour, and every
read of the source is counted: one per extract, never a key snapshot, even with `source.deletes` set.
Then crashes at every failpoint between commits, and a bounded property: silver equals the source after
every run whatever the source does (a full-read variant of test_sync_properties.py).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipezone.core import failpoints
from pipezone.core.lake import delta_tables as dt
from pipezone.core.runs.flow_runner import RunReport, run_flows
from pipezone.core.spec.settings import load_settings
from pipezone.core.spec.source import IncrementalSpec
from pipezone.core.steps.context import StepContext
from pipezone.core.steps.events import inferred_tombstones
from pipezone.core.steps.extract import is_complete_read
from pipezone.core.steps.runtime import Runtime, load_runtime

pytestmark = pytest.mark.spark

REPO_ROOT = Path(__file__).resolve().parents[3]
TABLES = (
    "CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT, score INTEGER)",
    "CREATE TABLE pairs (region TEXT NOT NULL, code INTEGER NOT NULL, label TEXT, PRIMARY KEY (region, code))",
    "CREATE TABLE items (id INTEGER PRIMARY KEY, val TEXT, n INTEGER)",
)
KEYS = {"people": ("id",), "pairs": ("region", "code"), "items": ("id",)}
# name -> (table, primary key?, silver write mode, extra source YAML)
FLOWS = {
    "people_merge": ("people", True, "merge", "  deletes: {every: 0s}\n"),  # redundant on a full read
    "people_scd2": ("people", True, "scd2", ""),
    "pairs_merge": ("pairs", True, "merge", ""),
    "people_nokey": ("people", False, "append", ""),
}


class Scratch:
    """A project of full-read flows over one SQLite database, run in this process's Spark session."""

    def __init__(self, root: Path, spark: Any, flows: dict[str, tuple[str, bool, str, str]]) -> None:
        self.root, self.spark, self.flows = root, spark, flows
        meta = root / "metadata"
        for sub in ("connections", "flows", "profiles"):
            (meta / sub).mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(root / "source.db", isolation_level=None)
        for statement in TABLES:
            self.db.execute(statement)
        (meta / "connections" / "src.yaml").write_text(f"name: src\ntype: sqlite\npath: {root / 'source.db'}\n")
        (meta / "connections" / "lake.yaml").write_text("name: lake\ntype: local\npath: lake\n")
        (meta / "connections" / "state.yaml").write_text("name: state\ntype: sqlite\npath: state.db\n")
        (meta / "profiles" / "default.yaml").write_text(
            "name: default\nlake: lake\nstate_store: state\nspark:\n  master: local[2]\n  shuffle_partitions: 2\n"
        )
        for name, (table, keyed, mode, extra) in flows.items():
            key = f"  primary_key: [{', '.join(KEYS[table])}]\n" if keyed else ""
            text = f"name: {name}\nsource:\n  connection: src\n  table: {table}\n{key}{extra}"
            (meta / "flows" / f"{name}.yaml").write_text(text + f"layers:\n  silver:\n    write_mode: {mode}\n")
        (root / ".pipezone").mkdir(exist_ok=True)
        (root / ".pipezone" / "jars").symlink_to(REPO_ROOT / ".pipezone" / "jars", target_is_directory=True)
        self.runtime = load_runtime(load_settings(environ={}, cwd=root))

    def sql(self, statement: str, rows: list[tuple[Any, ...]] | None = None) -> None:
        if rows is None:
            self.db.execute(statement)
        else:
            self.db.executemany(statement, rows)

    def source(self, table: str) -> dict[tuple[Any, ...], tuple[Any, ...]]:
        """The table's rows now: key -> the other columns."""
        cursor = self.db.execute(f"SELECT * FROM {table}")  # noqa: S608 - a test table name
        names = [d[0] for d in cursor.description]
        keys = KEYS[table]
        return {
            tuple(r[names.index(k)] for k in keys): tuple(v for n, v in zip(names, r, strict=True) if n not in keys)
            for r in cursor.fetchall()
        }

    def run(self, run_id: str, steps: list[str] | None = None) -> RunReport:
        """Every flow of the project, in this process, quietly."""
        flows = list(self.flows)
        return run_flows(self.runtime, flows, in_process=True, run_id=run_id, steps=steps, progress=lambda _: None)

    def rows(self, layer: str, flow: str) -> list[Any]:
        lake = self.runtime.lake
        path = lake.raw(self.runtime.flow(flow)) if layer == "raw" else lake.table(layer, flow)
        return self.spark.read.format("delta").load(path).collect()

    def details(self, flow: str, step: str, run_id: str) -> dict[str, Any]:
        found = [r for r in self.runtime.state.recent_runs(flow, 100) if (r.step, r.run_id) == (step, run_id)]
        assert found and found[0].status == "success", found
        return found[0].details

    def close(self) -> None:
        self.db.close()
        if "state" in self.runtime.__dict__:
            self.runtime.state.close()


def key_of(table: str, row: Any) -> tuple[Any, ...]:
    return tuple(row[k] for k in KEYS[table])


def values_of(row: Any, table: str) -> tuple[Any, ...]:
    names = {"people": ("name", "score"), "pairs": ("label",), "items": ("val", "n")}[table]
    return tuple(row[n] for n in names)


def merge_state(rows: list[Any], flow: str, table: str) -> tuple[dict[Any, Any], dict[Any, Any]]:
    """(live rows, soft-deleted rows) of a merge silver table, key -> values; one row per key."""
    keys = [key_of(table, r) for r in rows]
    assert len(keys) == len(set(keys)), f"{flow}: a key twice in silver"
    live = {key_of(table, r): values_of(r, table) for r in rows if not r[dt.DELETED]}
    gone = {key_of(table, r): values_of(r, table) for r in rows if r[dt.DELETED]}
    assert all(r[dt.DELETED_AT] is not None for r in rows if r[dt.DELETED])
    return live, gone


def scd2_history(rows: list[Any], flow: str, table: str) -> dict[Any, list[Any]]:
    """Each key's versions in order; checks they do not overlap and at most one is current."""
    history: dict[Any, list[Any]] = {}
    for r in rows:
        history.setdefault(key_of(table, r), []).append(r)
    for key, versions in history.items():
        versions.sort(key=lambda r: (r[dt.VALID_FROM], r[dt.VALID_TO] is None))
        assert sum(1 for v in versions if v[dt.IS_CURRENT]) <= 1, f"{flow} {key}: two current versions"
        for before, after in zip(versions, versions[1:], strict=False):
            assert before[dt.VALID_TO] is not None and before[dt.VALID_TO] <= after[dt.VALID_FROM], (flow, key)
    return history


def current(history: dict[Any, list[Any]], table: str) -> dict[Any, Any]:
    return {k: values_of(v[-1], table) for k, v in history.items() if v[-1][dt.IS_CURRENT]}


# ------------------------------------------------------------------------------------------ the scenario


@dataclass
class Phase:
    silver: dict[str, list[Any]]
    source: dict[str, dict[Any, Any]]
    reads: list[tuple[str, str]]  # (flow, plan kind) of every read of the source during the phase


@dataclass
class Scenario:
    scratch: Scratch
    phases: dict[str, Phase] = field(default_factory=dict)


def counting_reads(monkeypatch: pytest.MonkeyPatch, reads: list[tuple[str, str]]) -> None:
    """Record every read of a flow's source (through the source contract), then read for real."""
    opened = Runtime.source

    def source(self: Runtime, flow: Any) -> Any:
        src = opened(self, flow)
        read, read_arrow = src.read, src.read_arrow

        def counted(spark: Any, plan: Any) -> Any:
            reads.append((flow.name, plan.kind if not plan.is_whole else "whole"))
            return read(spark, plan)

        def counted_arrow(spark: Any, plan: Any, schema: Any) -> Any:
            got = read_arrow(spark, plan, schema)
            if got is not None:
                reads.append((flow.name, "arrow"))
            return got

        src.read, src.read_arrow = counted, counted_arrow
        return src

    monkeypatch.setattr(Runtime, "source", source)


@pytest.fixture(scope="module")
def scenario(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    scratch = Scratch(tmp_path_factory.mktemp("full-read") / "project", spark, FLOWS)
    story = Scenario(scratch)
    reads: list[tuple[str, str]] = []

    def phase(name: str, *runs: tuple[str, list[str] | None]) -> None:
        """Run, then keep what the phase left (and the reads since the previous phase)."""
        for run_id, steps in runs:
            report = scratch.run(run_id, steps)
            assert report.ok, [o.line for o in report.outcomes if not o.ok]
        silver = {flow: scratch.rows("silver", flow) for flow in FLOWS}
        story.phases[name] = Phase(silver, {t: scratch.source(t) for t in ("people", "pairs")}, list(reads))
        reads.clear()

    with pytest.MonkeyPatch.context() as monkeypatch:
        counting_reads(monkeypatch, reads)
        scratch.sql("INSERT INTO people VALUES (?, ?, ?)", [(i, f"p{i}", 0) for i in (1, 2, 3, 4)])
        scratch.sql("INSERT INTO pairs VALUES (?, ?, ?)", [("eu", 1, "a"), ("eu", 2, "b"), ("us", 1, "c")])
        phase("load", ("f1", None))
        scratch.sql("DELETE FROM people WHERE id = 2")
        scratch.sql("UPDATE people SET score = 1 WHERE id = 3")
        scratch.sql("DELETE FROM pairs WHERE region = 'eu' AND code = 2")
        phase("delete", ("f2", None))
        # two extracts before one bronze/silver run: 2 is back; 1 and 4 are gone from the first read, 5 new
        scratch.sql("INSERT INTO people VALUES (2, 'again', 5)")
        scratch.sql("INSERT INTO pairs VALUES ('eu', 2, 'b2')")
        scratch.sql("DELETE FROM people WHERE id IN (1, 4)")
        scratch.sql("INSERT INTO people VALUES (5, 'p5', 0)")
        assert scratch.run("f3a", ["extract"]).ok
        scratch.sql("INSERT INTO people VALUES (1, 'back', 7)")  # ... then 1 is back and 5 gone in the second
        scratch.sql("DELETE FROM people WHERE id = 5")
        phase("two_extracts", ("f3b", ["extract"]), ("f3c", ["bronze", "silver"]))
        scratch.sql("DELETE FROM people")
        phase("emptied", ("f4", None))
    yield story
    scratch.close()


def test_a_complete_read_is_a_full_read_of_a_flow_without_incremental(scenario: Scenario) -> None:
    runtime = scenario.scratch.runtime
    flow = runtime.flow("people_merge")
    windowed = IncrementalSpec(cursor="id")  # a window (even a full refresh's): a missing key is no delete there
    incremental = flow.model_copy(update={"source": flow.source.model_copy(update={"incremental": windowed})})
    assert is_complete_read(StepContext(runtime, None, flow, "r"))
    assert not is_complete_read(StepContext(runtime, None, flow, "r", backfill=(1, 2)))
    assert not is_complete_read(StepContext(runtime, None, incremental, "r", full_refresh=True))
    for name in FLOWS:  # flows over one table share its raw table: one commit per extract run
        commits = dt.commits_with_metadata(scenario.scratch.spark, runtime.lake.raw(runtime.flow(name)))
        assert len(commits) == 5 and all(c["complete"] is True for c in commits), name


GONE = [("people_merge", (2,)), ("pairs_merge", ("eu", 2)), ("people_scd2", (2,))]


@pytest.mark.parametrize(("flow", "gone"), GONE)
def test_a_deleted_key_becomes_a_tombstone_in_silver(scenario: Scenario, flow: str, gone: Any) -> None:
    """merge: the row is flagged and keeps its data; scd2: the key's version is closed, none is current."""
    table = FLOWS[flow][0]
    load, delete = scenario.phases["load"], scenario.phases["delete"]
    if FLOWS[flow][2] == "merge":
        live, deleted = merge_state(delete.silver[flow], flow, table)
        assert live == delete.source[table]
        assert deleted == {gone: load.source[table][gone]}
    else:
        history = scd2_history(delete.silver[flow], flow, table)
        assert current(history, table) == delete.source[table]
        closed = history[gone][-1]
        assert not closed[dt.IS_CURRENT] and closed[dt.DELETED] and closed[dt.VALID_TO] is not None


@pytest.mark.parametrize(("flow", "back"), GONE)
def test_a_reinserted_key_is_live_again(scenario: Scenario, flow: str, back: Any) -> None:
    table = FLOWS[flow][0]
    phase = scenario.phases["two_extracts"]
    if FLOWS[flow][2] == "merge":
        live, _ = merge_state(phase.silver[flow], flow, table)
        assert live == phase.source[table]
        assert live[back] == (("again", 5) if table == "people" else ("b2",))
    else:
        history = scd2_history(phase.silver[flow], flow, table)
        assert current(history, table) == phase.source[table]
        assert [v[dt.DELETED] for v in history[back]] == [True, False], "closed as deleted, then a new version"


def test_two_extracts_before_one_bronze_and_silver_run(scenario: Scenario) -> None:
    """1 and 4 missing from the first read, 1 back in the second; 5 only in the first: never live in silver."""
    two = scenario.phases["two_extracts"]
    people = two.source["people"]
    assert set(people) == {(1,), (2,), (3,)}
    live, deleted = merge_state(two.silver["people_merge"], "people_merge", "people")
    assert live == people and set(deleted) == {(4,)}
    history = scd2_history(two.silver["people_scd2"], "people_scd2", "people")
    assert current(history, "people") == people and (5,) not in history
    assert history[(4,)][-1][dt.DELETED] and not history[(4,)][-1][dt.IS_CURRENT]
    details = scenario.scratch.details("people_merge", "bronze", "f3c")
    assert details["complete_reads"] == [3, 4] and details["batches"] == [3, 4]


def test_an_emptied_table_tombstones_every_live_key(scenario: Scenario) -> None:
    """An empty complete read is what the source says: every key it held is deleted."""
    emptied = scenario.phases["emptied"]
    assert emptied.source["people"] == {}
    live, deleted = merge_state(emptied.silver["people_merge"], "people_merge", "people")
    # each row keeps the data it had when it was last live
    assert live == {} and deleted == {(1,): ("back", 7), (2,): ("again", 5), (3,): ("p3", 1), (4,): ("p4", 0)}
    history = scd2_history(emptied.silver["people_scd2"], "people_scd2", "people")
    assert current(history, "people") == {} and all(v[-1][dt.DELETED] for v in history.values())
    raw = [r for r in scenario.scratch.rows("raw", "people_merge") if r[dt.BATCH] == 5]
    assert raw == [], "raw keeps the read as it was: no rows, no tombstones"
    # an unchanged table read again: nothing new, nothing deleted
    pairs = scenario.phases["two_extracts"].silver["pairs_merge"]
    assert sorted(map(str, emptied.silver["pairs_merge"])) == sorted(map(str, pairs))


def test_a_flow_without_primary_key_keeps_todays_behaviour(scenario: Scenario) -> None:
    """No key, no identity: nothing is inferred; silver `append` keeps every row it was given."""
    scratch = scenario.scratch
    for layer in ("bronze", "silver"):
        assert not any(r[dt.DELETED] for r in scratch.rows(layer, "people_nokey")), layer
    ids = {r["id"] for r in scenario.phases["emptied"].silver["people_nokey"]}
    assert ids == {1, 2, 3, 4, 5}, "deleted rows stay, as without inference"


def test_the_source_is_read_once_per_run_without_a_key_snapshot(scenario: Scenario) -> None:
    """One read of the whole table per extract run, whatever flows share it, never a key snapshot."""
    for name, phase in scenario.phases.items():
        extracts = 2 if name == "two_extracts" else 1
        tables = [FLOWS[flow][0] for flow, _ in phase.reads]
        assert sorted(tables) == sorted(["people", "pairs"] * extracts), name
        assert {kind for _, kind in phase.reads} == {"whole"}, name
    # `source.deletes` on a full-read flow would scan every key a second time: it is ignored
    for run_id in ("f1", "f2", "f3a", "f3b", "f4"):
        details = scenario.scratch.details("people_merge", "extract", run_id)
        assert (details["key_snapshot"], details["complete"]) == (False, True), run_id


# ------------------------------------------------------------------------------------------ the inference itself


def _events(spark: Any, rows: list[tuple[Any, int, bool]]) -> Any:
    return spark.createDataFrame(rows, f"k string, {dt.BATCH} long, {dt.DELETED} boolean")


def _tombstones(frame: Any) -> set[tuple[Any, int]]:
    rows = frame.collect()
    assert all(r[dt.DELETED] for r in rows) and len(rows) == len({(r["k"], r[dt.BATCH]) for r in rows}), rows
    return {(r["k"], r[dt.BATCH]) for r in rows}


def test_inferred_tombstones_compare_each_complete_read_with_what_came_since_the_one_before(spark: Any) -> None:
    """Batches 1-3 all complete (a key twice, as a query may read it; a NULL key): the one-anti-join path
    and the general aggregation agree, each missing key once, a key back in a later read not deleted."""
    events = _events(
        spark,
        [("a", 1, False), ("b", 1, False), ("c", 1, False), (None, 1, False)]
        + [("a", 2, False), ("c", 2, False), ("d", 2, False), ("d", 2, False)]
        + [("a", 3, False), ("b", 3, False), ("d", 3, False)],
    )
    expected = {("b", 2), (None, 2), ("c", 3)}
    assert _tombstones(inferred_tombstones(events, ["k"], [2, 3], after=1)) == expected  # chained
    assert _tombstones(inferred_tombstones(events, ["k"], [2, 3])) == expected  # general


def test_inferred_tombstones_follow_every_event_between_complete_reads(spark: Any) -> None:
    """Batch 2 is a window with a key snapshot's tombstone: b is already deleted, c is new; batch 3 is complete."""
    events = _events(
        spark, [("a", 1, False), ("b", 1, False), ("b", 2, True), ("c", 2, False), ("c", 3, False), ("e", 4, False)]
    )
    assert _tombstones(inferred_tombstones(events, ["k"], [3])) == {("a", 3)}
    assert _tombstones(inferred_tombstones(events, ["k"], [3], after=1)) == {("a", 3)}  # 2 is no complete read


# ------------------------------------------------------------------------------------------ crashes


class Crash(Exception):  # noqa: N818 - it stands for a kill
    """A kill at a failpoint, simulated in this process: nothing after the point runs, the step fails."""


# Where a tombstone could be lost (before a commit) or written twice (after a commit, before the state).
CRASH_POINTS = (
    "extract.after_commit",
    "bronze.before_commit",
    "bronze.after_commit",
    "bronze.state_update",
)


@pytest.fixture(scope="module")
def crashing(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scratch]:
    scratch = Scratch(tmp_path_factory.mktemp("crashes") / "project", spark, {"people": FLOWS["people_merge"]})
    scratch.sql("INSERT INTO people VALUES (?, ?, ?)", [(i, f"p{i}", 0) for i in range(1, 10)])
    assert scratch.run("c0").ok
    yield scratch
    scratch.close()


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_step_killed_between_commits_neither_loses_nor_duplicates_a_tombstone(
    crashing: Scratch, point: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each cycle deletes one more key and brings back the one deleted before; the run dies at `point`,
    a rerun with a new run id completes it. Every key is deleted once: bronze holds one tombstone for it."""
    scratch, cycle = crashing, CRASH_POINTS.index(point) + 1
    scratch.sql(f"DELETE FROM people WHERE id = {cycle}")
    if cycle > 1:
        scratch.sql(f"INSERT INTO people VALUES ({cycle - 1}, 'back', {cycle})")

    def die(name: str) -> None:
        if name == point:
            raise Crash(name)

    monkeypatch.setattr(failpoints, "reach", die)
    killed = scratch.run(f"k{cycle}")
    assert [o.step for o in killed.outcomes if not o.ok] == [point.split(".")[0]]
    monkeypatch.undo()
    rerun = scratch.run(f"r{cycle}")
    assert rerun.ok, [o.line for o in rerun.outcomes if not o.ok]

    live, deleted = merge_state(scratch.rows("silver", "people"), "people", "people")
    assert live == scratch.source("people") and set(deleted) == {(cycle,)}
    tombstones = sorted(r["id"] for r in scratch.rows("bronze", "people") if r[dt.DELETED])
    assert tombstones == list(range(1, cycle + 1)), "one tombstone per deleted key, none lost, none twice"


# ------------------------------------------------------------------------------------------ the property

# One batch of source changes: ("insert", count), ("update", pick), ("delete", pick), ("reinsert", pick),
# ("empty",); `pick` chooses among existing (or deleted) keys by index modulo their number. Each batch is
# extracted; bronze and silver run after it or not (then the next run consumes two complete reads).
operation = st.one_of(
    st.tuples(st.just("insert"), st.integers(1, 4)),
    st.tuples(st.just("update"), st.integers(0, 1000)),
    st.tuples(st.just("delete"), st.integers(0, 1000)),
    st.tuples(st.just("reinsert"), st.integers(0, 1000)),
    st.tuples(st.just("empty")),
)
plans = st.lists(st.tuples(st.lists(operation, min_size=1, max_size=6), st.booleans()), min_size=2, max_size=3)
PROPERTY_FLOWS = {"items_merge": ("items", True, "merge", ""), "items_scd2": ("items", True, "scd2", "")}


@dataclass
class Items:
    """A model of the `items` table: what silver must equal."""

    rows: dict[tuple[int], tuple[str, int]] = field(default_factory=dict)
    deleted: list[int] = field(default_factory=list)
    next_key: int = 1

    def apply(self, scratch: Scratch, op: tuple[Any, ...]) -> None:
        kind, keys = op[0], sorted(self.rows)
        if kind == "insert":
            for _ in range(op[1]):
                self.upsert(scratch, self.next_key, f"v{self.next_key}", 0)
                self.next_key += 1
        elif kind == "update" and keys:
            (key,) = keys[op[1] % len(keys)]
            self.upsert(scratch, key, self.rows[(key,)][0], self.rows[(key,)][1] + 1)
        elif kind == "delete" and keys:
            (key,) = keys[op[1] % len(keys)]
            scratch.sql(f"DELETE FROM items WHERE id = {key}")
            del self.rows[(key,)]
            self.deleted.append(key)
        elif kind == "reinsert" and self.deleted:
            self.upsert(scratch, self.deleted.pop(op[1] % len(self.deleted)), "again", 100)
        elif kind == "empty":
            scratch.sql("DELETE FROM items")
            self.deleted += [key for (key,) in keys]
            self.rows.clear()

    def upsert(self, scratch: Scratch, key: int, val: str, n: int) -> None:
        scratch.sql("INSERT OR REPLACE INTO items VALUES (?, ?, ?)", [(key, val, n)])
        self.rows[(key,)] = (val, n)


PROPERTY = settings(
    max_examples=int(os.environ.get("PIPEZONE_PROPERTY_EXAMPLES", "2")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=os.environ.get("PIPEZONE_PROPERTY_RANDOM") != "1",
)


@PROPERTY
@given(plan=plans)
def test_full_read_silver_equals_the_source_after_every_run(spark: Any, tmp_path_factory: Any, plan: Any) -> None:
    scratch = Scratch(tmp_path_factory.mktemp("full-read-sync") / "project", spark, PROPERTY_FLOWS)
    model = Items()
    try:
        for number, (ops, consume) in enumerate(plan, start=1):
            for op in ops:
                model.apply(scratch, op)
            last = number == len(plan)
            report = scratch.run(f"p{number}", None if consume or last else ["extract"])
            assert report.ok, [o.line for o in report.outcomes if not o.ok]
            if consume or last:
                live, deleted = merge_state(scratch.rows("silver", "items_merge"), "items_merge", "items")
                assert live == model.rows and set(deleted).isdisjoint(model.rows)
                history = scd2_history(scratch.rows("silver", "items_scd2"), "items_scd2", "items")
                assert current(history, "items") == model.rows
    finally:
        scratch.close()
