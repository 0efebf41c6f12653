"""A flow's source: which table, query, collection or endpoint to read, and how to read it incrementally.

A relational source names a `table` or a `query`; a MongoDB source names its collection as `table`
(with `documents:` for a filter, a projection and the shape of nested values); a REST source names an
`endpoint`. Which fields fit which connection type is checked across files (spec/cross_checks.py).
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from pipezone.core.spec.cursor_values import normalize
from pipezone.core.spec.documents import DocumentOptions
from pipezone.core.spec.endpoint import EndpointSpec
from pipezone.core.spec.value_types import (
    BoundedInt,
    Columns,
    Duration,
    Identifier,
    Name,
    QueryText,
    SparkType,
    SpecModel,
    bounded_duration,
    parse_duration,
)

_NUMBER = re.compile(r"\s*-?\d+(\.\d+)?\s*")


def _scalar_to_text(value: Any) -> Any:
    """YAML turns `2024-01-01` into a date; cursor values are kept as the text the user wrote."""
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    return value


class IncrementalSpec(SpecModel):
    """Read only rows whose cursor moved past the stored watermark."""

    cursor: Identifier = Field(description="Monotonic column, e.g. updated_at or an id.")
    initial_value: str | BoundedInt | None = Field(
        default=None, description="Watermark before the first run (default: read everything)."
    )
    lookback: str | BoundedInt = Field(
        default=0,
        description="Re-read this far behind the watermark (a duration for time cursors, a number for numeric).",
    )
    safety_buffer: bounded_duration(timedelta(days=1)) = Field(  # type: ignore[valid-type]
        default=timedelta(seconds=10),
        description=(
            "Time cursors: read only rows older than the source's clock minus this, so rows of transactions "
            "still in flight are read by the next run instead of being skipped. Numeric cursors need lookback."
        ),
    )

    @field_validator("initial_value", mode="before")
    @classmethod
    def _initial_as_text(cls, value: Any) -> Any:
        return _scalar_to_text(value)

    @field_validator("initial_value")
    @classmethod
    def _initial_is_a_cursor(cls, value: str | int | None) -> str | int | None:
        """What the first run will compare with: a real date/time if it looks like one, a number of at most
        38 digits (a DECIMAL(38) cursor), any other text of at most 200 characters."""
        if not isinstance(value, str):
            return value
        if len(value) > 200 or len(value.strip().lstrip("-").replace(".", "", 1)) > 38 and _NUMBER.fullmatch(value):
            raise PydanticCustomError("cursor_value", "initial_value is too long for a cursor value")
        try:
            normalize(value)
        except ValueError as err:
            raise PydanticCustomError("cursor_value", "not a valid date/time: {reason}", {"reason": str(err)}) from None
        return value

    @field_validator("lookback")
    @classmethod
    def _lookback_form(cls, value: str | int) -> str | int:
        if isinstance(value, str):
            parse_duration(value)
        elif value < 0:
            raise PydanticCustomError("negative", "lookback must not be negative")
        return value


class ReadOptions(SpecModel):
    """How the JDBC read is split and fetched."""

    num_partitions: int = Field(default=1, ge=1, le=64, description="Parallel JDBC connections.")
    partition_column: Identifier | None = Field(
        default=None, description="Numeric/date column to split on (default: the single-column primary key)."
    )
    fetch_size: int = Field(default=10000, ge=1, le=1_000_000, description="Rows per round trip.")
    initial_load: Literal["auto", "jdbc"] = Field(
        default="auto",
        description="auto: a flow's first load from MySQL/MariaDB or PostgreSQL streams Arrow batches (binary "
        "protocol, num_partitions connections) straight into raw, without the JVM; later reads use JDBC. "
        "jdbc: JDBC always.",
    )


class DeleteDetection(SpecModel):
    """Find deleted rows of an incremental flow's source by comparing its primary keys with the keys loaded."""

    detect: Literal["key_snapshot"] = Field(
        default="key_snapshot", description="Read every primary key of the source and compare (a full key scan)."
    )
    every: Duration = Field(
        default=timedelta(0), description="At most this often (0: every run); the scan reads all keys."
    )


CDC_CONNECTION_TYPES = ("mysql", "mariadb", "postgres")  # whose replication logs PipeZone reads


class CdcSpec(SpecModel):
    """Read the table's changes from the database's replication log (MySQL/MariaDB binlog in row format,
    PostgreSQL logical decoding) instead of a cursor: inserts, updates of any column and deletes, in
    commit order, exactly once (README, Change data capture)."""

    max_changes: int = Field(
        default=100_000, ge=1, le=10_000_000, description="At most this many row changes per run (then it ends)."
    )
    max_seconds: bounded_duration(timedelta(hours=1), timedelta(seconds=1)) = Field(  # type: ignore[valid-type]
        default=timedelta(seconds=30), description="Read the log for at most this long per run."
    )
    slot: Identifier | None = Field(
        default=None, description="PostgreSQL: the logical replication slot (default: pipezone_<flow>)."
    )
    server_id: int | None = Field(
        default=None,
        ge=1,
        le=4_294_967_295,
        description="MySQL/MariaDB: the replica server id the reader registers with (default: from the flow name).",
    )


