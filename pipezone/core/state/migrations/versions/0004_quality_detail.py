"""Quality results with Great Expectations' detail, and row-level outcomes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05

A check's outcome now keeps what GX measured: how many rows were unexpected, their share of the rows it
judged, and a sample of their primary keys (JSON), so a failed check points at rows. Row-level checks (an
`action` on the silver write) record the action, and two statuses join passed/failed/warned: `dropped`
(rows left out of silver) and `quarantined` (rows written to the flow's quarantine table instead).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MYSQLS = ("mysql", "mariadb")
OLD_STATUSES = "status IN ('passed', 'failed', 'warned')"
NEW_STATUSES = "status IN ('passed', 'failed', 'warned', 'dropped', 'quarantined')"
CONSTRAINT = "ck_data_quality_checks_status"


def _long_text() -> sa.types.TypeEngine:
    return sa.Text().with_variant(mysql.MEDIUMTEXT(), *MYSQLS)


def upgrade() -> None:
    with op.batch_alter_table("data_quality_checks") as batch:  # SQLite: the table is rebuilt
        batch.add_column(sa.Column("action", sa.String(16), nullable=True))
        batch.add_column(sa.Column("unexpected_count", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("unexpected_percent", sa.Float(), nullable=True))
        batch.add_column(sa.Column("unexpected_keys", _long_text(), nullable=True))
        batch.drop_constraint(CONSTRAINT, type_="check")
        batch.create_check_constraint(CONSTRAINT, sa.text(NEW_STATUSES))


def downgrade() -> None:
    with op.batch_alter_table("data_quality_checks") as batch:
        batch.drop_constraint(CONSTRAINT, type_="check")
        batch.create_check_constraint(CONSTRAINT, sa.text(OLD_STATUSES))
        for column in ("unexpected_keys", "unexpected_percent", "unexpected_count", "action"):
            batch.drop_column(column)
