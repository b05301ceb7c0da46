"""Allocation: lines split across nodes, the backorder queue's order, orders with expiry.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint("uq_reservations_order_name", "reservations")
    op.create_unique_constraint("uq_reservations_order_name", "reservations",
                                ["order_name", "line_id", "node_id"])

    op.add_column("backorders", sa.Column("priority", sa.Boolean(), nullable=False,
                                          server_default=sa.false()))
    op.add_column("backorders", sa.Column("capture_time", sa.DateTime(timezone=True),
                                          nullable=False, server_default=sa.func.now()))
    op.create_index("ix_backorders_queue", "backorders",
                    ["sku", sa.text("priority DESC"), "capture_time", "id"])
    op.create_index("ix_backorders_order_name", "backorders", ["order_name"])

    op.create_table(
        "order_allocations",
        sa.Column("order_name", sa.String(200), nullable=False),
        sa.Column("priority", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("capture_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("latitude", sa.Double()),
        sa.Column("longitude", sa.Double()),
        sa.Column("region_code", sa.String(16), nullable=False, server_default=""),
        sa.Column("administrative_area", sa.String(64), nullable=False, server_default=""),
        sa.Column("expire_time", sa.DateTime(timezone=True)),
        sa.Column("expired_lines", postgresql.JSONB(), nullable=False, server_default="[]"),
        sa.Column("paid", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("cancelled", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("order_name", name="pk_order_allocations"),
    )
    op.create_index("ix_order_allocations_expire_time", "order_allocations", ["expire_time"],
                    postgresql_where=sa.text("expire_time IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_order_allocations_expire_time", "order_allocations")
    op.drop_table("order_allocations")
    op.drop_index("ix_backorders_order_name", "backorders")
    op.drop_index("ix_backorders_queue", "backorders")
    op.drop_column("backorders", "capture_time")
    op.drop_column("backorders", "priority")
    op.drop_constraint("uq_reservations_order_name", "reservations")
    op.create_unique_constraint("uq_reservations_order_name", "reservations",
                                ["order_name", "line_id"])
