"""mqtt source digest

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 15:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source_digest", sa.String(length=64), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_messages_gateway_id_source_digest"),
            ["gateway_id", "source_digest"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_messages_gateway_id_source_digest"))
        batch_op.drop_column("source_digest")
