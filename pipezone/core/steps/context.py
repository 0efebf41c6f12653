"""What every step receives, and what it returns."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipezone.core.spec.flow import FlowSpec
from pipezone.core.steps.runtime import Runtime

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


class SessionUnavailable(Exception):
    """The step's Spark session did not open (the cause says why: a Connect server that does not answer, a
    JVM that did not start): the run's fault, not the source's or the lake's."""


@dataclass
class StepContext:
    runtime: Runtime
    # the Spark session, or what opens it on first use (`spark`)
    session: SparkSession | Callable[[], SparkSession] | None
    flow: FlowSpec
    run_id: str
    full_refresh: bool = False
    backfill: tuple[Any, Any] | None = None  # [start, end) cursor values of a backfill run
    phases: dict[str, float] = field(default_factory=dict)  # seconds per phase, kept in the run history

    @property
    def spark(self) -> SparkSession:
        """The step's Spark session, opened on first use when the context was given what opens it: a step
        that needs none (a small batch written by delta-rs, steps/small_batch.py) then opens none, which
        saves a Spark Connect session (0.6-0.7 s per step, docs/benchmarks.md) or a local JVM's start."""
        if callable(self.session):  # a SparkSession is not callable: a factory
            with self.timed("session"):
                try:
                    self.session = self.session()
                except Exception as err:
                    raise SessionUnavailable(str(err)) from err
        return self.session  # type: ignore[return-value] - None where a command needs no session (verify)

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        """Add the block's wall time to `phase`, so a slow run shows where its time went."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.phases[phase] = self.phases.get(phase, 0.0) + time.perf_counter() - started

    @property
    def state(self):  # noqa: ANN201 - StateStore, imported lazily
        return self.runtime.state

    def app_id(self, target: str) -> str:
        """The Delta txnAppId of this flow's writer to `target`: fixed, so txnVersion orders its commits."""
        return f"pipezone:{self.flow.name}:{target}"

    def metadata(self, step: str, **extra: Any) -> dict[str, Any]:
        return {"flow": self.flow.name, "run_id": self.run_id, "step": step, **extra}


@dataclass
class StepResult:
    rows_read: int = 0
    rows_written: int = 0
    bytes_written: int = 0
    skipped: bool = False
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)
