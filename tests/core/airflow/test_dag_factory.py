"""The DAG factory through Airflow's own DagBag over dags/: ids, task order, Assets, docs, failure isolation,
deterministic serialization, no database or network at parse time, and the step operator.

DagBag parsing needs no Airflow database: AIRFLOW_HOME points at a throwaway folder (set before Airflow is
imported) and nothing here migrates a database.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("AIRFLOW_HOME", os.path.join(tempfile.gettempdir(), f"pipezone-airflow-home-{os.getuid()}"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

import pytest  # noqa: E402
from airflow.dag_processing.dagbag import DagBag  # noqa: E402
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException  # noqa: E402

from pipezone.core.airflow.dag_factory import START_DATE, build_dags  # noqa: E402
from pipezone.core.airflow.links import LakeLocationLink, SparkUiLink, browse_url  # noqa: E402
from pipezone.core.spec.settings import load_settings  # noqa: E402
from pipezone.core.steps.runtime import load_runtime  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
DAGS_DIR = REPO / "dags"
DEMO_STEPS = {
    "pipezone_retail_customers": ["extract", "bronze", "silver", "quality"],
    "pipezone_retail_products": ["extract", "bronze", "silver"],
    "pipezone_retail_orders": ["extract", "bronze", "silver", "quality"],
    "pipezone_retail_order_items": ["extract", "bronze", "silver"],
    "pipezone_retail_reviews": ["extract", "bronze", "silver", "quality"],
    "pipezone_retail_daily_revenue": ["gold", "quality", "export_retail_bi_daily_revenue"],
}
BROKEN_FLOW = """\
name: broken
source:
  connection: retail_demo
  tabel: customers
schedule: "0 25 * * *"
"""
SERIALIZE = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
from airflow.models.serialized_dag import SerializedDagModel
from airflow.serialization.serialized_objects import DagSerialization
bag = DagBag(sys.argv[1])
out = {"errors": bag.import_errors, "dags": {}}
for dag_id in sorted(bag.dags):
    data = DagSerialization.to_dict(bag.dags[dag_id])
    out["dags"][dag_id] = {"json": json.dumps(data, sort_keys=True), "hash": SerializedDagModel.hash(data)}
print(json.dumps(out))
"""
NO_IO_PARSE = """
import json, sys
def refuse(event, args):
    if event in ("socket.connect", "socket.getaddrinfo", "sqlite3.connect", "subprocess.Popen"):
        raise RuntimeError(f"parse-time I/O: {event}")
from airflow.dag_processing.dagbag import DagBag
sys.addaudithook(refuse)
bag = DagBag(sys.argv[1])
print(json.dumps({"dags": sorted(bag.dags), "errors": bag.import_errors}))
"""


