"""Failpoints: unarmed points do nothing, an armed one kills the process outright (SIGKILL), a typo is refused."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from pipezone.core import failpoints
from pipezone.core.spec.settings import load_settings


def test_unknown_points_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown failpoint\\(s\\) extract.after_comit"):
        failpoints.arm(["extract.after_comit"])


def test_settings_read_the_armed_points(tmp_path) -> None:  # noqa: ANN001
    settings = load_settings(environ={"PIPEZONE_FAILPOINTS": "extract.after_commit, silver.state_update"}, cwd=tmp_path)
    assert settings.failpoints == ("extract.after_commit", "silver.state_update")
    assert load_settings(environ={}, cwd=tmp_path).failpoints == ()


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)


def test_an_armed_point_kills_the_process_and_an_unarmed_one_does_not() -> None:
    prelude = "from pipezone.core import failpoints as f; f.arm(['bronze.after_commit']); "
    alive = _run(prelude + "f.reach('bronze.before_commit'); print('alive')")
    assert alive.returncode == 0 and alive.stdout.strip() == "alive"
    killed = _run(prelude + "f.reach('bronze.after_commit'); print('alive')")
    assert killed.returncode == -signal.SIGKILL and "alive" not in killed.stdout


def test_state_update_points_follow_the_running_step() -> None:
    code = (
        "from pipezone.core import failpoints as f; f.arm(['silver.state_update']); "
        "f.reach_step('state_update'); print('outside a step')\n"
        "with f.in_step('bronze'): f.reach_step('state_update'); print('in bronze')\n"
        "with f.in_step('silver'): f.reach_step('state_update'); print('in silver')\n"
    )
    proc = _run(code)
    assert proc.returncode == -signal.SIGKILL
    assert proc.stdout.split("\n")[:2] == ["outside a step", "in bronze"] and "in silver" not in proc.stdout
