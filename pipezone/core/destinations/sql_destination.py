"""SQL databases as export destinations: the destination contract once, on SQLAlchemy 2 Core (tables, DDL,
quoting, reflection for `describe`, the dialects' upsert constructs) and Alembic's operations (`evolve`), with
what differs between databases (types, bulk load, swap, upsert statement) left to small dialect modules.

How a write commits (every mode writes the `ExportMarker` into `pipezone_exports`, in the connection's
default schema or database, in the same transaction as its rows):

- `replace`: a staging table is created and loaded, then swapped for the table (PostgreSQL and SQLite:
  drop and rename in the load's transaction, marker included; MySQL: `RENAME TABLE`, see mysql.py);
- `append`: the rows are loaded into the table, in one transaction;
- `upsert`: the tombstoned keys are loaded into a temporary table and deleted, then the rows are loaded
  into another and merged by one upsert statement, in one transaction (deletes first: a key both deleted
  and in the rows keeps the row, the lake's current state).

Type mapping, Spark -> destination; in parentheses what `describe` maps a type back to, where it differs:

| Spark            | PostgreSQL       | MySQL / MariaDB                   | SQLite (declared type)   |
|------------------|------------------|-----------------------------------|--------------------------|
| boolean          | boolean          | TINYINT(1)                        | BOOLEAN                  |
| byte             | smallint (short) | TINYINT                           | INTEGER (long)           |
| short            | smallint         | SMALLINT                          | INTEGER (long)           |
| int              | integer          | INT                               | INTEGER (long)           |
| long             | bigint           | BIGINT                            | INTEGER                  |
| float            | real             | FLOAT                             | REAL (double)            |
| double           | double precision | DOUBLE                            | REAL                     |
| decimal(p,s)     | numeric(p,s)     | DECIMAL(p,s)                      | DECIMAL_TEXT(p,s)        |
| string           | text             | LONGTEXT; key: VARCHAR(<= 768)    | TEXT                     |
| binary           | bytea            | LONGBLOB; key: VARBINARY(<= 3072) | BLOB                     |
| date             | date             | DATE                              | DATE                     |
| timestamp        | timestamptz      | DATETIME(6), in UTC               | TIMESTAMP                |
| timestamp_ntz    | timestamp        | DATETIME(6) (timestamp)           | DATETIME                 |
| array/map/struct | jsonb (string)   | JSON (string; MariaDB: LONGTEXT)  | JSON (string)            |
| void (all NULL)  | text (string)    | LONGTEXT (string)                 | TEXT (string)            |

SQLite stores booleans as 0/1, decimals as their exact text, dates and timestamps as sortable text
`YYYY-MM-DD[ HH:MM:SS.ffffff]` (timestamps in UTC). `stored_schema` applies the same round trip to the
lake schema, so an unchanged lake schema is never drift. Nested values are JSON text: struct fields and map
keys as object keys, decimals as strings (exact), binary as base64, dates and timestamps as ISO-8601.
Non-key columns are created nullable whatever the lake says; key columns are NOT NULL.
"""

from __future__ import annotations

import uuid
from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    MetaData,
    Select,
    String,
    Table,
    Text,
    and_,
    create_engine,
    delete,
    exists,
    func,
    inspect,
    pool,
    select,
)
from sqlalchemy import table as sql_table
from sqlalchemy import types as sqltypes
from sqlalchemy.dialects import mysql
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.schema import CreateTable

from pipezone.core.destinations.contract import (
    Destination,
    DestinationError,
    ExportBatch,
    ExportMarker,
    TableName,
    WriteMode,
    WriteReport,
)
from pipezone.core.destinations.row_values import LoadRefused
from pipezone.core.sources.contract import SourceError
from pipezone.core.spec.connection import ConnectionSpec

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql.types import DataType, StructField, StructType
    from sqlalchemy import Connection, Engine, Executable
    from sqlalchemy.engine import URL
    from sqlalchemy.types import TypeEngine

MARKER_TABLE = "pipezone_exports"
CONNECT_TIMEOUT_SECONDS = 10


