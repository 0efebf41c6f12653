"""`pipezone verify` as a command: exit statuses, the summary line per flow, the keys listed, one line for a
flow that cannot be verified or does not exist, and the outcome in `pipezone state`.

(Named test_verify_command.py: tests/core/steps/test_verify.py holds the engine's tests, and these folders
are not packages, so two test_verify.py files would collide in pytest's module names.)"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pipezone.core.cli.main import main
from pipezone.core.runs.flow_runner import run_flows
from pipezone.core.spec.settings import load_settings
from pipezone.core.steps.runtime import load_runtime

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = pytest.mark.spark

REPO_ROOT = Path(__file__).resolve().parents[3]
FLOWS = {
    "items": "name: items\nsource:\n  connection: src\n  table: items\n  primary_key: [id]\n",
    "audit": "name: audit\nsource:\n  connection: src\n  table: items\nlayers:\n  silver:\n    write_mode: append\n",
    "daily": "name: daily\nlayers:\n  gold:\n    - name: daily\n      sql: SELECT COUNT(*) AS n FROM silver.items\n",
}


@pytest.fixture(scope="module")
def loaded(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite source of 50 items, loaded through silver; a flow without a key and a gold-only flow beside."""
    root = tmp_path_factory.mktemp("verify_cli")
    conn = sqlite3.connect(root / "src.db")
    conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, amount NUMERIC(10,2))")
    conn.executemany("INSERT INTO items VALUES (?, ?, ?)", [(i, f"n{i}", i * 1.5) for i in range(1, 51)])
    conn.commit()
    conn.close()
    meta = root / "metadata"
    for sub in ("connections", "flows", "profiles"):
        (meta / sub).mkdir(parents=True)
    (meta / "connections" / "src.yaml").write_text("name: src\ntype: sqlite\npath: src.db\n")
    (meta / "connections" / "lake.yaml").write_text("name: lake\ntype: local\npath: lake\n")
    (meta / "connections" / "state.yaml").write_text("name: state\ntype: sqlite\npath: state.db\n")
    (meta / "profiles" / "default.yaml").write_text("name: default\nlake: lake\nstate_store: state\n")
    for name, text in FLOWS.items():
        (meta / "flows" / f"{name}.yaml").write_text(text)
    (root / ".pipezone").mkdir()
    (root / ".pipezone" / "jars").symlink_to(REPO_ROOT / ".pipezone" / "jars", target_is_directory=True)
    runtime = load_runtime(load_settings(environ={}, cwd=root))
    report = run_flows(runtime, ["items"], in_process=True, progress=lambda _: None)
    runtime.state.close()
    assert report.ok, [o.line for o in report.outcomes]
    return root


@pytest.fixture
def project(loaded: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(loaded)
    for name in ("PIPEZONE_HOME", "PIPEZONE_METADATA", "PIPEZONE_PROFILE", "PIPEZONE_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    return loaded


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], list[str]]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err.splitlines()


def test_an_unknown_flow_is_one_line_and_exit_1(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "verify", "nope")
    assert (code, out) == (1, [])
    assert err == ["pipezone: error: unknown flow 'nope' (flows: audit, daily, items)"]


def test_no_flow_named_is_one_line_and_exit_1(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "verify")
    assert (code, out) == (1, [])
    assert err == ["pipezone: error: name one or more flows, or pass --all (not both)"]


def test_a_gold_only_flow_has_nothing_to_verify(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "verify", "daily")
    assert code == 0, err
    assert out[0] == "daily: nothing to verify: no source (a gold-only flow)"


def test_a_flow_without_primary_key_is_one_line_and_exit_1(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "verify", "audit")
    assert code == 1, err
    assert out[0] == "audit: not verifiable: no source.primary_key: verify matches silver's rows to the source's by key"
    assert out[1].endswith("1 flow(s): 1 not verifiable")


def test_clean_then_different_with_keys_listed_and_recorded(
    project: Path, spark: SparkSession, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "verify", "items")
    assert code == 0, (out, err)
    assert out[0].startswith("items: ok: 50 rows, source = silver (1 range, source read and hashed by Spark")
    assert out[1].endswith("1 flow(s): 1 clean")  # every column compared by value: no further line

    silver = f"delta.`{(project / 'lake' / 'silver' / 'items').resolve().as_uri()}`"
    spark.sql(f"UPDATE {silver} SET name = 'x' WHERE id = 7")
    spark.sql(f"DELETE FROM {silver} WHERE id IN (3, 4, 5, 6, 8, 9, 10)")
    code, out, err = run(capsys, "verify", "items")
    assert code == 1, err
    assert out[0].startswith("items: DIFFERENT: 7 missing, 0 extra, 1 different; source 50 rows, silver 43 (")
    assert out[1] == "  missing (in the source, not in silver): 3, 4, 5, 6, 8 ... (7 in all)"
    assert out[2] == "  different (same key, other values): 7"
    assert out[3] == "    7: name: source 'n7', silver 'x'"
    assert out[-1].startswith("verify ") and out[-1].endswith("1 flow(s): 1 different")

    code, out, err = run(capsys, "state", "items")
    assert code == 0, err
    verify_rows = [line for line in out if " verify " in line]
    assert verify_rows and "failed" in verify_rows[0] and "items: DIFFERENT: 7 missing" in verify_rows[0]
    assert any(" verify " in line and "success" in line for line in out)  # the clean run before it

    code, out, err = run(capsys, "verify", "--all")
    assert code == 1, err  # items differs; audit cannot be verified, which --all does not count against
    assert [line.split(":")[0] for line in out if not line.startswith(" ")][:3] == ["audit", "daily", "items"]
    assert out[-1].endswith("3 flow(s): 1 different, 1 not verifiable, 1 with nothing to verify")
