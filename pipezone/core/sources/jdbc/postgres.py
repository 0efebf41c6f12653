"""PostgreSQL, through pgjdbc."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar
from urllib.parse import quote as url_quote

from sqlalchemy.engine import URL

from pipezone.core.sources.contract import PhysicalReference, for_connection
from pipezone.core.sources.jdbc.column_types import AMBIGUOUS_WIDE_DECIMAL, SourceColumn
from pipezone.core.sources.jdbc.dialect import host_port, query_string
from pipezone.core.sources.jdbc.source import JdbcAdapter
from pipezone.core.spec.connection import ConnectionSpec, JdbcConnection
from pipezone.core.spec.secrets import SecretResolver
from pipezone.core.spec.source import SourceSpec

UTC_STARTUP_OPTION = "-c TimeZone=UTC"
# Array element types Spark reads exactly as array<...>; arrays of anything else are read as their text.
ARRAY_ELEMENTS = frozenset({"int2", "int4", "int8", "float4", "float8", "bool", "text", "varchar", "date", "timestamp"})


class PostgresAdapter(JdbcAdapter):
    """PostgreSQL 12+ (and wire-compatible servers that accept the `options` startup parameter)."""

    name = "postgres"
    types = ("postgres",)
    driver_class = "org.postgresql.Driver"
    now_sql = "(now() AT TIME ZONE 'UTC')"
    arrow_session_init = "SET TimeZone = 'UTC'"
    url_defaults: ClassVar[dict[str, str]] = {
        # The session time zone as a startup parameter: it applies to every connection Spark opens,
        # before any statement, so timestamptz comparisons and TIMESTAMP literals are UTC.
        "options": UTC_STARTUP_OPTION,
        "ApplicationName": "pipezone",
    }
    dialect_notes = (
        "Streams with fetchsize > 0 (Spark's Postgres dialect turns autocommit off for the read).",
        "The UTC session time zone is a startup option (options=-c TimeZone=UTC); PgBouncer rejects "
        "startup options: set options: '' on the connection there (pgjdbc still sends the JVM's zone, UTC).",
        "Unconstrained numeric, and numeric wider than 38 digits, are read as their exact text "
        "(column_types: {col: decimal(p,s)} reads them as a decimal instead).",
        "Identifiers are quoted as written: a column created unquoted as CustomerId is customerid.",
    )

    def jdbc_url(self, conn: ConnectionSpec, project_root: Path) -> str:
        with for_connection(conn.name):
            jdbc = self.jdbc_connection(conn)
            database = url_quote(jdbc.database, safe="")
            return f"jdbc:postgresql://{host_port(jdbc)}/{database}{query_string(self.url_options(jdbc))}"

    def native_url(self, conn: ConnectionSpec, resolver: SecretResolver, project_root: Path) -> URL:
        """psycopg 3, the session in UTC as the JDBC reads have it."""
        query = {"options": UTC_STARTUP_OPTION, "application_name": "pipezone"}
        return self.driver_url(conn, resolver, "postgresql+psycopg", query)

    def arrow_url(self, conn: ConnectionSpec, resolver: SecretResolver) -> str | None:
        """`postgresql://user:password@host:port/db?cxprotocol=binary` for connectorx (COPY BINARY out); None when
        the connection sets options (TLS, PgBouncer): JDBC understands them."""
        return self.server_url(conn, resolver, "postgresql", "?cxprotocol=binary")

    def read_expression(self, quoted: str, column: SourceColumn) -> tuple[str, str] | None:
        """PostgreSQL's own text for what Spark would lose or fail on (README, Type mappings): numeric beyond
        38 digits or without a declared scale, time and timetz, bit strings, char(n) (its padding is not part
        of the value), and every type Spark reads as a string (enums, json, uuid, inet, ranges, hstore, ...),
        so the JDBC and the Arrow reads agree; money as numeric(19,2); arrays of types Spark has no element for
        as their text."""
        kind = column.native_type.lower()
        text = f"{quoted}::text", "string"
        if kind == "numeric":
            unconstrained = column.scale == 0 and column.spark_type == "decimal(38,18)"
            cut = not column.spark_type.endswith(f",{column.scale})") or column.spark_type == AMBIGUOUS_WIDE_DECIMAL
            return text if unconstrained or cut else None
        if kind == "money":
            return f"{quoted}::numeric(19,2)", "decimal(19,2)"
        if kind.startswith("_"):  # an array: 1-d of a plain element type stays an array
            plain = kind[1:] in ARRAY_ELEMENTS and column.metadata.get("arrayDimension", 1) == 1
            return None if plain else text
        if kind in ("time", "timetz", "bit", "varbit", "bpchar"):
            return text
        if column.spark_type == "string" and kind not in ("text", "varchar", "name"):
            return text
        return None

    def text_expression(self, quoted: str, column: SourceColumn) -> str:
        return f"{quoted}::text"

    def catalog_query(self, source: SourceSpec) -> str | None:
        """Each column's declared type with its modifiers (`numeric(10,2)`, `character(3)`, an enum's or a
        domain's name) and its declared array dimensions (Spark's `arrayDimension`)."""
        if source.table is None:
            return None
        relation = self.string_literal(self.relation(source))
        return (
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attndims FROM pg_catalog.pg_attribute a "
            f"WHERE a.attrelid = to_regclass({relation}) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
        )

    def client_command(self, conn: JdbcConnection, login: Mapping[str, str], sql: str) -> PhysicalReference:
        """psql's `\\copy (SELECT ...) TO '/dev/null'`: the server's COPY protocol, the fastest way out; the
        password by environment (PGPASSWORD)."""
        argv = ["psql", "--no-psqlrc", "--quiet", f"--host={conn.host}", f"--port={conn.effective_port}"]
        argv += [f"--username={login.get('user', '')}", f"--dbname={conn.database}"]
        copy = "\\copy (" + " ".join(sql.splitlines()) + ") TO '/dev/null'"  # \copy reads one line
        env = {"PGPASSWORD": login["password"]} if "password" in login else {}
        return PhysicalReference("psql \\copy", [*argv, "--command", copy], env)

    def merge_option(self, key: str, default: str | None, value: str) -> str:
        """A user `options` adds to the UTC pin; later `-c` settings win, so theirs can still override it."""
        return f"{default} {value}" if key == "options" and default else value

    def string_literal(self, value: str) -> str:
        """E'...' when a backslash is present: unambiguous whatever standard_conforming_strings says."""
        quoted = value.replace("'", "''")
        if "\\" in value:
            return "E'" + quoted.replace("\\", "\\\\") + "'"
        return f"'{quoted}'"

    def canonical_text(self, quoted_expr: str, spark_type: str) -> str | None:
        """Verify's canonical text (JdbcDialect.canonical_text) in PostgreSQL SQL; the session is UTC
        (url_defaults), so timestamptz formats in UTC."""
        q = quoted_expr
        if spark_type in ("tinyint", "smallint", "int", "bigint"):
            return f"CAST({q} AS TEXT)"
        if spark_type.startswith("decimal("):
            return f"CAST(CAST({q} AS NUMERIC{spark_type[len('decimal') :]}) AS TEXT)"
        if spark_type == "string":
            return f"CAST({q} AS TEXT)"
        if spark_type == "boolean":
            return f"CASE WHEN {q} THEN '1' WHEN NOT {q} THEN '0' END"
        if spark_type == "date":
            return f"to_char({q}, 'YYYY-MM-DD')"
        if spark_type in ("timestamp", "timestamp_ntz"):
            return f"to_char({q}, 'YYYY-MM-DD HH24:MI:SS.US')"
        if spark_type == "binary":
            return f"upper(encode({q}, 'hex'))"
        return None

    def row_hash_sql(self, texts: list[str]) -> str:
        fields = ", ".join(f"COALESCE('=' || {text}, 'N')" for text in texts)
        return f"('x' || substr(md5(convert_to(concat_ws(chr(31), {fields}), 'UTF8')), 1, 8))::bit(32)::bigint"
