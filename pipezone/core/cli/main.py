"""The `pipezone` command line.

Every failure a user can cause ends in one line on stderr and a non-zero exit; a traceback appears
only with --debug (or PIPEZONE_DEBUG=1). Heavy modules are imported per command to keep start-up fast.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from pipezone import __version__
from pipezone.core.spec.settings import Settings, load_settings

if TYPE_CHECKING:
    from pipezone.core.spec.flow import BronzeLayer, FlowSpec, IncrementalSpec, SilverLayer
    from pipezone.core.state.store import StateStore, Watermark, WatermarkValue

EXIT_OK, EXIT_PROBLEMS, EXIT_ERROR = 0, 1, 2


class CliError(Exception):
    """A user-facing failure: printed as one line, exit status 2."""


def _catalog(settings: Settings):
    from pipezone.core.spec.catalog import load_catalog

    return load_catalog(settings.metadata_dir, file_roots=settings.file_roots)


def cmd_validate(args: argparse.Namespace, settings: Settings) -> int:
    """Exit 0 (valid) or 1 (problems, each one line), whatever the files hold."""
    from pipezone.core.cli.validate import validate

    return validate(list(args.paths or []), settings, debug=settings.debug or bool(getattr(args, "debug", False)))


def _require_valid_flow(catalog, name: str) -> None:
    if name in catalog.flows:
        return
    bad = [p for p in catalog.problems if p.path == "name" or name in p.file]
    hint = f"; problems: {bad[0]}" if bad else ""
    known = ", ".join(sorted(catalog.flows)) or "none"
    raise CliError(f"unknown or invalid flow '{name}' (valid flows: {known}){hint}")


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    from pipezone.core.cli.show import flow_rows, render_table

    catalog = _catalog(settings)
    print(render_table(flow_rows(catalog)))
    if catalog.problems:
        print(f"{len(catalog.problems)} problem(s) hide some flows: run `pipezone validate`", file=sys.stderr)
        return EXIT_PROBLEMS
    return EXIT_OK


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    from pipezone.core.cli.show import flow_view
    from pipezone.core.spec.secrets import resolver_for

    catalog = _catalog(settings)
    _require_valid_flow(catalog, args.flow)
    print(flow_view(catalog, args.flow, resolver_for(settings)), end="")
    file = catalog.flows[args.flow].doc.file
    for problem in (p for p in catalog.problems if p.file == file):
        print(f"warning: {problem}", file=sys.stderr)
    return EXIT_OK


def cmd_init_flow(args: argparse.Namespace, settings: Settings) -> int:
    from pipezone.core.cli.init_flow import introspect, render_flow
    from pipezone.core.spec.connection import ROLE_SOURCE, connection_roles
    from pipezone.core.spec.secrets import resolver_for

    catalog = _catalog(settings)
    if args.connection not in catalog.connections:
        known = ", ".join(sorted(catalog.connections)) or "none"
        raise CliError(f"unknown connection '{args.connection}' (known: {known})")
    spec = catalog.connection(args.connection)
    if ROLE_SOURCE not in connection_roles(spec):
        raise CliError(f"connection '{args.connection}' has type '{spec.type}', which is not a source type")
    name = args.name or args.table.lower()
    target = settings.flows_dir / f"{name}.yaml"
    if target.exists() and not args.force:
        raise CliError(f"{target} exists: pass --force to overwrite")
    info = introspect(spec, args.schema, args.table, settings, resolver_for(settings))
    text = render_flow(name, args.connection, args.schema, args.table, info)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target}" + (f" ({info.note})" if info.note else ""))
    return cmd_validate(argparse.Namespace(paths=[target]), settings)


def cmd_schema(args: argparse.Namespace, settings: Settings) -> int:
    from pipezone.core.spec.json_schema import stale_schemas, write_schemas

    folder = settings.metadata_dir / "schemas"
    if args.check:
        stale = stale_schemas(folder)
        for name in stale:
            print(f"{folder / name}: out of date with the spec models: run `pipezone schema`")
        return EXIT_PROBLEMS if stale else EXIT_OK
    for path in write_schemas(folder):
        print(f"wrote {path}")
    return EXIT_OK


def _runtime(settings: Settings):
    from pipezone.core.steps.runtime import load_runtime

    return load_runtime(settings)


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from pipezone.core.runs.flow_runner import run_flows

    runtime = _runtime(settings)
    flows, skipped = _flows_to_run(runtime, args)
    steps = [s for part in args.steps for s in part.split(",")] if args.steps else None
    if args.airflow:
        code = _run_through_airflow(args, runtime, flows, steps)
        return EXIT_PROBLEMS if skipped else code
    report = run_flows(
        runtime,
        flows,
        steps=steps,
        full_refresh=args.full_refresh,
        in_process=args.in_process,
        run_id=args.run_id,
        progress=lambda line: print(line, flush=True),
    )
    print(f"\nrun {report.run_id}")
    print(_outcome_table(report.outcomes))
    return EXIT_OK if report.ok and not skipped else EXIT_PROBLEMS


def _flows_to_run(runtime, args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """The flows named (each must be valid: they fail before anything runs), or with --all every valid
    flow; an invalid one is skipped with one line (one bad file never stops the others) and exit 1."""
    if not args.all:
        if not args.flows:
            raise CliError("name one or more flows, or pass --all")
        for name in args.flows:
            runtime.flow(name)
        return list(args.flows), []
    flows, skipped = [], []
    for name in sorted(runtime.catalog.flows):
        own = runtime.catalog.own_problems(name)
        if own:
            skipped.append(name)
            print(f"pipezone: skipping invalid flow {name}: {own[0]}", file=sys.stderr)
        else:
            flows.append(name)
    if not flows:
        raise CliError("no valid flow to run: see `pipezone validate`")
    return flows, skipped


def cmd_backfill(args: argparse.Namespace, settings: Settings) -> int:
    """Re-read `[start, end)` of one flow's source and carry it up; the live watermark is untouched."""
    from pipezone.core.runs.flow_runner import run_flows
    from pipezone.core.spec.cursor_values import later, parse_cursor_text

    runtime = _runtime(settings)
    flow = runtime.flow(args.flow)
    if flow.source is None or flow.source.incremental is None:
        raise CliError(f"flow {args.flow} has no source.incremental cursor to bound a backfill window with")
    start, end = parse_cursor_text(args.start), parse_cursor_text(args.end)
    try:
        empty = not later(end, start)
    except TypeError:
        raise CliError(f"--start {args.start!r} and --end {args.end!r} are not values of one type") from None
    if empty:
        raise CliError(f"the window [{args.start}, {args.end}) is empty: --end must be after --start")
    report = run_flows(
        runtime,
        [args.flow],
        steps=[s for s in flow.steps() if s != "quality"] if args.skip_quality else None,
        in_process=args.in_process,
        backfill=(args.start, args.end),
        progress=lambda line: print(line, flush=True),
    )
    print(f"\nbackfill {report.run_id} of {args.flow}: {flow.source.incremental.cursor} in [{args.start}, {args.end})")
    print(_outcome_table(report.outcomes))
    return EXIT_OK if report.ok else EXIT_PROBLEMS


