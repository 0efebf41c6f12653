"""Property: whatever the source does and wherever a run dies, a CDC flow's silver equals the source.

Hypothesis draws rounds of source changes on a live MariaDB and PostgreSQL table: inserts, updates of a
non-key column, primary-key updates, deletes, re-inserts of deleted keys and (once) a column added while
streaming. After a round's changes, a run may be SIGKILLed at one of the failpoints (the extract before its
commit, after it, inside the state update; bronze or silver after their commit), then the flow runs again.
After every completed run silver's live rows are the source's rows, and at the end `pipezone verify`
finds the flow clean.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from test_cdc_flow import execute, project, run, run_killed

from pipezone.core.lake import delta_tables as dt
from pipezone.core.steps.verify import verify_flow

pytestmark = [pytest.mark.spark, pytest.mark.services]

DDL = {
    "mariadb": "CREATE TABLE {t} (id INT PRIMARY KEY, val VARCHAR(40), n INT)",
    "postgres": "CREATE TABLE {t} (id integer PRIMARY KEY, val varchar(40), n integer)",
}
ADD_COLUMN = "ALTER TABLE {t} ADD COLUMN extra VARCHAR(20)"
KILLS = ("extract.before_commit", "extract.after_commit", "extract.state_update", "bronze.after_commit")
KILLS += ("silver.after_commit",)

operation = st.one_of(
    st.tuples(st.just("insert"), st.integers(1, 4)),
    st.tuples(st.just("update"), st.integers(0, 100)),
    st.tuples(st.just("rekey"), st.integers(0, 100)),
    st.tuples(st.just("delete"), st.integers(0, 100)),
    st.tuples(st.just("reinsert"), st.integers(0, 100)),
    st.tuples(st.just("add_column"), st.just(0)),
)
rounds = st.lists(
    st.tuples(st.lists(operation, min_size=1, max_size=6), st.none() | st.sampled_from(KILLS)), min_size=2, max_size=3
)

SETTINGS = settings(
    max_examples=int(os.environ.get("PIPEZONE_PROPERTY_EXAMPLES", "1")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=os.environ.get("PIPEZONE_PROPERTY_RANDOM") != "1",
    # No shrinking: an example is minutes of runs, and a failing plan of 2-3 rounds is short already.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)


class Table:
    """The source table and a model of it: key -> (val, n, extra)."""

    def __init__(self, conn: Any, name: str) -> None:
        self.conn, self.name = conn, name
        self.rows: dict[int, tuple[Any, ...]] = {}
        self.deleted: list[int] = []
        self.next_key = 1
        self.extra = False

    def apply(self, op: tuple[str, int]) -> None:
        kind, pick = op
        t = self.name
        keys = sorted(self.rows)
        if kind == "insert":
            for _ in range(pick):
                self._insert(self.next_key, f"v{self.next_key}")
                self.next_key += 1
        elif kind == "update" and keys:
            key = keys[pick % len(keys)]
            val, n, extra = self.rows[key]
            change = f", extra = 'x{n + 1}'" if self.extra else ""
            execute(self.conn, f"UPDATE {t} SET n = {n + 1}{change} WHERE id = {key}")
            self.rows[key] = (val, n + 1, f"x{n + 1}" if self.extra else extra)
        elif kind == "rekey" and keys:
            key, new = keys[pick % len(keys)], self.next_key + 1000
            self.next_key += 1
            execute(self.conn, f"UPDATE {t} SET id = {new} WHERE id = {key}")
            self.rows[new] = self.rows.pop(key)
        elif kind == "delete" and keys:
            key = keys[pick % len(keys)]
            execute(self.conn, f"DELETE FROM {t} WHERE id = {key}")
            del self.rows[key]
            self.deleted.append(key)
        elif kind == "reinsert" and self.deleted:
            key = self.deleted.pop(pick % len(self.deleted))
            self._insert(key, f"again{key}")
        elif kind == "add_column" and not self.extra:
            execute(self.conn, ADD_COLUMN.format(t=t))
            self.extra = True

    def _insert(self, key: int, val: str) -> None:
        execute(self.conn, f"INSERT INTO {self.name} (id, val, n) VALUES ({key}, '{val}', 0)")
        self.rows[key] = (val, 0, None)


def silver(spark: Any, runtime: Any, flow: str, extra: bool) -> dict[int, tuple[Any, ...]]:
    rows = spark.read.format("delta").load(runtime.lake.silver(flow)).filter(f"NOT `{dt.DELETED}`").collect()
    return {r["id"]: (r["val"], r["n"], r["extra"] if extra else None) for r in rows}


# Every suite run also replays this plan: a column added between two updates of one batch, the extract
# killed after its commit, silver killed after its commit, a key updated and a deleted key re-inserted.
EXPLICIT = [
    ([("update", 0), ("add_column", 0), ("update", 1), ("rekey", 1)], "extract.after_commit"),
    ([("delete", 0), ("reinsert", 0), ("update", 2)], "silver.after_commit"),
]


@SETTINGS
@example(plan=EXPLICIT)
@given(plan=rounds)
def test_silver_equals_the_source_whatever_changes_and_kills(
    spark: Any, cdc_source: tuple[Any, str, Any], tmp_path_factory: Any, plan: Any
) -> None:
    server, database, conn = cdc_source
    name = f"items_{uuid.uuid4().hex[:8]}"
    execute(conn, DDL[server.kind].format(t=name))
    table = Table(conn, name)
    table.apply(("insert", 3))
    root: Path = tmp_path_factory.mktemp("cdc-property")
    runtime = project(root, server, database, {name: ("merge", 1000)})
    env = {**os.environ, "PZ_CDC_USER": server.user, "PZ_CDC_PASSWORD": server.password}
    try:
        run(runtime, [name], "load")
        for number, (ops, kill) in enumerate(plan):
            for op in [*ops, ("insert", 1)]:  # a new row at least: every step has a batch, every point is reached
                table.apply(op)
            if kill is not None:
                run_killed(root, name, env, kill)
            run(runtime, [name], f"round-{number}")
            assert silver(spark, runtime, name, table.extra) == table.rows, (number, kill)
        report = verify_flow(runtime, spark, runtime.flow(name))
        assert report.status == "clean", report.summary()
    finally:
        runtime.state.close()
        if server.kind == "postgres":  # each example's flow has its own slot, which holds WAL: drop it
            execute(
                conn,
                f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'pipezone_{name}'",
            )
