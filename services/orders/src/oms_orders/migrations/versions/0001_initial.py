"""Orders, lines, allocations, timeline; outbox, inbox and dead letters.

Revision ID: 0001
Revises:
Create Date: 2025-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from oms_platform.migrations import create_messaging_tables, drop_messaging_tables
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("channel", sa.String(100), nullable=False),
        sa.Column("external_order_id", sa.String(200), nullable=False),
        sa.Column("request_id", sa.String(100), nullable=True),
        sa.Column("status", sa.String(40), nullable=False),
        sa.Column("customer", postgresql.JSONB(), nullable=False),
        sa.Column("shipping_address", postgresql.JSONB(), nullable=False),
        sa.Column("service_level", sa.String(40), nullable=False),
        sa.Column("payment_status", sa.String(40), nullable=False),
        sa.Column("currency_code", sa.String(3), nullable=False),
        sa.Column("total_amount", sa.Numeric(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_orders"),
        sa.UniqueConstraint(
            "channel", "external_order_id", name="uq_orders_channel_external_order_id"
        ),
        sa.UniqueConstraint("request_id", name="uq_orders_request_id"),
    )
    op.create_table(
        "order_lines",
        sa.Column("order_id", sa.UUID(), nullable=False),
        sa.Column("line_id", sa.String(20), nullable=False),
        sa.Column("external_line_id", sa.String(200), nullable=False),
        sa.Column("sku", sa.String(100), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price", sa.Numeric(), nullable=False),
        sa.CheckConstraint("quantity > 0", name="ck_order_lines_quantity_positive"),
        sa.CheckConstraint("unit_price >= 0", name="ck_order_lines_unit_price_not_negative"),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"],
            name="fk_order_lines_order_id_orders", ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("order_id", "line_id", name="pk_order_lines"),
    )
    op.create_table(
        "order_allocations",
        sa.Column("order_id", sa.UUID(), nullable=False),
        sa.Column("node_id", sa.Text(), nullable=False),
        sa.Column("line_id", sa.String(20), nullable=False),
        sa.Column("sku", sa.Text(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.CheckConstraint("quantity > 0", name="ck_order_allocations_quantity_positive"),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"],
            name="fk_order_allocations_order_id_orders", ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("order_id", "node_id", "line_id", name="pk_order_allocations"),
    )
    op.create_table(
        "order_timeline",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("order_id", sa.UUID(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("detail", postgresql.JSONB(), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"],
            name="fk_order_timeline_order_id_orders", ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_order_timeline"),
    )
    op.create_index("ix_order_timeline_order_id_at", "order_timeline", ["order_id", "at"])

    create_messaging_tables()


def downgrade() -> None:
    drop_messaging_tables()
    op.drop_index("ix_order_timeline_order_id_at", table_name="order_timeline")
    op.drop_table("order_timeline")
    op.drop_table("order_allocations")
    op.drop_table("order_lines")
    op.drop_table("orders")
