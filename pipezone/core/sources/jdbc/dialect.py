"""The JDBC family's dialect: everything SQL-text about reading one relational database.

A dialect turns validated specs into the text a Spark JDBC read needs: the URL, the driver properties,
quoted identifiers, cursor literals, the incremental window subquery and the reader options. Dialects
are stateless text generators (no Spark, no I/O, no environment), so every rule is unit-testable;
jdbc/source.py does the reading with them, and a new database is one subclass plus one registry line.

Incremental windows follow the field guide: read `(lo, hi]` on the cursor, with `hi` captured by
`bounds_query` BEFORE the read, because each JDBC partition is its own transaction.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import ClassVar
from urllib.parse import quote as url_quote

from sqlalchemy.engine import URL

from pipezone.core.sources.contract import CursorValue, PhysicalReference, SourceError, for_connection
from pipezone.core.sources.jdbc.column_types import SourceColumn
from pipezone.core.spec.connection import OPTION_KEY_PATTERN, ConnectionSpec, JdbcConnection, OptionValue
from pipezone.core.spec.secrets import SecretError, SecretResolver, is_reference
from pipezone.core.spec.source import ReadOptions, SourceSpec

PartitionBounds = tuple[CursorValue | None, CursorValue | None]

QUERY_ALIAS = "pz_src"
WINDOW_ALIAS = "pz_window"
BOUNDS_ALIAS = "pz_bounds"
HI_COLUMN = "pz_hi"
LO_COLUMN = "pz_lo"
NOW_COLUMN = "pz_now"

_HOST = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?$")
_IPV6 = re.compile(r"^[0-9A-Fa-f:.]+$")
_OPTION_KEY = re.compile(OPTION_KEY_PATTERN)  # the spec's own rule, checked again where the URL is built


def utc_naive(value: datetime) -> datetime:
    """Naive datetimes are UTC already; aware ones are converted, so every literal means one instant."""
    if value.utcoffset() is None:
        return value.replace(tzinfo=None)
    try:
        return value.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        raise SourceError(f"timestamp {value.isoformat()} is out of range in UTC") from None


def timestamp_text(value: datetime, sep: str = " ") -> str:
    """`YYYY-MM-DD HH:MM:SS[.ffffff]` in UTC; the fraction only when non-zero (SQLite compares text)."""
    value = utc_naive(value)
    return value.isoformat(sep=sep, timespec="microseconds" if value.microsecond else "seconds")


def option_text(value: OptionValue) -> str:
    """Spec option values as the JVM expects them (`true`, not `True`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def host_port(conn: JdbcConnection) -> str:
    """`host:port`, bracketing IPv6; anything else is refused so a host cannot smuggle URL parameters."""
    host = conn.host.strip()
    if _HOST.match(host):
        return f"{host}:{conn.effective_port}"
    bare = host.removeprefix("[").removesuffix("]")
    if ":" in bare and _IPV6.match(bare):
        return f"[{bare}]:{conn.effective_port}"
    raise SourceError(f"invalid host {host!r}: expected a host name or an IP address")


def query_string(options: Mapping[str, str]) -> str:
    """`?k=v&...` with keys and values URL-encoded (empty when there are no options)."""
    pairs = [f"{url_quote(key, safe='')}={url_quote(value, safe='')}" for key, value in options.items()]
    return "?" + "&".join(pairs) if pairs else ""


def _bound_text(value: CursorValue, upper: bool) -> str:
    """A Spark lowerBound/upperBound: integers for numeric columns (widened outwards), ISO text for time."""
    if isinstance(value, bool):
        raise SourceError("a boolean cannot bound a partition column")
    if isinstance(value, datetime):
        return timestamp_text(value)  # Spark parses it in the session time zone, pinned to UTC
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal | float):
        if not math.isfinite(value):
            raise SourceError(f"partition bound {value} is not a finite number")
        return str(math.ceil(value) if upper else math.floor(value))  # Spark converts numeric bounds to long
    if isinstance(value, str):
        return value
    raise SourceError(f"unsupported partition bound of type {type(value).__name__}")


