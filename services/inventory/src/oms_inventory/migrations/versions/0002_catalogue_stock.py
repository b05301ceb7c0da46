"""Product master, node regions/cut-off/bins/costs, safety stock, channel buffers.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
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
    add = op.add_column
    add("products", sa.Column("fragile", sa.Boolean(), nullable=False,
                              server_default=sa.false()))
    add("products", sa.Column("hazardous", sa.Boolean(), nullable=False,
                              server_default=sa.false()))
    add("products", sa.Column("minimum_order_quantity", sa.Integer(), nullable=False,
                              server_default="1"))
    add("products", sa.Column("returnable", sa.Boolean(), nullable=False,
                              server_default=sa.true()))
    add("products", sa.Column("backorder_policy", sa.String(32), nullable=False,
                              server_default="DENY"))
    add("products", sa.Column("backorder_limit", sa.BigInteger(), nullable=False,
                              server_default="0"))
    add("products", sa.Column("reorder_point", sa.BigInteger(), nullable=False,
                              server_default="0"))
    add("products", sa.Column("supplier_lead_time_days", sa.Integer(), nullable=False,
                              server_default="0"))
    add("products", sa.Column("update_time", sa.DateTime(timezone=True), nullable=False,
                              server_default=sa.func.now()))
    add("products", sa.Column("deleted", sa.Boolean(), nullable=False,
                              server_default=sa.false()))
    op.create_check_constraint("ck_products_minimum_order_quantity_positive", "products",
                               "minimum_order_quantity >= 1")
    op.create_check_constraint("ck_products_backorder_limit_not_negative", "products",
                               "backorder_limit >= 0")
    op.create_check_constraint("ck_products_reorder_point_not_negative", "products",
                               "reorder_point >= 0")
    op.create_check_constraint("ck_products_lead_time_not_negative", "products",
                               "supplier_lead_time_days >= 0")

    add("fulfilment_nodes", sa.Column("service_regions", postgresql.ARRAY(sa.String(16)),
                                      nullable=False, server_default="{}"))
    add("fulfilment_nodes", sa.Column("cutoff_time", sa.Time()))
    add("fulfilment_nodes", sa.Column("time_zone", sa.String(64), nullable=False,
                                      server_default="UTC"))
    add("fulfilment_nodes", sa.Column("shipment_cost", sa.Numeric(18, 6), nullable=False,
                                      server_default="0"))
    add("fulfilment_nodes", sa.Column("shipment_cost_currency", sa.String(3), nullable=False,
                                      server_default="USD"))
    add("fulfilment_nodes", sa.Column("update_time", sa.DateTime(timezone=True),
                                      nullable=False, server_default=sa.func.now()))
    op.create_table(
        "node_bins",
        sa.Column("node_id", sa.String(63), nullable=False),
        sa.Column("bin_code", sa.String(64), nullable=False),
        sa.Column("zone", sa.String(64), nullable=False),
        sa.Column("walk_sequence", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("node_id", "bin_code", name="pk_node_bins"),
        sa.ForeignKeyConstraint(["node_id"], ["fulfilment_nodes.node_id"],
                                name="fk_node_bins_node_id_fulfilment_nodes"),
    )

    add("stock_levels", sa.Column("safety_stock", sa.BigInteger(), nullable=False,
                                  server_default="0"))
    op.create_check_constraint("ck_stock_levels_safety_stock_not_negative", "stock_levels",
                               "safety_stock >= 0")
    op.create_table(
        "channel_buffers",
        sa.Column("channel", sa.String(100), nullable=False),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("buffer", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("channel", "sku", name="pk_channel_buffers"),
        sa.CheckConstraint("buffer >= 0", name="ck_channel_buffers_buffer_not_negative"),
    )


def downgrade() -> None:
    op.drop_table("channel_buffers")
    op.drop_constraint("ck_stock_levels_safety_stock_not_negative", "stock_levels")
    op.drop_column("stock_levels", "safety_stock")
    op.drop_table("node_bins")
    for column in ("update_time", "shipment_cost_currency", "shipment_cost", "time_zone",
                   "cutoff_time", "service_regions"):
        op.drop_column("fulfilment_nodes", column)
    for name in ("lead_time_not_negative", "reorder_point_not_negative",
                 "backorder_limit_not_negative", "minimum_order_quantity_positive"):
        op.drop_constraint(f"ck_products_{name}", "products")
    for column in ("deleted", "update_time", "supplier_lead_time_days", "reorder_point",
                   "backorder_limit", "backorder_policy", "returnable",
                   "minimum_order_quantity", "hazardous", "fragile"):
        op.drop_column("products", column)
