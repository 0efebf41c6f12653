"""Which lake tables a flow's table-level checks judge, and the fingerprint of those checks.

Kept free of Great Expectations (whose import alone costs seconds of CPU): the quality step uses it to
decide whether the last outcomes still hold, and `steps/idle.py` to prove, without starting the step,
that nothing it checks has changed since.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pipezone.core.lake.layout import LakeLayout
from pipezone.core.spec.flow import FlowSpec
from pipezone.core.spec.quality import QualityCheck, row_level


def table_checks(flow: FlowSpec) -> list[tuple[int, QualityCheck]]:
    """The flow's table-level checks, numbered as in the flow file."""
    return [(i, check) for i, check in enumerate(flow.quality) if not row_level(check)]


def checked_path(lake: LakeLayout, flow: FlowSpec, check: QualityCheck) -> tuple[str, str]:
    """(name, lake path) of the table a check judges."""
    if check.layer == "gold":
        gold = flow.layers.gold
        name = check.table or (gold[0].name if len(gold) == 1 else None)
        if name is None:
            raise ValueError(f"check {check.check} on gold needs 'table' (this flow has {len(gold)} gold tables)")
        return f"gold.{name}", lake.gold(name)
    if check.layer == "silver":
        return f"silver.{flow.name}", lake.silver(flow.name)
    return f"bronze.{flow.name}", lake.bronze(flow.name)


def checks_hash(checks: list[tuple[int, QualityCheck]]) -> str:
    """A short fingerprint of the checks as written: a changed check invalidates earlier outcomes."""
    dumped = [check.model_dump(mode="json") for _, check in checks]
    return hashlib.sha256(json.dumps(dumped, sort_keys=True).encode()).hexdigest()[:16]


def judgement(checks: list[tuple[int, QualityCheck]], versions: dict[str, int | None]) -> dict[str, Any]:
    """What a quality run judged (the checks' fingerprint, each checked table's content version), as its
    run record keeps it: equal records mean the outcomes still hold (the step reuses them, idle.py skips)."""
    return {"checks": checks_hash(checks), "versions": versions}
