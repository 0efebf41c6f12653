"""`pipezone state` (watermarks and recent step runs) and `pipezone state reset FLOW [--to VALUE]`, with the
parsing of VALUE as a value of the watermark's type and the line saying what the next run then reads.

Split from main.py, which imports this module only when `pipezone state` runs (it needs the state store).
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from pipezone.core.cli.cdc_status import print_cdc_status
from pipezone.core.cli.common import EXIT_OK, CliError, command_runtime
from pipezone.core.cli.show import render_table
from pipezone.core.quality import data_docs
from pipezone.core.spec.cursor_values import normalize
from pipezone.core.spec.settings import Settings
from pipezone.core.state.encoding import encode_watermark
from pipezone.core.state.table_lease import LeaseHeld, flow_tables, hold_tables, this_process
from pipezone.core.steps.cdc_extract import POSITION_COLUMN, RESNAPSHOT

if TYPE_CHECKING:
    from pipezone.core.spec.flow import BronzeLayer, FlowSpec, SilverLayer
    from pipezone.core.spec.source import IncrementalSpec
    from pipezone.core.state.encoding import WatermarkValue
    from pipezone.core.state.store import StateStore
    from pipezone.core.state.watermarks import Watermark
    from pipezone.core.steps.runtime import Runtime


def cmd_state(args: argparse.Namespace, settings: Settings) -> int:
    if args.flow == "reset":
        return cmd_state_reset(args, settings)
    if args.reset_flow is not None or args.to is not None:
        raise CliError("a second flow name and --to go with `pipezone state reset FLOW [--to VALUE]` only")
    runtime = command_runtime(settings)
    if args.flow:
        runtime.flow(args.flow)
    store = runtime.state
    marks = [w for w in store.watermarks() if not args.flow or w.flow == args.flow]
    rows = [["FLOW", "CURSOR", "WATERMARK", "UPDATED AT", "RUN"]]
    rows += [
        [w.flow, w.cursor_column, str(w.value), f"{w.updated_at:%Y-%m-%d %H:%M:%S}", w.last_run_id or ""] for w in marks
    ]
    print("Watermarks")
    print(render_table(rows) if marks else "  (none yet)")
    runs = store.recent_runs(args.flow, limit=args.limit)
    rows = [["STARTED", "FLOW", "STEP", "STATUS", "ROWS IN", "ROWS OUT", "SECONDS", "RUN / ERROR"]]
    for r in runs:
        seconds = f"{r.duration_s:.1f}" if r.duration_s is not None else ""
        tail = r.error if r.status == "failed" else r.run_id
        rows.append(
            [
                f"{r.started_at:%Y-%m-%d %H:%M:%S}",
                r.flow,
                r.step,
                r.status,
                str(r.rows_read or 0),
                str(r.rows_written or 0),
                seconds,
                tail or "",
            ]
        )
    print("\nRecent steps")
    print(render_table(rows) if runs else "  (none yet)")
    print_cdc_status(runtime, args.flow)
    if args.flow:
        print_quality(runtime, runtime.flow(args.flow))
    return EXIT_OK


def print_quality(runtime: Runtime, flow: FlowSpec) -> None:
    """The flow's newest check outcomes (unexpected rows, action, a few keys) and where its Data Docs are."""
    if not flow.quality:
        return
    results = runtime.state.latest_quality_results(flow.name)
    rows = [["CHECK", "LAYER", "STATUS", "ACTION", "UNEXPECTED", "%", "SAMPLE KEYS"]]
    for r in results:
        keys = json.loads(r.unexpected_keys) if r.unexpected_keys else []
        shown = ", ".join(json.dumps(k if len(k) > 1 else next(iter(k.values())), default=str) for k in keys[:3])
        percent = "" if r.unexpected_percent is None else f"{r.unexpected_percent:.2f}"
        count = "" if r.unexpected_count is None else str(r.unexpected_count)
        rows.append([r.check_name, r.layer, r.status, r.action or "", count, percent, shown])
    title = f"\nQuality (run {results[0].run_id})" if results else "\nQuality"
    print(title)
    print(render_table(rows) if results else "  (not checked yet)")
    for step in ("silver", "quality"):
        site = data_docs.site_uri(runtime.lake, flow, step)
        if site is not None:
            url = data_docs.site_link(site, runtime.profile.lake_console_url)
            print(f"Data Docs ({'row checks' if step == 'silver' else 'table checks'}): {url}")


WATERMARK_EXAMPLES = {
    "int": "an integer, e.g. 1200",
    "float": "a number, e.g. 12.5",
    "decimal": "a decimal number, e.g. 12.50",
    "datetime": "an ISO date/time, e.g. 2024-02-01 or 2024-02-01T06:30:00Z (UTC unless an offset is given)",
    "date": "an ISO date, e.g. 2024-02-01",
    "str": "text",
}
INTEGER_TEXT = re.compile(r"[+-]?\d+")


