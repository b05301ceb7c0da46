"""Products, fulfilment nodes, stock, reservations, backorders, stock ledger; outbox, inbox,
dead letters.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from oms_platform.migrations import create_messaging_tables, drop_messaging_tables
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "products",
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("gtin", sa.String(14), nullable=False),
        sa.Column("weight_grams", sa.BigInteger()),
        sa.Column("length_mm", sa.Integer()),
        sa.Column("width_mm", sa.Integer()),
        sa.Column("height_mm", sa.Integer()),
        sa.Column("request_id", sa.String(128)),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("sku", name="pk_products"),
        sa.UniqueConstraint("request_id", name="uq_products_request_id"),
    )
    op.create_table(
        "fulfilment_nodes",
        sa.Column("node_id", sa.String(63), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("node_type", sa.String(40), nullable=False),
        sa.Column("address", postgresql.JSONB(), nullable=False),
        sa.Column("latitude", sa.Double(), nullable=False),
        sa.Column("longitude", sa.Double(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(128)),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("node_id", name="pk_fulfilment_nodes"),
        sa.UniqueConstraint("request_id", name="uq_fulfilment_nodes_request_id"),
    )
    op.create_table(
        "stock_levels",
        sa.Column("node_id", sa.String(63), nullable=False),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("on_hand", sa.BigInteger(), nullable=False),
        sa.Column("reserved", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("node_id", "sku", name="pk_stock_levels"),
        sa.ForeignKeyConstraint(["node_id"], ["fulfilment_nodes.node_id"],
                                name="fk_stock_levels_node_id_fulfilment_nodes"),
        sa.ForeignKeyConstraint(["sku"], ["products.sku"], name="fk_stock_levels_sku_products"),
        sa.CheckConstraint("reserved >= 0 AND on_hand >= reserved",
                           name="ck_stock_levels_reserved_within_on_hand"),
    )
    op.create_table(
        "reservations",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("order_name", sa.String(200), nullable=False),
        sa.Column("line_id", sa.String(64), nullable=False),
        sa.Column("node_id", sa.String(63), nullable=False),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="pk_reservations"),
        sa.UniqueConstraint("order_name", "line_id", name="uq_reservations_order_name"),
        sa.ForeignKeyConstraint(["node_id"], ["fulfilment_nodes.node_id"],
                                name="fk_reservations_node_id_fulfilment_nodes"),
        sa.ForeignKeyConstraint(["sku"], ["products.sku"], name="fk_reservations_sku_products"),
        sa.CheckConstraint("quantity > 0", name="ck_reservations_quantity_positive"),
    )
    op.create_table(
        "backorders",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("order_name", sa.String(200), nullable=False),
        sa.Column("line_id", sa.String(64), nullable=False),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="pk_backorders"),
        sa.UniqueConstraint("order_name", "line_id", name="uq_backorders_order_name"),
        sa.CheckConstraint("quantity > 0", name="ck_backorders_quantity_positive"),
    )
    op.create_table(
        "stock_ledger",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("node_id", sa.String(63), nullable=False),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("on_hand_delta", sa.BigInteger(), nullable=False),
        sa.Column("reserved_delta", sa.BigInteger(), nullable=False),
        sa.Column("reference", sa.Text()),
        sa.Column("request_id", sa.String(128)),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="pk_stock_ledger"),
        sa.UniqueConstraint("request_id", name="uq_stock_ledger_request_id"),
        sa.ForeignKeyConstraint(["node_id"], ["fulfilment_nodes.node_id"],
                                name="fk_stock_ledger_node_id_fulfilment_nodes"),
        sa.ForeignKeyConstraint(["sku"], ["products.sku"], name="fk_stock_ledger_sku_products"),
    )
    op.create_index("ix_stock_ledger_node_id_sku", "stock_ledger", ["node_id", "sku"])

    create_messaging_tables()


def downgrade() -> None:
    drop_messaging_tables()
    for table in ("stock_ledger", "backorders", "reservations", "stock_levels",
                  "fulfilment_nodes", "products"):
        op.drop_table(table)
