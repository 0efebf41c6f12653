"""CDC benchmark: changes per second end to end (source commit -> raw -> bronze -> silver) for N row changes,
next to the database's own tool reading the same changes from its log, and the latency of one change.

Per server (MariaDB, PostgreSQL): a table of N/2 rows is snapshotted by a CDC flow (`source.cdc`,
`max_changes` 250,000, silver `merge`); then N row changes are committed in 10,000-row transactions
(N/2 updates of non-key columns, N/4 inserts, N/4 deletes, interleaved). The physical reference reads
exactly those changes from the log to /dev/null: `mariadb-binlog --read-from-remote-server --verbose
--base64-output=DECODE-ROWS` from the position before the first change, and `pg_recvlogical` on a slot
(wal2json, the options PipeZone's reader uses) created before the first change, up to the LSN after the
last. PipeZone's catch-up is `pipezone run FLOW --in-process` repeated until a run finds no new change;
its time is the sum of those runs (process, JVM and Spark start included). `pipezone verify` then checks
silver against the source. Latency: one row updated, then one run (as the next scheduled run would do)
with the spark-submit and spark-connect launchers.
"""

from __future__ import annotations

import os
import time
from typing import Any

from harness import TABLE_ROWS as MARIADB_ROWS
from harness import VENV_BIN, MariaDB, Project, measured
from incremental import PROFILE, flow_run
from pg_source import TABLE_ROWS as POSTGRES_ROWS
from pg_source import Postgres

TABLE = "cdc_events"
CHUNK = 10_000  # rows per source transaction
MAX_CHANGES = 250_000
REFERENCE_SLOT = "pz_bench_reference"
FLOW = """\
name: {name}
source:
  connection: {connection}
  table: {table}
  primary_key: [id]
  cdc:
    max_changes: {max_changes}
    max_seconds: 10m
layers:
  silver:
    write_mode: merge
schedule: "* * * * *"
"""
CONNECTIONS = {"mariadb": "bench_source", "postgres": "bench_pg_source"}


