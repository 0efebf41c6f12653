"""Layer progress: the last batch each layer of a flow consumed, in `layer_progress`.

Bronze, silver and gold read what the layer below committed since their own position; keeping that
position apart from the watermark lets each layer catch up (or be rebuilt) on its own.
"""

from __future__ import annotations

from sqlalchemy import and_, select
from sqlalchemy import delete as sa_delete

from pipezone.core.state.base import StoreBase
from pipezone.core.state.schema import layer_progress


class LayerProgressStore(StoreBase):
    """Read, set and forget layers' batch positions."""

    def get_progress(self, flow: str, layer: str) -> int:
        """The last batch `layer` consumed for `flow` (0 before its first run)."""
        query = select(layer_progress.c.batch).where(
            and_(layer_progress.c.flow == flow, layer_progress.c.layer == layer)
        )
        with self._transaction() as conn:
            value = conn.execute(query).scalar()
        return int(value or 0)

    def set_progress(self, flow: str, layer: str, batch: int, run_id: str | None) -> None:
        """Record that `layer` consumed batches up to `batch` (call after the Delta commit)."""
        values = {"batch": batch, "last_run_id": run_id, "updated_at": self._now()}
        self._upsert(layer_progress, {"flow": flow, "layer": layer}, values, step_state=True)

    def reset_progress(self, flow: str) -> None:
        """Forget every layer's position for `flow` (used with a full rebuild)."""
        with self._transaction() as conn:
            conn.execute(sa_delete(layer_progress).where(layer_progress.c.flow == flow))