class SqlDestination(Destination):
    """A SQL database reached through a SQLAlchemy engine (NullPool: a connection per operation, so a
    session's temporary tables never outlive the write that made them)."""

    transactional_ddl: ClassVar[bool] = True  # CREATE / DROP / RENAME inside a transaction (not MySQL)
    driver_errors: ClassVar[tuple[type[Exception], ...]] = ()  # raised by the driver outside SQLAlchemy

    def __init__(self, connection: ConnectionSpec, engine: Engine) -> None:
        super().__init__(connection)
        self.engine = engine
        self._secret = engine.url.password

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ dialect hooks

    @abstractmethod
    def sql_type(self, data_type: DataType, key: bool) -> TypeEngine[Any]:
        """The destination type for a Spark type (`key`: the column is part of the primary key)."""

    @abstractmethod
    def load(self, conn: Connection, target: Table, schema: StructType, batches: Iterable[pa.RecordBatch]) -> None:
        """Bulk-load `batches` (columns of `schema`) into `target` inside `conn`'s transaction."""

    @abstractmethod
    def upsert(self, target: Table, keys: list[str], source: Select[Any] | dict[str, Any]) -> Executable:
        """Insert `source` (a SELECT of `target`'s column names, or one row) into `target`, updating rows whose
        `keys` exist already."""

    def spark_type(self, sql_type: TypeEngine[Any]) -> DataType:
        """The Spark type a reflected (or created) column type maps back to; a type PipeZone never creates
        is read as a string."""
        from pyspark.sql import types as T

        if isinstance(sql_type, sqltypes.JSON):
            return T.StringType()
        if isinstance(sql_type, sqltypes.Boolean):
            return T.BooleanType()
        if isinstance(sql_type, sqltypes.Float):
            return T.DoubleType() if isinstance(sql_type, sqltypes.Double) else T.FloatType()
        if isinstance(sql_type, sqltypes.Numeric):  # unconstrained: decimal(38,18) as the sources read it
            precision, scale = (sql_type.precision, sql_type.scale or 0) if sql_type.precision else (38, 18)
            return T.DecimalType(precision, scale) if precision <= 38 else T.StringType()
        if isinstance(sql_type, sqltypes.SmallInteger):
            return T.ShortType()
        if isinstance(sql_type, sqltypes.BigInteger):
            return T.LongType()
        if isinstance(sql_type, sqltypes.Integer):
            return T.IntegerType()
        if isinstance(sql_type, sqltypes.DateTime):
            return T.TimestampType() if sql_type.timezone else T.TimestampNTZType()
        if isinstance(sql_type, sqltypes.Date):
            return T.DateType()
        if isinstance(sql_type, sqltypes._Binary):  # the base of every binary type, MySQL's BLOBs included
            return T.BinaryType()
        return T.StringType()

    def column_types(self, schema: StructType, primary_key: list[str]) -> dict[str, TypeEngine[Any]]:
        """Each column's destination type when the table is created."""
        return {f.name: self.sql_type(f.dataType, f.name in primary_key) for f in schema.fields}

    def create_staging(
        self, conn: Connection, table: TableName, staging: TableName, schema: StructType, primary_key: list[str]
    ) -> None:
        """The empty table a `replace` loads before the swap: by default created afresh from the lake schema."""
        self.ddl_table(staging, schema, primary_key).create(conn)

    def swap(self, conn: Connection, table: TableName, staging: TableName) -> None:
        """Put the loaded `staging` in `table`'s place, in `conn`'s transaction (databases with transactional
        DDL: readers see the old table until the commit, then the new one)."""
        ops = Operations(MigrationContext.configure(conn))
        ops.drop_table(table.table, schema=table.schema)
        ops.rename_table(staging.table, table.table, schema=table.schema)

    # ------------------------------------------------------------------ the contract

    def stored_schema(self, schema: StructType) -> StructType:
        from pyspark.sql.types import StructField, StructType

        fields = [StructField(f.name, self.spark_type(self.sql_type(f.dataType, False)), f.nullable) for f in schema]
        return StructType(fields)

    def describe(self, table: TableName) -> StructType | None:
        from pyspark.sql.types import StructField, StructType

        with self.refused(table), self.engine.connect() as conn:
            found = inspect(conn)
            if not found.has_table(table.table, schema=table.schema):
                return None
            columns = found.get_columns(table.table, schema=table.schema)
        return StructType([StructField(c["name"], self.spark_type(c["type"]), c["nullable"]) for c in columns])

    def create(self, table: TableName, schema: StructType, primary_key: list[str]) -> None:
        with self.refused(table), self.engine.begin() as conn:
            self.ddl_table(table, schema, primary_key).create(conn)

    def evolve(self, table: TableName, added: list[StructField], widened: list[StructField]) -> None:
        """Alembic's batch operations: plain ALTER TABLE where the database has it, SQLite's copy-and-move for
        a changed column type. One transaction where DDL is transactional (MySQL commits each ALTER)."""
        with self.refused(table), self.engine.begin() as conn:
            current = {c["name"].lower(): c for c in inspect(conn).get_columns(table.table, schema=table.schema)}
            ops = Operations(MigrationContext.configure(conn))
            with ops.batch_alter_table(table.table, schema=table.schema) as batch:
                for field in added:
                    batch.add_column(Column(field.name, self.sql_type(field.dataType, False), nullable=True))
                for field in widened:
                    old = current[field.name.lower()]
                    batch.alter_column(
                        old["name"],
                        type_=self.sql_type(field.dataType, False),
                        existing_type=old["type"],
                        existing_nullable=old["nullable"],
                    )

    def write(
        self, table: TableName, batch: ExportBatch, mode: WriteMode, primary_key: list[str], marker: ExportMarker
    ) -> WriteReport:
        self.check_mode(mode, primary_key)
        write = _Write(table, batch, primary_key, marker)
        with self.refused(table):
            self._create_markers()
            if mode == "replace":
                self._replace(write)
            elif mode == "append":
                with self.engine.begin() as conn:
                    self.load(conn, dml_table(table, batch.schema), batch.schema, write.batches())
                    self._mark(conn, write)
            else:
                self._upsert(write)
        return WriteReport(table, mode, write.rows, write.deleted, write.bytes)

    def count(self, table: TableName) -> int | None:
        with self.refused(table), self.engine.connect() as conn:
            if not inspect(conn).has_table(table.table, schema=table.schema):
                return None
            rows = select(func.count()).select_from(sql_table(table.table, schema=table.schema))
            return int(conn.execute(rows).scalar() or 0)

    def exported_version(self, export: str) -> int | None:
        markers = self.marker_table()
        with self.refused(MARKER_TABLE), self.engine.connect() as conn:
            if not inspect(conn).has_table(MARKER_TABLE):
                return None
            version = conn.execute(select(markers.c.version).where(markers.c.export_id == export)).scalar()
        return None if version is None else int(version)

    # ------------------------------------------------------------------ the modes

    def _replace(self, write: _Write) -> None:
        """Load a staging table and swap it in; a failed load leaves the table as it was (the staging table is
        rolled back, or dropped where its CREATE committed)."""
        table, schema = write.table, write.batch.schema
        staging = TableName(staging_name(table.table), table.schema)
        try:
            with self.engine.begin() as conn:
                self.create_staging(conn, table, staging, schema, write.key)
                self.load(conn, dml_table(staging, schema), schema, write.batches())
                self.swap(conn, table, staging)
                if self.transactional_ddl:
                    self._mark(conn, write)
        except BaseException:
            if not self.transactional_ddl:
                self._drop_quietly(staging)
            raise
        if not self.transactional_ddl:
            with self.engine.begin() as conn:
                self._mark(conn, write)

    def _upsert(self, write: _Write) -> None:
        """Deletes, then one upsert from a loaded temporary table, then the marker: one transaction."""
        schema, deleted_keys = write.batch.schema, write.batch.deleted_keys
        target = dml_table(write.table, schema)
        with self.engine.begin() as conn:
            if deleted_keys is not None:
                write.deleted = self._delete_keys(conn, target, schema, write.key, deleted_keys)
            staged = self._temporary(conn, schema)
            self.load(conn, staged, schema, write.batches())
            conn.execute(self.upsert(target, write.key, select(*staged.c)))
            self._mark(conn, write)

    def _delete_keys(
        self, conn: Connection, target: Table, schema: StructType, keys: list[str], batches: Iterable[pa.RecordBatch]
    ) -> int:
        from pyspark.sql.types import StructType

        fields = {f.name: f for f in schema.fields}
        key_schema = StructType([fields[k] for k in keys])
        staged = self._temporary(conn, key_schema)
        self.load(conn, staged, key_schema, batches)
        match = and_(*(target.c[k] == staged.c[k] for k in keys))
        return conn.execute(delete(target).where(exists().where(match))).rowcount

    def _temporary(self, conn: Connection, schema: StructType) -> Table:
        """A session-private table (gone when the connection closes; PostgreSQL's at the commit)."""
        types = self.column_types(schema, [])
        columns = [Column(name, kind, nullable=True) for name, kind in types.items()]
        staged = Table(staging_name("rows"), MetaData(), *columns, prefixes=["TEMPORARY"], postgresql_on_commit="DROP")
        staged.create(conn)
        return staged

    # ------------------------------------------------------------------ tables and markers

    def ddl_table(self, table: TableName, schema: StructType, primary_key: list[str]) -> Table:
        """`table` with `schema`'s columns in this destination's types, keyed on `primary_key` (never an
        autoincrement: SQLAlchemy would make a lone integer key SERIAL / AUTO_INCREMENT)."""
        key = set(primary_key)
        columns = [
            Column(name, kind, nullable=name not in key, primary_key=name in key, autoincrement=False)
            for name, kind in self.column_types(schema, primary_key).items()
        ]
        return Table(table.table, MetaData(), *columns, schema=table.schema)

    def marker_table(self) -> Table:
        """`pipezone_exports`: one row per export, the lake version its last committed write carried."""
        stamp = DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
        return Table(
            MARKER_TABLE,
            MetaData(),
            Column("export_id", String(255), primary_key=True),
            Column("version", BigInteger, nullable=False),
            Column("table_name", Text, nullable=False),
            Column("rows_written", BigInteger, nullable=False),
            Column("exported_at", stamp, nullable=False),
        )

    def _create_markers(self) -> None:
        """Before the write's transaction: MySQL would commit it at a CREATE TABLE in its middle."""
        with self.engine.begin() as conn:
            conn.execute(CreateTable(self.marker_table(), if_not_exists=True))

    def _mark(self, conn: Connection, write: _Write) -> None:
        values = {
            "export_id": write.marker.export,
            "version": write.marker.version,
            "table_name": str(write.table),
            "rows_written": write.rows,
            "exported_at": datetime.now(UTC),
        }
        conn.execute(self.upsert(self.marker_table(), ["export_id"], values))

    def _drop_quietly(self, staging: TableName) -> None:
        """Best effort: a staging table left by a failed load (named pz_stage_*, safe to drop by hand)."""
        try:
            with self.engine.begin() as conn:
                ops = Operations(MigrationContext.configure(conn))
                ops.drop_table(staging.table, schema=staging.schema, if_exists=True)
        except SQLAlchemyError:
            pass

    def quoted(self, table: TableName) -> str:
        """`table` as SQL, quoted by the dialect (schema-qualified when it has one)."""
        return self.engine.dialect.identifier_preparer.format_table(Table(table.table, MetaData(), schema=table.schema))

    # ------------------------------------------------------------------ errors

    @contextmanager
    def refused(self, table: TableName | str) -> Iterator[None]:
        """Whatever the database refuses becomes one DestinationError line naming the connection and the
        table: the driver's message, never a traceback or the password."""
        try:
            yield
        except DestinationError:
            raise
        except DBAPIError as err:
            raise self._error(table, err.orig or err) from None
        except (SQLAlchemyError, LoadRefused, *self.driver_errors) as err:
            raise self._error(table, err) from None

    def _error(self, table: TableName | str, err: BaseException) -> DestinationError:
        reason = " ".join(str(err).split()) or type(err).__name__
        if self._secret:
            reason = reason.replace(self._secret, "***")
        return DestinationError(f"table {table}: {reason}", self.name)


