"""The destination contract: what an export asks of any database a lake table goes to (seed 000's "n sources
+ m destinations": one adapter per database makes every source reach every destination).

A destination answers five things, whatever the database:

- `describe`: the destination table's columns as Spark types, or None when it does not exist yet;
- `create` / `evolve`: make the table hold the lake table's columns (types mapped per destination), and
  follow the lake table additively as it evolves; `prepare` decides which, and refuses a change the
  destination can't apply (a narrowed or changed type) with one line naming the column;
- `write`: one batch of rows in a mode (`replace`: staged, then swapped in one transaction; `append`;
  `upsert` on the primary key, deletes for tombstoned keys), committed atomically, together with an
  `ExportMarker` (which export, which lake table version) in the destination's own `pipezone_exports` table,
  in the same transaction as the rows;
- `exported_version`: the lake version the last committed write of an export carried, read back from that
  marker. The export records its `WriteReport` (rows and bytes written, the table) in the state store after
  the destination's commit (data first, state second, as every layer); when that state update is lost, the
  marker still says the write committed, so a rerun skips it instead of appending the rows twice.

A `DestinationAdapter` is a registry entry (destinations/registry.py): the connection types it writes
to, and how to open a destination on one. Adding a destination is one module plus one registry line.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from pipezone.core.lake.schema_drift import compare
from pipezone.core.spec.connection import ConnectionSpec
from pipezone.core.spec.secrets import SecretResolver

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql.types import StructField, StructType

WriteMode = Literal["replace", "append", "upsert"]
WRITE_MODES: tuple[WriteMode, ...] = ("replace", "append", "upsert")


class DestinationError(Exception):
    """A destination cannot take a write as asked: one line naming the connection and the cause, no secret."""

    def __init__(self, cause: str, connection: str | None = None) -> None:
        self.cause = re.sub(r"\s*[\r\n]+\s*", " ", cause).strip()
        self.connection = connection
        super().__init__(f"connection '{connection}': {self.cause}" if connection else self.cause)


@dataclass(frozen=True)
class TableName:
    """A destination table: an optional schema (database, for MySQL) and a name."""

    table: str
    schema: str | None = None

    def __str__(self) -> str:
        return f"{self.schema}.{self.table}" if self.schema else self.table


@dataclass(frozen=True)
class TableChanges:
    """What `prepare` did to the destination table: created it, or added and widened columns."""

    created: bool = False
    added: tuple[str, ...] = ()
    widened: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExportBatch:
    """Rows to write: Arrow record batches in the lake table's (selected, renamed) schema, and the primary
    keys whose lake rows were tombstoned since the last export (deleted by an `upsert`)."""

    schema: StructType
    batches: Iterator[pa.RecordBatch]
    deleted_keys: Iterator[pa.RecordBatch] | None = None


@dataclass(frozen=True)
class ExportMarker:
    """Which export a write belongs to (an id like `flow.table->conn.schema.table`) and which Delta version
    of the lake table it carries: written with the rows, so a committed write is known at the destination."""

    export: str
    version: int


@dataclass(frozen=True)
class WriteReport:
    """What one committed write did, for the run history."""

    table: TableName
    mode: WriteMode
    rows_written: int
    rows_deleted: int = 0
    bytes_written: int = 0


class Destination(ABC):
    """A database a lake table is exported to, opened on one connection."""

    modes: ClassVar[tuple[WriteMode, ...]] = WRITE_MODES

    def __init__(self, connection: ConnectionSpec) -> None:
        self.connection = connection

    @property
    def name(self) -> str:
        return self.connection.name

    @abstractmethod
    def describe(self, table: TableName) -> StructType | None:
        """The table's columns as Spark types (as this destination maps them back), or None when absent."""

    @abstractmethod
    def create(self, table: TableName, schema: StructType, primary_key: list[str]) -> None:
        """Create the table with `schema`'s columns in this destination's types, keyed on `primary_key`."""

    @abstractmethod
    def evolve(self, table: TableName, added: list[StructField], widened: list[StructField]) -> None:
        """Add `added` columns (nullable) and widen `widened` columns to their new types, in one transaction."""

    @abstractmethod
    def write(
        self, table: TableName, batch: ExportBatch, mode: WriteMode, primary_key: list[str], marker: ExportMarker
    ) -> WriteReport:
        """Write `batch` in `mode` and commit it atomically (all of it or nothing), `marker` in the same
        transaction as the rows (a `replace` where the database's DDL cannot share one: right after the swap)."""

    @abstractmethod
    def exported_version(self, export: str) -> int | None:
        """The lake version the last committed write of `export` carried; None when it never wrote here."""

    @abstractmethod
    def count(self, table: TableName) -> int | None:
        """The table's row count (what `pipezone tables` shows next to the lake's), None when it is absent."""

    def close(self) -> None:  # noqa: B027 - a destination holding no connection has nothing to release
        """Release the destination's connections."""

    def stored_schema(self, schema: StructType) -> StructType:
        """`schema` as `describe` would report a table created from it (a destination with fewer types than
        Spark maps several to one): what `prepare` compares the table with. By default the types themselves."""
        return schema

    def prepare(self, table: TableName, schema: StructType, primary_key: list[str]) -> TableChanges:
        """Make the table ready for rows of `schema`: create it when absent, else evolve it additively.

        A column the lake has dropped stays in the destination (rows written later hold NULL there); a type
        the destination can't widen to fails with one line naming the column, before anything changes."""
        current = self.describe(table)
        if current is None:
            self.create(table, schema, primary_key)
            return TableChanges(created=True)
        drift = compare(self.stored_schema(schema), current)
        if drift.changed:
            column, old, new = drift.changed[0]
            raise DestinationError(f"table {table}: column {column} is {old} here and {new} in the lake", self.name)
        fields = {f.name: f for f in schema.fields}
        added = [fields[name] for name, _ in drift.added]
        widened = [fields[name] for name, _, _ in drift.widened]
        if added or widened:
            self.evolve(table, added, widened)
        return TableChanges(added=tuple(f.name for f in added), widened=tuple(f.name for f in widened))

    def check_mode(self, mode: WriteMode, primary_key: list[str]) -> None:
        """Refuse a mode this destination lacks, or an upsert without a key, with one line."""
        if mode not in self.modes:
            raise DestinationError(f"a {self.connection.type} destination cannot {mode}", self.name)
        if mode == "upsert" and not primary_key:
            raise DestinationError("an upsert needs the table's primary key", self.name)


class DestinationAdapter(ABC):
    """A registry entry: the connection types it writes to, and how to open a destination on them."""

    name: ClassVar[str]
    types: ClassVar[tuple[str, ...]]

    @abstractmethod
    def open(self, connection: ConnectionSpec, resolver: SecretResolver, project_root: Path) -> Destination:
        """The destination on `connection`, credentials resolved through `resolver` when it writes."""
