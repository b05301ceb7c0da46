"""Customer notifications and the KPI read model.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "kpi_orders",
        sa.Column("order_name", sa.Text(), nullable=False),
        sa.Column("channel", sa.String(100), nullable=False),
        sa.Column("external_order_id", sa.String(200), nullable=False),
        sa.Column("customer_key", sa.Text(), nullable=False),
        sa.Column("customer_name", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("currency_code", sa.String(3), nullable=False),
        sa.Column("place_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("units_ordered", sa.Integer(), nullable=False),
        sa.Column("amount_ordered", sa.Numeric(), nullable=False),
        sa.Column("units_cancelled", sa.Integer(), server_default="0", nullable=False),
        sa.Column("amount_cancelled", sa.Numeric(), server_default="0", nullable=False),
        sa.Column("units_delivered", sa.Integer(), server_default="0", nullable=False),
        sa.Column("delivered_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "units_returned_wrong_item", sa.Integer(), server_default="0", nullable=False
        ),
        sa.PrimaryKeyConstraint("order_name", name="pk_kpi_orders"),
    )
    op.create_index("ix_kpi_orders_place_time", "kpi_orders", ["place_time"])
    op.create_table(
        "kpi_order_lines",
        sa.Column("order_name", sa.Text(), nullable=False),
        sa.Column("line_id", sa.String(20), nullable=False),
        sa.Column("sku", sa.String(100), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price", sa.Numeric(), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_name"], ["kpi_orders.order_name"],
            name="fk_kpi_order_lines_order_name_kpi_orders", ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("order_name", "line_id", name="pk_kpi_order_lines"),
    )
    op.create_table(
        "kpi_cancellations",
        sa.Column("order_name", sa.Text(), nullable=False),
        sa.Column("line_id", sa.String(20), nullable=False),
        sa.Column("cancel_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_name"], ["kpi_orders.order_name"],
            name="fk_kpi_cancellations_order_name_kpi_orders", ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "order_name", "line_id", "cancel_time", name="pk_kpi_cancellations"
        ),
    )
    op.create_table(
        "kpi_packages",
        sa.Column("package", sa.Text(), nullable=False),
        sa.Column("order_name", sa.Text(), nullable=False),
        sa.Column("carrier", sa.Text(), nullable=False),
        sa.Column("carrier_service", sa.Text(), nullable=False),
        sa.Column("tracking_number", sa.Text(), nullable=False),
        sa.Column("tracking_url", sa.Text(), nullable=False),
        sa.Column("units", sa.Integer(), nullable=False),
        sa.Column("ship_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deliver_time", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["order_name"], ["kpi_orders.order_name"],
            name="fk_kpi_packages_order_name_kpi_orders", ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("package", "order_name", name="pk_kpi_packages"),
    )
    op.create_index("ix_kpi_packages_order_name", "kpi_packages", ["order_name"])
    op.create_table(
        "kpi_returns",
        sa.Column("return_name", sa.Text(), nullable=False),
        sa.Column("order_name", sa.Text(), nullable=False),
        sa.Column("line_id", sa.String(20), nullable=False),
        sa.Column("reason", sa.String(40), nullable=False),
        sa.Column("units", sa.Integer(), nullable=False),
        sa.Column("receive_time", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_name"], ["kpi_orders.order_name"],
            name="fk_kpi_returns_order_name_kpi_orders", ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "return_name", "order_name", "line_id", "reason", name="pk_kpi_returns"
        ),
    )
    op.create_index("ix_kpi_returns_order_name", "kpi_returns", ["order_name"])
    op.create_table(
        "notifications",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("order_name", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("recipient", sa.Text(), nullable=False),
        sa.Column("context", postgresql.JSONB(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), server_default="", nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("send_time", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_notifications"),
        sa.UniqueConstraint(
            "order_name", "kind", "key", name="uq_notifications_order_name_kind_key"
        ),
    )
    op.create_index(
        "ix_notifications_due", "notifications", ["not_before"],
        postgresql_where=sa.text("status = 'PENDING'"),
    )
    # Orders captured before this read model existed: without them, their later shipments,
    # deliveries and returns would be retried into the dead letters (and take the lifecycle
    # handlers' effects with them), and a replay of their OrderCreated events would send
    # confirmations long after the fact. The customer key follows kpis_rules.contact(). The
    # order time and cancelled units are taken where the lifecycle revision keeps them.
    inspector = sa.inspect(op.get_bind())
    order_columns = {c["name"] for c in inspector.get_columns("orders")}
    line_columns = {c["name"] for c in inspector.get_columns("order_lines")}
    placed = ("COALESCE(o.order_time, o.create_time)" if "order_time" in order_columns
              else "o.create_time")
    cancelled = "l.cancelled" if "cancelled" in line_columns else "0"
    op.execute(f"""
INSERT INTO kpi_orders (order_name, channel, external_order_id, customer_key, customer_name,
                        email, currency_code, place_time, units_ordered, amount_ordered,
                        units_cancelled, amount_cancelled)
SELECT 'orders/' || o.id, o.channel, o.external_order_id,
       COALESCE(NULLIF(lower(btrim(COALESCE(NULLIF(o.customer->>'email', ''),
                                            o.shipping_address->>'email', ''))), ''),
                NULLIF('channel:' || o.channel || '/'
                       || COALESCE(o.customer->>'external_customer_id', ''),
                       'channel:' || o.channel || '/'),
                'order:orders/' || o.id),
       COALESCE(NULLIF(btrim(o.customer->>'display_name'), ''),
                btrim(o.shipping_address->>'recipient'), ''),
       btrim(COALESCE(NULLIF(o.customer->>'email', ''), o.shipping_address->>'email', '')),
       o.currency_code, {placed},
       COALESCE(l.units, 0), o.total_amount, COALESCE(l.cancelled, 0),
       COALESCE(l.cancelled_amount, 0)
FROM orders o
LEFT JOIN (SELECT l.order_id, sum(l.quantity) AS units, sum({cancelled}) AS cancelled,
                  sum({cancelled} * l.unit_price) AS cancelled_amount
           FROM order_lines l GROUP BY l.order_id) l ON l.order_id = o.id
""")
    op.execute("""
INSERT INTO kpi_order_lines (order_name, line_id, sku, quantity, unit_price)
SELECT 'orders/' || l.order_id, l.line_id, l.sku, l.quantity, l.unit_price FROM order_lines l
""")


def downgrade() -> None:
    op.drop_index("ix_notifications_due", table_name="notifications")
    op.drop_table("notifications")
    op.drop_index("ix_kpi_returns_order_name", table_name="kpi_returns")
    op.drop_table("kpi_returns")
    op.drop_index("ix_kpi_packages_order_name", table_name="kpi_packages")
    op.drop_table("kpi_packages")
    op.drop_table("kpi_cancellations")
    op.drop_table("kpi_order_lines")
    op.drop_index("ix_kpi_orders_place_time", table_name="kpi_orders")
    op.drop_table("kpi_orders")
