"""Change streams by connection type: which log reader serves a CDC flow's connection.

Adding a database to CDC: one module with a `ChangeStream`, and one entry in `_STREAMS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pipezone.core.sources.cdc.contract import ChangeStream
from pipezone.core.sources.cdc.mysql_log import MySqlChangeStream
from pipezone.core.sources.cdc.postgres_log import PostgresChangeStream
from pipezone.core.sources.contract import SourceError
from pipezone.core.spec.connection import ConnectionSpec, JdbcConnection
from pipezone.core.spec.secrets import SecretResolver
from pipezone.core.spec.source import SourceSpec

_STREAMS: dict[str, type] = {
    "mysql": MySqlChangeStream,
    "mariadb": MySqlChangeStream,
    "postgres": PostgresChangeStream,
}


def open_change_stream(
    conn: ConnectionSpec,
    resolver: SecretResolver,
    spec: SourceSpec,
    flow_name: str,
    select_sql: str,
    spark_types: Mapping[str, str],
    project_root: Path,
) -> ChangeStream:
    """The log reader for the flow's table on `conn`; a connection type without one is a SourceError."""
    stream = _STREAMS.get(conn.type)
    if stream is None or not isinstance(conn, JdbcConnection):
        known = ", ".join(sorted(_STREAMS))
        raise SourceError(f"type '{conn.type}' has no change stream (cdc reads: {known})", conn.name)
    return stream(conn, resolver, spec, flow_name, select_sql, dict(spark_types), project_root)
