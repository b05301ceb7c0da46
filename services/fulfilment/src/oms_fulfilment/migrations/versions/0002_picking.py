"""Fulfilment orders and their lines, the product replica, slots, pick lists, stops, tote
allocations and put-backs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "fulfilment_orders",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("order_name", sa.String(length=200), nullable=False),
        sa.Column("node_id", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=30), nullable=False),
        sa.Column("priority", sa.Boolean(), nullable=False),
        sa.Column("service_level", sa.Integer(), nullable=False),
        sa.Column("promised_ship_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("release_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("channel", sa.String(length=200), nullable=False),
        sa.Column("external_order_id", sa.String(length=200), nullable=False),
        sa.Column("cancel_reason", sa.String(length=500), server_default="", nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fulfilment_orders")),
        sa.UniqueConstraint("order_name", "node_id", name="uq_fulfilment_orders_order_node"),
    )
    op.create_index(
        "ix_fulfilment_orders_queue",
        "fulfilment_orders",
        ["node_id", "status", "priority", "promised_ship_time"],
        unique=False,
    )
    op.create_table(
        "fulfilment_products",
        sa.Column("sku", sa.String(length=100), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("gtin", sa.String(length=50), nullable=False),
        sa.Column("weight_grams", sa.BigInteger(), nullable=False),
        sa.Column("length_mm", sa.Integer(), nullable=False),
        sa.Column("width_mm", sa.Integer(), nullable=False),
        sa.Column("height_mm", sa.Integer(), nullable=False),
        sa.Column("fragile", sa.Boolean(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("change_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sku", name=op.f("pk_fulfilment_products")),
    )
    op.create_table(
        "pick_lists",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("node_id", sa.String(length=100), nullable=False),
        sa.Column("strategy", sa.String(length=20), nullable=False),
        sa.Column("zone", sa.String(length=100), nullable=False),
        sa.Column("fulfilment_orders", postgresql.ARRAY(sa.UUID()), nullable=False),
        sa.Column("units", sa.Integer(), nullable=False),
        sa.Column("weight_grams", sa.BigInteger(), nullable=False),
        sa.Column("request_id", sa.String(length=200), nullable=True),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("complete_time", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pick_lists")),
    )
    op.create_index(
        "ix_pick_lists_node_time", "pick_lists", ["node_id", "create_time"], unique=False
    )
    op.create_index("ix_pick_lists_request", "pick_lists", ["request_id"], unique=False)
    op.create_table(
        "pick_requests",
        sa.Column("request_id", sa.String(length=200), nullable=False),
        sa.Column("node_id", sa.String(length=100), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_pick_requests")),
    )
    op.create_table(
        "slots",
        sa.Column("node_id", sa.String(length=100), nullable=False),
        sa.Column("sku", sa.String(length=100), nullable=False),
        sa.Column("bin_code", sa.String(length=100), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("node_id", "sku", name=op.f("pk_slots")),
    )
    op.create_table(
        "fulfilment_order_lines",
        sa.Column("fulfilment_order_id", sa.UUID(), nullable=False),
        sa.Column("line_id", sa.String(length=100), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("order_name", sa.String(length=200), nullable=False),
        sa.Column("sku", sa.String(length=100), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("external_line_id", sa.String(length=200), server_default="", nullable=False),
        sa.Column("bin_code", sa.String(length=100), nullable=True),
        sa.Column("allocated", sa.Integer(), server_default="0", nullable=False),
        sa.Column("picked", sa.Integer(), server_default="0", nullable=False),
        sa.Column("short", sa.Integer(), server_default="0", nullable=False),
        sa.Column("short_reason", sa.String(length=20), nullable=True),
        sa.Column("cancelled", sa.Integer(), server_default="0", nullable=False),
        sa.CheckConstraint(
            "quantity > 0", name=op.f("ck_fulfilment_order_lines_quantity_positive")
        ),
        sa.ForeignKeyConstraint(
            ["fulfilment_order_id"],
            ["fulfilment_orders.id"],
            name=op.f("fk_fulfilment_order_lines_fulfilment_order_id_fulfilment_orders"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "fulfilment_order_id", "line_id", name=op.f("pk_fulfilment_order_lines")
        ),
    )
    op.create_table(
        "pick_stops",
        sa.Column("pick_list_id", sa.UUID(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("bin_code", sa.String(length=100), nullable=False),
        sa.Column("zone", sa.String(length=100), nullable=False),
        sa.Column("sku", sa.String(length=100), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("confirmed", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("picked", sa.Integer(), server_default="0", nullable=False),
        sa.Column("short_reason", sa.String(length=20), nullable=True),
        sa.Column("confirm_time", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["pick_list_id"],
            ["pick_lists.id"],
            name=op.f("fk_pick_stops_pick_list_id_pick_lists"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pick_list_id", "sequence", name=op.f("pk_pick_stops")),
    )
    op.create_table(
        "put_backs",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("fulfilment_order_id", sa.UUID(), nullable=False),
        sa.Column("line_id", sa.String(length=100), nullable=False),
        sa.Column("node_id", sa.String(length=100), nullable=False),
        sa.Column("sku", sa.String(length=100), nullable=False),
        sa.Column("bin_code", sa.String(length=100), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["fulfilment_order_id"],
            ["fulfilment_orders.id"],
            name=op.f("fk_put_backs_fulfilment_order_id_fulfilment_orders"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_put_backs")),
    )
    op.create_index(
        op.f("ix_put_backs_fulfilment_order_id"), "put_backs", ["fulfilment_order_id"], unique=False
    )
    op.create_table(
        "pick_allocations",
        sa.Column("pick_list_id", sa.UUID(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("fulfilment_order_id", sa.UUID(), nullable=False),
        sa.Column("line_id", sa.String(length=100), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("tote", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("picked", sa.Integer(), server_default="0", nullable=False),
        sa.Column("short", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["pick_list_id", "sequence"],
            ["pick_stops.pick_list_id", "pick_stops.sequence"],
            name=op.f("fk_pick_allocations_pick_list_id_pick_stops"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "pick_list_id",
            "sequence",
            "fulfilment_order_id",
            "line_id",
            name=op.f("pk_pick_allocations"),
        ),
    )
    op.create_index(
        "ix_pick_allocations_order", "pick_allocations", ["fulfilment_order_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_pick_allocations_order", table_name="pick_allocations")
    op.drop_table("pick_allocations")
    op.drop_index(op.f("ix_put_backs_fulfilment_order_id"), table_name="put_backs")
    op.drop_table("put_backs")
    op.drop_table("pick_stops")
    op.drop_table("fulfilment_order_lines")
    op.drop_table("slots")
    op.drop_table("pick_requests")
    op.drop_index("ix_pick_lists_request", table_name="pick_lists")
    op.drop_index("ix_pick_lists_node_time", table_name="pick_lists")
    op.drop_table("pick_lists")
    op.drop_table("fulfilment_products")
    op.drop_index("ix_fulfilment_orders_queue", table_name="fulfilment_orders")
    op.drop_table("fulfilment_orders")
