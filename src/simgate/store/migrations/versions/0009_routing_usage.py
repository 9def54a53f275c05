"""routing: per-SIM usage, distinct recipients, contacts, SIM cool-down, waiting reason

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27 17:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import simgate.store.models

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "sim_usage",
        sa.Column("device_id", sa.String(length=36), nullable=False),
        sa.Column("slot_index", sa.SmallInteger(), nullable=False),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("sends", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("device_id", "slot_index", "period"),
    )
    op.create_table(
        "sim_recipients",
        sa.Column("device_id", sa.String(length=36), nullable=False),
        sa.Column("slot_index", sa.SmallInteger(), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("phone", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("device_id", "slot_index", "month", "phone"),
    )
    op.create_table(
        "sim_contacts",
        sa.Column("user_id", BigId, nullable=False),
        sa.Column("phone", sa.String(length=16), nullable=False),
        sa.Column("device_id", sa.String(length=36), nullable=False),
        sa.Column("slot_index", sa.SmallInteger(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", "phone"),
    )
    with op.batch_alter_table("sim_cards") as batch:
        batch.add_column(sa.Column("paused_until", simgate.store.models.UtcDateTime(timezone=True),
                                   nullable=True))
        batch.add_column(sa.Column("pause_reason", sa.Text(), nullable=True))
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("device_pinned", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("device_pinned")
        batch.drop_column("reason")
    with op.batch_alter_table("sim_cards") as batch:
        batch.drop_column("pause_reason")
        batch.drop_column("paused_until")
    op.drop_table("sim_contacts")
    op.drop_table("sim_recipients")
    op.drop_table("sim_usage")
