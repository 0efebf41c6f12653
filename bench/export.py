"""Export benchmark: a silver table of N rows sent to PostgreSQL and to MariaDB (`exports:`), next to each
database's own bulk load of the same rows.

The bench's MariaDB table `orders_<N>` (12 mixed-type columns) is loaded through silver by a flow with two
exports, `pg` (PostgreSQL, `replace`) and `mariadb` (MariaDB, `replace`). **PipeZone** is `pipezone export
FLOW --name X --in-process`: a process, a JVM, a Spark session, the Delta read, the Arrow collect, the bulk
load into a staging table (COPY / LOAD DATA LOCAL INFILE) and the swap with the export's marker, in one
transaction. The step's own phases come from the run history. The **physical reference** loads the same
rows into an empty table of the same definition with the database's client: the exported table is dumped
to a file first (not timed), then `psql \\copy ... FROM` (text format) and `mariadb --local-infile`
`LOAD DATA LOCAL INFILE` (tab-separated, \\N for NULL), each in a fresh client process.
Then M rows change in the source and the flow runs again: an `upsert` export sends only those M changed
keys (Delta's change data feed), timed the same way.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from harness import DATABASE, VENV_BIN, MariaDB, Project, measured
from incremental import PROFILE, change, flow_run
from pg_source import Postgres

TARGET = "export_orders"
REFERENCE = "export_reference"
FLOW = """\
name: {name}
source:
  connection: bench_source
  table: {table}
  primary_key: [id]
  incremental:
    cursor: updated_at
  read:
    num_partitions: 2
layers:
  silver:
    write_mode: merge
exports:
  - connection: bench_pg_dest
    table: {target}
    mode: {mode}
    name: pg
  - connection: bench_mariadb_dest
    table: {target}
    mode: {mode}
    name: mariadb
schedule: "@daily"
"""
DESTINATIONS = """\
name: bench_pg_dest
type: postgres
host: 127.0.0.1
port: {pg_port}
database: {database}
user: pipezone
password: ${{env:PIPEZONE_BENCH_PG_PASSWORD}}
---
name: bench_mariadb_dest
type: mariadb
host: {mariadb_host}
port: {mariadb_port}
database: {database}_export
user: {mariadb_user}
password: ${{env:PIPEZONE_BENCH_SOURCE_PASSWORD}}
"""


def write_project(project: Project, table: str, mode: str) -> str:
    """The flow and its two destination connections in the bench project."""
    name = f"bench_export_{table}"
    source = project.source
    files = DESTINATIONS.format(
        pg_port=os.environ.get("PIPEZONE_POSTGRES_PORT") or 5433,
        database=DATABASE,
        mariadb_host=source.host,
        mariadb_port=source.port,
        mariadb_user=source.user,
    ).split("---\n")
    for text in files:
        connection = text.split("\n", 1)[0].removeprefix("name: ")
        (project.root / "metadata" / "connections" / f"{connection}.yaml").write_text(text)
    flow = FLOW.format(name=name, table=table, target=TARGET, mode=mode)
    (project.root / "metadata" / "flows" / f"{name}.yaml").write_text(flow)
    return name


def run(source: MariaDB, postgres: Postgres, project: Project, rows: int, changed: int) -> list[dict[str, Any]]:
    """Silver of N rows; replace into both databases and their references; M changes; upsert of the changes."""
    table = source.ensure_table(rows)
    postgres.ensure_database()
    source.execute(f"DROP DATABASE IF EXISTS {DATABASE}_export", f"CREATE DATABASE {DATABASE}_export", database=None)
    postgres.execute(
        f"DROP TABLE IF EXISTS {TARGET}", f"DROP TABLE IF EXISTS {REFERENCE}", "DROP TABLE IF EXISTS pipezone_exports"
    )
    flow = write_project(project, table, "replace")
    project.wipe(flow, table)
    loaded = flow_run(project, flow, "in-process", steps="extract,bronze,silver")
    _say(flow, f"{rows:,} rows through silver in {loaded['seconds']:.1f} s")
    base = {"bench": "export", "rows": rows}
    results = []
    for name, reference in (("pg", PostgresReference(postgres)), ("mariadb", MariaDbReference(source))):
        exported = export_run(project, flow, name)
        if exported["rows_written"] != rows:
            raise SystemExit(f"bench: export {name} wrote {exported['rows_written']:,} rows, silver has {rows:,}")
        results.append(base | {"destination": name, "phase": "replace", **exported})
        _say(name, f"replace of {rows:,} rows: {exported['seconds']:.1f} s ({exported['phases_s']})")
        ref = reference.load(rows)
        results.append(base | {"destination": name, "phase": "reference", **ref})
        _say(name, f"{ref['tool']}: {ref['seconds']:.1f} s")

    write_project(project, table, "upsert")
    for name in ("pg", "mariadb"):  # the first upsert export sends the whole table; the next only the changes
        export_run(project, flow, name)
    change(source, table, rows, changed, 0)
    flow_run(project, flow, "in-process", steps="extract,bronze,silver")
    for name in ("pg", "mariadb"):
        exported = export_run(project, flow, name)
        if exported["rows_written"] != changed:
            raise SystemExit(f"bench: upsert {name} wrote {exported['rows_written']:,} rows, {changed:,} changed")
        results.append(base | {"destination": name, "phase": "upsert_changes", "changed": changed, **exported})
        _say(name, f"upsert of {changed:,} changed rows: {exported['seconds']:.1f} s")
    versions = {"pg": postgres.version(), "mariadb": source.execute("SELECT VERSION()")[0][0]}
    return [r | {"server_version": versions[r["destination"]]} for r in results]


def export_run(project: Project, flow: str, name: str) -> dict[str, Any]:
    """`pipezone export FLOW --name NAME --in-process`, timed from outside, with the step's run history."""
    cmd = [str(VENV_BIN / "pipezone"), "export", flow, "--name", name, "--in-process"]
    m = measured(cmd, env=project.env(PROFILE), cwd=project.root).check(f"pipezone export {flow} --name {name}")
    log = [entry for entry in project.step_logs() if entry["step"] == f"export_{name}"][-1]
    return {
        "seconds": round(m.seconds, 3),
        "peak_rss_mb": round(m.peak_rss_mb),
        "step_s": log["details"].get("duration_s"),
        "phases_s": log["details"].get("phases_s"),
        "rows_written": log["rows_written"],
    }


