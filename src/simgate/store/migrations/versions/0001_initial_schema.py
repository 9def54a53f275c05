"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25 07:10:23.405955
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import simgate.store.models

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("created_at", simgate.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username"),
    )
    op.create_table(
        "devices",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("push_token", sa.String(length=256), nullable=True),
        sa.Column("created_at", simgate.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", simgate.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("last_seen", simgate.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", simgate.store.models.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_devices_user_id"), ["user_id"], unique=False)

    op.create_table(
        "messages",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("ext_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("device_id", sa.String(length=36), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("data", sa.Text(), nullable=True),
        sa.Column("port", sa.Integer(), nullable=True),
        sa.Column("is_encrypted", sa.Boolean(), nullable=False),
        sa.Column("is_hashed", sa.Boolean(), nullable=False),
        sa.Column("with_delivery_report", sa.Boolean(), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("sim_number", sa.SmallInteger(), nullable=True),
        sa.Column("sim_used", sa.SmallInteger(), nullable=True),
        sa.Column("valid_until", simgate.store.models.UtcDateTime(timezone=True), nullable=True),
        sa.Column("schedule_at", simgate.store.models.UtcDateTime(timezone=True), nullable=True),
        sa.Column("states", sa.JSON(), nullable=False),
        sa.Column("created_at", simgate.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", simgate.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("user_id", "ext_id", name="uq_messages_user_ext_id"),
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index("ix_messages_device_state", ["device_id", "state"], unique=False)
        batch_op.create_index("ix_messages_user_created", ["user_id", "created_at"], unique=False)

    op.create_table(
        "sim_cards",
        sa.Column("device_id", sa.String(length=36), nullable=False),
        sa.Column("slot_index", sa.SmallInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("phone_number", sa.String(length=32), nullable=True),
        sa.Column("carrier_name", sa.String(length=64), nullable=True),
        sa.Column("iccid", sa.String(length=32), nullable=True),
        sa.Column("signal", sa.SmallInteger(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("updated_at", simgate.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("device_id", "slot_index"),
    )
    op.create_table(
        "recipients",
        sa.Column(
            "message_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("position", sa.SmallInteger(), nullable=False),
        sa.Column("phone_number", sa.String(length=512), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["message_pk"], ["messages.pk"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("message_pk", "position"),
    )


def downgrade() -> None:
    op.drop_table("recipients")
    op.drop_table("sim_cards")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_user_created")
        batch_op.drop_index("ix_messages_device_state")

    op.drop_table("messages")
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_devices_user_id"))

    op.drop_table("devices")
    op.drop_table("users")
