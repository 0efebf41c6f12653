"""`pipezone quarantine FLOW [--replay]`: what a flow's row checks hold back, and putting fixed rows back.

Without --replay: the quarantine table's rows per failed check, its keys, and when rows were quarantined.
With --replay: each key's newest quarantined row is judged again with the flow's row checks as they are
now; the rows that pass go to silver and leave the quarantine (steps/quarantine_replay.py). It holds the
flow's silver and quarantine tables' leases, so no run of the flow writes them meanwhile.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pipezone.core.cli.common import EXIT_OK, CliError, command_runtime
from pipezone.core.cli.show import render_table
from pipezone.core.lake import delta_tables as dt
from pipezone.core.lake.layout import browse_url
from pipezone.core.spec.settings import Settings
from pipezone.core.state.table_lease import LeaseHeld, hold_tables, this_process
from pipezone.core.steps.context import StepContext
from pipezone.core.steps.quarantine_replay import replay
from pipezone.core.steps.row_checks import FAILED_CHECKS, QUARANTINED_AT, row_checks
from pipezone.core.steps.runner import open_session

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from pipezone.core.spec.flow import FlowSpec
    from pipezone.core.steps.runtime import Runtime


def cmd_quarantine(args: argparse.Namespace, settings: Settings) -> int:
    runtime = command_runtime(settings)
    flow = runtime.flow(args.flow)
    if not row_checks(flow.quality):
        raise CliError(f"flow {flow.name} has no row checks with action quarantine or drop: nothing is held back")
    spark = open_session(runtime, "pipezone-quarantine")
    if args.replay:
        return _replay(runtime, spark, flow)
    _describe(runtime, spark, flow)
    return EXIT_OK


def _describe(runtime: Runtime, spark: SparkSession, flow: FlowSpec) -> None:
    path = runtime.lake.quarantine(flow.name)
    print(f"quarantine of {flow.name}: {browse_url(path, runtime.profile.lake_console_url)}")
    if not dt.table_exists(spark, path):
        print("  (nothing quarantined yet)")
        return
    held = spark.read.format("delta").load(path)
    per_check = held.selectExpr(f"explode({FAILED_CHECKS}) AS check").groupBy("check").count().collect()
    rows = [["FAILED CHECK", "ROWS"], *sorted([r["check"], str(r["count"])] for r in per_check)]
    print(render_table(rows))
    span = held.selectExpr("count(*) AS n", f"min({QUARANTINED_AT}) AS first", f"max({QUARANTINED_AT}) AS last").first()
    print(f"{span['n']} rows, quarantined {span['first']:%Y-%m-%d %H:%M:%S} to {span['last']:%Y-%m-%d %H:%M:%S} UTC")
    print("fix rows in place (Spark SQL UPDATE on the Delta table) or relax a check, then: "
          f"pipezone quarantine {flow.name} --replay")  # fmt: skip


def _replay(runtime: Runtime, spark: SparkSession, flow: FlowSpec) -> int:
    holder = this_process("pipezone-quarantine-replay", flow.name, "quarantine replay")
    tables = [f"silver.{flow.name}", f"quarantine.{flow.name}"]
    try:
        with hold_tables(runtime.state, tables, holder, wait_s=0):
            try:
                done = replay(StepContext(runtime, spark, flow, holder.run_id))
            except ValueError as err:
                raise CliError(str(err)) from None
    except LeaseHeld as err:
        h = err.lease.holder
        raise CliError(f"flow {h.flow} is running (step {h.step}, run {h.run_id}): replay after it finishes") from None
    print(
        f"quarantine of {flow.name}: {done.waiting} rows waited; {done.written} written to silver, "
        f"{done.still_failing} keys still fail their checks and stay"
    )
    return EXIT_OK
