"""Source adapters by connection type: which kind of source reads a connection.

Adding a kind of source (or a database of the JDBC family): one module with a `SourceAdapter`, and one
entry in `_ADAPTERS` (ARCHITECTURE.md, "Adding a source").
"""

from __future__ import annotations

from pathlib import Path

from pipezone.core.sources.contract import Source, SourceAdapter, SourceError
from pipezone.core.sources.jdbc.mysql import MySqlAdapter
from pipezone.core.sources.jdbc.oracle import OracleAdapter
from pipezone.core.sources.jdbc.postgres import PostgresAdapter
from pipezone.core.sources.jdbc.sqlite import SqliteAdapter
from pipezone.core.sources.jdbc.sqlserver import SqlServerAdapter
from pipezone.core.sources.mongodb import MongoAdapter
from pipezone.core.sources.rest.source import RestAdapter
from pipezone.core.spec.connection import ConnectionSpec
from pipezone.core.spec.secrets import SecretResolver
from pipezone.core.spec.source import SourceSpec

_ADAPTERS: tuple[SourceAdapter, ...] = (
    MySqlAdapter(),
    PostgresAdapter(),
    SqliteAdapter(),
    SqlServerAdapter(),
    OracleAdapter(),
    MongoAdapter(),
    RestAdapter(),
)

SOURCE_ADAPTERS: dict[str, SourceAdapter] = {kind: adapter for adapter in _ADAPTERS for kind in adapter.types}


def source_adapter(conn: ConnectionSpec) -> SourceAdapter:
    """The adapter reading `conn`; a lake or unknown connection is a SourceError naming it."""
    adapter = SOURCE_ADAPTERS.get(conn.type)
    if adapter is None:
        raise SourceError(
            f"type '{conn.type}' is not a source database (source types: {', '.join(sorted(SOURCE_ADAPTERS))})",
            conn.name,
        )
    return adapter


def open_source(spec: SourceSpec, conn: ConnectionSpec, resolver: SecretResolver, project_root: Path) -> Source:
    """The flow's source on `conn`, ready to describe, bound and read."""
    return source_adapter(conn).open(spec, conn, resolver, project_root)
