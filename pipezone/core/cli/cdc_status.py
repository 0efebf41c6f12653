"""`pipezone state`'s change-data-capture part: each CDC flow's log position and lag, and PostgreSQL slots
that no flow owns (a slot nobody reads keeps its WAL, and the disk fills)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipezone.core.cli.show import render_table
from pipezone.core.sources.cdc.postgres_log import abandoned_slots, slot_name
from pipezone.core.sources.contract import SourceError
from pipezone.core.spec.connection import JdbcConnection

if TYPE_CHECKING:
    from pipezone.core.spec.flow import FlowSpec
    from pipezone.core.steps.runtime import Runtime


def cdc_flows(runtime: Runtime, only: str | None) -> list[FlowSpec]:
    flows = [entry.spec for entry in runtime.catalog.flows.values()]
    return [f for f in flows if f.source is not None and f.source.cdc is not None and only in (None, f.name)]


def print_cdc_status(runtime: Runtime, only: str | None) -> None:
    """Position and lag per CDC flow (from its newest extract), then abandoned slots per PostgreSQL source."""
    flows = cdc_flows(runtime, only)
    if not flows:
        return
    positions = {w.flow: str(w.value) for w in runtime.state.watermarks()}
    rows = [["FLOW", "POSITION", "LOG HEAD", "BYTES BEHIND", "SECONDS BEHIND", "AS OF"]]
    for flow in flows:
        lag, at = _newest_lag(runtime, flow.name)
        seconds = lag.get("seconds_behind")
        rows.append(
            [
                flow.name,
                positions.get(flow.name, "(no snapshot yet)"),
                str(lag.get("head") or ""),
                "" if lag.get("bytes_behind") is None else f"{lag['bytes_behind']:,}",
                "" if seconds is None else f"{seconds:.1f}",
                at,
            ]
        )
    print("\nChange data capture")
    print(render_table(rows))
    for line in _abandoned(runtime, flows):
        print(line)


def _newest_lag(runtime: Runtime, flow: str) -> tuple[dict[str, Any], str]:
    for run in runtime.state.recent_runs(flow, limit=50):
        if run.step == "extract" and isinstance(run.details.get("lag"), dict):
            return run.details["lag"], f"{run.started_at:%Y-%m-%d %H:%M:%S}"
    return {}, ""


def _abandoned(runtime: Runtime, flows: list[FlowSpec]) -> list[str]:
    """One line per PostgreSQL slot named like ours that no flow of the project reads."""
    owned: dict[str, set[str]] = {}
    for flow in (e.spec for e in runtime.catalog.flows.values()):
        if flow.source is not None and flow.source.cdc is not None:
            owned.setdefault(flow.source.connection, set()).add(slot_name(flow.source, flow.name))
    lines = []
    for name in sorted({f.source.connection for f in flows if f.source is not None}):
        conn = runtime.connection(name)
        if conn.type != "postgres" or not isinstance(conn, JdbcConnection):
            continue
        try:
            slots = abandoned_slots(conn, runtime.resolver, owned.get(name, set()))
        except SourceError as err:
            lines.append(f"  connection '{name}': slots not checked: {err.cause}")
            continue
        for slot in slots:
            held = slot.get("bytes_behind")
            lines.append(
                f"  ABANDONED slot {slot['slot']} on connection '{name}' holds {held or 0:,} bytes of WAL; no flow "
                f"reads it: SELECT pg_drop_replication_slot('{slot['slot']}')"
            )
    return lines
