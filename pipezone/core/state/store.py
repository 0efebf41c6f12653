"""Run history, incremental watermarks, table leases, registries and data-quality results, in SQLite or MySQL/MariaDB.

The store is the second half of the commit protocol (Delta first, state second), so it must be exact:
watermarks round-trip with a type tag, datetimes are stored as UTC with microseconds, and a retried step
becomes a new attempt instead of overwriting the evidence of the failed one.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Connection,
    DateTime,
    Dialect,
    Double,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    and_,
    create_engine,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy import delete as sa_delete
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, NoSuchModuleError

from pipezone.core import failpoints

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# Not `alembic_version`: the store may share a MySQL database with Airflow, which uses that name.
VERSION_TABLE = "pipezone_alembic_version"
MIGRATE_LOCK = "pipezone_state_migrate"

STEP_STATUSES = ("running", "success", "failed", "skipped")
CHECK_STATUSES = ("passed", "failed", "warned")

# Indexed VARCHAR lengths. InnoDB caps an index key at 3072 bytes and utf8mb4 costs 4 bytes a character,
# so the widest key, (run_id, flow, step, attempt), is (250 + 190 + 190) * 4 + 4 = 2524 bytes.
RUN_ID_LEN = 250  # Airflow's own run_id column is VARCHAR(250)
NAME_LEN = 190
ERROR_MAX_CHARS = 20_000

WatermarkValue = int | float | Decimal | datetime | date | str


class StateStoreError(Exception):
    """A state-store failure, as one line that names the store (password masked)."""


class _LeaseContended(Exception):
    """A lease row changed between reading and writing it."""


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out; stored naive UTC with microseconds.

    MySQL's DATETIME defaults to whole seconds, so it gets DATETIME(6) explicitly.
    """

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return _require_aware(value).astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


# MySQL TEXT stops at 64 KiB; Spark stack traces and quality samples can be longer.
LongText = Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
# SQLite only autoincrements an INTEGER PRIMARY KEY, not BIGINT.
BigId = BigInteger().with_variant(Integer(), "sqlite")
TABLE_OPTIONS = {
    f"{d}_{k}": v
    for d in ("mysql", "mariadb")
    for k, v in {"engine": "InnoDB", "charset": "utf8mb4", "collate": "utf8mb4_bin"}.items()
}

metadata = MetaData()

