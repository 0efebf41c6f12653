from __future__ import annotations

from pathlib import Path

import pytest

from pipezone.core.cli.main import main
from pipezone.core.spec.settings import load_settings


def test_spark_launcher_defaults_to_spark_submit(tmp_path: Path) -> None:
    assert load_settings(environ={}, cwd=tmp_path).spark_launcher == "spark-submit"
    env = {"PIPEZONE_SPARK_LAUNCHER": "in-process"}
    assert load_settings(environ=env, cwd=tmp_path).spark_launcher == "in-process"


def test_unknown_spark_launcher_fails_what_it_affects_only(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad PIPEZONE_SPARK_LAUNCHER does not hide the catalog: listing and validating work, running fails."""
    monkeypatch.setenv("PIPEZONE_SPARK_LAUNCHER", "yarn")
    assert main(["list"]) == 0
    assert main(["validate"]) == 0
    capsys.readouterr()
    assert main(["run", "retail_products", "--airflow"]) == 2
    assert capsys.readouterr().err == (
        "pipezone: error: PIPEZONE_SPARK_LAUNCHER='yarn': expected one of spark-submit, in-process\n"
    )


def test_run_through_airflow_refuses_options_it_cannot_honour(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "retail_products", "--airflow", "--full-refresh"]) == 2
    assert "--airflow runs whole DAGs with Airflow's run ids: drop --full-refresh" in capsys.readouterr().err
