"""Replenishment state per stock level: the cached sales velocity and whether the level is at
its reorder point (so ReorderPointReached fires once per crossing).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("stock_levels", sa.Column("daily_velocity", sa.Numeric(18, 4), nullable=False,
                                            server_default="0"))
    op.add_column("stock_levels", sa.Column("velocity_time", sa.DateTime(timezone=True)))
    op.add_column("stock_levels", sa.Column("at_reorder_point", sa.Boolean(), nullable=False,
                                            server_default=sa.false()))
    # ListReplenishmentSuggestions reads only the levels at their reorder point.
    op.create_index("ix_stock_levels_at_reorder_point", "stock_levels", ["node_id", "sku"],
                    postgresql_where=sa.text("at_reorder_point"))


def downgrade() -> None:
    op.drop_index("ix_stock_levels_at_reorder_point", "stock_levels")
    for column in ("at_reorder_point", "velocity_time", "daily_velocity"):
        op.drop_column("stock_levels", column)
