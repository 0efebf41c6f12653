"""MySQL and MariaDB, both through MySQL Connector/J and a `jdbc:mysql:` URL.

Spark has no MariaDB dialect: a `jdbc:mariadb:` URL falls back to the generic dialect, which quotes
identifiers with `"` (a string in MySQL's default sql_mode). Connector/J speaks to MariaDB fine and keeps
Spark on its MySQL dialect (backticks, MySQL type mapping).
"""

from __future__ import annotations

import shutil
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
from pipezone.core.spec.source import ReadOptions, SourceSpec

# Connector/J buffers the whole result set in memory unless the statement's fetch size is exactly
# Integer.MIN_VALUE (row-by-row streaming; Spark >= 3.0 accepts a negative fetchsize, SPARK-21287).
# The alternative, useCursorFetch=true with a positive size, materialises the result in a server-side
# temporary table first and is slower; streaming needs nothing on the server.
STREAMING_FETCH_SIZE = -(2**31)
SPATIAL_TYPES = frozenset(
    {
        "GEOMETRY",
        "POINT",
        "LINESTRING",
        "POLYGON",
        "MULTIPOINT",
        "MULTILINESTRING",
        "MULTIPOLYGON",
        "GEOMETRYCOLLECTION",
        "GEOMCOLLECTION",
    }
)


