"""The Markdown report of one benchmark run (docs/benchmarks.md for the full run) and its console summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import documents
import export
import many_flows
import quality

TARGETS = {
    "ingest_vs_client": 0.5,  # at 10M rows, PipeZone rows/s over the MariaDB client's
    "ingest_vs_pandas": 3.0,
    "incremental_1000_s": 30.0,
    "warm_1000_s": 8.0,  # one flow, 1,000 changed of 10M, all layers through the warm server (issue 22)
    "warm_idle_s": 2.0,  # the same with nothing changed
    "merge_files_share": 0.05,  # files silver's MERGE of 1,000 keys rewrites or marks
    "many_estate_s": 300.0,  # 50 small flows through the Airflow scheduler on this 2-core machine
    "parse_vs_dag_factory": 2.0,  # at 1,000 flows
}


def _ingest(run: dict[str, Any], source: str = "mariadb") -> list[dict[str, Any]]:
    return [r for r in run["results"] if r["bench"] == "ingest" and r.get("source", "mariadb") == source]


def postgres_section(run: dict[str, Any]) -> list[str]:
    """The PostgreSQL ingest rows, each against psql's COPY out of the same table in the same run."""
    rows = _ingest(run, "postgres")
    if not rows:
        return []
    lines = [
        "## Bulk ingest (PostgreSQL -> Delta)",
        "",
        "The same generated table in PostgreSQL (NUMERIC(10,2), DOUBLE PRECISION, SMALLINT flag, TIMESTAMP(6)), "
        "read in full. The physical reference is `psql -c \"\\copy (SELECT * FROM t) TO '/dev/null'\"`: the "
        "server's COPY protocol, its fastest way out. PipeZone runs `pipezone run FLOW --steps extract,bronze` "
        "(spark-submit, local lake, 2 partitions) on its Arrow bulk path (connectorx, binary COPY) and on JDBC "
        "(pgjdbc, `read.initial_load: jdbc`). MB/s is the table's heap size (`pg_relation_size`) over the time.",
        "",
        "| rows | contender | seconds | rows/s | MB/s | peak RSS | vs psql \\copy |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for size in sorted({r["rows"] for r in rows}):
        client = [r for r in rows if r["rows"] == size and r["contender"] != "pipezone"]
        base = client[0]["rows_per_s"] if client else 0
        for r in [*client, *_by(rows, "pipezone", size)]:
            label = f"PipeZone extract+bronze ({r['path']})" if r["contender"] == "pipezone" else r["contender"]
            lines.append(
                f"| {size:,} | {label} | {r['seconds']:.1f} | {r['rows_per_s']:,} | {r['mb_per_s']:.1f} | "
                f"{r['peak_rss_mb']:,} MB | {_ratio(r['rows_per_s'], base)} |"
            )
            if r["contender"] == "pipezone":
                lines.append(
                    f"| {size:,} | PipeZone extract to raw ({r['path']}) | {r['steps_s']['extract']:.1f} | "
                    f"{r['raw_rows_per_s']:,} | {r['raw_mb_per_s']:.1f} | (same run) | "
                    f"{_ratio(r['raw_rows_per_s'], base)} |"
                )
    return [*lines, ""]


def _by(rows: list[dict[str, Any]], contender: str, size: int, **match: Any) -> list[dict[str, Any]]:
    return [
        r
        for r in rows
        if r["contender"] == contender and r["rows"] == size and all(r.get(k) == v for k, v in match.items())
    ]


def _launcher(r: dict[str, Any]) -> str:
    return r.get("launcher", "spark-submit")  # runs measured before the spark-connect launcher existed


def _best_pipezone(rows: list[dict[str, Any]], size: int, launcher: str) -> dict[str, Any] | None:
    runs = [r for r in _by(rows, "pipezone", size, lake="local", path="arrow") if _launcher(r) == launcher]
    return max(runs, key=lambda r: r["rows_per_s"]) if runs else None


def _pipezone_label(r: dict[str, Any]) -> str:
    launcher = _launcher(r)
    return r["path"] if launcher == "spark-submit" else f"{r['path']}, {launcher}"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def ingest_table(run: dict[str, Any]) -> list[str]:
    rows = _ingest(run)
    lines = [
        "| rows | contender | lake | partitions | seconds | rows/s | MB/s | peak RSS | vs client | vs pandas |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for size in sorted({r["rows"] for r in rows}):
        client = _by(rows, "mariadb client", size)
        pandas = _by(rows, "pandas read_sql -> parquet", size)
        base_c = client[0]["rows_per_s"] if client else 0
        base_p = pandas[0]["rows_per_s"] if pandas else 0
        for r in [*client, *pandas, *_by(rows, "pipezone", size)]:
            pz = r["contender"] == "pipezone"
            label = f"PipeZone extract+bronze ({_pipezone_label(r)})" if pz else r["contender"]
            lines.append(
                f"| {size:,} | {label} | {r.get('lake', '-')} | {r.get('partitions', '-')} | {r['seconds']:.1f} | "
                f"{r['rows_per_s']:,} | {r['mb_per_s']:.1f} | {r['peak_rss_mb']:,} MB | "
                f"{_ratio(r['rows_per_s'], base_c)} | {_ratio(r['rows_per_s'], base_p)} |"
            )
            if pz:
                extract = r["steps_s"]["extract"]
                lines.append(
                    f"| {size:,} | PipeZone extract to raw ({_pipezone_label(r)}) | {r['lake']} | {r['partitions']} | "
                    f"{extract:.1f} | "
                    f"{r['raw_rows_per_s']:,} | {r['raw_mb_per_s']:.1f} | (same run) | "
                    f"{_ratio(r['raw_rows_per_s'], base_c)} | {_ratio(r['raw_rows_per_s'], base_p)} |"
                )
    return lines


def _phases(phases: dict[str, float] | None) -> str:
    if not phases:
        return "-"
    order = ("session", "prepare", "read_write", "state")
    return ", ".join(f"{k} {phases[k]:.1f}" for k in order if k in phases)


def phase_table(records: list[dict[str, Any]], title: str) -> list[str]:
    lines = [f"| {title} | step | wall s | process+JVM s | phases (s) |", "| --- | --- | ---: | ---: | --- |"]
    for r in records:
        label = r.get("label") or f"{r['rows']:,} rows"
        for step, wall in r["steps_s"].items():
            phases = (r.get("phases_s") or {}).get(step) or {}
            inside = sum(v for k, v in phases.items())
            jvm = max(0.0, wall - inside) if phases else 0.0
            lines.append(f"| {label} | {step} | {wall:.1f} | {jvm:.1f} | {_phases(phases)} |")
    return lines


def incremental_table(run: dict[str, Any]) -> list[str]:
    rows = [r for r in run["results"] if r["bench"] == "incremental"]
    lines = [
        "| rows in table | changed | launcher | end to end | per step (wall s) | silver files touched / in table |",
        "| ---: | ---: | --- | ---: | --- | ---: |",
    ]
    for r in rows:
        what = "initial load" if r.get("initial_load") else f"{r['changed']:,}"
        what += f" ({r['pattern']})" if r.get("pattern") else ""
        steps = ", ".join(f"{k} {v:.1f}" for k, v in r["steps_s"].items())
        lines.append(f"| {r['rows']:,} | {what} | {r['launcher']} | **{r['seconds']:.1f} s** | {steps} | {_files(r)} |")
    return lines


def _files(r: dict[str, Any]) -> str:
    """Silver's MERGE: files rewritten or marked with deletion vectors, of the files the table had."""
    files = r.get("silver_files")
    if not files or not files.get("in_table"):
        return "-"
    touched = files.get("rewritten", 0) + files.get("marked", 0)
    return f"{touched} / {files['in_table']} ({touched / files['in_table']:.0%})"


def _server_lines(incremental: list[dict[str, Any]]) -> list[str]:
    """How long the Spark Connect server took to start and warm up (once, before its runs)."""
    started = next((r for r in incremental if r.get("server_start_s") is not None), None)
    if started is None:
        return []
    return [
        f"The Spark Connect server was started once before its runs, as a deployment keeps it running: "
        f"`pipezone spark-server start` took {started['server_start_s']:.1f} s ({started['server']}).",
        "",
    ]


def parse_table(run: dict[str, Any]) -> list[str]:
    rows = [r for r in run["results"] if r["bench"] == "parse"]
    lines = [
        "| flows | PipeZone parse | (process) | dag-factory parse | (process) | dag-factory / PipeZone |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        df = r.get("dag_factory_parse_s")
        lines.append(
            f"| {r['flows']:,} | {r['pipezone_parse_s']:.3f} s | {r['pipezone_process_s']:.2f} s | "
            + (
                f"{df:.3f} s | {r['dag_factory_process_s']:.2f} s | {_ratio(df, r['pipezone_parse_s'])} |"
                if df
                else "- | - | - |"
            )
        )
    return lines


def targets(run: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """(target, goal, measured, met) for what this run measured."""
    out: list[tuple[str, str, str, bool | None]] = []
    rows = _ingest(run)
    size = max((r["rows"] for r in rows), default=0)
    client = _by(rows, "mariadb client", size)
    pandas = _by(rows, "pandas read_sql -> parquet", size)
    for launcher in ("spark-submit", "spark-connect"):
        best = _best_pipezone(rows, size, launcher) if rows else None
        if not (best and client and pandas):
            continue
        for label, key in (("to raw (extract)", "raw_rows_per_s"), ("to bronze (extract+bronze)", "rows_per_s")):
            vc = best[key] / client[0]["rows_per_s"]
            vp = best[key] / pandas[0]["rows_per_s"]
            name = f"ingest {size:,} rows {label}, {launcher}"
            out.append((f"{name} vs MariaDB client", ">= 0.5x", f"{vc:.2f}x", vc >= TARGETS["ingest_vs_client"]))
            out.append((f"{name} vs pandas", ">= 3x", f"{vp:.2f}x", vp >= TARGETS["ingest_vs_pandas"]))
    for r in run["results"]:
        out += _warm_targets(r)
        if r["bench"] == "many_flows" and r["launcher"] == "spark-connect" and r["estate_s"] is not None:
            goal = TARGETS["many_estate_s"]
            name = f"{r['flows']} flows x {r['changed']:,} changed of {r['rows']:,} through Airflow, spark-connect"
            out.append((name, f"< {goal:.0f} s", f"{r['estate_s']:.1f} s", r["estate_s"] < goal))
        if r["bench"] == "incremental" and r.get("changed") == 1000:
            out.append(
                (
                    f"1,000 changed rows of {r['rows']:,}, {r['launcher']}",
                    "< 30 s",
                    f"{r['seconds']:.1f} s",
                    r["seconds"] < TARGETS["incremental_1000_s"],
                )
            )
        if r["bench"] == "parse" and r["flows"] == 1000 and r.get("dag_factory_parse_s"):
            ratio = r["dag_factory_parse_s"] / r["pipezone_parse_s"]
            out.append(
                ("parse 1,000 flows vs dag-factory", ">= 2x", f"{ratio:.2f}x", ratio >= TARGETS["parse_vs_dag_factory"])
            )
    return out


def _warm_targets(r: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """Issue 22's targets: one flow through the warm server in one client, and silver's MERGE by the change."""
    if r["bench"] != "incremental" or r.get("initial_load") or r["launcher"] != "spark-connect, one client":
        return []
    name = f"{r['changed']:,} changed ({r.get('pattern', '-')}) of {r['rows']:,}, {r['launcher']}"
    goal = TARGETS["warm_idle_s"] if r["changed"] == 0 else TARGETS["warm_1000_s"]
    out = [(name, f"< {goal:.0f} s", f"{r['seconds']:.1f} s", r["seconds"] < goal)]
    files = r.get("silver_files") or {}
    if r["changed"] and files.get("in_table"):
        share = (files.get("rewritten", 0) + files.get("marked", 0)) / files["in_table"]
        out.append((f"{name}: silver files touched", "< 5%", f"{share:.1%}", share < TARGETS["merge_files_share"]))
    return out


def summary(run: dict[str, Any]) -> str:
    lines = ["", "Targets:"]
    for name, goal, measured, met in targets(run):
        lines.append(f"  {'met    ' if met else 'NOT MET'}  {name}: {measured} (target {goal})")
    return "\n".join(lines)


def memory_section(run: dict[str, Any]) -> list[str]:
    """Peak memory of first loads by table size: the ingest runs (1 partition, local lake) and the memory
    section's larger table."""
    largest = [r for r in run["results"] if r["bench"] == "memory"]
    loads = [r for r in _ingest(run) if r["contender"] == "pipezone" and r.get("lake") == "local"]
    loads = [r for r in loads if r.get("path") == "arrow" and r.get("partitions") == 1] + largest
    lines = [
        "## Memory",
        "",
        "Every run has `spark.driver.memory=2g`. The Arrow bulk paths stream 100,000-row batches (extract: from "
        "the source; bronze: from raw's Parquet files) and the JDBC path streams rows (MySQL "
        "`fetchsize=Integer.MIN_VALUE`), so no step holds the table and the JVM holds no rows. The peak is the "
        "Python side's working set (connectorx's buffers, delta-rs's Parquet writer and reader: 1M-row row "
        "groups, files of up to ~100 MB); it grows far more slowly than the table, as the table below shows.",
        "",
    ]
    if not loads:
        return lines
    lines += [
        "| rows | launcher | extract+bronze | peak RSS (largest process) |",
        "| ---: | --- | ---: | ---: |",
        *[
            f"| {r['rows']:,} | {_launcher(r)} | {r['seconds']:.1f} s | {r['peak_rss_mb']:,} MB |"
            for r in sorted(loads, key=lambda r: (_launcher(r), r["rows"]))
        ],
    ]
    if largest:
        biggest = max(r["rows"] for r in largest)
        lines += ["", f"The largest table measured, {biggest:,} rows, loaded with both launchers without failing."]
    return lines


def cdc_section(run: dict[str, Any]) -> list[str]:
    """CDC throughput against the database's own log reader, and one change's latency (bench/cdc.py)."""
    rows = [r for r in run["results"] if r["bench"] == "cdc"]
    if not rows:
        return []
    lines = [
        "## Change data capture (log -> silver)",
        "",
        f"A CDC flow (`source.cdc`, `max_changes: {250_000:,}`, silver `merge`) on a table of "
        f"{rows[0]['changes'] // 2:,} rows (the bulk ingest's 12 columns), snapshotted first; then "
        f"{rows[0]['changes']:,} row changes are committed in 10,000-row transactions (half updates of non-key "
        "columns, a quarter inserts, a quarter deletes). **PipeZone** is `pipezone run FLOW --in-process` "
        "repeated until a run finds no new change (each run a process, a JVM and a Spark session: extract "
        "reads and decodes the log into raw, bronze and silver merge the batch); the sum of those runs. "
        "The **physical reference** reads the same changes from the log with the database's own tool to "
        "/dev/null. After the catch-up `pipezone verify` compares silver with the source.",
        "",
        "| source | contender | seconds | changes/s | vs reference |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for source in sorted({r["source"] for r in rows}):
        ref = next(r for r in rows if r["source"] == source and r["phase"] == "reference")
        catch = next(r for r in rows if r["source"] == source and r["phase"] == "catch_up")
        lines.append(f"| {source} | {ref['tool']} | {ref['seconds']:.1f} | {ref['changes_per_s']:,.0f} | 1.00x |")
        ratio = catch["changes_per_s"] / ref["changes_per_s"]
        label = f"PipeZone, {len(catch['runs'])} runs to silver"
        lines.append(f"| {source} | {label} | {catch['seconds']:.1f} | {catch['changes_per_s']:,.0f} | {ratio:.2f}x |")
    lines += ["", "Per run of the catch-up (wall time per step as `pipezone run` prints it):", ""]
    for r in rows:
        if r["phase"] == "catch_up":
            for number, each in enumerate(r["runs"], 1):
                steps = ", ".join(f"{step} {s:.1f} s" for step, s in each["steps_s"].items())
                changes = each["rows_read"]["extract"]
                lines.append(f"- {r['source']} run {number}: {changes:,} changes, {each['seconds']:.1f} s ({steps})")
    lines += [
        "",
        "Latency of one change: a row updated, then the flow's run (what the next tick of a one-minute schedule "
        "starts); commit to silver. Under `* * * * *` the change also waits for the tick: 0-60 s, 30 s on average.",
        "",
        "| source | launcher | commit -> silver (run) | mean under a 1-minute schedule | worst |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        if r["phase"] == "latency":
            s = r["seconds"]
            lines.append(f"| {r['source']} | {r['launcher']} | {s:.1f} s | {30 + s:.0f} s | {60 + s:.0f} s |")
    checks = [f"{r['source']}: {'clean' if r['clean'] else 'DIFFERENT'}" for r in rows if r["phase"] == "verify"]
    return [*lines, "", f"`pipezone verify` after the catch-up: {', '.join(checks)}.", ""]


def render(run: dict[str, Any], json_path: Path) -> str:
    env = run["environment"]
    pk = env["packages"]
    command = "make bench" if run["kind"] == "full" else "make bench-quick"
    ingest_rows = _ingest(run)
    incremental = [r for r in run["results"] if r["bench"] == "incremental"]
    parts = [
        "# PipeZone benchmarks",
        "",
        f"Generated by `{command}` ({run['kind']} run, {env['date']}, commit {env['commit']}); raw numbers in "
        f"`{json_path}` (not committed). Machine: {env['cpus']} cores ({env['cpu']}), {env['memory_gb']} GB RAM, "
        f"load average at start {', '.join(f'{x:.2f}' for x in env['load_average_at_start'])}; Python "
        f"{env['python']}, {env['java']}, MariaDB {env['mariadb']}; pyspark {pk['pyspark']}, delta-spark "
        f"{pk['delta-spark']}, apache-airflow {pk['apache-airflow']}, connectorx {pk['connectorx']}, deltalake "
        f"{pk['deltalake']}, pyarrow {pk['pyarrow']}, pandas {pk['pandas']}.",
        "",
        "The machine is shared and noisy: every comparison is measured in the same run, contenders alternating, "
        "and quoted as a ratio.",
        "",
        *[
            f"Section(s) {', '.join(a['sections'])} were {'re-measured' if a.get('replaced') else 'added'} at "
            f"{a['environment']['date']}, commit {a['environment']['commit']}, by `bench/run.py --only "
            f"{','.join(a['sections'])} --add-to {json_path}{' --replace' if a.get('replaced') else ''}`"
            f"{' (replacing the results of the first run)' if a.get('replaced') else ' (missing from the first run)'}."
            for a in run.get("added", [])
        ],
        "",
        "## Targets",
        "",
        *(
            [
                "The targets are set for the full run (10M rows). At the quick run's size a PipeZone run is mostly "
                "its fixed per-step cost (process, JVM and Spark session start): these rows check the harness, not "
                "the targets.",
                "",
            ]
            if run["kind"] == "quick"
            else []
        ),
        "| target | goal | measured | |",
        "| --- | --- | ---: | --- |",
        *[
            f"| {name} | {goal} | {measured} | {'met' if met else '**not met**'} |"
            for name, goal, measured, met in targets(run)
        ],
        "",
    ]
    if ingest_rows:
        parts += [
            "## Bulk ingest (MariaDB -> Delta)",
            "",
            "A generated MariaDB table (12 columns: BIGINT key, INT, SMALLINT, DECIMAL(10,2), nullable DOUBLE, "
            "short and long nullable VARCHARs, TINYINT(1), DATE, DATETIME(6), TIMESTAMP(6) cursor), read in full:",
            "",
            "- **mariadb client**: `mariadb --quick --batch -e 'SELECT * FROM t' > /dev/null` over TCP, the "
            "physical reference (server work plus the wire, no storage).",
            "- **pandas**: `pandas.read_sql(chunksize=100000)` over a streaming pymysql cursor, each chunk appended "
            "to one Parquet file with pyarrow (`bench/pandas_baseline.py`).",
            "- **PipeZone**: `pipezone run FLOW --steps extract,bronze` on an empty lake, as Airflow runs it: one "
            "process per step. A first load takes the Arrow bulk paths: extract reads the source's binary protocol "
            "with connectorx (`read.num_partitions` connections) and delta-rs writes the batches to raw; bronze "
            "reads raw's files with pyarrow and writes bronze with delta-rs, the row hash computed as Spark's "
            "xxhash64 by compiled (numba) code. Spark only plans (schemas, Delta logs). Launchers: "
            "`spark-submit` (a JVM and Spark session per step, JVM starts included) and `spark-connect` (a Python "
            "client per step of a Spark Connect server started once before the runs). The extract row is the "
            "same run's extract step alone.",
            "",
            "MB/s is the table's InnoDB data size over the time. Peak RSS is the largest process of the run (for "
            "spark-submit the driver JVM, `spark.driver.memory=2g`; for spark-connect the step's Python process, "
            "the server's JVM not counted).",
            "",
            *ingest_table(run),
            "",
            "Per step (wall time as `pipezone run` prints it; phases from the run history):",
            "",
            *phase_table(
                [
                    {
                        **r,
                        "label": f"{r['rows']:,} rows, {_pipezone_label(r)}, {r['lake']}, {r['partitions']} partitions",
                    }
                    for r in ingest_rows
                    if r["contender"] == "pipezone"
                ],
                "run",
            ),
            "",
        ]
    if incremental:
        parts += [
            "## Incremental latency",
            "",
            f"The flow (extract > bronze > silver merge > one quality check) on the {incremental[0]['rows']:,}-row "
            "table, after its initial load: a run with nothing changed, then runs after 1,000 rows spread over "
            "the table (`spread`: every key range, so nearly every file holds one) or among its newest keys "
            "(`recent`) were updated. `spark-submit` is one JVM per step (how Airflow runs tasks without a "
            "Connect server); `in-process` one Spark session for the whole run (`pipezone run --in-process`); "
            "`spark-connect` one Python process per step, a client of a long-running Spark Connect server (a "
            "profile with `spark.connect_url`; `pipezone spark-server start`); `spark-connect, one client` one "
            "client process for the whole run (`pipezone run --in-process` on that profile; an Airflow task is "
            "likewise one process that is the client). Silver files: what its MERGE rewrote or marked with "
            "deletion vectors, of the files the table had (the first load lays silver out by key).",
            "",
            *incremental_table(run),
            "",
            *_server_lines(incremental),
            "Per step: `session` is the Spark session start inside the job, `prepare` the Delta log and the "
            "source's bounds query, `read_write` the Spark action that reads, writes and commits, `state` the "
            "watermark or progress update (quality's checks show as its `prepare`); process+JVM is the rest of the "
            "step's wall time (in-process: the first step's includes the session start).",
            "",
            *phase_table(
                [
                    {
                        **r,
                        "label": ("initial" if r.get("initial_load") else f"{r['changed']:,} changed")
                        + f", {r['launcher']}",
                    }
                    for r in incremental
                ],
                "run",
            ),
            "",
        ]
    parse = [r for r in run["results"] if r["bench"] == "parse"]
    if parse:
        parts += [
            "## DAG parse time",
            "",
            "`DagBag(dags/)` after `import airflow`, in a fresh process per measurement (median of "
            f"{parse[0]['repeat']}). For PipeZone it includes reading and validating every flow and connection "
            "file and building the DAGs; dag-factory 1.1.0 loads equivalent YAML (one file per DAG, 4 chained "
            "tasks). `process` is the whole process wall time.",
            "",
            *parse_table(run),
            "",
        ]
    parts += postgres_section(run)
    parts += cdc_section(run)
    parts += export.section(run)
    parts += documents.section(run)
    parts += quality.section(run)
    parts += many_flows.section(run)
    parts += [*memory_section(run), ""]
    parts += [
        "## Rerun",
        "",
        "```sh",
        "make bench        # full run, rewrites docs/benchmarks.md (about an hour)",
        "make bench-quick  # 200k rows, under 10 minutes, report in .pipezone/bench/quick.md",
        "```",
        "",
    ]
    return "\n".join(parts)
