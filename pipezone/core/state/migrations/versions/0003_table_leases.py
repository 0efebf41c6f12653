"""Table leases: one writer per lake table.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

A step holds a lease on the table it writes (`silver.<flow>`, `gold.<table>`, ...) while it runs, so two
runs of one flow, or two flows writing one table, cannot commit at once. The holder renews `expires_at`;
a lease past it, or one whose holder process is gone from its host, may be taken over.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
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


def upgrade() -> None:
    op.create_table(
        "table_leases",
        sa.Column("resource", sa.String(190), primary_key=True),
        sa.Column("holder_run_id", sa.String(250), nullable=False),
        sa.Column("holder_flow", sa.String(190), nullable=False),
        sa.Column("holder_step", sa.String(190), nullable=False),
        sa.Column("holder_host", sa.String(255), nullable=False),
        sa.Column("holder_pid", sa.Integer(), nullable=False),
        sa.Column("acquired_at", _ts(), nullable=False),
        sa.Column("expires_at", _ts(), nullable=False),
        **OPTIONS,
    )


def downgrade() -> None:
    op.drop_table("table_leases")
