"""Incremental watermarks: the last committed cursor value of each flow, in `incremental_state`.

The next incremental extract starts from here, so a watermark is written only after the Delta commit it
describes and comes back as an equal value of the type it was set with (see `encoding`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete as sa_delete
from sqlalchemy import select

from pipezone.core.state.base import StoreBase
from pipezone.core.state.encoding import WatermarkValue, decode_watermark, encode_watermark
from pipezone.core.state.errors import StateStoreError
from pipezone.core.state.schema import incremental_state


@dataclass(frozen=True)
class Watermark:
    """The last committed cursor value of one flow, typed as it was set."""

    flow: str
    cursor_column: str
    value: WatermarkValue
    updated_at: datetime
    last_run_id: str | None


class WatermarkStore(StoreBase):
    """Read, set, move and list flows' watermarks."""

    def get_watermark(self, flow: str) -> Watermark | None:
        """The flow's committed watermark, or None before its first successful incremental run."""
        query = select(incremental_state).where(incremental_state.c.flow == flow)
        with self._transaction() as conn:
            row = conn.execute(query).first()
        return None if row is None else _watermark(row)

    def set_watermark(self, flow: str, cursor_column: str, value: WatermarkValue, run_id: str | None) -> None:
        """Record the flow's new watermark (call after the Delta commit it describes)."""
        type_tag, text = encode_watermark(value)
        values = {
            "cursor_column": cursor_column,
            "watermark_type": type_tag,
            "watermark": text,
            "updated_at": self._now(),
            "last_run_id": run_id,
        }
        self._upsert(incremental_state, {"flow": flow}, values, step_state=True)

    def reset_watermark(
        self, flow: str, to: WatermarkValue | None = None, *, cursor_column: str | None = None
    ) -> Watermark | None:
        """Delete the watermark (`to=None`, next run is a full load) or move it; returns the previous one.

        Moving a watermark that does not exist needs `cursor_column`.
        """
        previous = self.get_watermark(flow)
        if to is None:
            with self._transaction() as conn:
                conn.execute(sa_delete(incremental_state).where(incremental_state.c.flow == flow))
            return previous
        column = cursor_column or (previous.cursor_column if previous else None)
        if column is None:
            raise StateStoreError(f"flow {flow!r} has no watermark yet: pass cursor_column to set one")
        self.set_watermark(flow, column, to, run_id=None)
        return previous

    def watermarks(self) -> list[Watermark]:
        """All watermarks, by flow name."""
        query = select(incremental_state).order_by(incremental_state.c.flow)
        with self._transaction() as conn:
            return [_watermark(row) for row in conn.execute(query)]


def _watermark(row: Any) -> Watermark:
    return Watermark(
        flow=row.flow,
        cursor_column=row.cursor_column,
        value=decode_watermark(row.watermark_type, row.watermark),
        updated_at=row.updated_at,
        last_run_id=row.last_run_id,
    )