def _outcome_table(outcomes) -> str:
    from pipezone.core.cli.show import render_table

    rows = [["FLOW", "STEP", "STATUS", "SECONDS", "RESULT"]]
    for o in outcomes:
        result = o.line.split(": ", 1)[-1] if o.ok else o.line
        rows.append([o.flow, o.step, "ok" if o.ok else "FAILED", f"{o.seconds:.1f}", result])
    return render_table(rows)


def _run_through_airflow(args: argparse.Namespace, runtime, flows: list[str], steps) -> int:
    """Each flow's DAG with dag.test(): the tasks the scheduler would run, recorded in Airflow's database."""
    unsupported = [
        o
        for o, v in (
            ("--in-process", args.in_process),
            ("--run-id", args.run_id),
            ("--steps", steps),
            ("--full-refresh", args.full_refresh),
        )
        if v
    ]
    if unsupported:
        raise CliError(f"--airflow runs whole DAGs with Airflow's run ids: drop {', '.join(unsupported)}")
    try:
        runtime.settings.require_launcher()
    except ValueError as err:
        raise CliError(str(err)) from None
    from pipezone.core.airflow.dag_test import run_dags

    reports = run_dags(runtime, flows, progress=lambda line: print(line, flush=True))
    print()
    for dag_id, report in reports:
        print(f"{dag_id}: run {report.run_id}")
    print(_outcome_table([o for _, report in reports for o in report.outcomes]))
    return EXIT_OK if all(report.ok for _, report in reports) else EXIT_PROBLEMS


