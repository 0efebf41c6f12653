"""`pipezone verify FLOW... | --all`: each flow's source reconciled with its silver table (steps/verify.py),
a summary line per flow, then up to five keys of each kind of difference.

Exit status 0 when every flow named is clean (or has nothing to verify: a gold-only flow), 1 on any
difference or error, like `validate`. With --all, flows whose design rules a comparison out (no primary
key, silver in append mode, a silver filter) are listed as such and do not fail the command; named
explicitly, they do. Spark starts in this process, from the profile, only when a flow needs it.

Split from main.py, which imports this module only when `pipezone verify` runs.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from typing import Any

from pipezone.core.cli.common import EXIT_OK, EXIT_PROBLEMS, command_runtime
from pipezone.core.runs.flow_runner import new_run_id
from pipezone.core.spark.errors import summarize_error
from pipezone.core.spec.flow import FlowSpec
from pipezone.core.spec.settings import Settings
from pipezone.core.steps.context import StepContext
from pipezone.core.steps.runner import open_session
from pipezone.core.steps.runtime import Runtime
from pipezone.core.steps.verify import VerifyLimits, VerifyReport, nothing_to_verify, run_verify, spec_problem

EXAMPLES = VerifyLimits.examples
SHOWN_TEXT = 60  # characters of a value shown for a column that differs


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    """Exit 0 (clean) or 1 (differences, or any error as one line)."""
    try:
        return _verify(args, settings)
    except Exception as err:
        if settings.debug or getattr(args, "debug", False):
            raise
        print(f"pipezone: error: {summarize_error(err)}", file=sys.stderr)
        return EXIT_PROBLEMS


def _verify(args: argparse.Namespace, settings: Settings) -> int:
    runtime = command_runtime(settings)
    flows, invalid = _flows(runtime, args)
    if flows is None:
        return EXIT_PROBLEMS
    run_id = new_run_id()
    spark = _session(runtime, flows)
    reports = []
    for flow in flows:
        report = run_verify(StepContext(runtime, spark, flow, run_id))
        reports.append(report)
        print("\n".join(report_lines(report)), flush=True)
    counts = Counter(r.status for r in reports)
    words = {"clean": "clean", "different": "different", "not_verifiable": "not verifiable", "error": "failed"}
    tally = [f"{counts[s]} {w}" for s, w in words.items() if counts[s]]
    tally += [f"{counts['nothing']} with nothing to verify"] if counts["nothing"] else []
    tally += [f"{invalid} invalid"] if invalid else []
    print(f"verify {run_id}: {len(reports)} flow(s): {', '.join(tally) or 'none'}")
    tolerated = ("clean", "nothing", "not_verifiable") if args.all else ("clean", "nothing")
    return EXIT_OK if not invalid and all(r.status in tolerated for r in reports) else EXIT_PROBLEMS


def _flows(runtime: Runtime, args: argparse.Namespace) -> tuple[list[FlowSpec] | None, int]:
    """The flows to verify and how many were left out as invalid (--all); (None, 0) after a one-line error."""
    if args.all == bool(args.flows):
        print("pipezone: error: name one or more flows, or pass --all (not both)", file=sys.stderr)
        return None, 0
    if not args.all:
        flows = []
        for name in dict.fromkeys(args.flows):
            try:
                flows.append(runtime.flow(name))
            except Exception as err:  # noqa: BLE001 - an unknown or invalid flow: one line, nothing runs
                print(f"pipezone: error: {err}", file=sys.stderr)
                return None, 0
        return flows, 0
    flows, invalid = [], 0
    for name in sorted(runtime.catalog.flows):
        own = runtime.catalog.own_problems(name)
        if own:
            invalid += 1
            print(f"pipezone: skipping invalid flow {name}: {own[0]}", file=sys.stderr)
        else:
            flows.append(runtime.flow(name))
    return flows, invalid


def _session(runtime: Runtime, flows: list[FlowSpec]) -> Any:
    """The profile's Spark session, in this process, when some flow reads data; None otherwise."""
    reads = [f for f in flows if nothing_to_verify(f) is None and spec_problem(f) is None]
    return open_session(runtime, "pipezone-verify") if reads else None


def report_lines(report: VerifyReport, examples: int = EXAMPLES) -> list[str]:
    """The summary line, then the differences (a few keys each) and what was not compared by value."""
    lines = [report.summary()]
    if report.status not in ("clean", "different"):
        return lines
    kinds = (
        ("missing (in the source, not in silver)", report.missing),
        ("extra (in silver, not in the source)", report.extra),
        ("different (same key, other values)", report.different),
    )
    for label, keys in kinds:
        if keys:
            more = f" ... ({len(keys)} in all)" if len(keys) > examples else ""
            lines.append(f"  {label}: {', '.join(keys[:examples])}{more}")
    for side, keys in report.duplicated.items():
        more = f" ... ({len(keys)} in all)" if len(keys) > examples else ""
        lines.append(f"  held by more than one row in {side}: {', '.join(keys[:examples])}{more}")
    for key, columns in report.columns.items():
        shown = "; ".join(f"{name}: source {_shown(a)}, silver {_shown(b)}" for name, a, b in columns)
        lines.append(f"    {key}: {shown}")
    for where, ours, theirs in report.unresolved[:examples]:
        lines.append(f"  too many differences to list in {where}: source {ours} rows, silver {theirs} rows")
    if report.not_compared:
        lines.append(f"  compared by key only: {', '.join(report.not_compared)}")
    return lines


def _shown(text: str | None) -> str:
    """A canonical text as shown: NULL, or quoted and cut short."""
    if text is None:
        return "NULL"
    return repr(text if len(text) <= SHOWN_TEXT else text[:SHOWN_TEXT] + "...")
