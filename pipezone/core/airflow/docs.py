"""`doc_md` of PipeZone's DAGs: a flow rendered for the Airflow UI, and the problems of an invalid file.

Rendered from the specs alone, deterministically (no timestamps, no environment), so two parses give
the same DAG. Never a secret: flows hold none, and of a connection only its name, type and location
(host, port, database or file) are shown; credentials, even as references, are left out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from pipezone.core.airflow.assets import TableRef, schedule_inputs, step_outputs
from pipezone.core.spec.connection import ConnectionSpec, JdbcConnection, MongoConnection, RestConnection
from pipezone.core.spec.flow import FlowSpec
from pipezone.core.spec.quality import row_level

STEP_TEXT = {
    "extract": "reads the source window over JDBC into an immutable raw batch",
    "bronze": "raw batches not yet in bronze: snake_case columns, deduplicated within the batch",
    "silver": "bronze batches not yet in silver: transforms applied, row checks acted on, then written",
    "gold": "the flow's Spark SQL over silver/gold tables",
    "quality": "table-level checks on Great Expectations, results in the state store, Data Docs in the lake",
    "verify": "reconciles silver with the source by key ranges and hashes (`pipezone verify`); fails on a difference",
}
# A document source's extract: a MongoDB collection or a REST endpoint, typed from its records.
DOCUMENT_EXTRACT_TEXT = {
    "mongodb": "reads the collection's documents in the cursor window with pymongo into an immutable raw batch",
    "rest": "reads the endpoint's pages from the window's lower bound into an immutable raw batch",
}
# A CDC flow's extract (source.cdc) reads the replication log, not a window.
CDC_EXTRACT_TEXT = (
    "the first run snapshots the table; each later run appends the changes committed after the stored log "
    "position to raw, then moves the position (its summary line ends with the position and the lag)"
)


def duration_text(value: timedelta) -> str:
    """`timedelta(minutes=5)` -> `5m` (the spec's own notation)."""
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def _code(text: str, lang: str = "") -> list[str]:
    """A fenced block that no run of backticks in `text` (a file's SQL, a problem quoting a file) can close."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + lang, text.rstrip("\n"), fence]


def connection_text(conn: ConnectionSpec | None, name: str) -> str:
    """`retail_demo` (sqlite, `.pipezone/demo/retail.db`): never user names or passwords."""
    if conn is None:
        return f"`{name}`"
    if isinstance(conn, JdbcConnection):
        where = f"{conn.host}:{conn.effective_port}/{conn.database}"
    elif isinstance(conn, MongoConnection):
        where = f"{conn.host}:{conn.port}/{conn.database}"
    elif isinstance(conn, RestConnection):
        where = f"{conn.base_url}, auth {conn.auth.type}"
    else:
        where = getattr(conn, "path", None) or ""
    return f"`{name}` ({conn.type}" + (f", `{where}`)" if where else ")")


def schedule_text(flow: FlowSpec, flows: dict[str, FlowSpec]) -> str:
    inputs = schedule_inputs(flow, flows)
    assets = ", ".join(f"`{ref.asset_name}`" for ref in inputs)
    if flow.schedule is None:
        return f"when its input tables update: {assets}" if inputs else "manual (trigger only)"
    if flow.schedule.after:
        return f"after flows {', '.join(flow.schedule.after)}: when all of {assets} updated"
    if flow.schedule.cron:
        return f"cron `{flow.schedule.cron}` (UTC)"
    return f"`{flow.schedule.preset}`"


def _source_lines(flow: FlowSpec, conn: ConnectionSpec | None) -> list[str]:
    src = flow.source
    if src is None:
        return ["## Source", "", "None: a gold-only flow over other flows' tables.", ""]
    rows: list[tuple[str, str]] = [("connection", connection_text(conn, src.connection))]
    if src.table:
        label = "collection" if isinstance(conn, MongoConnection) else "table"
        rows.append((label, f"`{src.schema_}.{src.table}`" if src.schema_ else f"`{src.table}`"))
    if src.endpoint:
        rows += _endpoint_rows(src.endpoint)
    if src.documents:
        docs = src.documents
        rows.append(("documents", f"nested values as {docs.nested}" + (", filtered" if docs.filter else "")))
    if src.primary_key:
        rows.append(("primary key", ", ".join(src.primary_key)))
    if src.cdc:
        rows += _cdc_rows(flow)
    elif src.incremental:
        inc = src.incremental
        text = f"cursor `{inc.cursor}`, lookback {inc.lookback}"
        if inc.initial_value is not None:
            text += f", initial value `{inc.initial_value}`"
        rows.append(("incremental", text))
    else:
        rows.append(("incremental", "no: full read every run"))
    rows.append(("read", f"{src.read.num_partitions} partition(s), fetch size {src.read.fetch_size}"))
    lines = ["## Source", "", *_table(["", ""], rows), ""]
    if src.query:
        lines += ["Query:", "", *_code(src.query, "sql"), ""]
    return lines


def _endpoint_rows(endpoint: Any) -> list[tuple[str, str]]:
    """The endpoint without its parameter values (a query parameter may be a tenant or a filter)."""
    params = ", ".join(f"`{name}`" for name in endpoint.params) or "none"
    bound = f"at most {endpoint.max_pages} pages / {duration_text(endpoint.max_seconds)} a run"
    rows = [
        ("endpoint", f"GET `{endpoint.path}`, records at `{endpoint.records}`"),
        ("pages", f"{endpoint.pagination.style}, {bound}, {endpoint.retries} retries on 429/5xx"),
        ("query parameters", params),
    ]
    if endpoint.incremental_param:
        rows.append(("window start sent as", f"`{endpoint.incremental_param}` ({endpoint.incremental_format})"))
    return rows


def step_text(flow: FlowSpec, step: str, source_type: str | None = None) -> str:
    """What `step` of `flow` (reading a `source_type` connection) does, in a few words (the task's doc and
    the DAG's step table)."""
    if step == "extract" and flow.source and flow.source.cdc:
        return CDC_EXTRACT_TEXT
    if step == "extract" and source_type in DOCUMENT_EXTRACT_TEXT:
        return DOCUMENT_EXTRACT_TEXT[source_type]
    export = flow.export_of(step)
    if export is not None:
        layer, name = export.source_table(flow)
        schema = f"{export.schema_}." if export.schema_ else ""
        target = f"`{export.connection}`: `{schema}{export.destination_table(flow)}`"
        return f"writes {layer}.{name} to {target} ({export.mode}; only the changes since the last export)"
    return STEP_TEXT[step]


def _cdc_rows(flow: FlowSpec) -> list[tuple[str, str]]:
    """A doc is rendered from the specs alone, so it says where the live position and lag are shown."""
    cdc = flow.source.cdc if flow.source else None
    assert cdc is not None
    bounds = f"at most {cdc.max_changes} changes or {duration_text(cdc.max_seconds)} of reading per run"
    where = (
        f"`pipezone state {flow.name}` (position, log head, bytes and seconds behind); each extract task's "
        "summary line (task log and XCom `return_value`) ends with them"
    )
    reads = f"the replication log after the stored position, {bounds}"
    return [("change data capture", reads), ("position, lag", where)]


def _steps_lines(flow: FlowSpec, connection: ConnectionSpec | None) -> list[str]:
    rows = []
    source_type = connection.type if connection else None
    for index, step in enumerate(flow.steps(), 1):
        outputs = step_outputs(flow, step)
        writes = ", ".join(f"`{ref.asset_name}`" for ref in outputs) or "-"
        rows.append((index, f"`{step}`", step_text(flow, step, source_type), writes))
    return ["## Steps", "", *_table(["#", "task", "what", "writes (asset)"], rows), ""]


def _transform_text(transform: Any) -> str:
    value = getattr(transform, transform.kind)
    if hasattr(value, "model_dump"):
        value = value.model_dump(exclude_none=True)
    if isinstance(value, dict):
        value = ", ".join(f"{k}: {v}" for k, v in value.items())
    elif isinstance(value, list):
        value = ", ".join(str(v) for v in value)
    return f"{transform.kind} {value}"


def _layers_lines(flow: FlowSpec) -> list[str]:
    layers = flow.layers
    rows = []
    if flow.source is not None:
        rows.append(("raw", "immutable batches" if layers.raw.enabled else "disabled", ""))
        for name in ("bronze", "silver"):
            layer = getattr(layers, name)
            if layer.enabled:
                part = ", ".join(layer.partition_by)
                rows.append((name, layer.write_mode, f"partitioned by {part}" if part else ""))
            else:
                rows.append((name, "disabled", ""))
    for table in layers.gold:
        extra = f"primary key {', '.join(table.primary_key)}" if table.primary_key else ""
        rows.append((f"gold `{table.name}`", table.write_mode, extra))
    lines = ["## Layers", "", *_table(["layer", "write mode", ""], rows), ""]
    if flow.source is not None and layers.silver.transforms:
        lines += ["Silver transforms, in order:", ""]
        lines += [f"{i}. `{_cell(_transform_text(t))}`" for i, t in enumerate(layers.silver.transforms, 1)]
        lines.append("")
    for table in layers.gold:
        lines += [f"Gold `{table.name}`:", "", *_code(table.sql, "sql"), ""]
    return lines


def _check_text(check: Any) -> str:
    data = check.model_dump(exclude_none=True, exclude={"check", "layer", "table", "severity", "action"})
    details = ", ".join(f"{k}={', '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in data.items())
    if row_level(check):
        return f"`{check.check}` {details} on each row silver writes (action: {check.action})"
    where = check.layer + (f" `{check.table}`" if check.table else "")
    return f"`{check.check}` {details} on {where} ({check.severity})"


def _quality_lines(flow: FlowSpec) -> list[str]:
    if not flow.quality:
        return ["## Quality checks", "", "None.", ""]
    return ["## Quality checks", "", *[f"- {_cell(_check_text(c))}" for c in flow.quality], ""]


def flow_doc(
    flow: FlowSpec,
    *,
    file: str,
    flows: dict[str, FlowSpec],
    connection: ConnectionSpec | None,
    notes: Sequence[str] = (),
) -> str:
    """The DAG's documentation: what the flow reads, writes and checks, and when it runs."""
    header = [f"# {flow.name}", ""]
    if flow.description:
        header += [flow.description, ""]
    if notes:
        header += [
            "**Warning:** this flow references another file that is invalid (it has its own `pipezone_invalid_*`"
            " DAG). This DAG is kept; runs that need that file fail or wait until it is fixed:",
            "",
        ]
        header += [*_code("\n".join(notes), "text"), ""]
    rows = [
        ("file", f"`{file}`"),
        ("owner", flow.owner),
        ("schedule", schedule_text(flow, flows)),
        ("retries", f"{flow.retries}, first after {duration_text(flow.retry_delay)}, exponential backoff"),
        ("timeout", f"{duration_text(flow.timeout)} per task"),
        ("schema drift", flow.schema_drift),
        ("tags", ", ".join(flow.tags) or "-"),
    ]
    overview = [*_table(["", ""], rows), ""]
    body = _source_lines(flow, connection) + _steps_lines(flow, connection) + _layers_lines(flow) + _quality_lines(flow)
    footer = [
        'Full refresh (re-read the whole source): trigger with config `{"full_refresh": true}`.',
        "",
        "Backfill a cursor window [S, E) without touching the watermark: trigger with config "
        '`{"backfill": {"start": "S", "end": "E"}}` (or `pipezone backfill`).',
        "",
        f"Run one step by hand: `pipezone run {flow.name} --steps STEP --run-id RUN_ID`.",
    ]
    return "\n".join(header + overview + body + footer) + "\n"


def invalid_doc(file: str, kind: str, problems: Sequence[str], dag_ids: Sequence[str] = ()) -> str:
    """Documentation of a placeholder DAG: the file's problems, one `FILE:LINE:COL: key: message` each."""
    lines = [f"# Invalid {kind} file: `{file}`", ""]
    lines += [f"`{file}` has {len(problems)} problem(s), listed below as `FILE:LINE:COL: key.path: message`."]
    if kind == "flow":
        lines.append("Its DAG is not built until they are fixed; the other flows' DAGs are unaffected.")
    else:
        lines.append(f"Flows that use this {kind} keep their DAGs, and their tasks fail until it is fixed.")
    if dag_ids:
        lines.append("Affected DAGs: " + ", ".join(f"`{d}`" for d in dag_ids) + ".")
    lines += ["", *_code("\n".join(problems), "text"), ""]
    lines.append(f"Check the fix with `pipezone validate {file}`; this placeholder then disappears.")
    return "\n".join(lines) + "\n"


def refs_text(refs: Iterable[TableRef]) -> str:
    return ", ".join(ref.asset_name for ref in refs)