def cmd_state(args: argparse.Namespace, settings: Settings) -> int:
    from pipezone.core.cli.show import render_table

    if args.flow == "reset":
        return cmd_state_reset(args, settings)
    if args.reset_flow is not None or args.to is not None:
        raise CliError("a second flow name and --to go with `pipezone state reset FLOW [--to VALUE]` only")
    runtime = _runtime(settings)
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
    return EXIT_OK


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
    runtime = _runtime(settings)
    flow = runtime.flow(args.reset_flow)
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


@contextmanager
def _flow_tables_held(store: StateStore, flow: FlowSpec) -> Iterator[None]:
    """Hold the leases of the flow's tables while resetting, so no step of it reads or moves the watermark."""
    from pipezone.core.state.table_lease import LeaseHeld, flow_tables, hold_tables, this_process

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
    from pipezone.core.spec.cursor_values import normalize
    from pipezone.core.state.store import encode_watermark

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
    from pipezone.core.spec.cursor_values import normalize

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


def cmd_tables(args: argparse.Namespace, settings: Settings) -> int:
    from pipezone.core.cli.show import render_table
    from pipezone.core.cli.tables import gold_rows, layer_rows
    from pipezone.core.steps.runner import open_session

    runtime = _runtime(settings)
    spark = open_session(runtime, "pipezone-tables")
    rows = layer_rows(runtime, spark)
    print(render_table(rows))
    print()
    print(render_table(gold_rows(runtime, spark)))
    return EXIT_OK if all(r[-1] == "yes" for r in rows[1:]) or not args.check else EXIT_PROBLEMS


