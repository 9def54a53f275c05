"""the Twilio-compatible API: its messages' accounts and callbacks, and the callback outbox

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08 02:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import simgate.store.models

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Stamp = simgate.store.models.UtcDateTime


def upgrade() -> None:
    op.create_table(
        "twilio_messages",
        sa.Column("user_id", BigId, nullable=False),
        sa.Column("ext_id", sa.String(length=36), nullable=False),
        sa.Column("account_sid", sa.String(length=128), nullable=False),
        sa.Column("sender", sa.String(length=32), nullable=True),
        sa.Column("callback_url", sa.String(length=2048), nullable=True),
        sa.Column("secret", sa.Text(), nullable=True),
        sa.Column("created_at", Stamp(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", "ext_id"),
    )
    op.create_table(
        "twilio_callbacks",
        sa.Column("pk", BigId, autoincrement=True, nullable=False),
        sa.Column("user_id", BigId, nullable=False),
        sa.Column("ext_id", sa.String(length=36), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", Stamp(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", Stamp(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("pk"),
    )
    op.create_index("ix_twilio_callbacks_due", "twilio_callbacks",
                    ["status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_twilio_callbacks_due", table_name="twilio_callbacks")
    op.drop_table("twilio_callbacks")
    op.drop_table("twilio_messages")
