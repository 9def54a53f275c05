"""the parts of downloaded MMS, kept beside their message

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-08 03:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "incoming_attachments",
        sa.Column("pk", BigId, primary_key=True, autoincrement=True),
        sa.Column("message_pk", BigId,
                  sa.ForeignKey("incoming_messages.pk", ondelete="CASCADE"), nullable=False),
        sa.Column("user_id", BigId, sa.ForeignKey("users.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("part_id", sa.BigInteger(), nullable=False),
        sa.Column("content_type", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("stored_bytes", sa.BigInteger(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=True),
        sa.UniqueConstraint("message_pk", "part_id", name="uq_attachment_message_part"),
    )
    op.create_index("ix_attachments_user", "incoming_attachments", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_attachments_user", table_name="incoming_attachments")
    op.drop_table("incoming_attachments")
