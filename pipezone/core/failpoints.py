"""Named points where this process can be made to die, to prove that no crash loses or duplicates a row.

Fault-injection tests arm points (`PIPEZONE_FAILPOINTS=extract.after_commit`, read by the config layer)
for one spark-submit; reaching an armed point kills the process with SIGKILL: no `finally`, no
rollback, no flush, exactly like an OOM kill or a lost node. Unarmed points cost one set lookup.

Points: `<step>.before_commit` (data computed, nothing written), `<step>.after_commit` (the Delta
commit landed, the state store not yet updated) and `<step>.state_update` (inside the state store's
transaction, before it commits), for step extract, bronze and silver; and for export (every `export_*`
step): before the destination's write, after its commit, inside the state update.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable

POINTS = (
    *(
        f"{step}.{point}"
        for step in ("extract", "bronze", "silver", "export")
        for point in ("before_commit", "after_commit", "state_update")
    ),
    "silver.after_quarantine",  # rows held back by row checks committed to quarantine, silver not yet
)

_armed: set[str] = set()
_current_step: list[str] = []


def arm(points: Iterable[str]) -> None:
    """Arm these points (unknown names are refused, so a typo can't make a fault test pass vacuously)."""
    points = set(points)
    unknown = points - set(POINTS)
    if unknown:
        raise ValueError(f"unknown failpoint(s) {', '.join(sorted(unknown))}; known: {', '.join(POINTS)}")
    _armed.clear()
    _armed.update(points)


def reach(point: str) -> None:
    """Die here if `point` is armed."""
    if point in _armed:
        os.kill(os.getpid(), signal.SIGKILL)


def reach_step(point: str) -> None:
    """Die here if `<current step>.point` is armed (for code shared by steps, e.g. the state store)."""
    if _current_step:
        reach(f"{_current_step[-1]}.{point}")


class in_step:  # noqa: N801 - used as a context manager: `with failpoints.in_step("extract"):`
    """Marks the step running in this process, for `reach_step`."""

    def __init__(self, step: str) -> None:
        self.step = step

    def __enter__(self) -> None:
        _current_step.append(self.step)

    def __exit__(self, *_exc: object) -> None:
        _current_step.pop()
