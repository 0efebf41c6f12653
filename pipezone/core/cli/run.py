"""`pipezone run` and `pipezone backfill`: run flows' steps locally (or each flow's DAG through Airflow) and
print the outcome table.

Split from main.py, which imports this module only when one of these commands runs: the runner is imported
here at module level, Airflow only for --airflow.
"""

from __future__ import annotations

import argparse
import sys

from pipezone.core.cli.common import EXIT_OK, EXIT_PROBLEMS, CliError, command_runtime
from pipezone.core.cli.show import render_table
from pipezone.core.runs.flow_runner import run_flows
from pipezone.core.spec.cursor_values import later, parse_cursor_text
from pipezone.core.spec.settings import Settings


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    runtime = command_runtime(settings)
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
    runtime = command_runtime(settings)
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


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    """Run a flow's exports now (all, or those named), reading only the lake's changes since each one's
    last export unless --full."""
    runtime = command_runtime(settings)
    flow = runtime.flow(args.flow)
    steps = [s for s in flow.steps() if s.startswith("export_")]
    if not steps:
        raise CliError(f"flow {args.flow} has no exports (add `exports:` to its YAML)")
    if args.name:
        wanted = {f"export_{name}" for name in args.name}
        unknown = sorted(wanted - set(steps))
        if unknown:
            raise CliError(f"flow {args.flow} has no export {', '.join(unknown)} (its exports: {', '.join(steps)})")
        steps = [s for s in steps if s in wanted]
    report = run_flows(
        runtime,
        [args.flow],
        steps=steps,
        full_refresh=args.full,
        in_process=args.in_process,
        progress=lambda line: print(line, flush=True),
    )
    print(f"\nexport {report.run_id} of {args.flow}")
    print(_outcome_table(report.outcomes))
    return EXIT_OK if report.ok else EXIT_PROBLEMS


def _outcome_table(outcomes) -> str:
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
