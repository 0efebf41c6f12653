"""MySQL and MariaDB as an export destination: PyMySQL, rows in with `LOAD DATA LOCAL INFILE`.

Each Arrow batch is written to a temporary CSV file by Arrow's writer (csv_text) and loaded with one LOAD
DATA, the bulk path of both servers. The file is exact: every value is quoted (`""` for a quote inside, no
escape character), NULL is the unquoted word NULL, text is utf8mb4, booleans are 1/0, binary goes as hex
through `SET col = UNHEX(@var)`, decimals as their digits, timestamps as UTC `YYYY-MM-DD HH:MM:SS.ffffff`
(the session's time_zone is '+00:00', the source adapter's init_command). A LOCAL load turns errors into
warnings (the server cannot stop the client mid-file): a duplicate key is skipped, a value out of range
clipped. So any warning, or a
row count short of the batch's, fails the load and the transaction is rolled back.

A server (or client) refusing LOCAL loads (`local_infile=OFF`) is not an error: the rows then go as
multi-row INSERTs (PyMySQL's executemany batches them), and a log line says so.

String primary-key columns are VARCHAR with a binary no-pad collation (keys compare as the lake's do,
'a' <> 'A' <> 'a '), sized so the key fits InnoDB's 3072-byte index limit; other strings are LONGTEXT.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pymysql
from sqlalchemy import insert
from sqlalchemy import types as sqltypes
from sqlalchemy.dialects import mysql

from pipezone.core.destinations.contract import Destination, DestinationAdapter, DestinationError, TableName
from pipezone.core.destinations.csv_text import csv_bytes
from pipezone.core.destinations.row_values import COMPLEX_TYPES, LoadRefused, python_columns, utc_naive
from pipezone.core.destinations.sql_destination import (
    CONNECT_TIMEOUT_SECONDS,
    SqlDestination,
    insert_from,
    open_engine,
    staging_name,
)
from pipezone.core.sources.jdbc.mysql import MySqlAdapter
from pipezone.core.spec.connection import ConnectionSpec
from pipezone.core.spec.secrets import SecretResolver

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql.types import DataType, StructType
    from sqlalchemy import Connection, Engine, Executable, Select, Table
    from sqlalchemy.types import TypeEngine

log = logging.getLogger(__name__)

KEY_BYTES = 3072  # InnoDB's index key limit (DYNAMIC rows)
KEY_RESERVE = 16  # bytes kept per non-text key column (BIGINT 8, DATETIME(6) 8, DECIMAL(38) 17: close enough)
LOCAL_REFUSED = frozenset({1148, 2068, 3948, 4166})  # LOAD DATA LOCAL disabled by the server or the client
_TYPES: dict[str, TypeEngine[Any]] = {
    "boolean": mysql.BOOLEAN(),  # TINYINT(1)
    "byte": mysql.TINYINT(),
    "short": mysql.SMALLINT(),
    "integer": mysql.INTEGER(),
    "long": mysql.BIGINT(),
    "float": mysql.FLOAT(),
    "double": mysql.DOUBLE(),
    "string": mysql.LONGTEXT(charset="utf8mb4"),
    "binary": mysql.LONGBLOB(),
    "date": mysql.DATE(),
    "timestamp": mysql.DATETIME(fsp=6),  # UTC by the session's time_zone; TIMESTAMP would end in 2038
    "timestamp_ntz": mysql.DATETIME(fsp=6),
    "void": mysql.LONGTEXT(charset="utf8mb4"),
}


class MySqlDestination(SqlDestination):
    """Tables in a MySQL or MariaDB database (a schema in an export's table name is the database)."""

    transactional_ddl: ClassVar[bool] = False
    driver_errors: ClassVar[tuple[type[Exception], ...]] = (pymysql.err.MySQLError, OSError)

    def __init__(self, connection: ConnectionSpec, engine: Engine) -> None:
        super().__init__(connection, engine)
        self.local_infile = True

    # ------------------------------------------------------------------ types

    def sql_type(self, data_type: DataType, key: bool) -> TypeEngine[Any]:
        kind = data_type.typeName()
        if kind == "decimal":
            return mysql.DECIMAL(data_type.precision, data_type.scale)  # type: ignore[attr-defined]
        if kind in COMPLEX_TYPES:
            return mysql.JSON()
        if key and kind in ("string", "binary"):
            return self._key_type(kind, KEY_BYTES)
        if kind not in _TYPES:
            raise DestinationError(f"Spark type {data_type.simpleString()} has no MySQL type here", self.name)
        return _TYPES[kind]

    def column_types(self, schema: StructType, primary_key: list[str]) -> dict[str, TypeEngine[Any]]:
        """Text and binary key columns share the index's bytes between them."""
        types = super().column_types(schema, primary_key)
        kinds = {f.name: f.dataType.typeName() for f in schema.fields}
        text = [k for k in primary_key if kinds.get(k) in ("string", "binary")]
        if text:
            share = (KEY_BYTES - KEY_RESERVE * (len(primary_key) - len(text))) // len(text)
            types |= {k: self._key_type(kinds[k], share) for k in text}
        return types

    def _key_type(self, kind: str, size: int) -> TypeEngine[Any]:
        if kind == "binary":
            return mysql.VARBINARY(size)
        collation = "utf8mb4_nopad_bin" if self.engine.dialect.is_mariadb else "utf8mb4_0900_bin"
        return mysql.VARCHAR(size // 4, charset="utf8mb4", collation=collation)

    def spark_type(self, sql_type: TypeEngine[Any]) -> DataType:
        """TINYINT(1) is a boolean, TINYINT a byte, DATETIME a timestamp (kept in UTC)."""
        from pyspark.sql import types as T

        if isinstance(sql_type, mysql.TINYINT):
            return T.BooleanType() if sql_type.display_width == 1 else T.ByteType()
        if isinstance(sql_type, sqltypes.DateTime):
            return T.TimestampType()
        return super().spark_type(sql_type)

    # ------------------------------------------------------------------ loads and statements

    def load(self, conn: Connection, target: Table, schema: StructType, batches: Iterable[pa.RecordBatch]) -> None:
        driver = conn.connection.driver_connection
        for batch in batches:
            if self.local_infile and self._load_file(driver, target, schema, batch):
                continue
            names = [column.key for column in target.columns]
            rows = [
                {name: _driver_value(v) for name, v in zip(names, row, strict=True)}
                for row in zip(*python_columns(batch, schema), strict=True)
            ]
            if rows:
                conn.execute(insert(target), rows)  # an executemany: PyMySQL sends multi-row INSERTs

    def _load_file(self, driver: Any, target: Table, schema: StructType, batch: pa.RecordBatch) -> bool:
        """One LOAD DATA LOCAL of `batch`; False (and local loads off from now on) when the server refuses
        LOCAL loads, so the caller inserts the rows instead."""
        with tempfile.NamedTemporaryFile("wb", suffix=".csv", delete=False) as out:
            out.write(csv_bytes(batch, schema, bytes.hex, naive_utc=True, numeric_bools=True))
        try:
            with driver.cursor() as cursor:
                cursor.execute(self._load_statement(driver.escape(out.name), target, schema))
                loaded, warnings = cursor.rowcount, cursor.warning_count
        except pymysql.err.MySQLError as err:
            if err.args and err.args[0] in LOCAL_REFUSED:
                self.local_infile = False
                log.warning(
                    "connection '%s': LOAD DATA LOCAL INFILE refused (%s); loading with multi-row INSERTs instead",
                    self.name,
                    err.args[-1],
                )
                return False
            raise
        finally:
            os.unlink(out.name)
        if warnings:
            level, code, message = driver.show_warnings()[0][:3]
            raise LoadRefused(f"{message} ({level} {code})")
        if loaded != batch.num_rows:
            raise LoadRefused(f"loaded {loaded} of {batch.num_rows} rows")
        return True

    def _load_statement(self, path_literal: str, target: Table, schema: StructType) -> str:
        preparer = self.engine.dialect.identifier_preparer
        fields, assignments = [], []
        for index, field in enumerate(schema.fields):
            column = preparer.quote(field.name)
            if field.dataType.typeName() == "binary":
                fields.append(f"@pz_{index}")
                assignments.append(f"{column} = UNHEX(@pz_{index})")
            else:
                fields.append(column)
        statement = (
            f"LOAD DATA LOCAL INFILE {path_literal} INTO TABLE {preparer.format_table(target)} CHARACTER SET utf8mb4 "
            "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '' LINES TERMINATED BY '\\n' "
            f"({', '.join(fields)})"
        )
        return statement + (f" SET {', '.join(assignments)}" if assignments else "")

    def upsert(self, target: Table, keys: list[str], source: Select[Any] | dict[str, Any]) -> Executable:
        statement, columns = insert_from(mysql.insert(target), source)
        updates = {c: statement.inserted[c] for c in columns if c not in keys} or {keys[0]: statement.inserted[keys[0]]}
        return statement.on_duplicate_key_update(updates)

    def create_staging(
        self, conn: Connection, table: TableName, staging: TableName, schema: StructType, primary_key: list[str]
    ) -> None:
        """`CREATE TABLE staging LIKE table` (columns, indexes, defaults as the table has them)."""
        self._run(conn, f"CREATE TABLE {self.quoted(staging)} LIKE {self.quoted(table)}")

    def swap(self, conn: Connection, table: TableName, staging: TableName) -> None:
        """One `RENAME TABLE` moves both names atomically; it commits the load first (MySQL DDL commits
        implicitly), so the export marker is written right after, in its own transaction. That is safe: a
        replace is idempotent, and a marker lost between the two only makes a rerun replace the table again."""
        old = TableName(staging_name(table.table), table.schema)
        self._run(
            conn,
            f"RENAME TABLE {self.quoted(table)} TO {self.quoted(old)}, {self.quoted(staging)} TO {self.quoted(table)}",
        )
        self._run(conn, f"DROP TABLE {self.quoted(old)}")

    def _run(self, conn: Connection, statement: str) -> None:
        """A statement on the driver's cursor, unformatted (a '%' in a table name is not a parameter)."""
        with conn.connection.driver_connection.cursor() as cursor:
            cursor.execute(statement)


def _driver_value(value: Any) -> Any:
    """A value for PyMySQL's INSERT: timestamps as naive UTC (DATETIME has no zone), the rest as they are."""
    return utc_naive(value) if isinstance(value, datetime) else value


class MySqlDestinationAdapter(DestinationAdapter):
    name = "mysql"
    types = ("mysql", "mariadb")

    def open(self, connection: ConnectionSpec, resolver: SecretResolver, project_root: Path) -> Destination:
        url = partial(MySqlAdapter().native_url, connection, resolver, project_root)
        engine = open_engine(connection, url, local_infile=True, connect_timeout=CONNECT_TIMEOUT_SECONDS)
        return MySqlDestination(connection, engine)
