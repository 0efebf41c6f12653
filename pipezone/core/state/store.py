"""Run history, incremental watermarks, table leases, registries and data-quality results, in SQLite or MySQL/MariaDB.

The store is the second half of the commit protocol (Delta first, state second), so it must be exact:
watermarks round-trip with a type tag, datetimes are stored as UTC with microseconds, and a retried step
becomes a new attempt instead of overwriting the evidence of the failed one.

This module only composes `StateStore`, the one class callers use, from one class per concern; each
concern (and its record types) lives in its own module next to this one, the shared plumbing in `base`.
"""

from __future__ import annotations

from pipezone.core.state.layer_progress import LayerProgressStore
from pipezone.core.state.leases import LeaseStore
from pipezone.core.state.quality_results import QualityStore
from pipezone.core.state.registries import RegistryStore
from pipezone.core.state.run_history import RunHistoryStore
from pipezone.core.state.watermarks import WatermarkStore


class StateStore(RunHistoryStore, WatermarkStore, RegistryStore, LayerProgressStore, LeaseStore, QualityStore):
    """Run logs, watermarks, registries and quality results behind one SQLAlchemy URL.

    The schema is migrated to head on first use (set `auto_migrate=False` to require `migrate()`).
    `clock` exists so tests can control timestamps; it must return aware datetimes.
    """

    def __repr__(self) -> str:
        return f"StateStore({self.display_url!r})"

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
