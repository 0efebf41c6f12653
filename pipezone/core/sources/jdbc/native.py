"""The JDBC family's databases through their Python drivers: catalog reads that must not need a JVM.

Column types for the exact type mappings, discovery of whole schemas (`init-flow --all`) and
reconciliation (`verify`) ask the database's own catalog with PyMySQL, psycopg or sqlite3; the data
itself still moves through Spark (JDBC) or connectorx (Arrow).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, create_engine, pool
from sqlalchemy.exc import DBAPIError

from pipezone.core.sources.contract import SourceError, for_connection
from pipezone.core.sources.jdbc.dialect import JdbcDialect
from pipezone.core.spec.connection import ConnectionSpec
from pipezone.core.spec.secrets import SecretResolver

CONNECT_TIMEOUT_SECONDS = 10


@contextmanager
def native_connection(
    dialect: JdbcDialect, conn: ConnectionSpec, resolver: SecretResolver, project_root: Path
) -> Iterator[Connection]:
    """A SQLAlchemy connection on the database's Python driver; driver errors become one SourceError line
    naming the connection (never the password)."""
    url = dialect.native_url(conn, resolver, project_root)
    if url is None:
        raise SourceError(f"{conn.type} has no Python driver in PipeZone: catalog reads are not available", conn.name)
    args = {} if url.get_backend_name() == "sqlite" else {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
    engine = create_engine(url, poolclass=pool.NullPool, connect_args=args)
    try:
        with for_connection(conn.name), engine.connect() as connection:
            yield connection
    except DBAPIError as exc:
        reason = " ".join(str(exc.orig or exc).split())
        if url.password:
            reason = reason.replace(str(url.password), "***")
        raise SourceError(f"cannot read the catalog: {reason}", conn.name) from None
    finally:
        engine.dispose()
