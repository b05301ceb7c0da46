"""Packing: packages and their lines; the release's address, promise and gift note kept on
the fulfilment order for the label and the packing slip.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
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
    op.add_column("fulfilment_orders", sa.Column(
        "shipping_address", postgresql.JSONB(astext_type=sa.Text()), server_default="{}",
        nullable=False))
    op.add_column("fulfilment_orders", sa.Column(
        "promise_time", sa.DateTime(timezone=True), nullable=True))
    op.add_column("fulfilment_orders", sa.Column(
        "gift_note", sa.String(length=2000), server_default="", nullable=False))
    op.create_table(
        "packages",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("fulfilment_order_id", sa.UUID(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("box_code", sa.String(length=100), nullable=False),
        sa.Column("length_mm", sa.Integer(), nullable=False),
        sa.Column("width_mm", sa.Integer(), nullable=False),
        sa.Column("height_mm", sa.Integer(), nullable=False),
        sa.Column("weight_grams", sa.BigInteger(), nullable=False),
        sa.Column("station", sa.String(length=100), server_default="", nullable=False),
        sa.Column("refusals", postgresql.JSONB(astext_type=sa.Text()), server_default="{}",
                  nullable=False),
        sa.Column("seal_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("carrier", sa.String(length=100), server_default="", nullable=False),
        sa.Column("carrier_service", sa.String(length=100), server_default="",
                  nullable=False),
        sa.Column("tracking_number", sa.String(length=100), server_default="",
                  nullable=False),
        sa.Column("tracking_url", sa.String(length=1000), server_default="", nullable=False),
        sa.Column("label", sa.String(length=200), server_default="", nullable=False),
        sa.Column("ship_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("hand_off_error", sa.String(length=1000), server_default="",
                  nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["fulfilment_order_id"], ["fulfilment_orders.id"],
            name=op.f("fk_packages_fulfilment_order_id_fulfilment_orders"),
            ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_packages")),
        sa.UniqueConstraint("fulfilment_order_id", "position",
                            name="uq_packages_order_position"),
    )
    op.create_index(op.f("ix_packages_fulfilment_order_id"), "packages",
                    ["fulfilment_order_id"], unique=False)
    op.create_index("ix_packages_node_time", "packages", ["node_id", "create_time"],
                    unique=False)
    op.create_table(
        "package_lines",
        sa.Column("package_id", sa.UUID(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("order_name", sa.String(length=200), nullable=False),
        sa.Column("line_id", sa.String(length=100), nullable=False),
        sa.Column("sku", sa.String(length=100), nullable=False),
        sa.Column("gtin", sa.String(length=50), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("verified", sa.Integer(), server_default="0", nullable=False),
        sa.Column("refused", sa.Integer(), server_default="0", nullable=False),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_package_lines_quantity_positive")),
        sa.CheckConstraint("verified BETWEEN 0 AND quantity",
                           name=op.f("ck_package_lines_verified_within_quantity")),
        sa.ForeignKeyConstraint(["package_id"], ["packages.id"],
                                name=op.f("fk_package_lines_package_id_packages"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("package_id", "position", name=op.f("pk_package_lines")),
    )


def downgrade() -> None:
    op.drop_table("package_lines")
    op.drop_index("ix_packages_node_time", table_name="packages")
    op.drop_index(op.f("ix_packages_fulfilment_order_id"), table_name="packages")
    op.drop_table("packages")
    op.drop_column("fulfilment_orders", "gift_note")
    op.drop_column("fulfilment_orders", "promise_time")
    op.drop_column("fulfilment_orders", "shipping_address")
