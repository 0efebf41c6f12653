"""PostgreSQL as an export destination: psycopg 3, rows in with `COPY ... FROM STDIN`.

COPY is PostgreSQL's bulk path and is transactional like any statement, so a load, the swap of a `replace`
and the export marker commit together. Rows go as COPY's CSV format, formatted by Arrow's CSV writer a batch
at a time (csv_text): every value quoted, NULL the unquoted word NULL (so distinct from '' and from the text
'NULL'), timestamps as UTC with `Z`, bytea in its hex form, nested values as JSON. The session runs in UTC
(the source adapter's startup option).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import psycopg
from psycopg import sql
from sqlalchemy.dialects import postgresql

from pipezone.core.destinations.contract import Destination, DestinationAdapter, DestinationError, TableName
from pipezone.core.destinations.csv_text import NULL as CSV_NULL
from pipezone.core.destinations.csv_text import csv_bytes
from pipezone.core.destinations.row_values import COMPLEX_TYPES
from pipezone.core.destinations.sql_destination import (
    CONNECT_TIMEOUT_SECONDS,
    SqlDestination,
    conflict_upsert,
    open_engine,
)
from pipezone.core.sources.jdbc.postgres import PostgresAdapter
from pipezone.core.spec.connection import ConnectionSpec
from pipezone.core.spec.secrets import SecretResolver

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql.types import DataType, StructType
    from sqlalchemy import Connection, Executable, Select, Table
    from sqlalchemy.types import TypeEngine

_TYPES: dict[str, TypeEngine[Any]] = {
    "boolean": postgresql.BOOLEAN(),
    "byte": postgresql.SMALLINT(),  # PostgreSQL has no one-byte integer
    "short": postgresql.SMALLINT(),
    "integer": postgresql.INTEGER(),
    "long": postgresql.BIGINT(),
    "float": postgresql.REAL(),
    "double": postgresql.DOUBLE_PRECISION(),
    "string": postgresql.TEXT(),
    "binary": postgresql.BYTEA(),
    "date": postgresql.DATE(),
    "timestamp": postgresql.TIMESTAMP(timezone=True),
    "timestamp_ntz": postgresql.TIMESTAMP(timezone=False),
    "void": postgresql.TEXT(),
}


class PostgresDestination(SqlDestination):
    """Tables in a PostgreSQL database, schema-qualified when the export names a schema."""

    driver_errors: ClassVar[tuple[type[Exception], ...]] = (psycopg.Error,)

    def sql_type(self, data_type: DataType, key: bool) -> TypeEngine[Any]:
        kind = data_type.typeName()
        if kind == "decimal":
            return postgresql.NUMERIC(data_type.precision, data_type.scale)  # type: ignore[attr-defined]
        if kind in COMPLEX_TYPES:
            return postgresql.JSONB()
        if kind not in _TYPES:
            raise DestinationError(f"Spark type {data_type.simpleString()} has no PostgreSQL type here", self.name)
        return _TYPES[kind]

    def load(self, conn: Connection, target: Table, schema: StructType, batches: Iterable[pa.RecordBatch]) -> None:
        """`COPY target (columns) FROM STDIN (FORMAT csv)` on the transaction's own psycopg connection, fed
        with CSV that Arrow formats a batch at a time (csv_text)."""
        name = sql.Identifier(*([target.schema] if target.schema else []), target.name)
        columns = sql.SQL(", ").join(sql.Identifier(column.name) for column in target.columns)
        options = sql.SQL("(FORMAT csv, NULL {})").format(sql.Literal(CSV_NULL))
        statement = sql.SQL("COPY {} ({}) FROM STDIN {}").format(name, columns, options)
        driver: psycopg.Connection[Any] = conn.connection.driver_connection  # type: ignore[assignment]
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for batch in batches:
                copy.write(csv_bytes(batch, schema, _bytea))

    def upsert(self, target: Table, keys: list[str], source: Select[Any] | dict[str, Any]) -> Executable:
        return conflict_upsert(postgresql.insert, target, keys, source)

    def create_staging(
        self, conn: Connection, table: TableName, staging: TableName, schema: StructType, primary_key: list[str]
    ) -> None:
        """A copy of the table's definition (`LIKE ... INCLUDING ALL`: defaults, constraints, indexes,
        comments), so a replace keeps what was added to the table besides PipeZone's columns. (A serial
        column added by hand would tie the copy to the old table's sequence: the swap's DROP refuses it.)"""
        conn.exec_driver_sql(f"CREATE TABLE {self.quoted(staging)} (LIKE {self.quoted(table)} INCLUDING ALL)")


def _bytea(value: bytes) -> str:
    """bytea's hex input form."""
    return "\\x" + value.hex()


class PostgresDestinationAdapter(DestinationAdapter):
    name = "postgres"
    types = ("postgres",)

    def open(self, connection: ConnectionSpec, resolver: SecretResolver, project_root: Path) -> Destination:
        url = partial(PostgresAdapter().native_url, connection, resolver, project_root)
        engine = open_engine(connection, url, connect_timeout=CONNECT_TIMEOUT_SECONDS)
        return PostgresDestination(connection, engine)