def dagbag(monkeypatch: pytest.MonkeyPatch, home: Path, **env: str) -> DagBag:
    monkeypatch.setenv("PIPEZONE_HOME", str(home))
    monkeypatch.delenv("PIPEZONE_METADATA", raising=False)
    monkeypatch.delenv("PIPEZONE_PROFILE", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return DagBag(str(DAGS_DIR))


def scratch_project(tmp_path: Path) -> Path:
    """A copy of the repo's metadata in a project of its own (tests may break its files)."""
    home = tmp_path / "project"
    shutil.copytree(REPO / "metadata", home / "metadata")
    return home


def run_python(script: str, *args: str, home: Path, seed: str = "0") -> dict:
    env = {**os.environ, "PIPEZONE_HOME": str(home), "PYTHONHASHSEED": seed}
    proc = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, env=env, cwd=tempfile.gettempdir()
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def demo_bag() -> Iterator[DagBag]:
    with pytest.MonkeyPatch.context() as mp:
        yield dagbag(mp, REPO)


# --------------------------------------------------------------------------- the demo flows


def test_dagbag_has_one_dag_per_demo_flow_and_no_import_errors(demo_bag: DagBag) -> None:
    assert demo_bag.import_errors == {}
    assert sorted(demo_bag.dags) == sorted(DEMO_STEPS)


def test_tasks_run_the_flow_steps_in_order(demo_bag: DagBag) -> None:
    for dag_id, steps in DEMO_STEPS.items():
        dag = demo_bag.dags[dag_id]
        assert [t.task_id for t in dag.topological_sort()] == steps
        for upstream, downstream in zip(steps, steps[1:], strict=False):
            assert dag.get_task(downstream).upstream_task_ids == {upstream}
        assert {type(t).__name__ for t in dag.tasks} == {"SparkStepOperator"}
        # a step skipped as idle (steps/idle.py) lets the next run and check for itself
        assert {t.trigger_rule for t in dag.tasks} == {"none_failed"}
        assert {(t.flow, t.step) for t in dag.tasks} == {(dag_id.removeprefix("pipezone_"), s) for s in steps}


def test_dag_settings_come_from_the_flow(demo_bag: DagBag) -> None:
    dag = demo_bag.dags["pipezone_retail_orders"]  # retries 3, retry_delay 2m, timeout 1h, */30 cron
    assert dag.start_date == START_DATE == datetime(2024, 1, 1, tzinfo=UTC)
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert dag.timetable.expression == "*/30 * * * *"
    assert set(dag.tags) == {"pipezone", "retail", "demo"}
    for task in dag.tasks:
        assert task.owner == "data-eng"
        assert task.retries == 3
        assert task.retry_delay == timedelta(minutes=2)
        assert task.retry_exponential_backoff == 2.0
        assert task.execution_timeout == timedelta(hours=1)
    daily = demo_bag.dags["pipezone_retail_products"]
    assert daily.timetable.expression == "0 0 * * *"  # @daily
    assert demo_bag.dags["pipezone_retail_customers"].timetable.expression == "0 * * * *"


def test_every_written_table_is_an_asset_and_downstream_flows_are_asset_scheduled(demo_bag: DagBag) -> None:
    orders = demo_bag.dags["pipezone_retail_orders"]
    outlets = {t.task_id: [(a.name, a.uri) for a in t.outlets] for t in orders.tasks}
    assert outlets == {
        "extract": [("pipezone.raw.retail_demo.orders", "x-pipezone://raw/retail_demo/orders")],
        "bronze": [("pipezone.bronze.retail_orders", "x-pipezone://bronze/retail_orders")],
        "silver": [("pipezone.silver.retail_orders", "x-pipezone://silver/retail_orders")],
        "quality": [],
    }
    revenue = demo_bag.dags["pipezone_retail_daily_revenue"]
    assert [a.name for a in revenue.get_task("gold").outlets] == ["pipezone.gold.daily_revenue"]
    export = revenue.get_task("export_retail_bi_daily_revenue")
    assert [a.name for a in export.outlets] == ["pipezone.export.retail_bi.daily_revenue"]
    assert export.upstream_task_ids == {"quality"}
    condition = revenue.timetable.asset_condition
    assert type(condition).__name__ == "AssetAll"
    assert sorted(a.name for a in condition.objects) == [
        "pipezone.silver.retail_order_items",
        "pipezone.silver.retail_orders",
        "pipezone.silver.retail_products",
    ]
    producers = {a.name: a.uri for dag in demo_bag.dags.values() for t in dag.tasks for a in t.outlets}
    for asset in condition.objects:
        assert producers[asset.name] == asset.uri  # the consumer waits on exactly what a producer emits


def test_doc_md_describes_the_flow(demo_bag: DagBag) -> None:
    doc = demo_bag.dags["pipezone_retail_orders"].doc_md
    for text in (
        "# retail_orders",
        "Orders; cancelled orders are kept in silver",
        "`metadata/flows/retail_orders.yaml`",
        "cron `*/30 * * * *` (UTC)",
        "`retail_demo` (sqlite",
        "cursor `updated_at`, lookback 5m",
        "| 3 | `silver` |",
        "`pipezone.silver.retail_orders`",
        "derive is_cancelled: status = 'cancelled'",
        "`accepted_values` column=status",
    ):
        assert text in doc
    revenue = demo_bag.dags["pipezone_retail_daily_revenue"].doc_md
    assert "after flows retail_orders, retail_order_items, retail_products" in revenue
    assert "FROM silver.retail_orders o" in revenue


def test_no_secret_reaches_the_dags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = scratch_project(tmp_path)
    (home / "metadata" / "connections" / "shop_db.yaml").write_text(
        "name: shop_db\ntype: mariadb\nhost: db.internal\ndatabase: shop\n"
        "user: ${env:PZ_TEST_DB_USER}\npassword: ${env:PZ_TEST_DB_PASSWORD}\n"
    )
    (home / "metadata" / "connections" / "bi.yaml").write_text(
        "name: bi\ntype: postgres\nhost: bi.internal\ndatabase: marts\n"
        "user: ${env:PZ_TEST_DB_USER}\npassword: ${env:PZ_TEST_DB_PASSWORD}\n"
    )
    (home / "metadata" / "flows" / "shop_orders.yaml").write_text(
        "name: shop_orders\nsource:\n  connection: shop_db\n  table: orders\n  primary_key: [id]\nschedule: '@once'\n"
        "exports:\n  - connection: bi\n    mode: upsert\n"
    )
    (home / "metadata" / "flows" / "shop_changes.yaml").write_text(
        "name: shop_changes\nsource:\n  connection: shop_db\n  table: changes\n  primary_key: [id]\n"
        "  cdc:\n    max_changes: 500\nschedule: '* * * * *'\n"
    )
    (home / "metadata" / "connections" / "events.yaml").write_text(
        "name: events\ntype: mongodb\nhost: mongo.internal\ndatabase: app\n"
        "user: ${env:PZ_TEST_DB_USER}\npassword: ${env:PZ_TEST_DB_PASSWORD}\n"
    )
    (home / "metadata" / "connections" / "partner.yaml").write_text(
        "name: partner\ntype: rest\nbase_url: https://partner.example.com/v1\n"
        "auth:\n  type: bearer\n  token: ${env:PZ_TEST_API_TOKEN}\n"
    )
    (home / "metadata" / "flows" / "app_events.yaml").write_text(
        "name: app_events\nsource:\n  connection: events\n  table: events\n  primary_key: [_id]\n"
        "  incremental: {cursor: ts}\n  documents: {nested: json, filter: {tenant: acme-7f3a}}\n"
    )
    (home / "metadata" / "flows" / "partner_orders.yaml").write_text(
        "name: partner_orders\nsource:\n  connection: partner\n  primary_key: [id]\n"
        "  incremental: {cursor: updated_at}\n  endpoint:\n    path: /orders\n    params: {tenant: acme-7f3a}\n"
        "    records: data\n    pagination: {style: link_header}\n    incremental_param: since\n"
    )
    bag = dagbag(
        monkeypatch,
        home,
        PZ_TEST_DB_USER="user-4c1d9e",
        PZ_TEST_DB_PASSWORD="pw-7f3a2b91",
        PZ_TEST_API_TOKEN="tok-93be0c55",
    )
    assert bag.import_errors == {}
    doc = bag.dags["pipezone_shop_orders"].doc_md
    assert "`shop_db` (mariadb, `db.internal:3306/shop`)" in doc
    assert type(bag.dags["pipezone_shop_orders"].timetable).__name__ == "OnceTimetable"
    orders = bag.dags["pipezone_shop_orders"]  # an export is a task after silver, its table an Asset
    assert [t.task_id for t in orders.tasks] == ["extract", "bronze", "silver", "export_bi_shop_orders"]
    assert [a.name for a in orders.get_task("export_bi_shop_orders").outlets] == ["pipezone.export.bi.shop_orders"]
    assert "writes silver.shop_orders to `bi`: `shop_orders` (upsert" in doc
    changes = bag.dags["pipezone_shop_changes"].doc_md  # a CDC flow's doc says where its position and lag are
    assert "| change data capture | the replication log after the stored position, at most 500 changes" in changes
    assert "`pipezone state shop_changes` (position, log head, bytes and seconds behind)" in changes
    assert "appends the changes committed after the stored log position" in changes
    events = bag.dags["pipezone_app_events"].doc_md  # document sources: where, never who
    assert "`events` (mongodb, `mongo.internal:27017/app`)" in events and "| collection | `events` |" in events
    assert "reads the collection's documents in the cursor window with pymongo" in events
    partner = bag.dags["pipezone_partner_orders"].doc_md  # the endpoint without parameter values
    assert "`partner` (rest, `https://partner.example.com/v1, auth bearer`)" in partner
    assert "GET `/orders`, records at `data`" in partner and "| query parameters | `tenant` |" in partner
    assert "acme-7f3a" not in partner and "reads the endpoint's pages" in partner
    from airflow.serialization.serialized_objects import DagSerialization

    for dag in bag.dags.values():
        text = json.dumps(DagSerialization.to_dict(dag))
        for secret in ("user-4c1d9e", "pw-7f3a2b91", "${env:PZ_TEST_DB_PASSWORD}", "tok-93be0c55"):
            assert secret not in text, f"{secret} in {dag.dag_id}"


# --------------------------------------------------------------------------- failure isolation


def test_broken_flow_file_gets_a_placeholder_and_the_good_dags_stay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = scratch_project(tmp_path)
    (home / "metadata" / "flows" / "broken.yaml").write_text(BROKEN_FLOW)
    (home / "metadata" / "flows" / "tabs.yaml").write_text("name: tabs\nsource:\n\tconnection: x\n")
    bag = dagbag(monkeypatch, home)
    assert bag.import_errors == {}
    assert set(DEMO_STEPS) <= set(bag.dags)
    assert sorted(set(bag.dags) - set(DEMO_STEPS)) == ["pipezone_invalid_broken", "pipezone_invalid_tabs"]
    placeholder = bag.dags["pipezone_invalid_broken"]
    assert placeholder.is_paused_upon_creation is True
    assert type(placeholder.timetable).__name__ == "NullTimetable"
    assert "pipezone-invalid" in placeholder.tags
    assert "metadata/flows/broken.yaml:4:3: source.tabel: unknown key 'tabel' (did you mean 'table'?)" in (
        placeholder.doc_md
    )
    assert "metadata/flows/broken.yaml:5:11: schedule: invalid cron '0 25 * * *'" in placeholder.doc_md
    assert "metadata/flows/tabs.yaml:3:1: yaml: tab character" in bag.dags["pipezone_invalid_tabs"].doc_md
    task = placeholder.get_task("report_problems")
    with pytest.raises(AirflowFailException, match=r"metadata/flows/broken\.yaml:4:3: source\.tabel"):
        task.execute({})


def test_broken_upstream_flow_keeps_the_downstream_dag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = scratch_project(tmp_path)
    orders = home / "metadata" / "flows" / "retail_orders.yaml"
    orders.write_text(orders.read_text().replace("retries: 3", "retries: 3\nretires: 4"))
    bag = dagbag(monkeypatch, home)
    assert "pipezone_retail_orders" not in bag.dags
    assert "unknown key 'retires'" in bag.dags["pipezone_invalid_retail_orders"].doc_md
    revenue = bag.dags["pipezone_retail_daily_revenue"]
    assert "schedule.after[0]: unknown flow 'retail_orders'" in revenue.doc_md
    assert "pipezone.silver.retail_orders" in {a.name for a in revenue.timetable.asset_condition.objects}


def test_the_loader_never_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pipezone.core.airflow.dag_factory as factory

    def explode(*_: object, **__: object) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(factory, "load_catalog", explode)
    dags = build_dags(load_settings(environ={"PIPEZONE_HOME": str(REPO)}), use_context=False)
    assert list(dags) == ["pipezone_invalid_metadata"]
    assert "OSError: disk on fire" in dags["pipezone_invalid_metadata"].doc_md


# --------------------------------------------------------------------------- parse cost


def test_two_parses_serialize_identically(tmp_path: Path) -> None:
    home = scratch_project(tmp_path)
    (home / "metadata" / "flows" / "broken.yaml").write_text(BROKEN_FLOW)
    first = run_python(SERIALIZE, str(DAGS_DIR), home=home, seed="1")
    second = run_python(SERIALIZE, str(DAGS_DIR), home=home, seed="2")
    assert first["errors"] == {} and len(first["dags"]) == len(DEMO_STEPS) + 1  # and the broken flow's
    assert first == second


def test_parsing_opens_no_database_socket_or_process(tmp_path: Path) -> None:
    home = scratch_project(tmp_path)
    (home / "metadata" / "flows" / "broken.yaml").write_text(BROKEN_FLOW)
    out = run_python(NO_IO_PARSE, str(DAGS_DIR), home=home)
    assert out["errors"] == {}
    assert sorted(out["dags"]) == sorted([*DEMO_STEPS, "pipezone_invalid_broken"])


def test_running_a_task_builds_only_its_dag(monkeypatch: pytest.MonkeyPatch) -> None:
    bag = dagbag(monkeypatch, REPO, _AIRFLOW_PARSING_CONTEXT_DAG_ID="pipezone_retail_orders")
    assert list(bag.dags) == ["pipezone_retail_orders"]


# --------------------------------------------------------------------------- the operator and its links


@pytest.fixture
def orders_task(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PIPEZONE_HOME", str(REPO))
    monkeypatch.delenv("PIPEZONE_PROFILE", raising=False)
    dags = build_dags(load_settings(environ={"PIPEZONE_HOME": str(REPO)}), use_context=False)
    return dags["pipezone_retail_orders"].get_task("extract")


def test_operator_submits_the_step_with_airflow_run_id(orders_task, monkeypatch: pytest.MonkeyPatch) -> None:
    import pipezone.core.runs.flow_runner as flow_runner

    calls = []

    def fake_submit(runtime, flow, step, run_id, full_refresh, backfill=None):
        calls.append((flow, step, run_id, full_refresh, runtime.profile.name))
        line = f"pipezone {step} {flow} run={run_id}: rows in 3, rows out 3, 10 bytes in 0.1 s"
        return [sys.executable, "-c", f"import sys; print('spark says hi', file=sys.stderr); print({line!r})"]

    monkeypatch.setattr(flow_runner, "submit_command", fake_submit)
    run_id = "scheduled__2024-01-01T00:00:00+00:00"
    result = orders_task.execute({"run_id": run_id, "dag_run": SimpleNamespace(conf={"full_refresh": True})})
    orders_task.execute({"run_id": run_id, "dag_run": SimpleNamespace(conf={})})
    assert calls == [
        ("retail_orders", "extract", run_id, True, "default"),
        ("retail_orders", "extract", run_id, False, "default"),
    ]
    assert result == f"pipezone extract retail_orders run={run_id}: rows in 3, rows out 3, 10 bytes in 0.1 s"
    lake = LakeLocationLink().get_link(orders_task, ti_key=None)
    assert lake.startswith("file://") and lake.endswith("/.pipezone/lake/raw/retail_demo/orders")
    assert SparkUiLink().get_link(orders_task, ti_key=None) == ""  # the default profile sets no ui_url


def test_operator_fails_with_the_job_error_line(orders_task, monkeypatch: pytest.MonkeyPatch) -> None:
    import pipezone.core.runs.flow_runner as flow_runner

    script = textwrap.dedent(
        """
        import sys
        print("26/01/01 WARN noise", file=sys.stderr)
        print("pipezone: error: flow retail_orders, step extract (connection retail_demo): no such table: orders",
              file=sys.stderr)
        sys.exit(1)
        """
    )
    monkeypatch.setattr(flow_runner, "submit_command", lambda *a: [sys.executable, "-c", script])
    with pytest.raises(AirflowException) as caught:
        orders_task.execute({"run_id": "manual__1", "params": {}})
    assert str(caught.value) == "flow retail_orders, step extract (connection retail_demo): no such table: orders"

    monkeypatch.setattr(flow_runner, "submit_command", lambda *a: [sys.executable, "-c", "import sys; sys.exit(3)"])
    with pytest.raises(AirflowException, match="process exited with 3"):
        orders_task.execute({"run_id": "manual__1", "params": {}})


def test_operator_reads_the_profile_at_execution_time(orders_task, tmp_path, monkeypatch) -> None:
    home = scratch_project(tmp_path)
    (home / "metadata" / "profiles" / "cluster.yaml").write_text(
        "name: cluster\nlake: local_lake\nstate_store: local_state\n"
        "spark: {master: 'spark://spark-master:7077', ui_url: 'http://spark-master:8080'}\n"
    )
    import pipezone.core.runs.flow_runner as flow_runner

    masters = []

    def fake_submit(runtime, flow, step, run_id, full_refresh, backfill=None):
        masters.append(runtime.profile.spark.master)
        return [sys.executable, "-c", "print('pipezone ok')"]

    monkeypatch.setattr(flow_runner, "submit_command", fake_submit)
    monkeypatch.setenv("PIPEZONE_HOME", str(home))
    monkeypatch.setenv("PIPEZONE_PROFILE", "cluster")
    orders_task.execute({"run_id": "manual__2", "params": {}})
    assert masters == ["spark://spark-master:7077"]
    assert SparkUiLink().get_link(orders_task, ti_key=None) == "http://spark-master:8080"


def test_operator_skips_a_step_that_proves_it_has_nothing_to_do(orders_task, monkeypatch: pytest.MonkeyPatch) -> None:
    """No process starts; the run history gets the reason; the task is skipped (no Asset event)."""
    import pipezone.core.runs.flow_runner as flow_runner
    import pipezone.core.steps.idle as idle

    bronze = orders_task.dag.get_task("bronze")
    asked, recorded, why = [], [], "nothing new: raw batch 3 already consumed"
    monkeypatch.setattr(idle, "idle_reason", lambda runtime, flow, step, **o: asked.append((flow.name, step, o)) or why)
    monkeypatch.setattr(idle, "record_idle", lambda runtime, *args: recorded.append(args))
    monkeypatch.setattr(flow_runner, "submit_command", lambda *a: pytest.fail("an idle step must not start"))
    with pytest.raises(AirflowSkipException, match="retail_orders, step bronze: nothing new: raw batch 3"):
        bronze.execute({"run_id": "manual__9", "params": {}})
    assert asked == [("retail_orders", "bronze", {"full_refresh": False, "backfill": None})]
    assert recorded == [("retail_orders", "bronze", "manual__9", why)]


def test_a_connect_profile_links_the_servers_spark_ui(orders_task, tmp_path, monkeypatch) -> None:
    home = scratch_project(tmp_path)
    (home / "metadata" / "profiles" / "warm_cluster.yaml").write_text(
        "name: warm_cluster\nlake: local_lake\nstate_store: local_state\n"
        "spark: {master: 'spark://spark-master:7077', ui_url: 'http://spark-master:8080', "
        "connect_url: 'sc://spark-connect:15002', connect_ui_url: 'http://spark-connect:4040'}\n"
    )
    monkeypatch.setenv("PIPEZONE_HOME", str(home))
    monkeypatch.setenv("PIPEZONE_PROFILE", "warm_cluster")
    # The task's own process is the server's client (no job process): here no server answers, in one line.
    with pytest.raises(AirflowException) as caught:
        orders_task.execute({"run_id": "manual__3", "params": {}})
    assert str(caught.value).startswith(
        "flow retail_orders, step extract: Spark Connect server sc://spark-connect:15002 does not answer"
    ), caught.value
    assert "\n" not in str(caught.value)
    assert SparkUiLink().get_link(orders_task, ti_key=None) == "http://spark-connect:4040"


def test_lake_links_open_the_console_for_s3_lakes() -> None:
    assert browse_url("s3a://silver/retail_orders", "http://localhost:9001") == (
        "http://localhost:9001/browser/silver/cmV0YWlsX29yZGVycy8="
    )
    assert browse_url("s3a://silver/retail_orders", None) == (
        "https://s3.console.aws.amazon.com/s3/buckets/silver?prefix=retail_orders/"
    )
    assert browse_url("file:///lake/silver/x", "http://localhost:9001") == "file:///lake/silver/x"


def test_runtime_of_the_demo_profile_is_local() -> None:
    runtime = load_runtime(load_settings(environ={"PIPEZONE_HOME": str(REPO)}))
    assert runtime.profile.spark.master.startswith("local")


def test_the_plugin_registers_the_operator_links() -> None:
    import importlib.util

    from pipezone.core.airflow.operator import SparkStepOperator

    spec = importlib.util.spec_from_file_location("pipezone_links_plugin", REPO / "plugins" / "pipezone_links.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    names = [link.name for link in module.PipeZoneLinksPlugin.operator_extra_links]
    assert (
        names
        == [link.name for link in SparkStepOperator.operator_extra_links]
        == ["Spark UI", "Lake location", "Data Docs"]
    )


def test_trigger_config_selects_full_refresh_and_backfill_windows() -> None:
    from types import SimpleNamespace

    from airflow.sdk.exceptions import AirflowFailException

    from pipezone.core.airflow.operator import backfill_window, wants_full_refresh

    def context(conf: dict) -> dict:
        return {"dag_run": SimpleNamespace(conf=conf), "params": {}}

    assert not wants_full_refresh(context({})) and wants_full_refresh(context({"full_refresh": True}))
    assert backfill_window(context({})) is None
    window = {"backfill": {"start": "2024-01-01", "end": "2024-02-01"}}
    assert backfill_window(context(window)) == ("2024-01-01", "2024-02-01")
    with pytest.raises(AirflowFailException, match='backfill config .*expected {"start"'):
        backfill_window(context({"backfill": {"start": "2024-01-01"}}))
