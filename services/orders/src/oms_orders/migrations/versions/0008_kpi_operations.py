"""The operations KPIs' read model: promise times, refunds, packing checks, the node of each
package, cancellation reasons, and per-order figures refreshed from them.

Orders already in the read model get their promise time from the orders table (the
promise the order holds) and their per-order figures recomputed from the rows the read
model has; refunds and packing checks before this migration are not known to it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-10
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ORDER_COLUMNS = [
    ("promise_time", sa.DateTime(timezone=True), None),
    ("promise_change_time", sa.DateTime(timezone=True), None),
    ("units_shipped", sa.Integer(), "0"),
    ("packages", sa.Integer(), "0"),
    ("ship_nodes", sa.Integer(), "0"),
    ("shipped_time", sa.DateTime(timezone=True), None),
    ("units_returned", sa.Integer(), "0"),
    ("amount_refunded", sa.Numeric(), "0"),
    ("units_pack_verified", sa.Integer(), "0"),
    ("units_pack_refused", sa.Integer(), "0"),
]


def upgrade() -> None:
    for name, type_, default in _ORDER_COLUMNS:
        op.add_column("kpi_orders", sa.Column(name, type_, nullable=default is None,
                                              server_default=default))
    op.add_column("kpi_cancellations",
                  sa.Column("reason", sa.Text(), nullable=False, server_default=""))
    op.add_column("kpi_packages",
                  sa.Column("node_id", sa.Text(), nullable=False, server_default=""))
    op.create_table(
        "kpi_refunds",
        sa.Column("order_name", sa.Text(),
                  sa.ForeignKey("kpi_orders.order_name", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("refund", sa.Text(), primary_key=True),
        sa.Column("currency_code", sa.String(3), nullable=False),
        sa.Column("amount", sa.Numeric(), nullable=False),
        sa.Column("refund_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "kpi_pack_checks",
        sa.Column("order_name", sa.Text(),
                  sa.ForeignKey("kpi_orders.order_name", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("package", sa.Text(), primary_key=True),
        sa.Column("line_id", sa.String(20), primary_key=True),
        sa.Column("node_id", sa.Text(), nullable=False),
        sa.Column("units_verified", sa.Integer(), nullable=False),
        sa.Column("units_refused", sa.Integer(), nullable=False),
        sa.Column("verify_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.execute("""
        UPDATE kpi_orders AS k SET promise_time = o.promise_time
        FROM orders AS o
        WHERE k.order_name = 'orders/' || o.id::text AND o.promise_time IS NOT NULL
    """)
    # The same figures as the read model's refresh, for every order it holds.
    op.execute("""
        UPDATE kpi_orders AS o SET
          (units_shipped, packages, ship_nodes, shipped_time) = (
            SELECT LEAST(o.units_ordered, COALESCE(SUM(p.units), 0)), COUNT(*),
                   COUNT(DISTINCT p.node_id),
                   CASE WHEN o.units_ordered > o.units_cancelled
                         AND COALESCE(SUM(p.units), 0) >= o.units_ordered - o.units_cancelled
                        THEN MAX(p.ship_time) END
            FROM kpi_packages AS p WHERE p.order_name = o.order_name),
          units_returned = (
            SELECT COALESCE(SUM(r.units), 0) FROM kpi_returns AS r
            WHERE r.order_name = o.order_name)
    """)


def downgrade() -> None:
    op.drop_table("kpi_pack_checks")
    op.drop_table("kpi_refunds")
    op.drop_column("kpi_packages", "node_id")
    op.drop_column("kpi_cancellations", "reason")
    for name, _, _ in reversed(_ORDER_COLUMNS):
        op.drop_column("kpi_orders", name)