execution_logs = Table(
    "pipeline_execution_logs",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("run_id", String(RUN_ID_LEN), nullable=False),
    Column("flow", String(NAME_LEN), nullable=False),
    Column("step", String(NAME_LEN), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("rows_read", BigInteger, nullable=True),
    Column("rows_written", BigInteger, nullable=True),
    Column("bytes_written", BigInteger, nullable=True),
    Column("duration_s", Double, nullable=True),
    Column("error", LongText, nullable=True),
    Column("details", LongText, nullable=True),
    UniqueConstraint("run_id", "flow", "step", "attempt", name="uq_pipeline_execution_logs_attempt"),
    Index("ix_pipeline_execution_logs_flow_started_at", "flow", "started_at"),
    CheckConstraint("status IN ('running', 'success', 'failed', 'skipped')", name="ck_pipeline_execution_logs_status"),
    **TABLE_OPTIONS,
)

incremental_state = Table(
    "incremental_state",
    metadata,
    Column("flow", String(NAME_LEN), primary_key=True),
    Column("cursor_column", String(NAME_LEN), nullable=False),
    Column("watermark_type", String(16), nullable=False),
    Column("watermark", LongText, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("last_run_id", String(RUN_ID_LEN), nullable=True),
    CheckConstraint(
        "watermark_type IN ('int', 'float', 'decimal', 'datetime', 'date', 'str')",
        name="ck_incremental_state_watermark_type",
    ),
    **TABLE_OPTIONS,
)

connections_registry = Table(
    "connections_registry",
    metadata,
    Column("name", String(NAME_LEN), primary_key=True),
    Column("type", String(50), nullable=False),
    Column("host", String(255), nullable=True),
    Column("description", Text, nullable=True),
    Column("spec_hash", String(128), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    **TABLE_OPTIONS,
)

flows_registry = Table(
    "flows_registry",
    metadata,
    Column("name", String(NAME_LEN), primary_key=True),
    Column("connection", String(NAME_LEN), nullable=False),
    Column("spec_hash", String(128), nullable=False),
    Column("schedule", String(100), nullable=True),
    Column("layers", String(255), nullable=False),
    Column("owner", String(NAME_LEN), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
    **TABLE_OPTIONS,
)

layer_progress = Table(
    "layer_progress",
    metadata,
    Column("flow", String(NAME_LEN), primary_key=True),
    Column("layer", String(NAME_LEN), primary_key=True),
    Column("batch", BigInteger, nullable=False),
    Column("last_run_id", String(RUN_ID_LEN), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
    **TABLE_OPTIONS,
)

quality_checks = Table(
    "data_quality_checks",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("run_id", String(RUN_ID_LEN), nullable=False),
    Column("flow", String(NAME_LEN), nullable=False),
    Column("layer", String(32), nullable=False),
    Column("check_name", String(NAME_LEN), nullable=False),
    Column("status", String(16), nullable=False),
    Column("observed", LongText, nullable=True),
    Column("expected", LongText, nullable=True),
    Column("severity", String(16), nullable=False),
    Column("checked_at", UTCDateTime(), nullable=False),
    Index("ix_data_quality_checks_run_id", "run_id"),
    Index("ix_data_quality_checks_flow_checked_at", "flow", "checked_at"),
    CheckConstraint("status IN ('passed', 'failed', 'warned')", name="ck_data_quality_checks_status"),
    **TABLE_OPTIONS,
)


table_leases = Table(
    "table_leases",
    metadata,
    Column("resource", String(NAME_LEN), primary_key=True),
    Column("holder_run_id", String(RUN_ID_LEN), nullable=False),
    Column("holder_flow", String(NAME_LEN), nullable=False),
    Column("holder_step", String(NAME_LEN), nullable=False),
    Column("holder_host", String(255), nullable=False),
    Column("holder_pid", Integer, nullable=False),
    Column("acquired_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    **TABLE_OPTIONS,
)


@dataclass(frozen=True)
class Watermark:
    """The last committed cursor value of one flow, typed as it was set."""

    flow: str
    cursor_column: str
    value: WatermarkValue
    updated_at: datetime
    last_run_id: str | None


@dataclass(frozen=True)
class RunRecord:
    """One attempt of one step of one run."""

    id: int
    run_id: str
    flow: str
    step: str
    attempt: int
    status: str
    started_at: datetime
    finished_at: datetime | None
    rows_read: int | None
    rows_written: int | None
    bytes_written: int | None
    duration_s: float | None
    error: str | None
    details: dict[str, Any]


@dataclass(frozen=True)
class QualityResult:
    """One data-quality check outcome."""

    id: int
    run_id: str
    flow: str
    layer: str
    check_name: str
    status: str
    observed: str | None
    expected: str | None
    severity: str
    checked_at: datetime


@dataclass(frozen=True)
class ConnectionRecord:
    """A registered connection: what and where, never credentials."""

    name: str
    type: str
    host: str | None
    description: str | None
    spec_hash: str
    updated_at: datetime


@dataclass(frozen=True)
class FlowRecord:
    """A registered flow and the hash of the spec it was registered from."""

    name: str
    connection: str
    spec_hash: str
    schedule: str | None
    layers: tuple[str, ...]
    owner: str | None
    updated_at: datetime


@dataclass(frozen=True)
class LeaseHolder:
    """Who writes a table: one process running one step of one run."""

    run_id: str
    flow: str
    step: str
    host: str
    pid: int


@dataclass(frozen=True)
class Lease:
    """A table's writer and until when its claim holds without a heartbeat."""

    resource: str
    holder: LeaseHolder
    acquired_at: datetime
    expires_at: datetime


# ---------------------------------------------------------------------------------------------------------
# Value encoding


def encode_watermark(value: WatermarkValue) -> tuple[str, str]:
    """Return (type tag, text) such that `decode_watermark` gives back an equal value of the same type."""
    if isinstance(value, bool):
        raise TypeError("watermark cannot be a bool")
    if isinstance(value, int):
        return "int", str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"watermark must be a finite number, got {value}")
        return "float", repr(value)  # repr is the shortest text that parses back to the same double
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"watermark must be a finite Decimal, got {value}")
        return "decimal", str(value)
    if isinstance(value, datetime):
        return "datetime", _require_aware(value).astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, date):
        return "date", value.isoformat()
    if isinstance(value, str):
        return "str", value
    raise TypeError(
        f"unsupported watermark type {type(value).__name__}: use int, float, Decimal, aware datetime, date or str"
    )


def decode_watermark(type_tag: str, text: str) -> WatermarkValue:
    """Inverse of `encode_watermark`."""
    decoders: dict[str, Callable[[str], WatermarkValue]] = {
        "int": int,
        "float": float,
        "decimal": Decimal,
        "datetime": lambda s: datetime.fromisoformat(s).astimezone(UTC),
        "date": date.fromisoformat,
        "str": str,
    }
    try:
        return decoders[type_tag](text)
    except KeyError:
        raise StateStoreError(f"unknown watermark type tag {type_tag!r}") from None


def _require_aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()} is ambiguous: attach a timezone (UTC)")
    return value


def _json_default(value: Any) -> Any:
    """Details are for people reading logs: an odd value becomes its text rather than failing the step."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _dump_json(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=_json_default)


def _as_text(value: Any) -> str | None:
    """Quality observations arrive as numbers, lists or strings; keep strings as they are."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=_json_default)


def _clip_error(error: str | None) -> str | None:
    """Keep the head (what failed) and the tail (Java's `Caused by`) of very long errors."""
    if error is None or len(error) <= ERROR_MAX_CHARS:
        return error
    half = ERROR_MAX_CHARS // 2
    return f"{error[:half]}\n... [{len(error) - 2 * half} characters cut] ...\n{error[-half:]}"


def _check_choice(value: str, allowed: Sequence[str], what: str) -> str:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)}; got {value!r}")
    return value


