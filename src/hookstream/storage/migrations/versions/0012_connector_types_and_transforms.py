"""connector types (mqtt, amqp, nats) and transforms

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 23:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

COLUMNS = (
    ("type", sa.String(length=16)),
    ("target_public", sa.Text()),
    ("target_secret_enc", sa.Text()),
    ("transform_language", sa.String(length=16)),
    ("transform_expression", sa.Text()),
)


def upgrade() -> None:
    with op.batch_alter_table("connectors") as batch:
        for name, type_ in COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("connectors") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
