from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipezone.core.cli.main import main
from pipezone.core.state.leases import LeaseHolder
from pipezone.core.state.store import StateStore

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "fixtures" / "metadata"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the fixture metadata in a scratch project, as the working directory."""
    shutil.copytree(FIXTURES, tmp_path / "metadata")
    monkeypatch.chdir(tmp_path)
    for name in ("PIPEZONE_HOME", "PIPEZONE_METADATA", "SHOP_USER", "SHOP_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_show_never_prints_resolved_secrets(project: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP_USER", "env-user-7f3a")
    monkeypatch.setenv("SHOP_PASSWORD", "env-password-9c1d")
    (project / "secrets").mkdir()
    (project / "secrets" / "truststore.pw").write_text("file-password-4b2e\n")
    code, out, err = run(capsys, "show", "customers")
    assert code == 0, err
    for value in ("env-user-7f3a", "env-password-9c1d", "file-password-4b2e"):
        assert value not in out + err
    assert "password: ${env:SHOP_PASSWORD} (resolved, value hidden)" in out
    assert "trustStorePassword: ${file:secrets/truststore.pw} (resolved, value hidden)" in out
    assert "dag_id: pipezone_customers" in out


def test_show_reports_unresolvable_secret_without_failing(project: Path, capsys) -> None:
    code, out, _ = run(capsys, "show", "customers")
    assert code == 0
    assert "password: '${env:SHOP_PASSWORD} (UNRESOLVED: ${env:SHOP_PASSWORD}: environment variable" in out


def test_show_unknown_flow_is_one_line(project: Path, capsys) -> None:
    code, out, err = run(capsys, "show", "nope")
    assert code == 2
    assert err == "pipezone: error: unknown or invalid flow 'nope' (valid flows: customers, orders)\n"


def test_list_shows_flows(project: Path, capsys) -> None:
    code, out, _ = run(capsys, "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["FLOW", "SOURCE", "INCREMENTAL", "SCHEDULE", "STEPS"]
    assert lines[2].split() == [
        "orders",
        "shop:orders",
        "updated_at",
        "@hourly",
        "extract",
        ">",
        "bronze",
        ">",
        "silver",
    ]


def test_list_with_bad_file_still_lists_good_flows(project: Path, capsys) -> None:
    (project / "metadata" / "flows" / "broken.yaml").write_text("name: broken\nsource: [\n")
    code, out, err = run(capsys, "list")
    assert code == 1
    assert "orders" in out and "customers" in out
    assert "run `pipezone validate`" in err


def test_init_flow_introspects_sqlite(project: Path, capsys) -> None:
    db = sqlite3.connect(project / "shop.db")
    db.execute("CREATE TABLE invoices (invoice_id INTEGER PRIMARY KEY, amount NUMERIC, updated_at TIMESTAMP)")
    db.close()
    code, out, err = run(capsys, "init-flow", "shop", "invoices")
    assert code == 0, out + err
    text = (project / "metadata" / "flows" / "invoices.yaml").read_text()
    assert "primary_key: [invoice_id]" in text
    assert "cursor: updated_at" in text
    assert "ok: 1 file(s) valid" in err
    code, _, err = run(capsys, "init-flow", "shop", "invoices")
    assert code == 2 and "exists: pass --force" in err


def test_init_flow_missing_table_still_writes_valid_file(project: Path, capsys) -> None:
    sqlite3.connect(project / "shop.db").close()  # the database is there, the table is not
    code, out, err = run(capsys, "init-flow", "shop", "ghost", "--name", "ghost_flow")
    assert "could not introspect ghost" in out
    text = (project / "metadata" / "flows" / "ghost_flow.yaml").read_text()
    assert "write_mode: append" in text
    assert code == 0, err


def test_init_flow_rejects_lake_connection(project: Path, capsys) -> None:
    code, _, err = run(capsys, "init-flow", "lake", "t")
    assert code == 2
    assert "connection 'lake' has type 'local', which is not a source type" in err


def test_console_script_runs_without_traceback(tmp_path: Path) -> None:
    (tmp_path / "metadata" / "flows").mkdir(parents=True)
    (tmp_path / "metadata" / "flows" / "x.yaml").write_text("name: x\n\tsource: 1\n")
    exe = Path(sys.executable).with_name("pipezone")
    result = subprocess.run([str(exe), "validate"], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert result.stdout == "metadata/flows/x.yaml:2:1: yaml: tab character: YAML indentation must use spaces\n"
    assert "Traceback" not in result.stderr


# -- state reset ----------------------------------------------------------------------------------------

SAFE_REREAD = "rows read again are not duplicated (bronze and silver skip versions they have, merge is forward-only)"


@pytest.fixture
def state_db(project: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StateStore]:
    """The project with a default profile (state in .pipezone/state.db); the store, as another process sees it."""
    monkeypatch.delenv("PIPEZONE_PROFILE", raising=False)
    (project / "metadata" / "profiles").mkdir()
    (project / "metadata" / "profiles" / "default.yaml").write_text("name: default\nlake: lake\nstate_store: state\n")
    (project / "metadata" / "connections" / "state.yaml").write_text(
        "name: state\ntype: sqlite\npath: .pipezone/state.db\n"
    )
    with StateStore(f"sqlite:///{project / '.pipezone' / 'state.db'}") as store:
        yield store


def test_state_reset_deletes_the_watermark(state_db: StateStore, capsys) -> None:
    state_db.set_watermark("orders", "updated_at", datetime(2024, 3, 1, tzinfo=UTC), "run-1")
    code, out, err = run(capsys, "state", "reset", "orders")
    assert code == 0, err
    assert out == (
        "flow orders: watermark 2024-03-01 00:00:00+00:00 -> (none): the next run reads the whole source; "
        f"{SAFE_REREAD}\n"
    )
    assert state_db.get_watermark("orders") is None
    assert [state_db.get_lease(t) for t in ("raw.orders", "bronze.orders", "silver.orders")] == [None] * 3


def test_state_reset_to_a_value_of_the_cursor_type(state_db: StateStore, capsys) -> None:
    state_db.set_watermark("orders", "updated_at", datetime(2024, 3, 1, tzinfo=UTC), "run-1")
    code, out, err = run(capsys, "state", "reset", "orders", "--to", "2024-02-01")
    assert code == 0, err
    assert out == (
        "flow orders: watermark 2024-03-01 00:00:00+00:00 -> 2024-02-01 00:00:00+00:00: the next run reads rows "
        f"with updated_at after 2024-02-01 00:00:00+00:00; {SAFE_REREAD}\n"
    )
    mark = state_db.get_watermark("orders")
    assert (mark.value, mark.cursor_column, mark.last_run_id) == (datetime(2024, 2, 1, tzinfo=UTC), "updated_at", None)

    code, out, err = run(capsys, "state", "reset", "orders", "--to", "2024-04-01T06:30:00+02:00")
    assert code == 0, err
    assert "rows between 2024-02-01 00:00:00+00:00 and 2024-04-01 04:30:00+00:00 not read yet are skipped" in out
    assert state_db.get_watermark("orders").value == datetime(2024, 4, 1, 4, 30, tzinfo=UTC)


def test_state_reset_keeps_a_numeric_watermark_numeric(state_db: StateStore, capsys) -> None:
    state_db.set_watermark("orders", "updated_at", 120, "run-1")
    code, out, err = run(capsys, "state", "reset", "orders", "--to", "100")
    assert code == 0, err
    assert out.startswith("flow orders: watermark 120 -> 100: the next run reads rows with updated_at after 100;")
    assert state_db.get_watermark("orders").value == 100


def test_state_reset_without_a_stored_watermark_infers_the_type(state_db: StateStore, capsys) -> None:
    code, out, err = run(capsys, "state", "reset", "orders", "--to", "2024-01-01 12:00:00")
    assert code == 0, err
    assert out.startswith("flow orders: watermark (none) -> 2024-01-01 12:00:00+00:00: ")
    assert state_db.get_watermark("orders").value == datetime(2024, 1, 1, 12, tzinfo=UTC)
    state_db.reset_watermark("orders")
    assert run(capsys, "state", "reset", "orders", "--to", "42")[0] == 0
    assert state_db.get_watermark("orders").value == 42


def test_state_reset_bad_value_is_one_line(state_db: StateStore, capsys) -> None:
    state_db.set_watermark("orders", "updated_at", datetime(2024, 3, 1, tzinfo=UTC), "run-1")
    code, out, err = run(capsys, "state", "reset", "orders", "--to", "yesterday")
    assert code == 2 and out == ""
    assert err == (
        "pipezone: error: flow orders: --to 'yesterday' is not a valid watermark for cursor updated_at"
        " (type datetime): expected an ISO date/time, e.g. 2024-02-01 or 2024-02-01T06:30:00Z"
        " (UTC unless an offset is given)\n"
    )
    state_db.set_watermark("orders", "updated_at", 7, "run-1")
    code, _, err = run(capsys, "state", "reset", "orders", "--to", "2024-02-01")
    assert code == 2
    assert "--to '2024-02-01' is not a valid watermark for cursor updated_at (type int): expected an integer" in err
    assert state_db.get_watermark("orders").value == 7


def test_state_reset_unknown_or_full_load_flow_is_one_line(state_db: StateStore, capsys) -> None:
    code, _, err = run(capsys, "state", "reset", "nope")
    assert code == 2
    assert err == "pipezone: error: unknown flow 'nope' (flows: customers, orders)\n"
    code, _, err = run(capsys, "state", "reset", "customers", "--to", "5")
    assert code == 2
    assert err == ("pipezone: error: flow customers has no source.incremental: it reads its whole source every run\n")
    code, _, err = run(capsys, "state", "reset")
    assert code == 2 and err == "pipezone: error: name the flow: pipezone state reset FLOW [--to VALUE]\n"


def test_state_reset_is_refused_while_the_flow_runs(state_db: StateStore, capsys) -> None:
    state_db.set_watermark("orders", "updated_at", 9, "run-1")
    writer = LeaseHolder("scheduled__2", "orders", "silver", "etl-2", 4242)
    assert state_db.take_lease("silver.orders", writer, ttl_s=120) is None
    code, out, err = run(capsys, "state", "reset", "orders")
    assert code == 2 and out == ""
    assert err == (
        "pipezone: error: flow orders is running (step silver, run scheduled__2, host etl-2, pid 4242):"
        " reset after it finishes\n"
    )
    assert state_db.get_watermark("orders").value == 9
    assert state_db.get_lease("raw.orders") is None  # taken for the attempt, given back
    state_db.release_lease("silver.orders", writer)
    assert run(capsys, "state", "reset", "orders")[0] == 0
    assert state_db.get_watermark("orders") is None


def test_state_still_shows_watermarks_and_rejects_reset_options(state_db: StateStore, capsys) -> None:
    state_db.set_watermark("orders", "updated_at", 9, "run-1")
    code, out, err = run(capsys, "state", "orders", "--limit", "5")
    assert code == 0, err
    assert out.startswith("Watermarks\n") and "orders" in out and "run-1" in out
    code, _, err = run(capsys, "state", "orders", "--to", "5")
    assert code == 2 and "--to go with `pipezone state reset FLOW [--to VALUE]` only" in err