def change_statements(kind: str, changes: int) -> list[str]:
    """`changes` row changes in CHUNK-row transactions over ids 1..changes/2: every row updated once, the
    lower half deleted after its update, as many new rows inserted above."""
    rows = changes // 2
    template = (
        MARIADB_ROWS.replace("seq_1_to_{rows}", "seq_{first}_to_{last}")
        if kind == "mariadb"
        else POSTGRES_ROWS.replace("generate_series(1, {rows})", "generate_series({first}, {last})")
    )
    statements = []
    for i in range(changes // (4 * CHUNK)):
        for half in (0, 1):
            low = 2 * CHUNK * i + half * CHUNK + 1
            where = f"id BETWEEN {low} AND {low + CHUNK - 1}"
            statements.append(f"UPDATE {TABLE} SET quantity = quantity + 1, status = 'paid' WHERE {where}")
        first = rows + CHUNK * i + 1
        statements.append(template.format(table=TABLE, first=first, last=first + CHUNK - 1))
        statements.append(f"DELETE FROM {TABLE} WHERE id BETWEEN {CHUNK * i + 1} AND {CHUNK * (i + 1)}")
    return statements


def write_flow(project: Project, kind: str) -> str:
    name = f"bench_cdc_{kind}"
    text = FLOW.format(name=name, connection=CONNECTIONS[kind], table=TABLE, max_changes=MAX_CHANGES)
    (project.root / "metadata" / "flows" / f"{name}.yaml").write_text(text)
    return name


def drop_slot(server: Postgres, slot: str) -> None:
    server.execute(f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{slot}'")


class MariaDbLog:
    """The MariaDB side: its binlog head and `mariadb-binlog` as the reference reader."""

    def __init__(self, server: MariaDB) -> None:
        self.server = server

    def prepare(self) -> None:
        pass

    def mark(self) -> tuple[str, int]:
        file, pos = self.server.execute("SHOW MASTER STATUS")[0][:2]
        return str(file), int(pos)

    def reference(self, start: tuple[str, int], end: tuple[str, int]) -> dict[str, Any]:
        s = self.server
        cmd = [
            "mariadb-binlog",
            "--read-from-remote-server",
            f"--host={s.host}",
            f"--port={s.port}",
            f"--user={s.user}",
            "--to-last-log",
            f"--start-position={start[1]}",
            "--base64-output=DECODE-ROWS",
            "--verbose",
            start[0],
        ]
        m = measured(cmd, env=s.client_env(), discard_stdout=True).check("mariadb-binlog")
        return {"tool": "mariadb-binlog -R --verbose --base64-output=DECODE-ROWS > /dev/null", "seconds": m.seconds}


class PostgresLog:
    """The PostgreSQL side: a reference slot made before the changes and `pg_recvlogical` reading it."""

    def __init__(self, server: Postgres) -> None:
        self.server = server

    def prepare(self) -> None:
        self.drop_slot()
        self.server.execute(f"SELECT pg_create_logical_replication_slot('{REFERENCE_SLOT}', 'wal2json')")

    def drop_slot(self) -> None:
        drop_slot(self.server, REFERENCE_SLOT)

    def mark(self) -> str:
        return str(self.server.execute("SELECT pg_current_wal_lsn()::text")[0][0])

    def reference(self, start: str, end: str) -> dict[str, Any]:
        s = self.server
        options = ["format-version=2", "include-transaction=1", "include-timestamp=1", "include-lsn=1"]
        options += ["include-type-oids=1", f"add-tables=public.{TABLE}"]
        cmd = ["pg_recvlogical", "-h", s.host, "-p", str(s.port), "-U", s.user, "-d", "pz_bench"]
        cmd += ["-S", REFERENCE_SLOT, "--start", f"--endpos={end}", "--no-loop", "-f", "/dev/null"]
        cmd += [arg for option in options for arg in ("-o", option)]
        try:
            m = measured(cmd, env={**os.environ, "PGPASSWORD": s.password}).check("pg_recvlogical")
        finally:
            self.drop_slot()
        return {"tool": "pg_recvlogical (wal2json, format 2) -f /dev/null", "seconds": m.seconds}


def run(kind: str, server: MariaDB | Postgres, project: Project, changes: int) -> list[dict[str, Any]]:
    """Snapshot, N changes, the reference read, PipeZone's catch-up, verify, single-change latency."""
    log = MariaDbLog(server) if isinstance(server, MariaDB) else PostgresLog(server)
    base = {"bench": "cdc", "source": kind, "changes": changes}
    flow = write_flow(project, kind)
    server.ensure_database()
    if isinstance(log, PostgresLog):  # an earlier run's slot: the new snapshot makes its own
        drop_slot(log.server, f"pipezone_{flow}")
    server.execute(*server.generate(TABLE, changes // 2))
    project.wipe(flow, TABLE)
    snapshot = flow_run(project, flow, "in-process")
    results = [base | {"phase": "snapshot", "rows": changes // 2, **snapshot}]
    _say(kind, f"snapshot of {changes // 2:,} rows through silver: {snapshot['seconds']:.1f} s")

    log.prepare()
    start = log.mark()
    started = time.perf_counter()
    server.execute(*change_statements(kind, changes))
    results.append(base | {"phase": "generate", "seconds": round(time.perf_counter() - started, 3)})
    end = log.mark()
    reference = log.reference(start, end)  # type: ignore[arg-type]
    results.append(base | {"phase": "reference", **reference, "changes_per_s": changes / reference["seconds"]})
    _say(kind, f"{reference['tool']}: {reference['seconds']:.1f} s")

    results.append(base | _catch_up(project, flow, changes))
    check = measured([str(VENV_BIN / "pipezone"), "verify", flow], env=project.env(PROFILE), cwd=project.root)
    results.append(base | {"phase": "verify", "seconds": check.seconds, "clean": check.returncode == 0})
    _say(kind, f"pipezone verify: exit {check.returncode} in {check.seconds:.1f} s")
    if check.returncode != 0:
        raise SystemExit(f"bench: silver differs from the source after the catch-up:\n{check.stdout[-2000:]}")
    results += _latency(kind, server, project, flow)
    return [r | {"server_version": _version(server)} for r in results]


def _catch_up(project: Project, flow: str, changes: int) -> dict[str, Any]:
    runs = []
    while True:
        result = flow_run(project, flow, "in-process")
        if not result["rows_read"].get("extract"):
            break
        runs.append(result)
        _say(flow, f"run {len(runs)}: {result['rows_read']['extract']:,} changes in {result['seconds']:.1f} s")
    read = sum(r["rows_read"]["extract"] for r in runs)
    if read != changes:
        raise SystemExit(f"bench: {flow} read {read:,} changes, {changes:,} were made")
    seconds = sum(r["seconds"] for r in runs)
    return {"phase": "catch_up", "seconds": round(seconds, 3), "changes_per_s": changes / seconds, "runs": runs}


def _latency(kind: str, server: MariaDB | Postgres, project: Project, flow: str) -> list[dict[str, Any]]:
    """One row updated, then the run the schedule would start: commit -> silver, per launcher."""
    out = []
    for launcher in ("spark-submit", "spark-connect"):
        with project.connect_server(launcher == "spark-connect"):
            for sample in range(2):
                key = server.execute(f"SELECT MIN(id) FROM {TABLE}")[0][0]
                server.execute(f"UPDATE {TABLE} SET quantity = quantity + 1 WHERE id = {key}")
                committed = time.perf_counter()
                result = flow_run(project, flow, launcher)
                seconds = time.perf_counter() - committed
                if result["rows_read"].get("extract") != 1:
                    raise SystemExit(f"bench: {flow} read {result['rows_read']} after one change")
                out.append({"phase": "latency", "launcher": launcher, "sample": sample, **result, "seconds": seconds})
                _say(kind, f"one change, {launcher}: in silver {seconds:.1f} s after its commit")
    return [{"bench": "cdc", "source": kind, **r} for r in out]


def _version(server: MariaDB | Postgres) -> str:
    return str(server.execute("SELECT VERSION()")[0][0])


def _say(what: str, text: str) -> None:
    print(f"bench: cdc {what}: {text}", flush=True)