class SourceSpec(SpecModel):
    """Which table (or query) to read, and how to read it incrementally."""

    connection: Name = Field(description="Name of a source connection in metadata/connections.")
    schema_: Identifier | None = Field(default=None, alias="schema", description="Schema / database name.")
    table: Identifier | None = None
    query: QueryText | None = Field(
        default=None, description="A SELECT instead of a table, in the source database's SQL (one read-only query)."
    )
    primary_key: Columns = Field(default_factory=list, description="Key columns for merge and dedup.")
    incremental: IncrementalSpec | None = None
    read: ReadOptions = Field(default_factory=ReadOptions)
    column_types: dict[Identifier, SparkType] = Field(
        default_factory=dict,
        description="Per-column read type, overriding PipeZone's mapping (README, Type mappings): `string` reads "
        "the database's own text of the value; any other Spark type reads the driver's value as that type.",
    )
    deletes: DeleteDetection | None = Field(
        default=None,
        description="Mark rows deleted in the source (_pz_deleted) by a primary-key snapshot. Incremental flows only: "
        "a flow without incremental infers deletes from its full read, and this is ignored there (no second scan).",
    )
    documents: DocumentOptions | None = Field(
        default=None, description="MongoDB and REST: filter, projection and the shape of nested values."
    )
    endpoint: EndpointSpec | None = Field(default=None, description="REST: the endpoint to read (instead of table).")
    cdc: CdcSpec | None = Field(
        default=None,
        description="Change data capture from the replication log (MySQL/MariaDB, PostgreSQL); needs a table and "
        "primary_key, excludes incremental and deletes (the log has every change and every delete).",
    )

    @model_validator(mode="after")
    def _table_or_query(self) -> SourceSpec:
        if sum(x is not None for x in (self.table, self.query, self.endpoint)) != 1:
            raise PydanticCustomError("table_or_query", "set exactly one of 'table', 'query' or 'endpoint'")
        if self.deletes is not None and not self.primary_key:
            raise PydanticCustomError("deletes_key", "deletes needs source.primary_key", {"at": "primary_key"})
        if self.cdc is not None:
            self._check_cdc()
        return self

    def _check_cdc(self) -> None:
        """CDC reads one table's log by key; a cursor or a key scan would only duplicate what the log says."""
        if self.table is None:
            raise PydanticCustomError("cdc_query", "cdc reads a table's log: set 'table', not 'query'", {"at": "cdc"})
        if not self.primary_key:
            raise PydanticCustomError(
                "cdc_key", "cdc needs source.primary_key (changes apply by key)", {"at": "primary_key"}
            )
        for other in ("incremental", "deletes"):
            if getattr(self, other) is not None:
                raise PydanticCustomError(
                    "cdc_exclusive",
                    "cdc and {other} can't be combined: the log already has every change and every delete",
                    {"other": other, "at": other},
                )


DOCUMENT_CONNECTION_TYPES = ("mongodb", "rest")  # whose records carry no declared schema


def fields_problem(source: SourceSpec, connection_type: str) -> tuple[tuple[str, ...], str] | None:
    """(key path, message) when the source's fields don't fit its connection's type, else None: a
    collection for MongoDB, an endpoint for REST, a table or query for SQL databases."""
    misplaced = ("source", "table" if source.table is not None else "query")
    if connection_type == "rest":
        if source.endpoint is None:
            return misplaced, "a rest connection is read through an endpoint: set source.endpoint, not table/query"
        if source.documents and (source.documents.filter or source.documents.projection):
            return ("source", "documents"), "filter and projection are MongoDB's; an endpoint takes params"
    elif connection_type == "mongodb":
        if source.table is None:
            where = misplaced if source.query is not None else ("source", "endpoint")
            return where, "a mongodb source names its collection in 'table' (no query or endpoint)"
        if not source.primary_key:
            return ("source", "primary_key"), "a mongodb source needs primary_key (usually [_id])"
        for name in [*source.primary_key, *([source.incremental.cursor] if source.incremental else [])]:
            if source.documents and not source.documents.keeps(name):
                return ("source", "documents", "projection"), f"the projection must keep '{name}' (key or cursor)"
    else:
        for name in ("endpoint", "documents"):
            if getattr(source, name) is not None:
                return ("source", name), f"'{name}' is for mongodb and rest sources, not {connection_type}"
    if connection_type in DOCUMENT_CONNECTION_TYPES and source.column_types:
        return ("source", "column_types"), "documents are typed from their values: cast in silver transforms"
    return None
