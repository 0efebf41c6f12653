"""One writer per lake table: a step holds a lease in the state store on each table it writes.

Two runs of one flow (a manual `pipezone run` next to the schedule, an Airflow retry next to a zombie), or
two flows writing one gold table, would otherwise both commit: Delta accepts both, and watermarks and
layer progress end up describing only one of them. The second writer waits for the first, then fails
with a line naming who holds the table. A heartbeat keeps the lease while the step runs; a holder that
died stops renewing, so its lease expires (or is taken at once when its process is gone from this host).
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from pipezone.core.state.errors import StateStoreError
from pipezone.core.state.leases import Lease, LeaseHolder

if TYPE_CHECKING:
    from pipezone.core.spec.flow import FlowSpec
    from pipezone.core.state.store import StateStore

DEFAULT_WAIT_S = 60.0  # a scheduled run usually finishes a step within this; longer means a stuck holder
DEFAULT_TTL_S = 120.0  # how long a dead holder on another host blocks the table
POLL_S = 1.0

STEP_LAYERS = {"extract": "raw", "bronze": "bronze", "silver": "silver"}


class LeaseHeld(StateStoreError):
    """Another writer holds a table past the wait: the message is the one line users see."""

    def __init__(self, lease: Lease, waited_s: float) -> None:
        self.lease = lease
        self.waited_s = waited_s
        super().__init__(
            f"table {lease.resource} is being written by {describe_holder(lease)}; waited {waited_s:g} s:"
            " retry later, or if that process is gone wait for the lease to expire"
        )


class LeaseLost(StateStoreError):
    """A heartbeat found the lease taken by someone else: both may have written the table."""


def step_tables(flow: FlowSpec, step: str) -> list[str]:
    """The lake tables `step` of `flow` writes, as `layer.name` (quality writes none)."""
    if step in STEP_LAYERS:
        return [f"{STEP_LAYERS[step]}.{flow.name}"]
    if step == "gold":
        return [f"gold.{table.name}" for table in flow.layers.gold]
    export = flow.export_of(step)
    if export is not None:  # an export writes a destination table: one writer at a time
        schema = f"{export.schema_}." if export.schema_ else ""
        return [f"export.{export.connection}.{schema}{export.destination_table(flow)}"]
    return []


def flow_tables(flow: FlowSpec) -> list[str]:
    """Every lake table `flow`'s steps write."""
    return sorted({t for step in flow.steps() for t in step_tables(flow, step)})


def this_process(run_id: str, flow: str, step: str) -> LeaseHolder:
    """The holder identity of this process running `step`."""
    return LeaseHolder(run_id=run_id, flow=flow, step=step, host=socket.gethostname(), pid=os.getpid())


def describe_holder(lease: Lease) -> str:
    """`flow F, step S, run R (host H, pid P, since ..., lease expires ...)` for messages."""
    h = lease.holder
    since = lease.acquired_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    expires = lease.expires_at.strftime("%H:%M:%SZ")
    return (
        f"flow {h.flow}, step {h.step}, run {h.run_id}"
        f" (host {h.host}, pid {h.pid}, since {since}, lease expires {expires})"
    )


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class TableLeases:
    """Leases held on some tables, renewed by a daemon thread until `close()`."""

    def __init__(self, store: StateStore, holder: LeaseHolder, ttl_s: float) -> None:
        self.store = store
        self.holder = holder
        self.ttl_s = ttl_s
        self.resources: list[str] = []  # held, in the order taken
        self.lost: dict[str, Lease | None] = {}  # resource -> who holds it now (None: nobody)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start_heartbeat(self) -> None:
        name = f"pipezone-lease-{self.holder.flow}-{self.holder.step}"
        self._thread = threading.Thread(target=self._beat, name=name, daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl_s / 4):
            self.renew()

    def renew(self) -> None:
        """Extend every lease still ours; remember the ones someone else took."""
        for resource in list(self.resources):  # the taking thread may be appending
            if resource in self.lost:
                continue
            try:
                if not self.store.renew_lease(resource, self.holder, self.ttl_s):
                    self.lost[resource] = self.store.get_lease(resource)
            except StateStoreError:
                continue  # the store blinked: try again next beat; a takeover shows up then

    def check(self) -> None:
        """Raise LeaseLost when a heartbeat found a lease taken: the step must not report success."""
        if not self.lost:
            return
        resource, lease = next(iter(self.lost.items()))
        by = f"taken by {describe_holder(lease)}" if lease else "released by someone else"
        raise LeaseLost(
            f"lost the lease on table {resource} while writing it ({by}): another writer may have"
            " committed at the same time; check the table, then re-run"
        )

    def close(self) -> None:
        """Stop the heartbeat and drop the leases still ours (never another holder's); note any lost."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for resource in reversed(self.resources):
            try:
                if not self.store.release_lease(resource, self.holder) and resource not in self.lost:
                    self.lost[resource] = self.store.get_lease(resource)  # taken since the last beat
            except StateStoreError:
                pass  # it expires on its own


def _take(
    store: StateStore,
    resource: str,
    holder: LeaseHolder,
    ttl_s: float,
    deadline: float,
    wait_s: float,
    poll_s: float,
    notify: Callable[[str], None],
) -> None:
    """Take one lease, waiting until `deadline` (time.monotonic) for its holder."""
    told = False
    while True:
        blocking = store.take_lease(resource, holder, ttl_s)
        if blocking is None:
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LeaseHeld(blocking, wait_s)
        if not told:
            notify(f"waiting for table {resource}: held by {describe_holder(blocking)}")
            told = True
        time.sleep(min(poll_s, remaining))


@contextmanager
def hold_tables(
    store: StateStore,
    resources: Sequence[str],
    holder: LeaseHolder,
    *,
    wait_s: float | None = None,
    ttl_s: float | None = None,
    poll_s: float | None = None,
    notify: Callable[[str], None] = _stderr,
) -> Iterator[TableLeases]:
    """Hold a lease on each of `resources` (taken in sorted order, so two takers cannot deadlock).

    Waits up to `wait_s` in all, telling `notify` once per table what it waits for, then raises LeaseHeld.
    The leases are renewed every `ttl_s / 4` and released on exit. A lease lost meanwhile raises LeaseLost
    on a normal exit; an exception from the body wins over it. Omitted values are the module's defaults,
    read at call time.
    """
    wait_s = DEFAULT_WAIT_S if wait_s is None else wait_s
    ttl_s = DEFAULT_TTL_S if ttl_s is None else ttl_s
    poll_s = POLL_S if poll_s is None else poll_s
    wanted = sorted(set(resources))
    leases = TableLeases(store, holder, ttl_s)
    if wanted:
        leases.start_heartbeat()  # before waiting for a later table, so the ones taken first stay ours
    deadline = time.monotonic() + wait_s
    try:
        for resource in wanted:
            _take(store, resource, holder, ttl_s, deadline, wait_s, poll_s, notify)
            leases.resources.append(resource)
        yield leases
    finally:
        leases.close()
    leases.check()
