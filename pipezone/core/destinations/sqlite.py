"""SQLite files as an export destination (the embedded demo's): Python's sqlite3, executemany inserts.

SQLite has one integer (64-bit) and one float (64-bit) storage class, so every integral Spark type is an
INTEGER and float/double a REAL: nothing to widen later. Decimals are stored as TEXT (declared
`DECIMAL_TEXT(p,s)`, TEXT affinity): a NUMERIC column would turn '12345678901234567890.12' into an 8-byte
float (about 15 significant digits), where text keeps every digit; compare or sum them with
`CAST(x AS REAL)` knowing that is approximate. Dates and timestamps are text in SQLite's own sortable
form (UTC for timestamps), as SQLAlchemy's SQLite types write them.

Transactions: pysqlite opens a transaction only before INSERT/UPDATE/DELETE, which would leave a staging
table's CREATE outside it. The engine turns the driver's own handling off and emits `BEGIN IMMEDIATE` at
every transaction start (SQLAlchemy's documented recipe), so DDL, rows and marker commit together and the
write lock is taken up front.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import event, insert, true
from sqlalchemy import types as sqltypes
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import URL
from sqlalchemy.types import UserDefinedType

from pipezone.core.destinations.contract import Destination, DestinationAdapter, DestinationError
from pipezone.core.destinations.row_values import COMPLEX_TYPES, python_rows, utc_naive
from pipezone.core.destinations.sql_destination import (
    SqlDestination,
    conflict_upsert,
    open_engine,
)
from pipezone.core.spec.connection import ConnectionSpec, SqliteConnection
from pipezone.core.spec.secrets import SecretResolver

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql.types import DataType, StructType
    from sqlalchemy import Connection, Engine, Executable, Select, Table
    from sqlalchemy.types import TypeEngine

TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's SQLite DATETIME storage format


class DecimalText(UserDefinedType[Decimal]):
    """`DECIMAL_TEXT(p, s)`: a decimal kept as its exact text, precision and scale in the declared type."""

    cache_ok = True

    def __init__(self, precision: int = 38, scale: int = 18) -> None:
        self.precision = precision
        self.scale = scale

    def get_col_spec(self, **kw: Any) -> str:
        return f"DECIMAL_TEXT({self.precision}, {self.scale})"


_TYPES: dict[str, TypeEngine[Any]] = {
    "boolean": sqltypes.BOOLEAN(),
    "byte": sqltypes.INTEGER(),
    "short": sqltypes.INTEGER(),
    "integer": sqltypes.INTEGER(),
    "long": sqltypes.INTEGER(),
    "float": sqltypes.REAL(),
    "double": sqltypes.REAL(),
    "string": sqltypes.TEXT(),
    "binary": sqltypes.BLOB(),
    "date": sqltypes.DATE(),
    "timestamp": sqltypes.TIMESTAMP(),
    "timestamp_ntz": sqltypes.DATETIME(),
    "void": sqltypes.TEXT(),
}


class SqliteDestination(SqlDestination):
    """Tables in one SQLite file."""

    driver_errors: ClassVar[tuple[type[Exception], ...]] = (sqlite3.Error,)

    def sql_type(self, data_type: DataType, key: bool) -> TypeEngine[Any]:
        kind = data_type.typeName()
        if kind == "decimal":
            return DecimalText(data_type.precision, data_type.scale)  # type: ignore[attr-defined]
        if kind in COMPLEX_TYPES:
            return sqlite.JSON()
        if kind not in _TYPES:
            raise DestinationError(f"Spark type {data_type.simpleString()} has no SQLite type here", self.name)
        return _TYPES[kind]

    def spark_type(self, sql_type: TypeEngine[Any]) -> DataType:
        """INTEGER is a long and REAL a double (SQLite's storage); TIMESTAMP is UTC, DATETIME zone-less."""
        from pyspark.sql import types as T

        if isinstance(sql_type, DecimalText):
            return T.DecimalType(sql_type.precision, sql_type.scale)
        if isinstance(sql_type, sqltypes.Integer):
            return T.LongType()
        if isinstance(sql_type, sqltypes.Float):
            return T.DoubleType()
        if isinstance(sql_type, sqltypes.DateTime):
            return T.TimestampType() if isinstance(sql_type, sqltypes.TIMESTAMP) else T.TimestampNTZType()
        return super().spark_type(sql_type)

    def load(self, conn: Connection, target: Table, schema: StructType, batches: Iterable[pa.RecordBatch]) -> None:
        statement = str(insert(target).compile(dialect=conn.dialect))  # qmark parameters, for executemany
        for batch in batches:
            rows = [tuple(_stored(v) for v in row) for row in python_rows(batch, schema)]
            if rows:
                conn.exec_driver_sql(statement, rows)

    def upsert(self, target: Table, keys: list[str], source: Select[Any] | dict[str, Any]) -> Executable:
        """`INSERT ... SELECT ... WHERE true ON CONFLICT`: SQLite needs the WHERE, or it would read ON CONFLICT
        as a join constraint of the SELECT."""
        if not isinstance(source, dict):
            source = source.where(true())
        return conflict_upsert(sqlite.insert, target, keys, source)


def _stored(value: Any) -> Any:
    """A value as SQLite stores it here: decimals as exact text, dates and timestamps as sortable text."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return utc_naive(value).strftime(TIMESTAMP_FORMAT)
    if isinstance(value, date):
        return value.isoformat()
    return value


def _driver_transactions(dbapi_connection: Any, connection_record: Any) -> None:
    dbapi_connection.isolation_level = None  # pysqlite's implicit BEGIN off: SQLAlchemy's begin emits it


def _begin_immediate(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def sqlite_engine(connection: ConnectionSpec, path: Path) -> Engine:
    """An engine on the file (created when missing), with transactions that include DDL and reflection that
    knows DECIMAL_TEXT."""
    engine = open_engine(connection, lambda: URL.create("sqlite", database=str(path)))
    event.listen(engine, "connect", _driver_transactions)
    event.listen(engine, "begin", _begin_immediate)
    engine.dialect.ischema_names = {**engine.dialect.ischema_names, "DECIMAL_TEXT": DecimalText}  # type: ignore[attr-defined]
    return engine


class SqliteDestinationAdapter(DestinationAdapter):
    name = "sqlite"
    types = ("sqlite",)

    def open(self, connection: ConnectionSpec, resolver: SecretResolver, project_root: Path) -> Destination:
        """The file at the connection's path (relative to the project root, as the source adapter reads it)."""
        if not isinstance(connection, SqliteConnection):
            raise DestinationError(
                f"a {connection.type} connection cannot be written by the sqlite adapter", connection.name
            )
        path = Path(connection.path).expanduser()
        path = (path if path.is_absolute() else project_root / path).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteDestination(connection, sqlite_engine(connection, path))
