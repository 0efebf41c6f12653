"""Initial state-store schema: run logs, watermarks, registries, data-quality results.

Revision ID: 0001
Revises:
Create Date: 2025-11-23

Types are spelled out here rather than imported from state_store, so this revision stays what it was
when later code changes. MySQL/MariaDB specifics: DATETIME(6) (the default DATETIME drops microseconds),
MEDIUMTEXT for long text, utf8mb4 with a binary collation (names compare exactly, as in SQLite), and
indexed VARCHARs sized to fit InnoDB's 3072-byte key limit at 4 bytes a character.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MYSQLS = ("mysql", "mariadb")
OPTIONS = {
    f"{d}_{k}": v
    for d in MYSQLS
    for k, v in {"engine": "InnoDB", "charset": "utf8mb4", "collate": "utf8mb4_bin"}.items()
}


def _ts() -> sa.types.TypeEngine:
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), *MYSQLS)


def _long_text() -> sa.types.TypeEngine:
    return sa.Text().with_variant(mysql.MEDIUMTEXT(), *MYSQLS)


def _big_id() -> sa.types.TypeEngine:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "pipeline_execution_logs",
        sa.Column("id", _big_id(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("flow", sa.String(190), nullable=False),
        sa.Column("step", sa.String(190), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", _ts(), nullable=False),
        sa.Column("finished_at", _ts(), nullable=True),
        sa.Column("rows_read", sa.BigInteger(), nullable=True),
        sa.Column("rows_written", sa.BigInteger(), nullable=True),
        sa.Column("bytes_written", sa.BigInteger(), nullable=True),
        sa.Column("duration_s", sa.Double(), nullable=True),
        sa.Column("error", _long_text(), nullable=True),
        sa.Column("details", _long_text(), nullable=True),
        sa.UniqueConstraint("run_id", "flow", "step", "attempt", name="uq_pipeline_execution_logs_attempt"),
        sa.CheckConstraint(
            "status IN ('running', 'success', 'failed', 'skipped')", name="ck_pipeline_execution_logs_status"
        ),
        **OPTIONS,
    )
    op.create_index("ix_pipeline_execution_logs_flow_started_at", "pipeline_execution_logs", ["flow", "started_at"])

    op.create_table(
        "incremental_state",
        sa.Column("flow", sa.String(190), primary_key=True),
        sa.Column("cursor_column", sa.String(190), nullable=False),
        sa.Column("watermark_type", sa.String(16), nullable=False),
        sa.Column("watermark", _long_text(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.Column("last_run_id", sa.String(250), nullable=True),
        sa.CheckConstraint(
            "watermark_type IN ('int', 'float', 'decimal', 'datetime', 'date', 'str')",
            name="ck_incremental_state_watermark_type",
        ),
        **OPTIONS,
    )

    op.create_table(
        "connections_registry",
        sa.Column("name", sa.String(190), primary_key=True),
        sa.Column("type", sa.String(50), nullable=False),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("spec_hash", sa.String(128), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        **OPTIONS,
    )

    op.create_table(
        "flows_registry",
        sa.Column("name", sa.String(190), primary_key=True),
        sa.Column("connection", sa.String(190), nullable=False),
        sa.Column("spec_hash", sa.String(128), nullable=False),
        sa.Column("schedule", sa.String(100), nullable=True),
        sa.Column("layers", sa.String(255), nullable=False),
        sa.Column("owner", sa.String(190), nullable=True),
        sa.Column("updated_at", _ts(), nullable=False),
        **OPTIONS,
    )

    op.create_table(
        "data_quality_checks",
        sa.Column("id", _big_id(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("flow", sa.String(190), nullable=False),
        sa.Column("layer", sa.String(32), nullable=False),
        sa.Column("check_name", sa.String(190), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("observed", _long_text(), nullable=True),
        sa.Column("expected", _long_text(), nullable=True),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("checked_at", _ts(), nullable=False),
        sa.CheckConstraint("status IN ('passed', 'failed', 'warned')", name="ck_data_quality_checks_status"),
        **OPTIONS,
    )
    op.create_index("ix_data_quality_checks_run_id", "data_quality_checks", ["run_id"])
    op.create_index("ix_data_quality_checks_flow_checked_at", "data_quality_checks", ["flow", "checked_at"])


def downgrade() -> None:
    for table in (
        "data_quality_checks",
        "flows_registry",
        "connections_registry",
        "incremental_state",
        "pipeline_execution_logs",
    ):
        op.drop_table(table)
