"""Returns (RMAs), their lines, and the units of each order line already in a return.

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
    op.create_table(
        "returns",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("request_id", sa.String(200), nullable=False),
        sa.Column("order_name", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(200), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("note", sa.String(2000), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("review_reasons", postgresql.ARRAY(sa.String(500)), nullable=False),
        sa.Column("currency_code", sa.String(3), nullable=False),
        sa.Column("shipping_payer", sa.String(20), nullable=False),
        sa.Column("return_shipping_fee", sa.Numeric(20, 4)),
        sa.Column("return_from", postgresql.JSONB(), nullable=False),
        sa.Column("weight_grams", sa.Integer(), nullable=False),
        sa.Column("label_name", sa.String(200), nullable=False, server_default=""),
        sa.Column("carrier", sa.String(100), nullable=False, server_default=""),
        sa.Column("tracking_number", sa.String(100), nullable=False, server_default=""),
        sa.Column("tracking_url", sa.String(1000), nullable=False, server_default=""),
        sa.Column("label_error", sa.String(1000), nullable=False, server_default=""),
        sa.Column("reject_reason", sa.String(1000), nullable=False, server_default=""),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("approve_time", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("request_id", name="uq_returns_request_id"),
    )
    op.create_index("ix_returns_state_time", "returns", ["state", "create_time", "id"])
    op.create_index("ix_returns_order", "returns", ["order_name"])
    op.create_table(
        "return_lines",
        sa.Column("return_id", postgresql.UUID(as_uuid=True),
                  sa.ForeignKey("returns.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("line_id", sa.String(100), primary_key=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("sku", sa.String(200), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(30), nullable=False),
        sa.Column("note", sa.String(1000), nullable=False),
        sa.Column("policy_id", sa.String(63), nullable=False),
        sa.Column("unit_price", sa.Numeric(20, 4), nullable=False),
        sa.Column("restocking_fee", sa.Numeric(20, 4), nullable=False),
        sa.Column("keep_it", sa.Boolean(), nullable=False),
        sa.Column("conditions", postgresql.ARRAY(sa.String(30)), nullable=False),
        sa.Column("deliver_time", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_return_lines_quantity_positive")),
    )
    op.create_table(
        "returned_units",
        sa.Column("order_name", sa.String(200), primary_key=True),
        sa.Column("line_id", sa.String(100), primary_key=True),
        sa.Column("delivered", sa.Integer(), nullable=False),
        sa.Column("requested", sa.Integer(), nullable=False),
        sa.CheckConstraint("requested BETWEEN 0 AND delivered",
                           name=op.f("ck_returned_units_within_delivered")),
    )


def downgrade() -> None:
    op.drop_table("returned_units")
    op.drop_table("return_lines")
    op.drop_index("ix_returns_order", table_name="returns")
    op.drop_index("ix_returns_state_time", table_name="returns")
    op.drop_table("returns")