class PostgresReference:
    """`psql \\copy FROM` of the exported rows into an empty table LIKE the exported one."""

    def __init__(self, server: Postgres) -> None:
        self.server = server

    def load(self, rows: int) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="pz-bench-export-") as folder:
            dump = Path(folder) / "rows.txt"
            self.psql(f"\\copy {TARGET} TO '{dump}'").check("psql \\copy TO")
            self.server.execute(
                f"DROP TABLE IF EXISTS {REFERENCE}", f"CREATE TABLE {REFERENCE} (LIKE {TARGET} INCLUDING ALL)"
            )
            m = self.psql(f"\\copy {REFERENCE} FROM '{dump}'").check("psql \\copy FROM")
        _check_count(self.server.execute(f"SELECT COUNT(*) FROM {REFERENCE}")[0][0], rows, "psql \\copy FROM")
        self.server.execute(f"DROP TABLE {REFERENCE}")
        return {"tool": "psql \\copy FROM (text format)", "seconds": round(m.seconds, 3)}

    def psql(self, command: str) -> Any:
        s = self.server
        cmd = ["psql", "-h", s.host, "-p", str(s.port), "-U", s.user, "-d", DATABASE, "-v", "ON_ERROR_STOP=1"]
        return measured([*cmd, "-c", command], env={**os.environ, "PGPASSWORD": s.password})


