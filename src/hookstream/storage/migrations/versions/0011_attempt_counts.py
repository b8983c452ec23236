"""attempt counts (a connector's charts)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 19:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "attempt_counts",
        sa.Column("connector_id", sa.String(length=40), nullable=False),
        sa.Column("period", sa.BigInteger(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("connector_id", "period", "outcome", "duration_ms",
                                name=op.f("pk_attempt_counts")),
    )
    op.create_index(op.f("ix_attempt_counts_period"), "attempt_counts", ["period"],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_attempt_counts_period"), table_name="attempt_counts")
    op.drop_table("attempt_counts")
