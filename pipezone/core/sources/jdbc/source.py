"""A relational table or query read with Spark's JDBC reader: the JDBC family behind the source contract.

The dialect (jdbc/dialect.py) writes the SQL text; this module runs it. Reads follow the field guide:
the window's upper bound comes from `cursor_bounds`, captured before the read (each JDBC partition is its
own transaction), and a parallel read splits on the partition column with MIN/MAX bounds that only set
the stride. A flow's first load can stream through connectorx instead (jdbc/arrow_read.py).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipezone.core.sources import contract
from pipezone.core.sources.contract import (
    ArrowRead,
    CursorBounds,
    CursorValue,
    PhysicalReference,
    ReadPlan,
    SourceAdapter,
    SourceError,
)
from pipezone.core.sources.jdbc import arrow_read
from pipezone.core.sources.jdbc.column_types import (
    SourceColumn,
    TypedRead,
    check_overrides,
    source_columns,
    typed_read,
)
from pipezone.core.sources.jdbc.dialect import (
    HI_COLUMN,
    LO_COLUMN,
    NOW_COLUMN,
    JdbcDialect,
    PartitionBounds,
    schema_ddl,
)
from pipezone.core.sources.jdbc.native import native_connection
from pipezone.core.spec.connection import ConnectionSpec
from pipezone.core.spec.secrets import SecretResolver
from pipezone.core.spec.source import SourceSpec

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, DataFrameReader, SparkSession
    from pyspark.sql.types import StructType

# Bump when what a JDBC read resolves changes (a dialect's read_expression, customSchema or casts, the
# driver's version): typings kept in raw's commits (JdbcSource.typing) then stop matching, Spark reads again.
TYPING_VERSION = 1
CHAR_TYPE_KEY = "__CHAR_VARCHAR_TYPE_STRING"  # where Spark's JDBC schema keeps a column's CHAR/VARCHAR(n)


class JdbcSource(contract.Source):
    """One flow's table or query on a JDBC connection."""

    reader = "JDBC"

    def __init__(
        self,
        dialect: JdbcDialect,
        spec: SourceSpec,
        connection: ConnectionSpec,
        resolver: SecretResolver,
        project_root: Path,
    ) -> None:
        super().__init__(spec, connection)
        self.dialect = dialect
        self.resolver = resolver
        self.project_root = project_root

    # ------------------------------------------------------------------ the contract

    def describe(self, spark: SparkSession, plan: ReadPlan | None = None) -> StructType:
        dbtable = self.dbtable(plan or ReadPlan.full())
        return self._load(spark, self.dialect.read_options(self.spec, dbtable, None)).schema

    def cursor_bounds(self, spark: SparkSession, after: CursorValue | None = None) -> CursorBounds:
        row = self._query_one(spark, self.dialect.bounds_read_options(self.spec))
        return CursorBounds(hi=row.get(HI_COLUMN), now=row.get(NOW_COLUMN))

    def bounds_without_spark(self) -> CursorBounds | None:
        """The same bounds query on the database's Python driver (PyMySQL, psycopg, sqlite3), its session in
        UTC as the JDBC session is, its values typed as the JDBC read types them (`native_bound`); None
        where PipeZone has no driver for the database."""
        if self.dialect.native_url(self.connection, self.resolver, self.project_root) is None:
            return None
        with native_connection(self.dialect, self.connection, self.resolver, self.project_root) as conn:
            if self.dialect.session_init:
                conn.exec_driver_sql(self.dialect.session_init)
            row = conn.exec_driver_sql(self.dialect.bounds_query(self.spec)).first()
        hi, now = (row[0], row[1]) if row is not None else (None, None)
        return CursorBounds(hi=self.dialect.native_bound(hi), now=self.dialect.native_bound(now))

    def read(self, spark: SparkSession, plan: ReadPlan) -> DataFrame:
        """The plan's rows, split as the flow asks. A read open below is (nearly) the whole table: the table's
        own MIN/MAX of the split column is an index lookup, where MIN/MAX over the window scans it."""
        dbtable = self.dbtable(plan)
        whole = plan.kind in ("full", "window") and plan.lower is None and self.spec.table is not None
        bounds = self._partition_bounds(spark, self.dialect.relation(self.spec) if whole else dbtable)
        return self._load(spark, self.dialect.read_options(self.spec, dbtable, bounds))

    def read_arrow(self, spark: SparkSession, plan: ReadPlan, schema: StructType) -> ArrowRead | None:
        """Through connectorx where the dialect offers a native URL (MySQL/MariaDB without driver options)."""
        if plan.kind not in ("full", "window"):
            return None
        url = self.dialect.arrow_url(self.connection, self.resolver)
        if url is None:
            return None
        typed = self.typed(spark, self.dbtable(plan))  # the same SELECT as the JDBC read
        arrow_read.check_schema({f.name: f.dataType.simpleString() for f in schema.fields}, typed.native_types)
        return self._stream(url, typed.dbtable)

    def typing(self, spark: SparkSession, plan: ReadPlan) -> dict[str, Any] | None:
        """The catalog's fingerprint, then the columns as the driver reports them and the read's Spark types,
        resolved in that order: a column changed in between shows as another fingerprint next time. Only for
        windows of a table on a connection connectorx reads (`arrow_url`)."""
        if plan.kind != "window" or self.dialect.arrow_url(self.connection, self.resolver) is None:
            return None
        fingerprint = self._fingerprint()
        if fingerprint is None:
            return None
        dbtable = self.dbtable(plan)
        columns = self._columns(spark, dbtable)
        schema = self._load(spark, self.dialect.read_options(self.spec, dbtable, None), columns).schema
        kept = [[c.name, c.spark_type, c.native_type, c.scale, dict(c.metadata)] for c in columns]
        types = {f.name: f.dataType.simpleString() for f in schema.fields}
        return {"fingerprint": fingerprint, "columns": kept, "types": types}

    def read_typed(self, plan: ReadPlan, typing: Mapping[str, Any]) -> tuple[ArrowRead, dict[str, str]] | None:
        """connectorx reads the window with the SELECT the JDBC read would run, built from the kept columns,
        when the catalog's fingerprint is still the one they were resolved with."""
        url = self.dialect.arrow_url(self.connection, self.resolver)
        if plan.kind != "window" or url is None or typing.get("fingerprint") != self._fingerprint():
            return None
        columns = [SourceColumn(n, t, native, int(scale), meta) for n, t, native, scale, meta in typing["columns"]]
        typed = typed_read(self.dialect, self.dbtable(plan), columns, self.spec.column_types)
        types = dict(typing["types"])
        arrow_read.check_schema(types, typed.native_types)
        return self._stream(url, typed.dbtable), types

    def _stream(self, url: str, dbtable: str) -> ArrowRead:
        batches = arrow_read.stream(url, self.dialect, self.spec, dbtable)
        first = next(batches, None)  # ArrowUnavailable here: connectorx could not start (a split, a type, ...)
        return ArrowRead(arrow_read.prepend(first, batches))

    def _fingerprint(self) -> str | None:
        """A digest of the catalog's rows for the table (`catalog_query`), the flow's type overrides and
        TYPING_VERSION; None without a catalog query, a driver, or rows (no such table: nothing to trust)."""
        query = self.dialect.catalog_query(self.spec)
        if query is None or self.dialect.native_url(self.connection, self.resolver, self.project_root) is None:
            return None
        try:
            with native_connection(self.dialect, self.connection, self.resolver, self.project_root) as conn:
                rows = [list(row) for row in conn.exec_driver_sql(query)]
        except SourceError:  # e.g. no right to read the catalog: Spark reads every window, as before
            return None
        if not rows:
            return None
        overrides = sorted(self.spec.column_types.items())
        text = json.dumps([TYPING_VERSION, type(self.dialect).__name__, rows, overrides], default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def count(self, spark: SparkSession) -> int:
        dbtable = f"(SELECT COUNT(*) AS n FROM {self.dialect.relation(self.spec)}) pz_count"
        return int(self._reader(spark).option("dbtable", dbtable).option("customSchema", "n BIGINT").load().first()[0])

    def physical_reference(self, plan: ReadPlan) -> PhysicalReference | None:
        sql = f"SELECT * FROM {self.dbtable(plan)}"
        return self.dialect.client_reference(self.connection, self.resolver, self.project_root, sql)

    # ------------------------------------------------------------------ JDBC

    def dbtable(self, plan: ReadPlan) -> str:
        """The plan as a `dbtable` text: the relation, a window or range subquery, or the key snapshot."""
        self.check_plan(plan)
        if plan.kind == "full":
            return self.dialect.window_query(self.spec, None, None)
        if plan.kind == "window":
            return self.dialect.window_query(self.spec, plan.lower, plan.upper)
        if plan.kind == "backfill":
            return self.dialect.backfill_query(self.spec, plan.lower, plan.upper)
        return self.dialect.key_snapshot_query(self.spec)

    def _reader(self, spark: SparkSession) -> DataFrameReader:
        """A configured `spark.read.format('jdbc')`, credentials attached."""
        reader = (
            spark.read.format("jdbc")
            .option("url", self.dialect.jdbc_url(self.connection, self.project_root))
            .option("driver", self.dialect.driver_class)
        )
        for key, value in self.dialect.connection_properties(self.connection, self.resolver).items():
            reader = reader.option(key, value)
        return reader

    def _query_one(self, spark: SparkSession, options: dict[str, str]) -> dict[str, Any]:
        rows = self._reader(spark).options(**options).load().collect()
        return rows[0].asDict() if rows else {}

    def _partition_bounds(self, spark: SparkSession, over: str) -> PartitionBounds | None:
        column = self.dialect.partition_column(self.spec)
        if self.spec.read.num_partitions <= 1 or column is None:
            return None
        row = self._query_one(spark, self.dialect.partition_bounds_read_options(self.spec, column, over))
        return row.get(LO_COLUMN), row.get(HI_COLUMN)

    def typed(self, spark: SparkSession, dbtable: str, columns: list[SourceColumn] | None = None) -> TypedRead:
        """`dbtable` as read exactly (column_types.py): a schema-only load tells what the driver reports
        (`columns`, when the caller has just resolved them)."""
        columns = self._columns(spark, dbtable) if columns is None else columns
        problem = check_overrides(columns, self.spec.column_types)
        if problem is not None:
            raise SourceError(problem, self.connection.name)
        return typed_read(self.dialect, dbtable, columns, self.spec.column_types)

    def _columns(self, spark: SparkSession, dbtable: str) -> list[SourceColumn]:
        return source_columns(self._reader(spark).option("dbtable", dbtable).load().schema)

    def run_query(self, spark: SparkSession, sql: str, custom_schema: str | None = None) -> DataFrame:
        """`sql`, a SELECT over this source's relations, as one JDBC read: the database does the work (verify's
        hash aggregates per key range) and only its small result travels. `custom_schema` types the result."""
        options = {"dbtable": f"({sql}) pz_query", "fetchsize": str(self.dialect.fetch_size(self.spec.read))}
        if self.dialect.session_init:
            options["sessionInitStatement"] = self.dialect.session_init
        if custom_schema:
            options["customSchema"] = custom_schema
        return self._reader(spark).options(**options).load()

    def _load(
        self, spark: SparkSession, options: dict[str, str], columns: list[SourceColumn] | None = None
    ) -> DataFrame:
        """Read with `options` exactly: the typed `dbtable`, its forced types, and the dialect's own fixes for
        drivers that type some columns badly (a customSchema, and casts after the read)."""
        from pyspark.sql import functions as F

        typed = self.typed(spark, options["dbtable"], columns)
        options = {**options, "dbtable": typed.dbtable}
        df = self._reader(spark).options(**options).load()
        inferred = {f.name: f.dataType.simpleString() for f in df.schema.fields if f.name not in typed.spark_types}
        forced = [schema_ddl(typed.spark_types)] if typed.spark_types else []
        forced += [text for text in [self.dialect.custom_schema(inferred)] if text]
        if forced:
            df = self._reader(spark).options(**options).option("customSchema", ", ".join(forced)).load()
        casts = self.dialect.post_read_casts(inferred)
        df = df.withColumns({name: F.expr(expr) for name, expr in casts.items()}) if casts else df
        return without_length_limits(df)


def without_length_limits(df: DataFrame) -> DataFrame:
    """Plain strings for the source's CHAR/VARCHAR columns: Spark carries their length into Delta as a
    write-time check, so a source that widens a column (or SQLite's TEXT, reported as varchar(0))
    would make every later write fail. The lake keeps the values, not the source's limits."""
    from pyspark.sql import functions as F

    marked = [f.name for f in df.schema.fields if CHAR_TYPE_KEY in f.metadata]
    if not marked:
        return df
    columns = [F.col(f"`{f.name}`") for f in df.schema.fields]
    return df.select(
        *[
            c.alias(f.name, metadata={}) if f.name in marked else c
            for c, f in zip(columns, df.schema.fields, strict=True)
        ]
    )


class JdbcAdapter(JdbcDialect, SourceAdapter):
    """A registry entry of the JDBC family: a database's dialect, opening `JdbcSource`s with it. Each database
    module subclasses this (mysql.py, postgres.py, ...)."""

    def open(
        self, spec: SourceSpec, connection: ConnectionSpec, resolver: SecretResolver, project_root: Path
    ) -> JdbcSource:
        return JdbcSource(self, spec, connection, resolver, project_root)