class MariaDbReference:
    """`mariadb --local-infile` `LOAD DATA LOCAL INFILE` of the exported rows into a table LIKE the exported one."""

    def __init__(self, server: MariaDB) -> None:
        self.server = server

    def load(self, rows: int) -> dict[str, Any]:
        database = f"{DATABASE}_export"
        with tempfile.TemporaryDirectory(prefix="pz-bench-export-") as folder:
            dump = Path(folder) / "rows.tsv"
            self._dump(database, dump)
            self.server.execute(
                f"DROP TABLE IF EXISTS {REFERENCE}", f"CREATE TABLE {REFERENCE} LIKE {TARGET}", database=database
            )
            s = self.server
            cmd = ["mariadb", "--local-infile=1", f"--host={s.host}", f"--port={s.port}", f"--user={s.user}"]
            load = f"LOAD DATA LOCAL INFILE '{dump}' INTO TABLE {REFERENCE} CHARACTER SET utf8mb4"
            m = measured([*cmd, database, "-e", load], env=s.client_env()).check("mariadb LOAD DATA")
        count = self.server.execute(f"SELECT COUNT(*) FROM {REFERENCE}", database=database)[0][0]
        _check_count(count, rows, "mariadb LOAD DATA")
        self.server.execute(f"DROP TABLE {REFERENCE}", database=database)
        return {"tool": "mariadb LOAD DATA LOCAL INFILE (tab-separated)", "seconds": round(m.seconds, 3)}

    def _dump(self, database: str, path: Path) -> None:
        """The exported table as LOAD DATA's default text format, read with a streaming cursor."""
        import pymysql.cursors

        conn = self.server.connect(database)
        try:
            with conn.cursor(pymysql.cursors.SSCursor) as cur, path.open("w", encoding="utf-8") as out:
                cur.execute(f"SELECT * FROM {TARGET}")
                for row in cur:
                    out.write("\t".join("\\N" if v is None else _escaped(str(v)) for v in row) + "\n")
        finally:
            conn.close()


def _escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _check_count(got: int, rows: int, tool: str) -> None:
    if got != rows:
        raise SystemExit(f"bench: {tool} loaded {got:,} rows, expected {rows:,}")


def section(run: dict[str, Any]) -> list[str]:
    """The report's section: each destination's replace against its reference, and the changes-only upsert."""
    rows = [r for r in run["results"] if r["bench"] == "export"]
    if not rows:
        return []
    size = rows[0]["rows"]
    lines = [
        "## Exports (silver -> PostgreSQL, MariaDB)",
        "",
        f"A silver table of {size:,} rows (the bulk ingest's 12 columns) exported with `mode: replace` by "
        "`pipezone export FLOW --name X --in-process` (process, JVM and Spark start, Delta read, Arrow collect, "
        "bulk load into a staging table, swap and marker in one transaction). The **physical reference** loads "
        "the same rows, dumped from the exported table beforehand, into an empty table of the same definition "
        "with the database's own client.",
        "",
        "| destination | contender | seconds | rows/s | vs reference | step phases (s) |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for name in ("pg", "mariadb"):
        ref = next((r for r in rows if r["destination"] == name and r["phase"] == "reference"), None)
        ours = next((r for r in rows if r["destination"] == name and r["phase"] == "replace"), None)
        if ref is None or ours is None:
            continue
        label = f"{name} ({ours['server_version']})"
        lines.append(f"| {label} | {ref['tool']} | {ref['seconds']:.1f} | {size / ref['seconds']:,.0f} | 1.00x | |")
        ratio = ref["seconds"] / ours["seconds"]
        phases = ", ".join(f"{k} {v:.1f}" for k, v in (ours["phases_s"] or {}).items())
        lines.append(
            f"| {label} | PipeZone replace, `pipezone export` process (peak RSS {ours['peak_rss_mb']:,} MB) "
            f"| {ours['seconds']:.1f} | {size / ours['seconds']:,.0f} | {ratio:.2f}x | {phases} |"
        )
        moved = (ours["phases_s"] or {}).get("read_write")
        if moved:
            lines.append(
                f"| {label} | PipeZone replace, its read_write phase (Delta read to commit) | {moved:.1f} "
                f"| {size / moved:,.0f} | {ref['seconds'] / moved:.2f}x | |"
            )
    upserts = [r for r in rows if r["phase"] == "upsert_changes"]
    if upserts:
        lines += [
            "",
            f"Changes only: {upserts[0]['changed']:,} source rows updated, the flow run again, then an `upsert` "
            "export (Delta's change data feed since the last exported version, merged on the key):",
            "",
        ]
        for r in upserts:
            lines.append(f"- {r['destination']}: {r['rows_written']:,} rows sent in {r['seconds']:.1f} s")
    return [*lines, ""]


def _say(what: str, text: str) -> None:
    print(f"bench: export {what}: {text}", flush=True)
