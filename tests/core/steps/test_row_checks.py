"""Row-level checks on silver's write, on real Spark over the demo shop's customers: the rows each action
sends to silver, to quarantine or nowhere, the counts GX and the run history record, `fail` stopping the
batch with nothing written, and a run killed between the quarantine commit and silver's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipezone.core.cli.main import main
from pipezone.core.cli.tables import layer_rows
from pipezone.core.demo.shop import COUNTRIES
from pipezone.core.lake import delta_tables as dt
from pipezone.core.steps.row_checks import FAILED_CHECKS, QUARANTINED_AT, RUN_ID

pytestmark = pytest.mark.spark

PIPEZONE = str(Path(sys.executable).with_name("pipezone"))
KNOWN = sorted(set(COUNTRIES))
FLOW = """\
name: rc_customers
source:
  connection: retail_demo
  table: customers
  primary_key: [customer_id]
  incremental:
    cursor: updated_at
layers:
  silver:
    write_mode: merge
quality:
  - check: not_null
    columns: [email]
    action: quarantine
  - check: accepted_values
    column: country
    values: {known}
    action: drop
  - check: expression
    expression: length(first_name) > 0
    action: {fail_on}
  - check: expression
    expression: customer_id % 10 <> 0
    action: warn
  - check: row_count
    min: 1
schedule: "@daily"
"""


def write_flow(project: Any, fail_on: str = "fail", name: str = "rc_customers") -> str:
    text = FLOW.format(known=json.dumps(KNOWN), fail_on=fail_on).replace("rc_customers", name)
    (project.root / "metadata" / "flows" / f"{name}.yaml").write_text(text)
    project.reload()
    return name


def expected(project: Any) -> dict[str, set[int]]:
    """Keys each action must leave where, from the source with the conditions spelled in SQLite."""
    known = ", ".join(f"'{c}'" for c in KNOWN)
    rows = project.query("SELECT customer_id, email, country FROM customers")
    held = {r["customer_id"] for r in rows if r["email"] is None}
    bad_country = {r["customer_id"] for r in rows if r["country"] is not None and r["country"] not in KNOWN}
    assert project.query(f"SELECT COUNT(*) FROM customers WHERE country NOT IN ({known})")[0][0] == len(bad_country)
    every = {r["customer_id"] for r in rows}
    return {"quarantine": held, "drop": bad_country - held, "silver": every - held - bad_country, "all": every}


def test_each_action_sends_its_rows_where_it_says_and_records_the_counts(project: Any) -> None:
    flow = write_flow(project)
    want = expected(project)
    assert want["quarantine"] and want["drop"] and want["silver"]  # the demo shop has rows of every kind
    report = project.run([flow], "rc-1")
    assert report.ok, [o.line for o in report.outcomes if not o.ok]

    silver = project.spark.read.format("delta").load(project.runtime.lake.silver(flow))
    assert {r.customer_id for r in silver.select("customer_id").collect()} == want["silver"]
    quarantine = project.spark.read.format("delta").load(project.runtime.lake.quarantine(flow)).collect()
    assert {r.customer_id for r in quarantine} == want["quarantine"]
    for row in quarantine:
        failed = ["not_null(email)"] + (["accepted_values(country)"] if row.country not in (*KNOWN, None) else [])
        assert (row[FAILED_CHECKS], row[RUN_ID], row[QUARANTINED_AT] is not None) == (failed, "rc-1", True)

    log = project.logs("rc-1", flow)["silver"]
    assert (log.details["rows_quarantined"], log.details["rows_dropped"]) == (
        len(want["quarantine"]),
        len(want["drop"]),
    )
    assert log.rows_written == len(want["silver"])
    results = {r.check_name: r for r in project.state.quality_results("rc-1")}
    quarantined, dropped = results["not_null(email)"], results["accepted_values(country)"]
    assert (quarantined.status, quarantined.action, quarantined.unexpected_count) == (
        "quarantined",
        "quarantine",
        len(want["quarantine"]),
    )
    bad_country = {k for k in want["all"] if k in want["drop"]} | {
        r.customer_id for r in quarantine if r.country not in (*KNOWN, None)
    }
    assert (dropped.status, dropped.unexpected_count) == ("dropped", len(bad_country))  # GX counts what we split
    assert {k["customer_id"] for k in json.loads(dropped.unexpected_keys)} <= bad_country
    warned = results["expression(customer_id % 10 <> 0)"]
    assert (warned.status, warned.unexpected_count) == ("warned", len({k for k in want["all"] if k % 10 == 0}))
    assert results["expression(length(first_name) > 0)"].status == "passed"
    assert results["row_count"].status == "passed"  # table-level: the quality step, after silver
    site = Path(project.runtime.lake.quality(flow).removeprefix("file://"))
    assert (site / "silver" / "index.html").is_file() and (site / "quality" / "index.html").is_file()


def test_a_fail_check_stops_the_batch_with_nothing_written_and_nothing_moved(project: Any) -> None:
    flow = write_flow(project, name="rc_strict")
    text = (project.root / "metadata" / "flows" / f"{flow}.yaml").read_text()
    strict = text.replace("customer_id % 10 <> 0\n    action: warn", "customer_id % 10 <> 0\n    action: fail")
    (project.root / "metadata" / "flows" / f"{flow}.yaml").write_text(strict)
    project.reload()
    report = project.run([flow], "rc-fail", steps=["extract", "bronze", "silver"])
    (failed,) = [o for o in report.outcomes if not o.ok]
    tens = sum(1 for k in expected(project)["all"] if k % 10 == 0)
    assert f"silver write stopped, nothing written: expression(customer_id % 10 <> 0) [fail]: {tens} of " in failed.line
    assert "(keys: " in failed.line
    assert not dt.table_exists(project.spark, project.runtime.lake.silver(flow))
    assert not dt.table_exists(project.spark, project.runtime.lake.quarantine(flow))
    assert project.state.get_progress(flow, "silver") == 0  # the same batches are judged again next run
    statuses = {r.check_name: r.status for r in project.state.quality_results("rc-fail")}
    assert statuses["expression(customer_id % 10 <> 0)"] == "failed"


def test_a_run_killed_after_the_quarantine_commit_quarantines_nothing_twice(project: Any) -> None:
    flow = write_flow(project, name="rc_killed")
    env = {**os.environ, "PIPEZONE_HOME": str(project.root), "PIPEZONE_FAILPOINTS": "silver.after_quarantine"}
    killed = subprocess.run(
        [PIPEZONE, "run", flow, "--in-process"], cwd=project.root, env=env, capture_output=True, text=True, timeout=600
    )
    assert killed.returncode == -signal.SIGKILL, (killed.stdout + killed.stderr)[-2000:]
    quarantine = project.runtime.lake.quarantine(flow)
    assert dt.table_exists(project.spark, quarantine)
    assert not dt.table_exists(project.spark, project.runtime.lake.silver(flow))

    report = project.run([flow], "rc-rerun")
    assert report.ok, [o.line for o in report.outcomes if not o.ok]
    want = expected(project)
    rows = project.spark.read.format("delta").load(quarantine).select("customer_id").collect()
    assert sorted(r.customer_id for r in rows) == sorted(want["quarantine"])  # once each
    silver = project.spark.read.format("delta").load(project.runtime.lake.silver(flow))
    assert {r.customer_id for r in silver.select("customer_id").collect()} == want["silver"]


def test_the_demo_reviews_flow_holds_back_what_its_checks_say_and_tables_adds_it_up(project: Any) -> None:
    """metadata/flows/retail_reviews.yaml: one row check of each action on the demo shop's reviews."""
    report = project.run(["retail_reviews"], "reviews-1")
    assert report.ok, [o.line for o in report.outcomes if not o.ok]
    rows = project.query("SELECT review_id, rating, title, body FROM reviews")
    bad_rating = {r["review_id"] for r in rows if not 1 <= r["rating"] <= 5}
    blank = {r["review_id"] for r in rows if not r["body"].strip(" \t")} - bad_rating
    silver = project.spark.read.format("delta").load(project.runtime.lake.silver("retail_reviews"))
    assert {r.review_id for r in silver.collect()} == {r["review_id"] for r in rows} - bad_rating - blank
    log = project.logs("reviews-1", "retail_reviews")["silver"]
    assert (log.details["rows_quarantined"], log.details["rows_dropped"]) == (len(bad_rating), len(blank))
    untitled = results_by_name(project, "reviews-1")["not_null(title)"]
    assert (untitled.status, untitled.unexpected_count) == ("warned", sum(r["title"] is None for r in rows))

    (row,) = [r for r in layer_rows(project.runtime, project.spark) if r[0] == "retail_reviews"]
    assert row[1:] == [str(len(rows)), row[2], row[3], str(len(rows) - len(bad_rating) - len(blank))] + [
        str(len(blank)),
        str(len(bad_rating)),
        "yes*",
    ]


