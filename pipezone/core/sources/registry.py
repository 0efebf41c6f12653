"""Source adapters by connection type: everything dialect-specific about reading a source over JDBC.

Adding a database: one module with a `SourceAdapter` subclass, and one entry in `_ADAPTERS`.
"""

from __future__ import annotations

from pipezone.core.sources.jdbc.base import CursorValue, PartitionBounds, SourceAdapter, SourceError
from pipezone.core.sources.jdbc.mysql import MySqlAdapter
from pipezone.core.sources.jdbc.oracle import OracleAdapter
from pipezone.core.sources.jdbc.postgres import PostgresAdapter
from pipezone.core.sources.jdbc.sqlite import SqliteAdapter
from pipezone.core.sources.jdbc.sqlserver import SqlServerAdapter
from pipezone.core.spec.connection import ConnectionSpec, JdbcConnection, SqliteConnection

_ADAPTERS: tuple[SourceAdapter, ...] = (
    MySqlAdapter(),
    PostgresAdapter(),
    SqliteAdapter(),
    SqlServerAdapter(),
    OracleAdapter(),
)

SOURCE_ADAPTERS: dict[str, SourceAdapter] = {kind: adapter for adapter in _ADAPTERS for kind in adapter.types}


def source_adapter(conn: ConnectionSpec) -> SourceAdapter:
    """The adapter reading `conn`; a lake or unknown connection is a SourceError naming it."""
    adapter = SOURCE_ADAPTERS.get(conn.type) if isinstance(conn, JdbcConnection | SqliteConnection) else None
    if adapter is None:
        raise SourceError(
            f"type '{conn.type}' is not a source database (source types: {', '.join(sorted(SOURCE_ADAPTERS))})",
            conn.name,
        )
    return adapter


__all__ = [
    "SOURCE_ADAPTERS",
    "CursorValue",
    "PartitionBounds",
    "SourceAdapter",
    "SourceError",
    "source_adapter",
]
