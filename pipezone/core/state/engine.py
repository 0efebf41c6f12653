"""Engines and schema migrations: how the store connects to SQLite or MySQL/MariaDB and reaches head.

Backend quirks (SQLite's write lock, MySQL's charset, pool recycling) and Alembic's configuration live
here, apart from the queries, so every store concern gets a connection that behaves the same on both.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL

from pipezone.core.state.errors import StateStoreError
from pipezone.core.state.schema import VERSION_TABLE

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
MIGRATE_LOCK = "pipezone_state_migrate"


def create_store_engine(url: URL) -> Engine:
    """An engine for `url` with the settings its backend needs."""
    backend = url.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url)
    if backend in ("mysql", "mariadb"):
        if "charset" not in url.query:
            url = url.update_query_dict({"charset": "utf8mb4"})
        return create_engine(url, pool_pre_ping=True, pool_recycle=3600)
    return create_engine(url, pool_pre_ping=True)


def _sqlite_engine(url: URL) -> Engine:
    """SQLite with a real BEGIN IMMEDIATE, so concurrent tasks queue on the write lock instead of racing."""
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def alembic_config(url: str | None = None) -> Any:
    """Programmatic Alembic config pointing into the installed package (no alembic.ini needed)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_table", VERSION_TABLE)
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@cache
def head_revision() -> str:
    """The newest migration shipped with this package."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(conn: Connection) -> str | None:
    """The schema revision recorded in the store, None when it was never migrated."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


def offline_migration_sql(url: str) -> str:
    """The DDL `migrate()` would run, for a DBA to review or apply by hand (no connection needed)."""
    import io

    from alembic import command

    buffer = io.StringIO()
    config = alembic_config(url)
    config.output_buffer = buffer
    command.upgrade(config, "head", sql=True)
    return buffer.getvalue()


def upgrade_to_head(conn: Connection) -> None:
    """Migrate the store on `conn` (not in a transaction) to the newest revision, one process at a time.

    MySQL DDL is not transactional, so concurrent first runs serialize on a named lock instead; the
    migration is committed before the lock is released, or the next holder would read the old revision
    (the last version-row UPDATE is ordinary DML) and re-run DDL that is already applied."""
    from alembic import command

    is_mysql = conn.dialect.name in ("mysql", "mariadb")
    if is_mysql:
        got = conn.exec_driver_sql(f"SELECT GET_LOCK('{MIGRATE_LOCK}', 60)").scalar()
        conn.commit()
        if got != 1:
            raise StateStoreError("another process has been migrating the state store for 60 s; try again")
    try:
        if current_revision(conn) != head_revision():
            config = alembic_config()
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        if is_mysql:
            conn.exec_driver_sql(f"SELECT RELEASE_LOCK('{MIGRATE_LOCK}')")
            conn.commit()
