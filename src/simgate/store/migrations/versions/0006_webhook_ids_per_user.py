"""webhook ids per user

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 13:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhooks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ext_id", sa.String(length=36), nullable=True))
    op.execute("UPDATE webhooks SET ext_id = id")
    with op.batch_alter_table("webhooks", schema=None) as batch_op:
        batch_op.alter_column("ext_id", existing_type=sa.String(length=36), nullable=False)
        batch_op.create_index("ux_webhooks_user_ext_id", ["user_id", "ext_id"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("webhooks", schema=None) as batch_op:
        batch_op.drop_index("ux_webhooks_user_ext_id")
        batch_op.drop_column("ext_id")
