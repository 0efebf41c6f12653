"""quality/validation.py's import ahead: a run that validates later imports Great Expectations on a
background thread, once, and the process waits for it before it exits (a fresh interpreter, so the
import is really the thread's)."""

from __future__ import annotations

import subprocess
import sys

PROGRAM = """
import sys, threading
from pipezone.core.quality import validation
assert "great_expectations" not in sys.modules
validation.import_ahead()
thread = validation._ahead
validation.import_ahead()  # once per process
assert validation._ahead is thread and thread.name == "pipezone-gx-import"
validation.import_done()
assert not thread.is_alive() and "great_expectations" in sys.modules
print("imported ahead")
"""


def test_great_expectations_is_imported_ahead_once_and_waited_for() -> None:
    done = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "imported ahead", done.stderr[-2000:]
