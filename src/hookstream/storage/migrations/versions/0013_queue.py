"""the queue: open deliveries in a narrow table of their own; deliveries a record

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 23:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

QUEUE_HELD = 2**62
PENDING = sa.text("status = 'pending'")
OPEN = sa.text("status IN ('pending', 'held')")
LEASED = sa.text("lease_id IS NOT NULL")


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "queue",
        sa.Column("delivery_id", sa.String(length=40), nullable=False),
        sa.Column("connector_id", sa.String(length=40), nullable=False),
        sa.Column("device_id", sa.String(length=256), nullable=False),
        sa.Column("message_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("due_at", sa.BigInteger(), nullable=False),
        sa.Column("lease_id", sa.String(length=40), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("batch_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("delivery_id", name=op.f("pk_queue")),
        postgresql_with={"fillfactor": 70},
    )
    # Every open delivery, as it stands: due when it was, leased until its lease ends, held.
    op.execute(
        "INSERT INTO queue (delivery_id, connector_id, device_id, message_id, kind, due_at,"
        " lease_id, attempts, batch_id, created_at)"
        " SELECT id, connector_id, device_id, message_id, kind,"
        f" CASE WHEN status = 'held' THEN {QUEUE_HELD} ELSE next_attempt_at END,"
        " lease_id, attempts, batch_id, created_at"
        " FROM deliveries WHERE status IN ('pending', 'held')"
    )
    with op.batch_alter_table("queue", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_queue_connector_id_due_at"),
                              ["connector_id", "due_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_queue_connector_id_device_id_message_id"),
                              ["connector_id", "device_id", "message_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_queue_batch_id"), ["batch_id"], unique=False)
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_leased", postgresql_where=LEASED, sqlite_where=LEASED)
        batch_op.drop_index("ix_deliveries_device_open", postgresql_where=OPEN,
                            sqlite_where=OPEN)
        batch_op.drop_index("ix_deliveries_connector_due", postgresql_where=PENDING,
                            sqlite_where=PENDING)
        batch_op.drop_index("ix_deliveries_due", postgresql_where=PENDING, sqlite_where=PENDING)
        batch_op.drop_index(batch_op.f("ix_deliveries_connector_id_status"))
        batch_op.create_index(batch_op.f("ix_deliveries_connector_id_id"),
                              ["connector_id", "id"], unique=False)
        batch_op.drop_column("lease_id")
    if postgresql:
        # Room on each new page for the outcome's heap-only update of its row.
        op.execute("ALTER TABLE deliveries SET (fillfactor = 85)")


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        op.execute("ALTER TABLE deliveries RESET (fillfactor)")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_id", sa.String(length=40), nullable=True))
        batch_op.drop_index(batch_op.f("ix_deliveries_connector_id_id"))
        batch_op.create_index(batch_op.f("ix_deliveries_connector_id_status"),
                              ["connector_id", "status"], unique=False)
        batch_op.create_index("ix_deliveries_due", ["next_attempt_at"], unique=False,
                              postgresql_where=PENDING, sqlite_where=PENDING)
        batch_op.create_index("ix_deliveries_connector_due", ["connector_id", "next_attempt_at"],
                              unique=False, postgresql_where=PENDING, sqlite_where=PENDING)
        batch_op.create_index("ix_deliveries_device_open",
                              ["connector_id", "device_id", "message_id"], unique=False,
                              postgresql_where=OPEN, sqlite_where=OPEN)
        batch_op.create_index("ix_deliveries_leased", ["connector_id"], unique=False,
                              postgresql_where=LEASED, sqlite_where=LEASED)
    # Leases and due times of open deliveries go back onto their rows.
    op.execute(
        "UPDATE deliveries SET lease_id = (SELECT lease_id FROM queue"
        " WHERE queue.delivery_id = deliveries.id),"
        " next_attempt_at = COALESCE((SELECT CASE WHEN due_at >= "
        f"{QUEUE_HELD} THEN deliveries.next_attempt_at ELSE due_at END FROM queue"
        " WHERE queue.delivery_id = deliveries.id), next_attempt_at)"
        " WHERE status IN ('pending', 'held')"
    )
    op.drop_table("queue")
