"""The plumbing every store concern shares: one engine, transactions, the clock, errors and upserts.

`StateStore` is composed of one class per concern (run history, watermarks, ...), each a subclass of
`StoreBase`, so each concern's queries sit in their own module while connections, migration on first use
and the error messages that name the store stay in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Table, and_, insert, update
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, NoSuchModuleError

from pipezone.core import failpoints
from pipezone.core.state.encoding import require_aware
from pipezone.core.state.engine import create_store_engine, current_revision, upgrade_to_head
from pipezone.core.state.errors import StateStoreError, mask_url, one_line


class StoreBase:
    """One SQLAlchemy URL's engine, with the transaction and upsert helpers the concerns build on."""

    def __init__(
        self,
        url: str | URL,
        *,
        auto_migrate: bool = True,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        try:
            self.url = make_url(url)
        except ArgumentError:
            raise StateStoreError(
                f"state store URL {mask_url(str(url))} is not a valid SQLAlchemy URL"
                " (expected dialect+driver://user:password@host:port/database or sqlite:///path)"
            ) from None
        self.display_url = self.url.render_as_string(hide_password=True)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._schema_ready = not auto_migrate
        try:
            self._engine = create_store_engine(self.url)
        except (ArgumentError, NoSuchModuleError, ImportError) as exc:
            raise self._error("unusable state store", exc) from exc

    def close(self) -> None:
        """Release pooled connections (SQLite files stay locked on some platforms until then)."""
        self._engine.dispose()

    # -- plumbing -----------------------------------------------------------------------------------------

    def _error(self, action: str, exc: BaseException) -> StateStoreError:
        return StateStoreError(f"{action} {self.display_url}: {one_line(exc, self.url.password)}")

    @contextmanager
    def _connection(self, *, transaction: bool = True) -> Iterator[Connection]:
        """A connection (in one transaction unless told otherwise); driver errors name the store."""
        try:
            conn = self._engine.connect()
        except DBAPIError as exc:
            raise self._error("cannot connect to state store", exc) from exc
        try:
            with conn:
                if not transaction:
                    yield conn
                    return
                with conn.begin():
                    yield conn
        except IntegrityError:
            raise
        except DBAPIError as exc:
            raise self._error("state store error on", exc) from exc

    @contextmanager
    def _transaction(self, *, migrate: bool = True) -> Iterator[Connection]:
        """A connection in a transaction, the schema migrated first when needed."""
        if migrate and not self._schema_ready:
            self.migrate()
        with self._connection() as conn:
            yield conn

    def _now(self) -> datetime:
        return require_aware(self._clock()).astimezone(UTC)

    def migrate(self) -> None:
        """Upgrade the schema to the newest migration; a no-op when already there."""
        from alembic.util import CommandError

        try:
            with self._connection(transaction=False) as conn:  # upgrade_to_head commits itself
                upgrade_to_head(conn)
        except CommandError as exc:  # e.g. the store was migrated by a newer PipeZone
            raise self._error("cannot migrate state store", exc) from exc
        self._schema_ready = True

    def schema_revision(self) -> str | None:
        """The migration the store is at (None before the first migrate)."""
        with self._transaction(migrate=False) as conn:
            return current_revision(conn)

    def _upsert(self, table: Table, keys: dict[str, Any], values: dict[str, Any], *, step_state: bool = False) -> None:
        """Portable upsert: update, else insert, and on a concurrent insert update again.

        `step_state`: a step's own position (watermark, layer progress), where a fault test may kill the
        process inside the transaction (failpoint `<step>.state_update`)."""
        where = and_(*(table.c[name] == value for name, value in keys.items()))
        for _ in range(3):
            with self._transaction() as conn:
                if conn.execute(update(table).where(where).values(**values)).rowcount:
                    if step_state:
                        failpoints.reach_step("state_update")
                    return
                try:
                    with conn.begin_nested():
                        conn.execute(insert(table).values({**keys, **values}))
                    if step_state:
                        failpoints.reach_step("state_update")
                    return
                except IntegrityError:
                    continue
        raise StateStoreError(f"could not write {table.name} row {keys!r} in {self.display_url}")
