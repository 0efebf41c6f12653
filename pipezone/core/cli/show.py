"""Human views of specs for the CLI: the flow table for `list`, the resolved spec for `show`.

`show` resolves each secret reference to prove it works, but prints only the reference and whether it
resolved: the value itself never reaches the output.
"""

from __future__ import annotations

from typing import Any

import yaml

from pipezone.core.spec.catalog import Catalog
from pipezone.core.spec.connection import ConnectionSpec
from pipezone.core.spec.flow import FlowSpec
from pipezone.core.spec.secrets import REDACTOR, SecretError, SecretResolver


def source_label(flow: FlowSpec) -> str:
    if flow.source is None:
        return "(gold only)"
    src = flow.source
    table = f"{src.schema_}.{src.table}" if src.schema_ and src.table else (src.table or "(query)")
    return f"{src.connection}:{table}"


def flow_rows(catalog: Catalog) -> list[list[str]]:
    rows = [["FLOW", "SOURCE", "INCREMENTAL", "SCHEDULE", "STEPS"]]
    for name in sorted(catalog.flows):
        flow = catalog.flow(name)
        cursor = (
            ("full" if flow.source else "-")
            if not (flow.source and flow.source.incremental)
            else flow.source.incremental.cursor
        )
        schedule = flow.schedule.describe() if flow.schedule else "manual"
        rows.append([name, source_label(flow), cursor, schedule, " > ".join(flow.steps())])
    return rows


def render_table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def _secret_status(resolver: SecretResolver, reference: str) -> str:
    try:
        resolver.resolve(reference)
    except SecretError as err:
        return f"{reference} (UNRESOLVED: {err})"
    return f"{reference} (resolved, value hidden)"


def connection_view(spec: ConnectionSpec, resolver: SecretResolver) -> dict[str, Any]:
    """The connection as data, each secret replaced by its reference and resolution status."""
    data = spec.model_dump(mode="json", by_alias=True)
    for field, reference in spec.secret_refs().items():
        status = _secret_status(resolver, reference)
        if field.startswith("options."):
            data["options"][field.removeprefix("options.")] = status
        else:
            data[field] = status
    return data


def flow_view(catalog: Catalog, name: str, resolver: SecretResolver) -> str:
    """YAML of the flow with every default filled in, its steps, and its source connection."""
    entry = catalog.flows[name]
    flow = entry.spec
    view: dict[str, Any] = {
        "file": entry.doc.file,
        "dag_id": f"pipezone_{flow.name}",
        "steps": flow.steps(),
        "upstream_flows": sorted(flow.upstream_flows()),
        "flow": flow.model_dump(mode="json", by_alias=True),
    }
    if flow.source is not None and flow.source.connection in catalog.connections:
        view["connection"] = connection_view(catalog.connection(flow.source.connection), resolver)
    text = yaml.safe_dump(view, sort_keys=False, default_flow_style=False, width=110)
    return REDACTOR.redact(text)