# ---------------------------------------------------------------------- helpers for the dialect modules


def open_engine(connection: ConnectionSpec, url: Callable[[], URL], **connect_args: Any) -> Engine:
    """An engine on the URL the source adapter builds (credentials resolved there); a secret that does not
    resolve is a DestinationError naming the connection."""
    try:
        target = url()
    except SourceError as err:
        raise DestinationError(err.cause, connection.name) from None
    return create_engine(target, poolclass=pool.NullPool, connect_args=connect_args)


def conflict_upsert(
    insert_function: Callable[[Table], Any], target: Table, keys: list[str], source: Select[Any] | dict[str, Any]
) -> Executable:
    """`INSERT ... ON CONFLICT (keys) DO UPDATE SET c = excluded.c` with PostgreSQL's or SQLite's insert."""
    statement, columns = insert_from(insert_function(target), source)
    updates = {c: statement.excluded[c] for c in columns if c not in keys}
    if not updates:
        return statement.on_conflict_do_nothing(index_elements=keys)
    return statement.on_conflict_do_update(index_elements=keys, set_=updates)


def insert_from(statement: Any, source: Select[Any] | dict[str, Any]) -> tuple[Any, list[str]]:
    """A dialect INSERT filled from a SELECT or with one row, and the columns it sets."""
    if isinstance(source, Select):
        columns = list(source.selected_columns.keys())
        return statement.from_select(columns, source), columns
    return statement.values(source), list(source)


def dml_table(table: TableName, schema: StructType) -> Table:
    """`table` for loads and DML: the columns by name, untyped, so SQLAlchemy passes the loaders' values as
    they are (the loaders convert them for their driver)."""
    return Table(table.table, MetaData(), *(Column(f.name) for f in schema.fields), schema=table.schema)


def staging_name(table: str) -> str:
    """A fresh staging table name (pz_stage_<random>_<table>), within every database's identifier limit."""
    return f"pz_stage_{uuid.uuid4().hex[:12]}_{table}"[:60]


@dataclass
class _Write:
    """One write in progress, and the rows and Arrow bytes its loads have consumed."""

    table: TableName
    batch: ExportBatch
    key: list[str]
    marker: ExportMarker
    rows: int = 0
    bytes: int = 0
    deleted: int = 0

    def batches(self) -> Iterator[pa.RecordBatch]:
        for batch in self.batch.batches:
            self.rows += batch.num_rows
            self.bytes += batch.nbytes
            yield batch
