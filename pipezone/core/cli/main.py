"""The `pipezone` command line: the parser, the dispatch and the small commands.

Every failure a user can cause ends in one line on stderr and a non-zero exit; a traceback appears
only with --debug (or PIPEZONE_DEBUG=1). Heavy modules are imported per command to keep start-up fast:
`run`/`backfill` (run.py) and `state` (state.py) live in modules imported only when those commands run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pipezone import __version__
from pipezone.core.cli.common import EXIT_ERROR, EXIT_OK, EXIT_PROBLEMS, CliError, command_runtime
from pipezone.core.spec.settings import Settings, load_settings


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
    from pipezone.core.cli import init_flow

    return init_flow.cmd_init_flow(args, settings)


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


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from pipezone.core.cli import run

    return run.cmd_run(args, settings)


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    from pipezone.core.cli import run

    return run.cmd_export(args, settings)


def cmd_backfill(args: argparse.Namespace, settings: Settings) -> int:
    from pipezone.core.cli import run

    return run.cmd_backfill(args, settings)


def cmd_state(args: argparse.Namespace, settings: Settings) -> int:
    from pipezone.core.cli import state

    return state.cmd_state(args, settings)


def cmd_quarantine(args: argparse.Namespace, settings: Settings) -> int:
    from pipezone.core.cli import quarantine

    return quarantine.cmd_quarantine(args, settings)


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    from pipezone.core.cli import verify

    return verify.cmd_verify(args, settings)


def cmd_tables(args: argparse.Namespace, settings: Settings) -> int:
    from pipezone.core.cli.show import render_table
    from pipezone.core.cli.tables import HELD_NOTE, export_rows, gold_rows, layer_rows
    from pipezone.core.steps.runner import open_session

    runtime = command_runtime(settings)
    spark = open_session(runtime, "pipezone-tables")
    rows = layer_rows(runtime, spark)
    print(render_table(rows))
    if any(r[-1] == "yes*" for r in rows):
        print(HELD_NOTE)
    print()
    print(render_table(gold_rows(runtime, spark)))
    exports = export_rows(runtime, spark)
    if len(exports) > 1:
        print()
        print(render_table(exports))
    matched = all(r[-1] in ("yes", "yes*", "-") for r in [*rows[1:], *exports[1:]])
    return EXIT_OK if matched or not args.check else EXIT_PROBLEMS


def cmd_airflow_pool(args: argparse.Namespace, settings: Settings) -> int:
    """Create or resize the Airflow pool PipeZone tasks run in, from the profile's spark.parallel_steps."""
    from pipezone.core.airflow.pool import ensure_pool

    runtime = command_runtime(settings)
    print(ensure_pool(runtime.profile.name, runtime.profile.spark.parallel_steps))
    return EXIT_OK


def cmd_spark_server(args: argparse.Namespace, settings: Settings) -> int:
    """The profile's Spark Connect server (spark.connect_url): start (detached, then warmed up), stop, status,
    or run (in the foreground, for a container)."""
    from pipezone.core.runs import connect_server as server

    runtime = command_runtime(settings)
    if args.action == "status":
        ok, line = server.status(runtime)
        print(f"spark-server: {line}")
        return EXIT_OK if ok else EXIT_PROBLEMS
    if args.action == "run":
        server.run_foreground(runtime)
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

    p = sub.add_parser(
        "init-flow",
        help="scaffold flow YAML for one table, or for every table of a schema (--all)",
        usage="pipezone init-flow CONNECTION TABLE [--schema S] [--name N] [--force]\n"
        "       pipezone init-flow CONNECTION --all [--schema S] [--include GLOB]... [--exclude GLOB]... "
        "[--views] [--prefix P] [--out DIR]",
    )
    p.add_argument("connection")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("table", nargs="?", help="one table")
    which.add_argument("--all", dest="all_tables", action="store_true", help="every table of the schema")
    p.add_argument("--schema", help="schema / database (default: MySQL the connection's database, PostgreSQL public)")
    p.add_argument("--include", action="append", metavar="GLOB", help="with --all: only tables matching (repeatable)")
    p.add_argument("--exclude", action="append", metavar="GLOB", help="with --all: leave out tables matching")
    p.add_argument("--views", action="store_true", help="with --all: list views too (no keys: append mode)")
    p.add_argument("--prefix", default="", help="prepended to every flow name (default: none)")
    p.add_argument("--out", type=Path, metavar="DIR", help="folder for the files (default: metadata/flows)")
    p.add_argument("--name", help="one TABLE: the flow name (default: the table name made valid)")
    p.add_argument("--force", action="store_true", help="one TABLE: overwrite its file (--all never overwrites)")
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

    p = sub.add_parser("export", help="write a flow's exports (silver/gold tables) into their databases now")
    p.add_argument("flow")
    p.add_argument("--name", action="append", help="only this export (its `name`; repeatable)")
    p.add_argument("--full", action="store_true", help="send the whole table, not only the changes")
    p.add_argument("--in-process", action="store_true", help="one Spark session in this process, no spark-submit")
    p.set_defaults(func=cmd_export)

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

    p = sub.add_parser("quarantine", help="the rows a flow's row checks quarantined; --replay writes fixed ones")
    p.add_argument("flow")
    p.add_argument("--replay", action="store_true", help="judge them again; those that pass go to silver")
    p.set_defaults(func=cmd_quarantine)

    p = sub.add_parser(
        "verify",
        help="reconcile flows' sources with silver by key ranges and row hashes; exit 1 on any difference",
        usage="pipezone verify FLOW... | --all",
    )
    p.add_argument("flows", nargs="*", help="flow names")
    p.add_argument("--all", action="store_true", help="every valid flow (flows that cannot be verified are listed)")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser(
        "spark-server", help="the profile's Spark Connect server (spark.connect_url): warm Spark for every step"
    )
    p.add_argument("action", choices=("start", "stop", "status", "run"))
    p.set_defaults(func=cmd_spark_server)

    p = sub.add_parser(
        "airflow-pool", help="create or resize the Airflow pool pipezone_spark (spark.parallel_steps of the profile)"
    )
    p.set_defaults(func=cmd_airflow_pool)

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