# ---------------------------------------------------------------------------------------------------------
# URLs, engines, errors


def mask_url(url: str | URL) -> str:
    """Render a URL for messages with its password replaced by ***, even when it does not parse."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        # Where the password is in a malformed URL is anyone's guess: show the scheme only.
        scheme = re.match(r"[A-Za-z0-9+._-]+://", url)
        return f"{scheme.group(0)}..." if scheme else "(malformed URL)"


def _one_line(exc: BaseException, secret: str | None) -> str:
    reason = str(getattr(exc, "orig", None) or exc)
    reason = reason.split("\n(Background on this error")[0]
    if secret:
        reason = reason.replace(secret, "***")
    return " ".join(reason.split())


def _create_engine(url: URL) -> Engine:
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


# ---------------------------------------------------------------------------------------------------------
# Migrations


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


def _upgrade(conn: Connection) -> None:
    from alembic import command

    is_mysql = conn.dialect.name in ("mysql", "mariadb")
    # MySQL DDL is not transactional: serialize concurrent first runs on a named lock instead.
    if is_mysql and conn.exec_driver_sql(f"SELECT GET_LOCK('{MIGRATE_LOCK}', 60)").scalar() != 1:
        raise StateStoreError("another process has been migrating the state store for 60 s; try again")
    try:
        if current_revision(conn) == head_revision():
            return
        config = alembic_config()
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    finally:
        if is_mysql:
            conn.exec_driver_sql(f"SELECT RELEASE_LOCK('{MIGRATE_LOCK}')")


# ---------------------------------------------------------------------------------------------------------
# The store


class StateStore:
    """Run logs, watermarks, registries and quality results behind one SQLAlchemy URL.

    The schema is migrated to head on first use (set `auto_migrate=False` to require `migrate()`).
    `clock` exists so tests can control timestamps; it must return aware datetimes.
    """

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
            self._engine = _create_engine(self.url)
        except (ArgumentError, NoSuchModuleError, ImportError) as exc:
            raise self._error("unusable state store", exc) from exc

    def __repr__(self) -> str:
        return f"StateStore({self.display_url!r})"

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release pooled connections (SQLite files stay locked on some platforms until then)."""
        self._engine.dispose()

    # -- plumbing -----------------------------------------------------------------------------------------

    def _error(self, action: str, exc: BaseException) -> StateStoreError:
        return StateStoreError(f"{action} {self.display_url}: {_one_line(exc, self.url.password)}")

    @contextmanager
    def _transaction(self, *, migrate: bool = True) -> Iterator[Connection]:
        """A connection in a transaction; driver errors become StateStoreError naming the store."""
        if migrate and not self._schema_ready:
            self.migrate()
        try:
            conn = self._engine.connect()
        except DBAPIError as exc:
            raise self._error("cannot connect to state store", exc) from exc
        try:
            with conn, conn.begin():
                yield conn
        except IntegrityError:
            raise
        except DBAPIError as exc:
            raise self._error("state store error on", exc) from exc

    def _now(self) -> datetime:
        return _require_aware(self._clock()).astimezone(UTC)

    def migrate(self) -> None:
        """Upgrade the schema to the newest migration; a no-op when already there."""
        from alembic.util import CommandError

        try:
            with self._transaction(migrate=False) as conn:
                _upgrade(conn)
        except CommandError as exc:  # e.g. the store was migrated by a newer PipeZone
            raise self._error("cannot migrate state store", exc) from exc
        self._schema_ready = True

    def schema_revision(self) -> str | None:
        """The migration the store is at (None before the first migrate)."""
        with self._transaction(migrate=False) as conn:
            return current_revision(conn)

    # -- step logs ----------------------------------------------------------------------------------------

    def start_step(self, run_id: str, flow: str, step: str, details: dict[str, Any] | None = None) -> int:
        """Log a step as running and return its log id; a repeat of (run_id, flow, step) is a new attempt."""
        t = execution_logs
        same_step = and_(t.c.run_id == run_id, t.c.flow == flow, t.c.step == step)
        for _ in range(5):
            try:
                with self._transaction() as conn:
                    last = conn.scalar(select(func.max(t.c.attempt)).where(same_step)) or 0
                    result = conn.execute(
                        insert(t).values(
                            run_id=run_id,
                            flow=flow,
                            step=step,
                            attempt=last + 1,
                            status="running",
                            started_at=self._now(),
                            details=_dump_json(details),
                        )
                    )
                    return int(result.inserted_primary_key[0])
            except IntegrityError:
                continue  # a concurrent attempt took the number: read again
        raise StateStoreError(f"could not number an attempt of {run_id}/{flow}/{step} in {self.display_url}")

    def finish_step(
        self,
        log_id: int,
        status: str,
        rows_read: int | None = None,
        rows_written: int | None = None,
        bytes_written: int | None = None,
        error: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> RunRecord:
        """Close a step log with its outcome; `details` is merged over the details given at start."""
        _check_choice(status, STEP_STATUSES[1:], "finished step status")
        t = execution_logs
        with self._transaction() as conn:
            row = conn.execute(select(t.c.started_at, t.c.details).where(t.c.id == log_id)).first()
            if row is None:
                raise StateStoreError(f"no step log with id {log_id} in {self.display_url}")
            merged = json.loads(row.details) if row.details else {}
            merged.update(details or {})
            finished_at = self._now()
            conn.execute(
                update(t)
                .where(t.c.id == log_id)
                .values(
                    status=status,
                    finished_at=finished_at,
                    duration_s=(finished_at - row.started_at).total_seconds(),
                    rows_read=rows_read,
                    rows_written=rows_written,
                    bytes_written=bytes_written,
                    error=_clip_error(error),
                    details=_dump_json(merged) if merged else None,
                )
            )
            return _run_record(conn.execute(select(t).where(t.c.id == log_id)).one())

    def step_succeeded(self, run_id: str, flow: str, step: str) -> bool:
        """True when any attempt of this step in this run succeeded, so a re-run can skip it."""
        t = execution_logs
        query = select(t.c.id).where(t.c.run_id == run_id, t.c.flow == flow, t.c.step == step, t.c.status == "success")
        with self._transaction() as conn:
            return conn.execute(query.limit(1)).first() is not None

    def last_success(self, flow: str, step: str) -> RunRecord | None:
        """The newest successful attempt of a flow's step in any run (what it saw, in its details)."""
        t = execution_logs
        query = (
            select(t)
            .where(t.c.flow == flow, t.c.step == step, t.c.status == "success")
            .order_by(t.c.finished_at.desc(), t.c.id.desc())
            .limit(1)
        )
        with self._transaction() as conn:
            row = conn.execute(query).first()
        return None if row is None else _run_record(row)

    def get_step(self, log_id: int) -> RunRecord | None:
        """One step log by id."""
        with self._transaction() as conn:
            row = conn.execute(select(execution_logs).where(execution_logs.c.id == log_id)).first()
        return None if row is None else _run_record(row)

    def recent_runs(self, flow: str | None = None, limit: int = 20) -> list[RunRecord]:
        """Newest step attempts first, optionally for one flow."""
        t = execution_logs
        query = select(t).order_by(t.c.started_at.desc(), t.c.id.desc()).limit(limit)
        if flow is not None:
            query = query.where(t.c.flow == flow)
        with self._transaction() as conn:
            return [_run_record(row) for row in conn.execute(query)]

    # -- watermarks ---------------------------------------------------------------------------------------

    def get_watermark(self, flow: str) -> Watermark | None:
        """The flow's committed watermark, or None before its first successful incremental run."""
        query = select(incremental_state).where(incremental_state.c.flow == flow)
        with self._transaction() as conn:
            row = conn.execute(query).first()
        return None if row is None else _watermark(row)

    def set_watermark(self, flow: str, cursor_column: str, value: WatermarkValue, run_id: str | None) -> None:
        """Record the flow's new watermark (call after the Delta commit it describes)."""
        type_tag, text = encode_watermark(value)
        values = {
            "cursor_column": cursor_column,
            "watermark_type": type_tag,
            "watermark": text,
            "updated_at": self._now(),
            "last_run_id": run_id,
        }
        self._upsert(incremental_state, {"flow": flow}, values, step_state=True)

    def reset_watermark(
        self, flow: str, to: WatermarkValue | None = None, *, cursor_column: str | None = None
    ) -> Watermark | None:
        """Delete the watermark (`to=None`, next run is a full load) or move it; returns the previous one.

        Moving a watermark that does not exist needs `cursor_column`.
        """
        previous = self.get_watermark(flow)
        if to is None:
            with self._transaction() as conn:
                conn.execute(sa_delete(incremental_state).where(incremental_state.c.flow == flow))
            return previous
        column = cursor_column or (previous.cursor_column if previous else None)
        if column is None:
            raise StateStoreError(f"flow {flow!r} has no watermark yet: pass cursor_column to set one")
        self.set_watermark(flow, column, to, run_id=None)
        return previous

    def watermarks(self) -> list[Watermark]:
        """All watermarks, by flow name."""
        query = select(incremental_state).order_by(incremental_state.c.flow)
        with self._transaction() as conn:
            return [_watermark(row) for row in conn.execute(query)]

    # -- registries ---------------------------------------------------------------------------------------

    def register_connection(
        self,
        name: str,
        type: str,
        spec_hash: str,
        *,
        host: str | None = None,
        description: str | None = None,
    ) -> bool:
        """Upsert a connection's public facts; returns True when something changed. Never pass secrets."""
        if host and "@" in host:
            raise ValueError(f"connection {name!r}: host must not carry credentials")
        values = {"type": type, "host": host, "description": description, "spec_hash": spec_hash}
        return self._register(connections_registry, name, values)

    def register_flow(
        self,
        name: str,
        connection: str,
        spec_hash: str,
        *,
        schedule: str | None = None,
        layers: Sequence[str] = (),
        owner: str | None = None,
    ) -> bool:
        """Upsert a flow's registry row; returns True when something changed."""
        if any("," in layer for layer in layers):
            raise ValueError(f"flow {name!r}: layer names cannot contain commas")
        values = {
            "connection": connection,
            "spec_hash": spec_hash,
            "schedule": schedule,
            "layers": ",".join(layers),
            "owner": owner,
        }
        return self._register(flows_registry, name, values)

    def connections(self) -> list[ConnectionRecord]:
        """Registered connections by name."""
        with self._transaction() as conn:
            rows = conn.execute(select(connections_registry).order_by(connections_registry.c.name))
            return [ConnectionRecord(**row._asdict()) for row in rows]

    def flows(self) -> list[FlowRecord]:
        """Registered flows by name."""
        with self._transaction() as conn:
            rows = conn.execute(select(flows_registry).order_by(flows_registry.c.name))
            return [_flow_record(row) for row in rows]

    def _register(self, table: Table, name: str, values: dict[str, Any]) -> bool:
        """Write only on change, so `updated_at` means 'last changed', not 'last seen'."""
        with self._transaction() as conn:
            row = conn.execute(select(table).where(table.c.name == name)).first()
            if row is not None and all(getattr(row, k) == v for k, v in values.items()):
                return False
        self._upsert(table, {"name": name}, {**values, "updated_at": self._now()})
        return True

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

    # -- layer progress -----------------------------------------------------------------------------------

    def get_progress(self, flow: str, layer: str) -> int:
        """The last batch `layer` consumed for `flow` (0 before its first run)."""
        query = select(layer_progress.c.batch).where(
            and_(layer_progress.c.flow == flow, layer_progress.c.layer == layer)
        )
        with self._transaction() as conn:
            value = conn.execute(query).scalar()
        return int(value or 0)

    def set_progress(self, flow: str, layer: str, batch: int, run_id: str | None) -> None:
        """Record that `layer` consumed batches up to `batch` (call after the Delta commit)."""
        values = {"batch": batch, "last_run_id": run_id, "updated_at": self._now()}
        self._upsert(layer_progress, {"flow": flow, "layer": layer}, values, step_state=True)

    def reset_progress(self, flow: str) -> None:
        """Forget every layer's position for `flow` (used with a full rebuild)."""
        with self._transaction() as conn:
            conn.execute(sa_delete(layer_progress).where(layer_progress.c.flow == flow))

    # -- table leases -------------------------------------------------------------------------------------

    def take_lease(self, resource: str, holder: LeaseHolder, ttl_s: float) -> Lease | None:
        """Claim `resource` for `ttl_s` seconds: None when it is now `holder`'s, else the lease in the way.

        A lease is free when there is none, it expired, its process is gone from this host (a killed step
        must not block its re-run for a whole TTL), or it is `holder`'s own. Insert first; a takeover is a
        compare-and-set on the row as read, so of two takers exactly one wins, on SQLite and MySQL alike.
        """
        for _ in range(20):
            try:
                return self._try_take_lease(resource, holder, ttl_s)
            except _LeaseContended:
                time.sleep(random.uniform(0.001, 0.05))  # another taker moved first: look again
            except StateStoreError as exc:
                if not _is_contention(exc.__cause__):
                    raise
                time.sleep(random.uniform(0.001, 0.05))  # InnoDB deadlock of racing duplicate inserts
        raise StateStoreError(f"could not take lease {resource!r} in {self.display_url}: it keeps changing hands")

    def _try_take_lease(self, resource: str, holder: LeaseHolder, ttl_s: float) -> Lease | None:
        try:
            with self._transaction() as conn:
                conn.execute(insert(table_leases).values(resource=resource, **self._lease_values(holder, ttl_s)))
            return None
        except IntegrityError:
            pass  # held, or was: look at it
        with self._transaction() as conn:
            row = conn.execute(select(table_leases).where(table_leases.c.resource == resource)).first()
            if row is None:
                raise _LeaseContended  # released meanwhile: insert again
            current = _lease(row)
            if not _lease_is_free(current, holder, self._now()):
                return current
            values = self._lease_values(holder, ttl_s)
            if conn.execute(update(table_leases).where(_same_lease(current)).values(**values)).rowcount != 1:
                raise _LeaseContended
            return None

    def _lease_values(self, holder: LeaseHolder, ttl_s: float) -> dict[str, Any]:
        """The row for `holder`, timed at the last moment (a stale `now` would shorten the lease)."""
        now = self._now()
        return {**_holder_values(holder), "acquired_at": now, "expires_at": now + timedelta(seconds=ttl_s)}

    def renew_lease(self, resource: str, holder: LeaseHolder, ttl_s: float) -> bool:
        """Push `holder`'s lease on `resource` to now + `ttl_s`; False when the lease is no longer `holder`'s."""
        expires_at = self._now() + timedelta(seconds=ttl_s)
        with self._transaction() as conn:
            renewed = conn.execute(
                update(table_leases).where(_holder_is(resource, holder)).values(expires_at=expires_at)
            )
            return renewed.rowcount == 1

    def release_lease(self, resource: str, holder: LeaseHolder) -> bool:
        """Drop `holder`'s lease on `resource` (never someone else's); False when it was not `holder`'s."""
        with self._transaction() as conn:
            return conn.execute(sa_delete(table_leases).where(_holder_is(resource, holder))).rowcount == 1

    def get_lease(self, resource: str) -> Lease | None:
        """The lease row on `resource`, expired or not."""
        with self._transaction() as conn:
            row = conn.execute(select(table_leases).where(table_leases.c.resource == resource)).first()
        return None if row is None else _lease(row)

    # -- data quality -------------------------------------------------------------------------------------

    def record_quality_check(
        self,
        run_id: str,
        flow: str,
        layer: str,
        check_name: str,
        status: str,
        observed: Any = None,
        expected: Any = None,
        severity: str = "error",
    ) -> int:
        """Store one check outcome; non-string observed/expected values are stored as JSON."""
        _check_choice(status, CHECK_STATUSES, "quality check status")
        with self._transaction() as conn:
            result = conn.execute(
                insert(quality_checks).values(
                    run_id=run_id,
                    flow=flow,
                    layer=layer,
                    check_name=check_name,
                    status=status,
                    observed=_as_text(observed),
                    expected=_as_text(expected),
                    severity=severity,
                    checked_at=self._now(),
                )
            )
            return int(result.inserted_primary_key[0])

    def quality_results(self, run_id: str) -> list[QualityResult]:
        """A run's check outcomes in the order they were recorded."""
        query = select(quality_checks).where(quality_checks.c.run_id == run_id).order_by(quality_checks.c.id)
        with self._transaction() as conn:
            return [QualityResult(**row._asdict()) for row in conn.execute(query)]


def _run_record(row: Any) -> RunRecord:
    fields = row._asdict()
    fields["details"] = json.loads(fields["details"]) if fields["details"] else {}
    return RunRecord(**fields)


def _watermark(row: Any) -> Watermark:
    return Watermark(
        flow=row.flow,
        cursor_column=row.cursor_column,
        value=decode_watermark(row.watermark_type, row.watermark),
        updated_at=row.updated_at,
        last_run_id=row.last_run_id,
    )


def _lease(row: Any) -> Lease:
    holder = LeaseHolder(row.holder_run_id, row.holder_flow, row.holder_step, row.holder_host, row.holder_pid)
    return Lease(row.resource, holder, row.acquired_at, row.expires_at)


def _holder_values(holder: LeaseHolder) -> dict[str, Any]:
    return {
        "holder_run_id": holder.run_id,
        "holder_flow": holder.flow,
        "holder_step": holder.step,
        "holder_host": holder.host,
        "holder_pid": holder.pid,
    }


def _holder_is(resource: str, holder: LeaseHolder) -> Any:
    t = table_leases
    return and_(t.c.resource == resource, *(t.c[k] == v for k, v in _holder_values(holder).items()))


def _same_lease(lease: Lease) -> Any:
    """The row exactly as read: a heartbeat or takeover since then makes the compare-and-set miss."""
    return and_(_holder_is(lease.resource, lease.holder), table_leases.c.expires_at == lease.expires_at)


def _is_contention(exc: BaseException | None) -> bool:
    """MySQL's deadlock or lock-wait timeout: the statement may simply be run again."""
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "args", (None,))[:1] in ((1213,), (1205,))


def _lease_is_free(lease: Lease, holder: LeaseHolder, now: datetime) -> bool:
    if lease.expires_at <= now or lease.holder == holder:
        return True
    return lease.holder.host == socket.gethostname() and process_gone(lease.holder.pid)


def process_gone(pid: int) -> bool:
    """True when no process `pid` runs on this host; a zombie counts as gone (it will never renew)."""
    if os.name != "posix" or pid <= 0:
        return False  # cannot tell: rely on expiry
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # e.g. PermissionError: it exists, under another user
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[:1] == ["Z"]


def _flow_record(row: Any) -> FlowRecord:
    fields = row._asdict()
    fields["layers"] = tuple(x for x in fields["layers"].split(",") if x)
    return FlowRecord(**fields)
