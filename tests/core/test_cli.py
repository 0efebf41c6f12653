from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from pipezone.core.cli import main

REPO = Path(__file__).resolve().parents[2]
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
