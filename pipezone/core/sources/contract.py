"""The source contract: what the extract step asks of any source, whatever kind it is.

A database table over JDBC, a MongoDB collection, a REST endpoint and a replication log all answer the
same few questions, so extract (and every layer above it) never knows which kind it reads:

- `describe`: the columns and types a read returns (a Spark schema, the lake's type system);
- `cursor_bounds`: where the source's cursor stands now and the source's own clock, captured BEFORE a read
  so a window's upper bound is fixed (the field guide's `(watermark - lookback, hi]`);
- `read` / `read_arrow`: the rows of a `ReadPlan` (the whole source, a cursor window, a backfill range,
  every primary key for delete detection, later a log position range) as a Spark DataFrame, or as an
  Arrow stream where the kind has a faster native reader;
- `count`: rows at the source now (`pipezone tables` compares it with silver);
- `physical_reference`: the source's own client reading the same rows, the yardstick of benchmarks.

A `SourceAdapter` is a registry entry (sources/registry.py): it names the connection types it serves and
opens a `Source` for one flow. Adding a kind of source is one module with an adapter plus one registry line.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pipezone.core.spec.connection import ConnectionSpec
from pipezone.core.spec.secrets import SecretResolver
from pipezone.core.spec.source import SourceSpec

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

CursorValue = int | Decimal | float | str | date | datetime
ReadKind = Literal["full", "window", "backfill", "key_snapshot", "log_range"]


class SourceError(Exception):
    """A source cannot be read as specified: one line naming the connection and the cause, never a secret."""

    def __init__(self, cause: str, connection: str | None = None) -> None:
        self.cause = re.sub(r"\s*[\r\n]+\s*", " ", cause).strip()
        self.connection = connection
        super().__init__(f"connection '{connection}': {self.cause}" if connection else self.cause)

    def at(self, connection: str) -> SourceError:
        """The same error attributed to `connection` (kept if already attributed)."""
        return self if self.connection else SourceError(self.cause, connection)


@contextmanager
def for_connection(name: str) -> Iterator[None]:
    """Attribute any SourceError raised inside to connection `name`."""
    try:
        yield
    except SourceError as err:
        raise err.at(name) from None


class ArrowUnavailable(Exception):
    """This read has no exact Arrow form here (a type the native reader can't carry, a stream that could not
    start): nothing was written, and the caller reads it with Spark instead."""


@dataclass(frozen=True)
class ReadPlan:
    """What one read takes from the source; the bounds' meaning depends on the kind:

    - `full`: everything (`lower`/`upper` unused);
    - `window`: cursor values in `(lower, upper]`, either end open when None;
    - `backfill`: cursor values in `[lower, upper)`;
    - `key_snapshot`: every primary key, nothing else;
    - `log_range`: changes between two log positions (`(lower, upper]`), for change data capture.
    """

    kind: ReadKind
    lower: Any = None
    upper: Any = None

    @classmethod
    def full(cls) -> ReadPlan:
        return cls("full")

    @classmethod
    def window(cls, lower: CursorValue | None, upper: CursorValue | None) -> ReadPlan:
        return cls("window", lower, upper)

    @classmethod
    def backfill(cls, start: CursorValue, end: CursorValue) -> ReadPlan:
        return cls("backfill", start, end)

    @classmethod
    def key_snapshot(cls) -> ReadPlan:
        return cls("key_snapshot")

    @classmethod
    def log_range(cls, start: Any, end: Any) -> ReadPlan:
        return cls("log_range", start, end)

    @property
    def is_whole(self) -> bool:
        """Whether the plan reads every row of the source (a full read, or a window open at both ends)."""
        return self.kind == "full" or (self.kind == "window" and self.lower is None and self.upper is None)


@dataclass(frozen=True)
class CursorBounds:
    """The source's newest cursor value (None: the source is empty) and its own clock (None: it has none),
    read in one query before the data, so rows committed later wait for the next window."""

    hi: CursorValue | None
    now: CursorValue | None


@dataclass(frozen=True)
class PhysicalReference:
    """The source's own client reading the same rows to nowhere: what a benchmark measures PipeZone against.
    Secrets travel in `env` (e.g. MYSQL_PWD, PGPASSWORD), never in `argv`, which logs may show."""

    name: str
    argv: list[str]
    env: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class ArrowRead:
    """An Arrow stream of a read: record batches in the source's own Arrow types, of the same SELECT the Spark
    read would run (the lake must hold what the Spark read holds, value for value)."""

    batches: Iterator[pa.RecordBatch]


class Source(ABC):
    """One flow's source, opened with its connection and secrets: the only thing extract talks to."""

    supports: ClassVar[frozenset[ReadKind]] = frozenset({"full", "window", "backfill", "key_snapshot"})
    reader: ClassVar[str] = "Spark"  # what `read` reads with, as a run's `read_path` names it (lowercased)

    def __init__(self, spec: SourceSpec, connection: ConnectionSpec) -> None:
        self.spec = spec
        self.connection = connection

    @property
    def name(self) -> str:
        """The connection's name, as every error about this source names it."""
        return self.connection.name

    def check_plan(self, plan: ReadPlan) -> None:
        """Refuse a plan this kind of source can't serve, with one line naming it."""
        if plan.kind not in self.supports:
            raise SourceError(f"a {self.connection.type} source cannot serve a {plan.kind} read", self.name)

    @abstractmethod
    def describe(self, spark: SparkSession, plan: ReadPlan | None = None) -> StructType:
        """The columns and Spark types `read(plan)` returns (the whole source's when `plan` is None)."""

    @abstractmethod
    def cursor_bounds(self, spark: SparkSession, after: CursorValue | None = None) -> CursorBounds:
        """The incremental cursor's newest value and the source's clock; a SourceError without a cursor.

        `after` is the window's lower bound when the caller knows it: a source that finds its newest cursor
        only by reading (a REST endpoint) reads from there; one that can ask (a database) ignores it."""

    def bounds_without_spark(self) -> CursorBounds | None:
        """`cursor_bounds` asked through the source's own client, or None (the default) where only a Spark
        read can ask. A run with nothing new proves it this way (steps/idle.py) and opens no Spark session:
        the values must be the ones `cursor_bounds` returns, typed alike, or the proof is wrong."""
        return None

    @abstractmethod
    def read(self, spark: SparkSession, plan: ReadPlan) -> DataFrame:
        """The rows of `plan` as a Spark DataFrame (lazy where the kind allows)."""

    def type_like(self, schema: StructType | None) -> None:
        """The schema raw already holds for this source (None: no table yet), given before a read. A source
        whose values carry their own types (documents) types what it reads like it where the values allow;
        a source with a declared schema (a table) has no use for it."""
        return None

    def read_arrow(self, spark: SparkSession, plan: ReadPlan, schema: StructType) -> ArrowRead | None:
        """The rows of `plan` as Arrow batches, for a `read(plan)` whose Spark schema is `schema`; None (the
        default) where this kind or connection offers no native Arrow reader.

        Raises ArrowUnavailable, before any batch is handed out, when this plan or a column type can't go
        through the Arrow reader exactly or its stream can't start: the caller reads with Spark instead."""
        return None

    def typing(self, spark: SparkSession, plan: ReadPlan) -> dict[str, Any] | None:
        """What typing a later window of this source needs without Spark (`read_typed`), as JSON an extract
        commit keeps: resolved now, after a Spark read of `plan`. None (the default) where the kind has no
        read without Spark."""
        return None

    def read_typed(self, plan: ReadPlan, typing: Mapping[str, Any]) -> tuple[ArrowRead, dict[str, str]] | None:
        """The rows of `plan` as Arrow batches without a Spark session, typed as an earlier `typing` says,
        and the Spark types they stand for (column -> simpleString), when the source proves that typing
        still holds; None otherwise (Spark reads). ArrowUnavailable, before any batch, when the stream
        cannot start."""
        return None

    @abstractmethod
    def count(self, spark: SparkSession) -> int:
        """The number of rows (documents, records) the source holds now."""

    def physical_reference(self, plan: ReadPlan) -> PhysicalReference | None:
        """The source's own client reading `plan`'s rows to /dev/null, or None when there is no such client."""
        return None


class SourceAdapter(ABC):
    """A registry entry: the connection types it reads, and how to open one flow's source on them."""

    name: ClassVar[str]
    types: ClassVar[tuple[str, ...]]  # connection `type` values this adapter serves

    @abstractmethod
    def open(
        self, spec: SourceSpec, connection: ConnectionSpec, resolver: SecretResolver, project_root: Path
    ) -> Source:
        """The flow's source on `connection`, credentials resolved through `resolver` when it reads."""
