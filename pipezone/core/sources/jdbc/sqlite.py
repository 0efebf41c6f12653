"""SQLite files (the embedded demo source), through xerial sqlite-jdbc.

SQLite has no date/time types: timestamps are usually TEXT, compared as strings. sqlite-jdbc maps a
column declared DATE/DATETIME/TIMESTAMP to a JDBC date/timestamp and parses the text with a fixed
`yyyy-MM-dd HH:mm:ss.SSS` pattern, which (checked with sqlite-jdbc 3.54.1.0 and Spark 4.2):
- reads `2024-01-02 03:04:05` and `...05.123` correctly,
- silently corrupts six fractional digits: `...05.123456` becomes 03:06:08.456 (123456 ms added),
- fails the whole read on `2024-01-02T03:04:05` ("Error parsing time stamp"),
- fails on DATE text `2024-01-02` ("Error parsing date"),
- reads integer values as epoch milliseconds (epoch seconds land in January 1970).
So those columns are read as text (`custom_schema`) and typed by Spark afterwards (`post_read_casts`).
Computed columns (MAX, strftime) have no declared type and are inferred as decimal(38,18), which fails
on text, hence `aux_custom_schema`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path

from sqlalchemy.engine import URL

from pipezone.core.sources.contract import PhysicalReference, SourceError, for_connection
from pipezone.core.sources.jdbc.dialect import schema_ddl, timestamp_text
from pipezone.core.sources.jdbc.source import JdbcAdapter
from pipezone.core.spec.connection import ConnectionSpec, SqliteConnection
from pipezone.core.spec.secrets import SecretResolver

_TEXT_TIME_TYPES = {"date": "DATE", "timestamp": "TIMESTAMP", "timestamp_ntz": "TIMESTAMP_NTZ"}
_NUMBER_TYPES = frozenset({"tinyint", "smallint", "int", "bigint", "float", "double", "boolean"})


class SqliteAdapter(JdbcAdapter):
    """SQLite 3 database files."""

    name = "sqlite"
    types = ("sqlite",)
    driver_class = "org.sqlite.JDBC"
    now_sql = "strftime('%Y-%m-%d %H:%M:%S','now')"
    dialect_notes = (
        "Timestamp cursors compare as text: store them as 'YYYY-MM-DD HH:MM:SS[.fff]' (SQLite's own "
        "CURRENT_TIMESTAMP form); ISO 'T' separators or epoch numbers do not order against these literals.",
        "DATE/DATETIME/TIMESTAMP columns are read as text and cast by Spark (try_cast: NULL when unparsable).",
        "Bounds come back as text; an INTEGER cursor still compares numerically (column affinity).",
    )

    def jdbc_url(self, conn: ConnectionSpec, project_root: Path) -> str:
        path = self._path(conn, project_root)
        with for_connection(conn.name):
            if "?" in conn.path:
                raise SourceError(f"database path {conn.path!r} must not contain '?' (sqlite-jdbc parameters)")
        # open_mode=1 is SQLITE_OPEN_READONLY: a source is only read, and a missing file must be an
        # error naming it, not silently created empty.
        return f"jdbc:sqlite:{path}?open_mode=1"

    def native_url(self, conn: ConnectionSpec, resolver: SecretResolver, project_root: Path) -> URL:
        """Python's sqlite3 on the file, read-only (a missing file is an error, never created)."""
        path = self._path(conn, project_root)
        return URL.create("sqlite", database=f"file:{path}?mode=ro", query={"uri": "true"})

    def client_reference(
        self, conn: ConnectionSpec, resolver: SecretResolver, project_root: Path, sql: str
    ) -> PhysicalReference | None:
        """The sqlite3 shell reading the file read-only."""
        return PhysicalReference("sqlite3 shell", ["sqlite3", "-readonly", str(self._path(conn, project_root)), sql])

    def _path(self, conn: ConnectionSpec, project_root: Path) -> Path:
        """The database file, relative paths taken from the project root."""
        if not isinstance(conn, SqliteConnection):
            raise SourceError(f"a {conn.type} connection cannot be read by the sqlite adapter", conn.name)
        path = Path(conn.path).expanduser()
        return (path if path.is_absolute() else project_root / path).resolve()

    def timestamp_literal(self, value: datetime) -> str:
        """Text in SQLite's CURRENT_TIMESTAMP form, so string comparison orders like time."""
        return f"'{timestamp_text(value)}'"

    def date_literal(self, value: date) -> str:
        return f"'{value.isoformat()}'"

    def aux_custom_schema(self, columns: tuple[str, ...]) -> str:
        return schema_ddl(dict.fromkeys(columns, "STRING"))

    def native_bound(self, value: object) -> object:
        """The bound as the text the JDBC read has (`aux_custom_schema`): sqlite3 hands over the stored value,
        an integer or text alike; a REAL's text would differ between Java and Python, so it is refused."""
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, int):
            return str(value)
        raise SourceError(f"a {type(value).__name__} bound has no text the JDBC read would spell alike")

    def custom_schema(self, inferred: Mapping[str, str]) -> str | None:
        """Time and number columns are read as the stored text: SQLite keeps any value in any column, and the
        driver would coerce a mismatch silently ('abc' in an INTEGER column reads as 0)."""
        text = {name: "STRING" for name, kind in inferred.items() if _checked_type(kind)}
        return schema_ddl(text) if text else None

    def post_read_casts(self, inferred: Mapping[str, str]) -> dict[str, str]:
        """Each such column cast to its declared type by Spark; a stored value that is not one fails the read
        with one line naming the column and the value, never a NULL or a 0 in its place."""
        casts = {}
        for name, kind in inferred.items():
            target = _checked_type(kind)
            if target is None:
                continue
            column = f"`{name.replace('`', '``')}`"
            literal = name.replace("\\", "\\\\").replace("'", "\\'")
            message = (
                f"concat('column {literal}: SQLite holds ', substring({column}, 1, 60), ' where {target} was "
                f"declared (SQLite stores any type in any column); set column_types: {{{literal}: string}} "
                "to keep the text')"
            )
            casts[name] = (
                f"CASE WHEN {column} IS NOT NULL AND try_cast({column} AS {target}) IS NULL "
                f"THEN raise_error({message}) ELSE try_cast({column} AS {target}) END"
            )
        return casts

    def verify_reads_rows(self) -> bool:
        """SQLite (and sqlite-jdbc) has no MD5 or other hash function, and its dynamic typing means only
        Spark's casts of the stored text (post_read_casts) give the values the lake holds: verify reads the
        file through the typed read and hashes in Spark. It is a local file, so no network is crossed."""
        return True


def _checked_type(spark_type: str) -> str | None:
    """The Spark type to cast a column's stored text to, or None for columns read as the driver gives them."""
    if spark_type in _TEXT_TIME_TYPES:
        return _TEXT_TIME_TYPES[spark_type]
    if spark_type == "int":
        return "BIGINT"  # sqlite-jdbc reports INTEGER as 32-bit; SQLite's integers are 64-bit
    if spark_type in _NUMBER_TYPES or spark_type.startswith("decimal("):
        return spark_type.upper()
    return None