class MySqlAdapter(JdbcAdapter):
    """MySQL 5.7+/8.x and MariaDB 10.x/11.x."""

    name = "mysql"
    types = ("mysql", "mariadb")
    driver_class = "com.mysql.cj.jdbc.Driver"
    quote_open = quote_close = "`"
    now_sql = "UTC_TIMESTAMP(6)"
    arrow_session_init = "SET time_zone = '+00:00'"  # TIMESTAMP values in UTC, as the JDBC session has them
    url_defaults: ClassVar[dict[str, str]] = {
        # Session time zone UTC: Connector/J sends SET time_zone='+00:00' (no tz tables needed), so
        # TIMESTAMP columns and literals are UTC, matching the JVM and Spark session.
        "connectionTimeZone": "UTC",
        "forceConnectionTimeZoneToSession": "true",
        "zeroDateTimeBehavior": "CONVERT_TO_NULL",  # 0000-00-00 would fail the whole read
        "tinyInt1isBit": "false",  # TINYINT(1) stays a number, not a boolean
        "yearIsDateType": "false",  # YEAR is the year (2006), not the date 2006-01-01
    }
    dialect_notes = (
        "MariaDB is read with MySQL Connector/J over jdbc:mysql: (Spark has no MariaDB dialect).",
        "Results stream row by row (fetchsize Integer.MIN_VALUE); read.fetch_size is not used.",
        "A streaming read holds the connection for the whole partition; Connector/J raises the server's "
        "net_write_timeout to netTimeoutForStreamingResults (600 s) while streaming.",
        "String literals escape backslashes, assuming sql_mode without NO_BACKSLASH_ESCAPES "
        "(with it they are still safe, but a backslash in a string cursor would be doubled).",
    )

    def jdbc_url(self, conn: ConnectionSpec, project_root: Path) -> str:
        with for_connection(conn.name):
            jdbc = self.jdbc_connection(conn)
            database = url_quote(jdbc.database, safe="")
            return f"jdbc:mysql://{host_port(jdbc)}/{database}{query_string(self.url_options(jdbc))}"

    def arrow_url(self, conn: ConnectionSpec, resolver: SecretResolver) -> str | None:
        """`mysql://user:password@host:port/db` for connectorx; None when the connection sets options."""
        return self.server_url(conn, resolver, "mysql")

    def native_url(self, conn: ConnectionSpec, resolver: SecretResolver, project_root: Path) -> URL:
        """PyMySQL, utf8mb4, the session in UTC as the JDBC reads have it."""
        query = {"charset": "utf8mb4", "init_command": "SET time_zone = '+00:00'"}
        return self.driver_url(conn, resolver, "mysql+pymysql", query)

    def catalog_query(self, source: SourceSpec) -> str | None:
        """information_schema's full column type (`decimal(10,2) unsigned`, `tinyint(1)`, `enum(...)`) and
        character set (binary strings are bytes) of each column."""
        if source.table is None:
            return None
        schema = self.string_literal(source.schema_) if source.schema_ else "DATABASE()"
        return (
            "SELECT COLUMN_NAME, COLUMN_TYPE, CHARACTER_SET_NAME, COLLATION_NAME FROM information_schema.COLUMNS "
            f"WHERE TABLE_SCHEMA = {schema} AND TABLE_NAME = {self.string_literal(source.table)} "
            "ORDER BY ORDINAL_POSITION"
        )

    def client_command(self, conn: JdbcConnection, login: Mapping[str, str], sql: str) -> PhysicalReference:
        """The MariaDB/MySQL client streaming the result row by row (`--quick`) as text, over TCP as Spark reads;
        the password by environment (MYSQL_PWD), never on its command line."""
        client = shutil.which("mariadb") or shutil.which("mysql") or "mariadb"
        argv = [client, "--no-defaults", f"--host={conn.host}", f"--port={conn.effective_port}"]
        argv += [f"--user={login.get('user', '')}", "--quick", "--batch", "--skip-column-names"]
        env = {"MYSQL_PWD": login["password"]} if "password" in login else {}
        return PhysicalReference(f"{Path(client).name} client", [*argv, conn.database, "-e", sql], env)

    def read_expression(self, quoted: str, column: SourceColumn) -> tuple[str, str] | None:
        """TIME (a duration up to 838 h, negative too) and DECIMAL wider than Spark's 38 digits as the server's
        text; BIT(n) as its unsigned number; spatial types as WKT. (CHAR, ENUM and SET come unpadded because
        the session reads CHAR without padding; README, Type mappings.)"""
        kind = column.native_type
        if kind == "TIME":
            return f"CAST({quoted} AS CHAR)", "string"
        if kind == "BIT" and column.spark_type == "boolean":  # BIT(1); connectorx would read its byte
            return f"({quoted} <> 0)", "boolean"
        if kind == "BIT":
            return f"CAST({quoted} AS UNSIGNED)", "decimal(20,0)"
        if kind.startswith("DECIMAL") and (
            f",{column.scale})" not in column.spark_type  # Spark cut the scale to fit 38 digits
            or column.spark_type == AMBIGUOUS_WIDE_DECIMAL
        ):
            return f"CAST({quoted} AS CHAR)", "string"
        if kind in SPATIAL_TYPES:
            return f"ST_AsText({quoted})", "string"
        return None

    def text_expression(self, quoted: str, column: SourceColumn) -> str:
        return f"ST_AsText({quoted})" if column.native_type in SPATIAL_TYPES else f"CAST({quoted} AS CHAR)"

    def string_literal(self, value: str) -> str:
        """Backslash is an escape character in MySQL string literals by default."""
        return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"

    def fetch_size(self, read: ReadOptions) -> int:
        return STREAMING_FETCH_SIZE

    def canonical_text(self, quoted_expr: str, spark_type: str) -> str | None:
        """Verify's canonical text (JdbcDialect.canonical_text) in MySQL/MariaDB SQL; the session is UTC
        (url_defaults), so TIMESTAMP columns format in UTC. Strings are converted to utf8mb4 so MD5 hashes
        their UTF-8 bytes whatever the column's character set; a zero date is NULL, as the read has it."""
        q = quoted_expr
        if spark_type in ("tinyint", "smallint", "int", "bigint"):
            return f"CAST({q} AS CHAR)"
        if spark_type.startswith("decimal("):
            return f"CAST(CAST({q} AS DECIMAL{spark_type[len('decimal') :]}) AS CHAR)"
        if spark_type == "string":
            return f"CONVERT({q} USING utf8mb4)"
        if spark_type == "boolean":
            return f"CASE WHEN {q} IS NULL THEN NULL WHEN {q} THEN '1' ELSE '0' END"
        if spark_type in ("date", "timestamp", "timestamp_ntz"):
            pattern = "%Y-%m-%d" if spark_type == "date" else "%Y-%m-%d %H:%i:%s.%f"
            return f"CASE WHEN CAST({q} AS CHAR) LIKE '0000-00-00%' THEN NULL ELSE DATE_FORMAT({q}, '{pattern}') END"
        if spark_type == "binary":
            return f"HEX({q})"
        return None

    def row_hash_sql(self, texts: list[str]) -> str:
        fields = ", ".join(f"COALESCE(CONCAT('=', {text}), 'N')" for text in texts)
        return f"CAST(CONV(SUBSTR(MD5(CONCAT_WS(CHAR(31 USING utf8mb4), {fields})), 1, 8), 16, 10) AS UNSIGNED)"
