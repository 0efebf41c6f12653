"""The change-stream contract: what the CDC extract step asks of a database's replication log.

A flow with `source.cdc` reads its table's changes from the log instead of a cursor window. Each run:
1. the first time, `snapshot()` reads the table in one transaction consistent with a log position P0 and
   the stream starts at P0 (no gap, no duplicate: the snapshot holds every change before P0, the stream
   every change after);
2. then `changes(after=P, limits)` reads whole transactions committed after P, up to the limits, in commit
   order, and says where it stopped (`ChangeBatch.end`, a transaction boundary) and how far the log's head
   is (`lag`);
3. the extract step appends the changes to raw (one Delta commit, txnVersion = batch) and only then stores
   `end` in the state store; `acknowledge(end)` lets the server free the log before it (PostgreSQL's slot).
   A run killed anywhere replays from the stored position: Delta skips a batch it already holds.

Positions are opaque to the step except for `order` (an integer that grows along the log, for the change
order column) and `text` (stored in the state store, shown by `pipezone state`, parsed back by the reader).
A purged log file or a dropped slot is `LogUnavailable`: one line naming it and the recovery.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

Operation = Literal["c", "u", "d", "r"]  # insert, update, delete, snapshot read (Debezium's letters)

# Raw's change columns are in lake/delta_tables.py (OPERATION, LOG_POSITION, COMMIT_TS, CHANGE_ORDER).
ORDER_SPAN = 10**9  # at most this many row changes per transaction


class LogUnavailable(Exception):
    """The stored position is no longer in the server's log (a purged binlog, a dropped or invalidated slot):
    continuing would skip changes, so the run fails naming what is gone and `pipezone state reset FLOW`."""


@dataclass(frozen=True, order=True)
class LogPosition:
    """A point in the log: `order` grows along it (comparable), `text` is the server's own notation."""

    order: int
    text: str = field(compare=False)


@dataclass(frozen=True)
class Change:
    """One row change: the row's image (after an insert or update, before a delete), column -> value in the
    types the table's snapshot read gives (the reader normalizes), at its transaction's commit position."""

    op: Operation
    row: Mapping[str, Any]
    position: LogPosition
    index: int  # the change's place in its transaction (0, 1, ...)
    committed_at: datetime | None

    @property
    def order(self) -> int:
        return self.position.order * ORDER_SPAN + self.index


@dataclass(frozen=True)
class Lag:
    """How far the stream is behind the server's log head after a read."""

    head: str  # the head's position, server notation
    bytes_behind: int | None
    seconds_behind: float | None  # now - commit time of the last change read (None: nothing read)


@dataclass(frozen=True)
class ChangeLimits:
    """A run's bounds, so each micro-batch ends: whichever comes first."""

    max_changes: int
    max_seconds: float


@dataclass
class ChangeBatch:
    """The changes of whole transactions after a position, and where the next read starts."""

    changes: list[Change]
    end: LogPosition  # resume after this (the last transaction read, or the start when none)
    lag: Lag
    columns: list[str] | None = None  # the table's columns as the log knows them now (DDL), None: unknown


@dataclass
class Snapshot:
    """The table as of `position`, as batches of rows (column -> value, same types as changes)."""

    position: LogPosition
    rows: Iterator[list[Mapping[str, Any]]]
    close: Any = None  # a callable ending the snapshot's transaction, if it holds one


class ChangeStream(ABC):
    """One flow's table in one database's log. Opened per run; `close()` releases connections."""

    @abstractmethod
    def parse_position(self, text: str) -> LogPosition:
        """A stored position read back; a malformed one raises ValueError naming it."""

    @abstractmethod
    def snapshot(self) -> Snapshot:
        """Prepare the stream (a PostgreSQL slot) and read the table consistent with the position it starts at."""

    @abstractmethod
    def changes(self, after: LogPosition, limits: ChangeLimits) -> ChangeBatch:
        """Whole transactions committed after `after`, up to `limits`; LogUnavailable when `after` is gone."""

    def acknowledge(self, position: LogPosition) -> None:  # noqa: B027 - most logs need no acknowledgement
        """The lake holds everything up to `position`: the server may free its log before it."""

    def status(self, position: LogPosition | None) -> dict[str, Any]:
        """What `pipezone state` shows: head, lag in bytes, and anything abandoned (an unused slot)."""
        return {}

    def close(self) -> None:  # noqa: B027
        """Release connections."""
