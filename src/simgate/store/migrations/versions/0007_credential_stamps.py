"""credential stamps

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 13:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    stamps = op.create_table(
        "credential_stamps",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.bulk_insert(stamps, [{"name": "passwords", "value": 0}, {"name": "tokens", "value": 0}])


def downgrade() -> None:
    op.drop_table("credential_stamps")
