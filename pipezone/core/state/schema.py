"""The state store's schema: its tables, column types and value limits, as SQLAlchemy metadata.

One definition serves three readers: the queries of every store concern, the Alembic environment (which
compares it with the migrations), and the tests that render the MySQL DDL. It holds no queries, so any
concern can import it without pulling in another.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Double,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql

from pipezone.core.state.encoding import require_aware

# Not `alembic_version`: the store may share a MySQL database with Airflow, which uses that name.
VERSION_TABLE = "pipezone_alembic_version"

STEP_STATUSES = ("running", "success", "failed", "skipped")
CHECK_STATUSES = ("passed", "failed", "warned", "dropped", "quarantined")

# Indexed VARCHAR lengths. InnoDB caps an index key at 3072 bytes and utf8mb4 costs 4 bytes a character,
# so the widest key, (run_id, flow, step, attempt), is (250 + 190 + 190) * 4 + 4 = 2524 bytes.
RUN_ID_LEN = 250  # Airflow's own run_id column is VARCHAR(250)
NAME_LEN = 190


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
        return require_aware(value).astimezone(UTC).replace(tzinfo=None)

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
    Column("action", String(16), nullable=True),  # row-level checks: warn, drop, quarantine, fail
    Column("unexpected_count", BigInteger, nullable=True),
    Column("unexpected_percent", Float, nullable=True),
    Column("unexpected_keys", LongText, nullable=True),  # JSON: a sample of the unexpected rows' keys
    Index("ix_data_quality_checks_run_id", "run_id"),
    Index("ix_data_quality_checks_flow_checked_at", "flow", "checked_at"),
    CheckConstraint(
        "status IN ('passed', 'failed', 'warned', 'dropped', 'quarantined')", name="ck_data_quality_checks_status"
    ),
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