def cmd_spark_server(args: argparse.Namespace, settings: Settings) -> int:
    """The profile's Spark Connect server (spark.connect_url): start, stop or status."""
    from pipezone.core.runs import connect_server as server

    runtime = _runtime(settings)
    if args.action == "status":
        ok, line = server.status(runtime)
        print(f"spark-server: {line}")
        return EXIT_OK if ok else EXIT_PROBLEMS
    print(f"spark-server: {server.start(runtime) if args.action == 'start' else server.stop(runtime)}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pipezone", description="YAML flows -> Airflow DAGs -> Spark + Delta.")
    parser.add_argument("--version", action="version", version=f"pipezone {__version__}")
    parser.add_argument("--metadata", type=Path, help="metadata folder (default: ./metadata or $PIPEZONE_METADATA)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check flows and connections; one line per problem")
    p.add_argument("paths", nargs="*", type=Path, help="files or folders (default: the whole metadata folder)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("list", help="flows with source, schedule and steps")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", help="a flow's resolved spec (secrets never shown)")
    p.add_argument("flow")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("init-flow", help="scaffold a flow YAML for a connection and table")
    p.add_argument("connection")
    p.add_argument("table")
    p.add_argument("--schema", help="schema / database of the table")
    p.add_argument("--name", help="flow name (default: the table name)")
    p.add_argument("--force", action="store_true", help="overwrite an existing flow file")
    p.set_defaults(func=cmd_init_flow)

    p = sub.add_parser("run", help="run flows' steps locally with spark-submit (no Airflow needed)")
    p.add_argument("flows", nargs="*", help="flow names (dependencies run first)")
    p.add_argument("--all", action="store_true", help="every valid flow")
    p.add_argument("--steps", action="append", help="only these steps, e.g. --steps extract,bronze")
    p.add_argument("--full-refresh", action="store_true", help="ignore the watermark and read everything")
    p.add_argument("--in-process", action="store_true", help="one Spark session in this process, no spark-submit")
    p.add_argument("--run-id", help="reuse a run id (re-running a step with the same run id writes nothing new)")
    p.add_argument(
        "--airflow",
        action="store_true",
        help="run each flow's Airflow DAG with dag.test() (needs AIRFLOW_HOME migrated)",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "backfill",
        help="re-read a closed-open cursor window [start, end) of one flow and carry it up (watermark untouched)",
    )
    p.add_argument("flow")
    p.add_argument("--start", required=True, help="first cursor value included, e.g. 2024-01-01 or 1000")
    p.add_argument("--end", required=True, help="first cursor value excluded")
    p.add_argument("--in-process", action="store_true", help="one Spark session in this process, no spark-submit")
    p.add_argument("--skip-quality", action="store_true", help="do not run the flow's quality checks")
    p.set_defaults(func=cmd_backfill)

    p = sub.add_parser(
        "state",
        help="watermarks and recent step runs; `state reset FLOW [--to VALUE]` deletes or moves a watermark",
        usage="pipezone state [FLOW] [--limit N]\n       pipezone state reset FLOW [--to VALUE]",
    )
    p.add_argument("flow", nargs="?", help="only this flow; or `reset`, followed by the flow to reset")
    p.add_argument("reset_flow", nargs="?", metavar="FLOW", help="with reset: the flow whose watermark to reset")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--to", metavar="VALUE", help="with reset: move the watermark to VALUE instead of deleting it")
    p.set_defaults(func=cmd_state)

    p = sub.add_parser("tables", help="row counts per layer for every flow, next to the source count")
    p.add_argument("--check", action="store_true", help="exit 1 unless every silver table matches its source")
    p.set_defaults(func=cmd_tables)

    p = sub.add_parser(
        "spark-server", help="the profile's Spark Connect server (spark.connect_url): warm Spark for every step"
    )
    p.add_argument("action", choices=("start", "stop", "status"))
    p.set_defaults(func=cmd_spark_server)

    p = sub.add_parser("schema", help="write the JSON Schemas under metadata/schemas (or --check them)")
    p.add_argument("--check", action="store_true", help="exit 1 if the committed schemas are stale")
    p.set_defaults(func=cmd_schema)
    return parser


def _fail(message: str) -> int:
    from pipezone.core.spec.secrets import REDACTOR

    print(f"pipezone: error: {REDACTOR.redact(message)}", file=sys.stderr)
    return EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(metadata_dir=args.metadata)
    except (ValueError, OSError, RuntimeError) as err:  # a PIPEZONE_HOME that can't be resolved (a symlink loop)
        code = _fail(f"{type(err).__name__}: {err}")
        return EXIT_PROBLEMS if args.func is cmd_validate else code  # validate exits 0 or 1, nothing else
    debug = args.debug or settings.debug
    func: Callable[[argparse.Namespace, Settings], int] = args.func
    try:
        return func(args, settings)
    except KeyboardInterrupt:
        return _fail("interrupted")
    except Exception as err:  # noqa: BLE001 - the one place that turns any failure into one line
        if debug:
            raise
        from pipezone.core.spec.problems import SpecError
        from pipezone.core.spec.secrets import SecretError
        from pipezone.core.steps.runtime import RunError

        if isinstance(err, CliError | SpecError | SecretError | OSError | RunError):
            return _fail(str(err))
        return _fail(f"{type(err).__name__}: {err} (run with --debug for the traceback)")


if __name__ == "__main__":
    sys.exit(main())
