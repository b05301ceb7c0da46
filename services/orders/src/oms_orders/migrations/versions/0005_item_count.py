"""An order's item count as a BIGINT, like its weight: a sum of line quantities.

Capture bounds lines and units per line so that the count fits the contract's int32, but a
column holding a sum should not be the place where an order fails (it was: two lines of
2^31 - 1 units overflowed the INTEGER). The type change rewrites the table under an
exclusive lock; at the size of an orders table that is a short maintenance step.

Revision ID: 0005_item_count
Revises: 0004
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_item_count"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column("orders", "item_count", type_=sa.BigInteger(),
                    existing_type=sa.Integer(), existing_nullable=False,
                    existing_server_default="0")


def downgrade() -> None:
    op.alter_column("orders", "item_count", type_=sa.Integer(),
                    existing_type=sa.BigInteger(), existing_nullable=False,
                    existing_server_default="0")
