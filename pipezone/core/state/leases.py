"""Table lease rows: who writes a lake table, until when, taken and renewed by compare-and-set.

These are the primitives under `table_lease` (which waits, heartbeats and reports); they are exact on
SQLite and MySQL alike, so of two takers exactly one wins, and a holder whose process is gone from this
host does not block its own re-run for a whole TTL.
"""

from __future__ import annotations

import os
import random
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, insert, select, update
from sqlalchemy import delete as sa_delete
from sqlalchemy.exc import DBAPIError, IntegrityError

from pipezone.core.state.base import StoreBase
from pipezone.core.state.errors import StateStoreError
from pipezone.core.state.schema import table_leases


@dataclass(frozen=True)
class LeaseHolder:
    """Who writes a table: one process running one step of one run."""

    run_id: str
    flow: str
    step: str
    host: str
    pid: int


@dataclass(frozen=True)
class Lease:
    """A table's writer and until when its claim holds without a heartbeat."""

    resource: str
    holder: LeaseHolder
    acquired_at: datetime
    expires_at: datetime


class _LeaseContended(Exception):
    """A lease row changed between reading and writing it."""


class LeaseStore(StoreBase):
    """Take, renew, release and read table leases."""

    def take_lease(self, resource: str, holder: LeaseHolder, ttl_s: float) -> Lease | None:
        """Claim `resource` for `ttl_s` seconds: None when it is now `holder`'s, else the lease in the way.

        A lease is free when there is none, it expired, its process is gone from this host (a killed step
        must not block its re-run for a whole TTL), or it is `holder`'s own. Insert first; a takeover is a
        compare-and-set on the row as read, so of two takers exactly one wins, on SQLite and MySQL alike.
        """
        for _ in range(20):
            try:
                return self._try_take_lease(resource, holder, ttl_s)
            except _LeaseContended:
                time.sleep(random.uniform(0.001, 0.05))  # another taker moved first: look again
            except StateStoreError as exc:
                if not _is_contention(exc.__cause__):
                    raise
                time.sleep(random.uniform(0.001, 0.05))  # InnoDB deadlock of racing duplicate inserts
        raise StateStoreError(f"could not take lease {resource!r} in {self.display_url}: it keeps changing hands")

    def _try_take_lease(self, resource: str, holder: LeaseHolder, ttl_s: float) -> Lease | None:
        try:
            with self._transaction() as conn:
                conn.execute(insert(table_leases).values(resource=resource, **self._lease_values(holder, ttl_s)))
            return None
        except IntegrityError:
            pass  # held, or was: look at it
        with self._transaction() as conn:
            row = conn.execute(select(table_leases).where(table_leases.c.resource == resource)).first()
            if row is None:
                raise _LeaseContended  # released meanwhile: insert again
            current = _lease(row)
            if not _lease_is_free(current, holder, self._now()):
                return current
            values = self._lease_values(holder, ttl_s)
            if conn.execute(update(table_leases).where(_same_lease(current)).values(**values)).rowcount != 1:
                raise _LeaseContended
            return None

    def _lease_values(self, holder: LeaseHolder, ttl_s: float) -> dict[str, Any]:
        """The row for `holder`, timed at the last moment (a stale `now` would shorten the lease)."""
        now = self._now()
        return {**_holder_values(holder), "acquired_at": now, "expires_at": now + timedelta(seconds=ttl_s)}

    def renew_lease(self, resource: str, holder: LeaseHolder, ttl_s: float) -> bool:
        """Push `holder`'s lease on `resource` to now + `ttl_s`; False when the lease is no longer `holder`'s."""
        expires_at = self._now() + timedelta(seconds=ttl_s)
        with self._transaction() as conn:
            renewed = conn.execute(
                update(table_leases).where(_holder_is(resource, holder)).values(expires_at=expires_at)
            )
            return renewed.rowcount == 1

    def release_lease(self, resource: str, holder: LeaseHolder) -> bool:
        """Drop `holder`'s lease on `resource` (never someone else's); False when it was not `holder`'s."""
        with self._transaction() as conn:
            return conn.execute(sa_delete(table_leases).where(_holder_is(resource, holder))).rowcount == 1

    def get_lease(self, resource: str) -> Lease | None:
        """The lease row on `resource`, expired or not."""
        with self._transaction() as conn:
            row = conn.execute(select(table_leases).where(table_leases.c.resource == resource)).first()
        return None if row is None else _lease(row)


def _lease(row: Any) -> Lease:
    holder = LeaseHolder(row.holder_run_id, row.holder_flow, row.holder_step, row.holder_host, row.holder_pid)
    return Lease(row.resource, holder, row.acquired_at, row.expires_at)


def _holder_values(holder: LeaseHolder) -> dict[str, Any]:
    return {
        "holder_run_id": holder.run_id,
        "holder_flow": holder.flow,
        "holder_step": holder.step,
        "holder_host": holder.host,
        "holder_pid": holder.pid,
    }


def _holder_is(resource: str, holder: LeaseHolder) -> Any:
    t = table_leases
    return and_(t.c.resource == resource, *(t.c[k] == v for k, v in _holder_values(holder).items()))


def _same_lease(lease: Lease) -> Any:
    """The row exactly as read: a heartbeat or takeover since then makes the compare-and-set miss."""
    return and_(_holder_is(lease.resource, lease.holder), table_leases.c.expires_at == lease.expires_at)


def _is_contention(exc: BaseException | None) -> bool:
    """MySQL's deadlock or lock-wait timeout: the statement may simply be run again."""
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "args", (None,))[:1] in ((1213,), (1205,))


def _lease_is_free(lease: Lease, holder: LeaseHolder, now: datetime) -> bool:
    if lease.expires_at <= now or lease.holder == holder:
        return True
    return lease.holder.host == socket.gethostname() and process_gone(lease.holder.pid)


def process_gone(pid: int) -> bool:
    """True when no process `pid` runs on this host; a zombie counts as gone (it will never renew)."""
    if os.name != "posix" or pid <= 0:
        return False  # cannot tell: rely on expiry
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # e.g. PermissionError: it exists, under another user
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[:1] == ["Z"]
