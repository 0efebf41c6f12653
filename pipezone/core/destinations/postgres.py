"""PostgreSQL as an export destination: psycopg 3, rows in with `COPY ... FROM STDIN`.

COPY is PostgreSQL's bulk path and is transactional like any statement, so a load, the swap of a `replace`
and the export marker commit together. Rows go through psycopg's `Copy.write_row` in COPY's text format:
psycopg's dumpers write each Python value (Decimal, bytes as bytea, aware datetimes as timestamptz, dates,
booleans) and escape tabs, newlines and backslashes, with NULL distinct from ''. The session runs in UTC
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
from pipezone.core.destinations.row_values import COMPLEX_TYPES, python_rows
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
        """`COPY target (columns) FROM STDIN` on the transaction's own psycopg connection."""
        name = sql.Identifier(*([target.schema] if target.schema else []), target.name)
        columns = sql.SQL(", ").join(sql.Identifier(column.name) for column in target.columns)
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(name, columns)
        driver: psycopg.Connection[Any] = conn.connection.driver_connection  # type: ignore[assignment]
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for batch in batches:
                for row in python_rows(batch, schema):
                    copy.write_row(row)

    def upsert(self, target: Table, keys: list[str], source: Select[Any] | dict[str, Any]) -> Executable:
        return conflict_upsert(postgresql.insert, target, keys, source)

    def create_staging(
        self, conn: Connection, table: TableName, staging: TableName, schema: StructType, primary_key: list[str]
    ) -> None:
        """A copy of the table's definition (`LIKE ... INCLUDING ALL`: defaults, constraints, indexes,
        comments), so a replace keeps what was added to the table besides PipeZone's columns. (A serial
        column added by hand would tie the copy to the old table's sequence: the swap's DROP refuses it.)"""
        conn.exec_driver_sql(f"CREATE TABLE {self.quoted(staging)} (LIKE {self.quoted(table)} INCLUDING ALL)")


class PostgresDestinationAdapter(DestinationAdapter):
    name = "postgres"
    types = ("postgres",)

    def open(self, connection: ConnectionSpec, resolver: SecretResolver, project_root: Path) -> Destination:
        url = partial(PostgresAdapter().native_url, connection, resolver, project_root)
        engine = open_engine(connection, url, connect_timeout=CONNECT_TIMEOUT_SECONDS)
        return PostgresDestination(connection, engine)
