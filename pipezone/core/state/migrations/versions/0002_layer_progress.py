"""Layer progress: the last batch each layer consumed per flow.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

Bronze and silver read the batches after their recorded position, so a failed or repeated run never
skips or re-applies a batch (data is committed first, progress second; Delta txnVersion covers the gap).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MYSQLS = ("mysql", "mariadb")
OPTIONS = {
    f"{d}_{k}": v
    for d in MYSQLS
    for k, v in {"engine": "InnoDB", "charset": "utf8mb4", "collate": "utf8mb4_bin"}.items()
}


def upgrade() -> None:
    op.create_table(
        "layer_progress",
        sa.Column("flow", sa.String(190), primary_key=True),
        sa.Column("layer", sa.String(190), primary_key=True),
        sa.Column("batch", sa.BigInteger(), nullable=False),
        sa.Column("last_run_id", sa.String(250), nullable=True),
        sa.Column("updated_at", sa.DateTime().with_variant(mysql.DATETIME(fsp=6), *MYSQLS), nullable=False),
        **OPTIONS,
    )


def downgrade() -> None:
    op.drop_table("layer_progress")
