"""Backorders remember the node that came up short of them: a line a picker found short is
not served from that node again until a count of the SKU there.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("backorders", sa.Column("shorted_node_id", sa.String(63), nullable=True))


def downgrade() -> None:
    op.drop_column("backorders", "shorted_node_id")
