"""Destination adapters by connection type: which adapter writes exports to a connection.

Adding a destination: one module with a `DestinationAdapter`, and one entry in `_ADAPTERS`
(ARCHITECTURE.md, "Adding a destination"). Registered: PostgreSQL, MySQL/MariaDB and SQLite, all three on
the shared SQLAlchemy implementation in sql_destination.py.
"""

from __future__ import annotations

from pathlib import Path

from pipezone.core.destinations.contract import Destination, DestinationAdapter, DestinationError
from pipezone.core.destinations.mysql import MySqlDestinationAdapter
from pipezone.core.destinations.postgres import PostgresDestinationAdapter
from pipezone.core.destinations.sqlite import SqliteDestinationAdapter
from pipezone.core.spec.connection import ConnectionSpec
from pipezone.core.spec.secrets import SecretResolver

_ADAPTERS: tuple[DestinationAdapter, ...] = (
    PostgresDestinationAdapter(),
    MySqlDestinationAdapter(),
    SqliteDestinationAdapter(),
)

DESTINATION_ADAPTERS: dict[str, DestinationAdapter] = {kind: adapter for adapter in _ADAPTERS for kind in adapter.types}


def destination_adapter(conn: ConnectionSpec) -> DestinationAdapter:
    """The adapter writing to `conn`; a connection no adapter serves is a DestinationError naming it."""
    adapter = DESTINATION_ADAPTERS.get(conn.type)
    if adapter is None:
        served = ", ".join(sorted(DESTINATION_ADAPTERS)) or "none yet"
        raise DestinationError(f"type '{conn.type}' is not a destination (destination types: {served})", conn.name)
    return adapter


def open_destination(conn: ConnectionSpec, resolver: SecretResolver, project_root: Path) -> Destination:
    """The destination on `conn`, ready to prepare tables and take writes."""
    return destination_adapter(conn).open(conn, resolver, project_root)