class JdbcDialect(ABC):
    """Everything dialect-specific about reading one relational database over JDBC."""

    name: ClassVar[str]
    types: ClassVar[tuple[str, ...]]  # connection `type` values this dialect serves
    driver_class: ClassVar[str]
    quote_open: ClassVar[str] = '"'
    quote_close: ClassVar[str] = '"'
    now_sql: ClassVar[str]  # the source's current time in UTC, for capping the window
    url_defaults: ClassVar[Mapping[str, str]] = {}
    session_init: ClassVar[str | None] = None  # Spark `sessionInitStatement`, run on every connection
    arrow_session_init: ClassVar[str | None] = None  # connectorx's first statement: the session in UTC
    dialect_notes: ClassVar[tuple[str, ...]] = ()

    # ------------------------------------------------------------------ connection

    @abstractmethod
    def jdbc_url(self, conn: ConnectionSpec, project_root: Path) -> str:
        """The JDBC URL, never with credentials in it (they go to `connection_properties`)."""

    def connection_properties(self, conn: ConnectionSpec, resolver: SecretResolver) -> dict[str, str]:
        """driver, user, password (revealed only here) and secret-valued options, for Spark's JDBC reader."""
        props = {"driver": self.driver_class}
        if isinstance(conn, JdbcConnection):
            with for_connection(conn.name):
                props.update(self._credentials(conn, resolver))
        return props

    def url_options(self, conn: JdbcConnection) -> dict[str, str]:
        """Defaults, then the user's options (theirs win; an empty value drops a default); never secrets."""
        merged = dict(self.url_defaults)
        for key, value in conn.options.items():
            if not _OPTION_KEY.fullmatch(key):
                raise SourceError(f"invalid option name {key!r}")
            if is_reference(value):
                continue  # resolved into connection_properties, never into the URL
            text = option_text(value)
            if text == "":
                merged.pop(key, None)
            else:
                merged[key] = self.merge_option(key, merged.get(key), text)
        return merged

    def merge_option(self, key: str, default: str | None, value: str) -> str:
        """How a user option combines with a default of the same name: it replaces it."""
        return value

    def jdbc_connection(self, conn: ConnectionSpec) -> JdbcConnection:
        """`conn` as a server connection of one of this adapter's types."""
        if not isinstance(conn, JdbcConnection) or conn.type not in self.types:
            raise SourceError(f"a {conn.type} connection cannot be read by the {self.name} adapter", conn.name)
        return conn

    def _credentials(self, conn: JdbcConnection, resolver: SecretResolver) -> dict[str, str]:
        refs = {"user": conn.user} if conn.user and is_reference(conn.user) else {}
        refs |= {"password": conn.password} if conn.password else {}
        refs |= {k: v for k, v in conn.options.items() if isinstance(v, str) and is_reference(v)}
        try:
            props = {key: resolver.resolve(ref, mask=key != "user").reveal() for key, ref in refs.items()}
        except SecretError as err:
            raise SourceError(str(err)) from None
        if conn.user and "user" not in props:
            props["user"] = conn.user
        return props

    def arrow_url(self, conn: ConnectionSpec, resolver: SecretResolver) -> str | None:
        """A connectorx URL (credentials revealed) for the Arrow bulk path, or None: JDBC only.

        Adapters offer it only where the native driver reads exactly what JDBC would; a connection with
        its own options (TLS, driver flags) stays on JDBC, which understands them."""
        return None

    def server_url(self, conn: ConnectionSpec, resolver: SecretResolver, scheme: str, suffix: str = "") -> str | None:
        """`scheme://user:password@host:port/database<suffix>` with the login revealed (a connectorx URL); None
        when the connection sets driver options, which only the JDBC driver understands."""
        with for_connection(conn.name):
            jdbc = self.jdbc_connection(conn)
            if jdbc.options:
                return None
            props = self._credentials(jdbc, resolver)
            user, password = (url_quote(props.get(key, ""), safe="") for key in ("user", "password"))
            return f"{scheme}://{user}:{password}@{host_port(jdbc)}/{url_quote(jdbc.database, safe='')}{suffix}"

    def driver_url(self, conn: ConnectionSpec, resolver: SecretResolver, driver: str, query: dict[str, str]) -> URL:
        """A SQLAlchemy URL for a server database's Python `driver`, login revealed, with session `query`."""
        with for_connection(conn.name):
            jdbc = self.jdbc_connection(conn)
            login = self._credentials(jdbc, resolver)
            return URL.create(
                driver,
                username=login.get("user"),
                password=login.get("password"),
                host=jdbc.host,
                port=jdbc.effective_port,
                database=jdbc.database,
                query=query,
            )

    def native_url(self, conn: ConnectionSpec, resolver: SecretResolver, project_root: Path) -> URL | None:
        """A SQLAlchemy URL (credentials revealed) for the database's Python driver, or None where PipeZone
        has none: catalog reads (column types, discovery, verify) go through it, never the JVM."""
        return None

    def client_reference(
        self, conn: ConnectionSpec, resolver: SecretResolver, project_root: Path, sql: str
    ) -> PhysicalReference | None:
        """The database's own command-line client running `sql` (the benchmarks' physical reference; the rows
        go to stdout, which the benchmark discards), or None where the database has no such client."""
        with for_connection(conn.name):
            jdbc = self.jdbc_connection(conn)
            return self.client_command(jdbc, self._credentials(jdbc, resolver), sql)

    def client_command(self, conn: JdbcConnection, login: Mapping[str, str], sql: str) -> PhysicalReference | None:
        """`client_reference` for a server database, given its revealed `login` (user, password); None: no client."""
        return None

    # ------------------------------------------------------------------ identifiers

    def quote(self, identifier: str) -> str:
        """Dialect quoting; a quote character inside is doubled, so any name is one safe identifier."""
        if not identifier or "\x00" in identifier:
            raise SourceError(f"invalid identifier {identifier!r}")
        escaped = identifier.replace(self.quote_close, self.quote_close * 2)
        return f"{self.quote_open}{escaped}{self.quote_close}"

    def fold(self, identifier: str) -> str:
        """The name a spec identifier stands for in this database (quoting makes it case-sensitive)."""
        return identifier

    def ident(self, identifier: str) -> str:
        """A spec identifier (schema, table, column) as quoted SQL."""
        return self.quote(self.fold(identifier))

    def relation(self, source: SourceSpec) -> str:
        """The FROM target: the quoted [schema.]table, or the query as a derived table."""
        if source.query is not None:
            return f"({source.query}\n) {QUERY_ALIAS}"  # newline: a trailing `-- comment` must not eat the `)`
        if source.table is None:
            raise SourceError("the source has neither a table nor a query", source.connection)
        parts = [source.schema_, source.table] if source.schema_ else [source.table]
        return ".".join(self.ident(part) for part in parts)

    # ------------------------------------------------------------------ literals

    def literal(self, value: CursorValue) -> str:
        """A SQL literal for a cursor value; strings escaped, timestamps in UTC."""
        if isinstance(value, bool):
            raise SourceError("a boolean is not a cursor value")
        if isinstance(value, datetime):
            return self.timestamp_literal(utc_naive(value))
        if isinstance(value, date):
            return self.date_literal(value)
        if isinstance(value, int):
            return str(value)
        if isinstance(value, Decimal | float):
            if not math.isfinite(value):
                raise SourceError(f"cursor value {value} is not a finite number")
            return format(value, "f") if isinstance(value, Decimal) else repr(value)
        if isinstance(value, str):
            if "\x00" in value:
                raise SourceError("a cursor string must not contain NUL characters")
            return self.string_literal(value)
        raise SourceError(f"unsupported cursor value of type {type(value).__name__}")

    def timestamp_literal(self, value: datetime) -> str:
        """`value` is naive UTC. The ANSI form serves MySQL, PostgreSQL and Oracle."""
        return f"TIMESTAMP '{timestamp_text(value)}'"

    def date_literal(self, value: date) -> str:
        return f"DATE '{value.isoformat()}'"

    def string_literal(self, value: str) -> str:
        return "'" + value.replace("'", "''") + "'"

    # ------------------------------------------------------------------ queries

    def cursor(self, source: SourceSpec) -> str | None:
        return source.incremental.cursor if source.incremental else None

    def window_query(self, source: SourceSpec, lo: CursorValue | None, hi: CursorValue | None) -> str:
        """The `dbtable` for the window `(lo, hi]` on the cursor; no cursor (or no bounds) reads everything."""
        return self._cursor_range(source, (">", lo), ("<=", hi))

    def backfill_query(self, source: SourceSpec, start: CursorValue, end: CursorValue) -> str:
        """The `dbtable` for a backfill's closed-open window `[start, end)` on the cursor."""
        if self.cursor(source) is None:
            raise SourceError("a backfill needs an incremental cursor, and this source has none", source.connection)
        return self._cursor_range(source, (">=", start), ("<", end))

    def _cursor_range(
        self, source: SourceSpec, lower: tuple[str, CursorValue | None], upper: tuple[str, CursorValue | None]
    ) -> str:
        with for_connection(source.connection):
            cursor = self.cursor(source)
            relation = self.relation(source)
            if cursor is None:
                return relation
            column = self.ident(cursor)
            conditions = [f"{column} {op} {self.literal(value)}" for op, value in (lower, upper) if value is not None]
        if not conditions:
            return relation
        return f"(SELECT * FROM {relation} WHERE {' AND '.join(conditions)}) {WINDOW_ALIAS}"

    def key_snapshot_query(self, source: SourceSpec) -> str:
        """The `dbtable` holding every primary key of the source (for delete detection)."""
        with for_connection(source.connection):
            if not source.primary_key:
                raise SourceError("delete detection needs a primary_key")
            keys = ", ".join(self.ident(k) for k in source.primary_key)
            return f"(SELECT {keys} FROM {self.relation(source)}) {WINDOW_ALIAS}"

    def bounds_query(self, source: SourceSpec) -> str:
        """One row: MAX(cursor) as pz_hi and the source's UTC now as pz_now, run BEFORE the read."""
        with for_connection(source.connection):
            cursor = self.cursor(source)
            if cursor is None:
                raise SourceError("bounds need an incremental cursor, and this source has none")
            hi, now = self.quote(HI_COLUMN), self.quote(NOW_COLUMN)
            return f"SELECT MAX({self.ident(cursor)}) AS {hi}, {self.now_sql} AS {now} FROM {self.relation(source)}"

    def catalog_query(self, source: SourceSpec) -> str | None:
        """A query for the database's own driver listing a table source's columns in order, with everything
        the JDBC driver types them by; None where the dialect has none, or for a query source. Equal rows
        tell a later window that the columns an earlier Spark read resolved still hold (JdbcSource.typing)."""
        return None

    def partition_column(self, source: SourceSpec) -> str | None:
        """The column to split a parallel read on: explicit, else a single-column primary key."""
        column = source.read.partition_column or (source.primary_key[0] if len(source.primary_key) == 1 else None)
        return self.fold(column) if column else None

    def partition_bounds_query(self, source: SourceSpec, column: str | None, window: str) -> str:
        """MIN/MAX (pz_lo, pz_hi) of the partition column within `window` (a `dbtable` text)."""
        with for_connection(source.connection):
            column = self.fold(column) if column else self.partition_column(source)
            if column is None:
                raise SourceError("no partition column: set read.partition_column or a single-column primary_key")
            quoted, lo, hi = self.quote(column), self.quote(LO_COLUMN), self.quote(HI_COLUMN)
            return f"SELECT MIN({quoted}) AS {lo}, MAX({quoted}) AS {hi} FROM {window}"

    # ------------------------------------------------------------------ Spark reader options

    def fetch_size(self, read: ReadOptions) -> int:
        """Rows per round trip; drivers that stream with a positive fetch size use the spec's value."""
        return read.fetch_size

    def read_options(
        self, source: SourceSpec, window_subquery: str, partition_bounds: PartitionBounds | None = None
    ) -> dict[str, str]:
        """Spark JDBC options for reading `window_subquery` (always `dbtable`: `query` can't be partitioned).

        Takes the whole source, not just `read`, because the partition column defaults to the primary key.
        `partition_bounds` is the (pz_lo, pz_hi) row of `partition_bounds_query`; None, or NULLs (an empty
        window), read in one partition.
        """
        options = {
            "dbtable": window_subquery,
            "fetchsize": str(self.fetch_size(source.read)),
            "pushDownPredicate": "true",
        }
        if self.session_init:
            options["sessionInitStatement"] = self.session_init
        with for_connection(source.connection):
            options |= self._partitioning(source, partition_bounds)
        return options

    def _partitioning(self, source: SourceSpec, bounds: PartitionBounds | None) -> dict[str, str]:
        partitions = source.read.num_partitions
        if partitions <= 1:
            return {}
        column = self.partition_column(source)
        if column is None:
            raise SourceError(
                f"read.num_partitions is {partitions} but there is no column to split on: "
                "set read.partition_column or a single-column primary_key"
            )
        if bounds is None or bounds[0] is None or bounds[1] is None:
            return {}
        return {
            "partitionColumn": column,  # unquoted: Spark resolves it against the schema and quotes it itself
            "lowerBound": _bound_text(bounds[0], upper=False),
            "upperBound": _bound_text(bounds[1], upper=True),
            "numPartitions": str(partitions),
        }

    def bounds_read_options(self, source: SourceSpec) -> dict[str, str]:
        """Spark options to run `bounds_query` (one row, so no fetch size or partitioning)."""
        return self._aux_options(self.bounds_query(source), (HI_COLUMN, NOW_COLUMN))

    def partition_bounds_read_options(self, source: SourceSpec, column: str | None, window: str) -> dict[str, str]:
        """Spark options to run `partition_bounds_query`."""
        return self._aux_options(self.partition_bounds_query(source, column, window), (LO_COLUMN, HI_COLUMN))

    def _aux_options(self, sql: str, columns: tuple[str, ...]) -> dict[str, str]:
        options = {"dbtable": f"({sql}) {BOUNDS_ALIAS}"}
        if self.session_init:
            options["sessionInitStatement"] = self.session_init
        schema = self.aux_custom_schema(columns)
        if schema:
            options["customSchema"] = schema
        return options

    def aux_custom_schema(self, columns: tuple[str, ...]) -> str | None:
        """customSchema for the bounds queries' computed columns; None when the driver types them well."""
        return None

    def native_bound(self, value: object) -> object:
        """A bounds query's value as the Python driver gave it, typed as the Spark JDBC read types it: a
        zone-less datetime is UTC's wall clock on both sessions (PySpark hands it over as local time of a
        process that runs in UTC), so it is tagged UTC; anything else compares as it is."""
        if isinstance(value, datetime) and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    def read_expression(self, quoted: str, column: SourceColumn) -> tuple[str, str] | None:
        """(SQL expression over `quoted`, Spark type) for a column whose value Spark's own mapping of the
        driver's type would lose or fail on; None reads the column as Spark maps it (column_types.py)."""
        return None

    def text_expression(self, quoted: str, column: SourceColumn) -> str:
        """The database's own text of the column's value (a `source.column_types: {col: string}` override)."""
        return f"CAST({quoted} AS VARCHAR(4000))"

    def custom_schema(self, inferred: Mapping[str, str]) -> str | None:
        """Spark `customSchema` overriding types Spark infers badly for this driver, or None.

        `inferred` maps column name -> Spark type (`StructField.dataType.simpleString()`) from a first,
        schema-only load; re-load with the returned text when it is not None.
        """
        return None

    def post_read_casts(self, inferred: Mapping[str, str]) -> dict[str, str]:
        """Column -> Spark SQL expression restoring a type that `custom_schema` read as text."""
        return {}

    # ------------------------------------------------------------------ reconciliation (`pipezone verify`)

    def canonical_text(self, quoted_expr: str, spark_type: str) -> str | None:
        """SQL for the canonical text of a value whose lake type is `spark_type` (NULL stays NULL), the same
        text steps/verify_columns.py makes in Spark, so a row hashes alike on both sides without being
        downloaded: integers in decimal, decimal(p,s) with exactly s fraction digits, strings as they are,
        booleans '1'/'0', dates 'YYYY-MM-DD', timestamps 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC, binary as
        upper-case hex. None: the type is not hashed (float, double, nested types), or, here in the base,
        the database has no canonical text at all and cannot be verified."""
        return None

    def row_hash_sql(self, texts: list[str]) -> str | None:
        """SQL for a row's hash over canonical texts: each text '=' + value, or 'N' for NULL (no value
        can be mistaken for NULL), joined by chr(31), MD5 of its UTF-8 bytes, the first 8 hex digits as an
        integer in [0, 2^32) (a SUM over billions of rows still fits 64 bits). None: no hash in SQL."""
        return None

    def verify_reads_rows(self) -> bool:
        """True where verify hashes the rows in Spark, read through the typed read, instead of in SQL: a
        local file database without a hash function, where reading costs no network."""
        return False


def schema_ddl(columns: Mapping[str, str]) -> str:
    """`customSchema` text; names in backticks so any column name parses."""
    return ", ".join(f"`{name.replace('`', '``')}` {kind}" for name, kind in columns.items())