def results_by_name(project: Any, run_id: str) -> dict[str, Any]:
    return {r.check_name: r for r in project.state.quality_results(run_id)}


def test_fixed_quarantined_rows_replay_into_silver_once_and_the_rest_stay(
    project: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert project.run(["retail_reviews"], "replay-1").ok
    quarantine = project.runtime.lake.quarantine("retail_reviews")
    held = sorted(r.review_id for r in project.spark.read.format("delta").load(quarantine).collect())
    fixed, broken = held[: len(held) // 2], held[len(held) // 2 :]
    assert fixed and broken
    ids = ", ".join(map(str, fixed))
    project.spark.sql(f"UPDATE delta.`{quarantine}` SET rating = 3 WHERE review_id IN ({ids})")  # fixed in place
    monkeypatch.chdir(project.root)
    assert main(["quarantine", "retail_reviews", "--replay"]) == 0
    assert capsys.readouterr().out.strip() == (
        f"quarantine of retail_reviews: {len(held)} rows waited; {len(fixed)} written to silver, "
        f"{len(broken)} keys still fail their checks and stay"
    )
    # A warm Connect server lives for days: the frames the replay cached must not outlive it.
    assert project.spark._jsparkSession.sharedState().cacheManager().isEmpty()
    silver = project.spark.read.format("delta").load(project.runtime.lake.silver("retail_reviews"))
    replayed = {r.review_id: r.rating for r in silver.filter(f"review_id IN ({ids})").collect()}
    assert replayed == dict.fromkeys(fixed, 3)
    left = project.spark.read.format("delta").load(quarantine).collect()
    assert sorted(r.review_id for r in left) == broken

    assert main(["quarantine", "retail_reviews", "--replay"]) == 0  # again: nothing passes, nothing moves
    assert f"{len(broken)} rows waited; 0 written to silver" in capsys.readouterr().out
    assert main(["quarantine", "retail_reviews"]) == 0
    listing = capsys.readouterr().out
    assert f"accepted_values(rating)  {len(broken)}" in listing and f"{len(broken)} rows, quarantined" in listing
    assert project.run(["retail_reviews"], "replay-2").ok  # the next run: silver keeps the replayed rows
    silver = project.spark.read.format("delta").load(project.runtime.lake.silver("retail_reviews"))
    assert {r.review_id for r in silver.filter(f"review_id IN ({ids})").collect()} == set(fixed)