def cmd_state_reset(args: argparse.Namespace, settings: Settings) -> int:
    """Delete a flow's watermark (the next run re-reads the source) or move it with --to."""
    if not args.reset_flow:
        raise CliError("name the flow: pipezone state reset FLOW [--to VALUE]")
    runtime = command_runtime(settings)
    flow = runtime.flow(args.reset_flow)
    if flow.source is not None and flow.source.cdc is not None:
        return _reset_cdc(runtime, flow, args.to)
    incremental = flow.source.incremental if flow.source else None
    if incremental is None:
        raise CliError(f"flow {flow.name} has no source.incremental: it reads its whole source every run")
    store = runtime.state
    with _flow_tables_held(store, flow):
        previous = store.get_watermark(flow.name)
        target = None if args.to is None else _parse_watermark(flow.name, incremental, previous, args.to)
        store.reset_watermark(flow.name, target, cursor_column=incremental.cursor)
    before = "(none)" if previous is None else previous.value
    after = "(none)" if target is None else target
    print(f"flow {flow.name}: watermark {before} -> {after}: {_next_run(flow, previous, target)}")
    return EXIT_OK


def _reset_cdc(runtime: Runtime, flow: FlowSpec, to: str | None) -> int:
    """A CDC flow's position is replaced by a new snapshot, never moved by hand (a position picked by hand
    would skip or repeat changes)."""
    if to is not None:
        raise CliError(f"flow {flow.name} reads a change log: reset takes no --to (the next run takes a new snapshot)")
    store = runtime.state
    with _flow_tables_held(store, flow):
        previous = store.get_watermark(flow.name)
        store.set_watermark(flow.name, POSITION_COLUMN, RESNAPSHOT, None)
    before = "(none)" if previous is None else previous.value
    print(
        f"flow {flow.name}: log position {before} -> {RESNAPSHOT}: the next run takes a new snapshot of the table "
        "and streams from its position; keys missing from it are marked deleted"
    )
    return EXIT_OK


@contextmanager
def _flow_tables_held(store: StateStore, flow: FlowSpec) -> Iterator[None]:
    """Hold the leases of the flow's tables while resetting, so no step of it reads or moves the watermark."""
    holder = this_process("pipezone-state-reset", flow.name, "state reset")
    try:
        with hold_tables(store, flow_tables(flow), holder, wait_s=0):
            yield
    except LeaseHeld as err:
        h = err.lease.holder
        raise CliError(
            f"flow {h.flow} is running (step {h.step}, run {h.run_id}, host {h.host}, pid {h.pid}):"
            " reset after it finishes"
        ) from None


def _watermark_kind(incremental: IncrementalSpec, previous: Watermark | None, text: str) -> str:
    """The stored watermark's type; before the first run, what initial_value (else VALUE itself) looks like."""
    if previous is not None:
        return encode_watermark(previous.value)[0]
    if incremental.initial_value is None:
        return "int" if INTEGER_TEXT.fullmatch(text.strip()) else "datetime"
    hint = normalize(incremental.initial_value)
    if isinstance(hint, date):
        return encode_watermark(hint)[0]
    return "int" if isinstance(hint, int) or INTEGER_TEXT.fullmatch(str(hint).strip()) else "str"


def _parse_watermark(flow: str, incremental: IncrementalSpec, previous: Watermark | None, text: str) -> WatermarkValue:
    """`text` as a value of the watermark's type, or one line naming the flow, the value and the type."""
    kind = _watermark_kind(incremental, previous, text)
    try:
        return _parse_as(kind, text)
    except (ValueError, ArithmeticError):  # decimal.InvalidOperation is an ArithmeticError
        raise CliError(
            f"flow {flow}: --to {text!r} is not a valid watermark for cursor {incremental.cursor}"
            f" (type {kind}): expected {WATERMARK_EXAMPLES[kind]}"
        ) from None


def _parse_as(kind: str, text: str) -> WatermarkValue:
    value = text.strip()
    if kind == "str":
        return text
    if kind == "int" and INTEGER_TEXT.fullmatch(value):
        return int(value)
    if kind == "float" and math.isfinite(number := float(value)):
        return number
    if kind == "decimal" and (exact := Decimal(value)).is_finite():
        return exact
    moment = normalize(value) if kind in ("datetime", "date") else None
    if kind == "datetime" and isinstance(moment, datetime):
        return moment
    if isinstance(moment, date) and not isinstance(moment, datetime):
        return moment if kind == "date" else datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    raise ValueError(f"not a {kind}: {text}")


def _next_run(flow: FlowSpec, previous: Watermark | None, target: WatermarkValue | None) -> str:
    """What the next run reads, and what that does to rows already loaded."""
    incremental = flow.source.incremental
    if target is None:
        initial = incremental.initial_value
        start = "the whole source" if initial is None else f"the source from initial_value {initial}"
        return f"the next run reads {start}; {_reread_note(flow)}"
    lookback = f" (less lookback {incremental.lookback})" if incremental.lookback else ""
    reads = f"the next run reads rows with {incremental.cursor} after {target}{lookback}"
    if previous is not None and target > previous.value:
        return f"{reads}; rows between {previous.value} and {target} not read yet are skipped"
    return f"{reads}; {_reread_note(flow)}"


def _reread_note(flow: FlowSpec) -> str:
    if flow.source.primary_key:
        return "rows read again are not duplicated (bronze and silver skip versions they have, merge is forward-only)"
    appended = [name for name in ("bronze", "silver") if _appends(getattr(flow.layers, name))]
    if not appended:
        return "rows read again replace what the layers hold (overwrite)"
    return f"without source.primary_key, {' and '.join(appended)} append rows read again a second time"


def _appends(layer: BronzeLayer | SilverLayer) -> bool:
    return layer.enabled and layer.write_mode == "append"
