"""server-side routing for phones: rotation cursor, failures in a row, hand-out ids and times

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08 02:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import simgate.store.models

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as table:
        table.add_column(sa.Column("routing_cursor", sa.Integer(), nullable=False,
                                   server_default="0"))
    with op.batch_alter_table("sim_cards") as table:
        table.add_column(sa.Column("failures", sa.SmallInteger(), nullable=False,
                                   server_default="0"))
    with op.batch_alter_table("messages") as table:
        table.add_column(sa.Column("handout_id", sa.String(length=36), nullable=True))
        table.add_column(sa.Column("phone_chooses_sim", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        table.add_column(sa.Column("handed_at", simgate.store.models.UtcDateTime(timezone=True),
                                   nullable=True))
    op.create_index("ix_messages_device_handout", "messages", ["device_id", "handout_id"])
    op.create_index("ix_messages_device_handed", "messages", ["device_id", "handed_at"])


def downgrade() -> None:
    op.drop_index("ix_messages_device_handed", table_name="messages")
    op.drop_index("ix_messages_device_handout", table_name="messages")
    with op.batch_alter_table("messages") as table:
        table.drop_column("handed_at")
        table.drop_column("phone_chooses_sim")
        table.drop_column("handout_id")
    with op.batch_alter_table("sim_cards") as table:
        table.drop_column("failures")
    with op.batch_alter_table("devices") as table:
        table.drop_column("routing_cursor")
