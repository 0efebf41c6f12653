"""Alembic environment for the state store.

`StateStore.migrate()` hands over its own connection in `config.attributes["connection"]`; the Alembic
CLI (see alembic.ini) passes a URL with `-x url=...`. Nothing here reads environment variables.
"""

from alembic import context
from sqlalchemy import Connection, create_engine, pool

from pipezone.core.state.schema import VERSION_TABLE, metadata

config = context.config


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("no database URL: pass -x url=DIALECT://... to alembic")
    return url


def _configure_and_run(**kwargs: object) -> None:
    context.configure(
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        compare_type=True,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode recreates the table
        **kwargs,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    _configure_and_run(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})


def run_online() -> None:
    connection: Connection | None = config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection=connection)
        return
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        _configure_and_run(connection=connection)


if context.is_offline_mode():
    run_offline()
else:
    run_online()
