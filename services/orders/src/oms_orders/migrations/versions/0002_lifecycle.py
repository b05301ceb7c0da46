"""Order lifecycle: payments, holds, cancellations, shipments, returns, merges, search columns.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSONB = postgresql.JSONB()
TEXTS = postgresql.ARRAY(sa.Text())
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    for name, kind, default in [
        ("priority", sa.Boolean(), "false"),
        ("priority_flag", sa.Boolean(), "false"),
        ("tags", TEXTS, "{}"),
        ("gift_note", sa.Text(), ""),
        ("high_value", sa.Boolean(), "false"),
        ("region_code", sa.String(2), ""),
        ("customer_key", sa.Text(), ""),
        ("address_key", sa.Text(), ""),
        ("search_text", sa.Text(), ""),
        ("skus", TEXTS, "{}"),
        ("item_count", sa.Integer(), "0"),
        ("weight_grams", sa.BigInteger(), "0"),
        ("holds", JSONB, "[]"),
        ("payments", JSONB, "[]"),
        ("shipments", JSONB, "[]"),
        ("deliveries", JSONB, "{}"),
        ("returns", JSONB, "[]"),
    ]:
        op.add_column("orders", sa.Column(name, kind, nullable=False, server_default=default))
    for name in ["order_time", "promise_time", "payment_due_time", "release_time", "ship_time",
                 "deliver_time"]:
        op.add_column("orders", sa.Column(name, TIME, nullable=True))
    op.add_column("orders", sa.Column("merge_group", sa.UUID(), nullable=True))
    # Orders captured before this revision: their search keys from their documents.
    op.execute("""
        UPDATE orders SET
          order_time = create_time,
          region_code = coalesce(shipping_address->>'region_code', ''),
          customer_key = CASE
            WHEN coalesce(customer->>'email', '') <> ''
              THEN 'email:' || lower(trim(customer->>'email'))
            WHEN coalesce(customer->>'external_customer_id', '') <> ''
              THEN channel || ':' || (customer->>'external_customer_id')
            ELSE '' END,
          search_text = lower(external_order_id || ' ' || coalesce(customer->>'display_name', '')
                              || ' ' || coalesce(customer->>'email', '')),
          skus = ARRAY(SELECT DISTINCT sku FROM order_lines l WHERE l.order_id = orders.id),
          item_count = (SELECT coalesce(sum(quantity), 0) FROM order_lines l
                        WHERE l.order_id = orders.id)
    """)
    op.create_index("ix_orders_create_time_id", "orders", ["create_time", "id"])
    op.create_index("ix_orders_status", "orders", ["status"])
    op.create_index("ix_orders_customer_key", "orders", ["customer_key"])
    op.create_index("ix_orders_merge_group", "orders", ["merge_group"],
                    postgresql_where=sa.text("merge_group IS NOT NULL"))
    op.create_index("ix_orders_tags", "orders", ["tags"], postgresql_using="gin")
    op.create_index("ix_orders_skus", "orders", ["skus"], postgresql_using="gin")
    op.create_index("ix_orders_payment_due_time", "orders", ["payment_due_time"],
                    postgresql_where=sa.text("payment_status IN ('PENDING', 'FAILED')"))

    op.add_column("order_lines", sa.Column("allocated", JSONB, nullable=False,
                                           server_default="{}"))
    for name in ["backordered", "failed", "cancelled", "shipped", "returned"]:
        op.add_column("order_lines", sa.Column(name, sa.Integer(), nullable=False,
                                               server_default="0"))
    # Allocations move onto their lines, one JSON object of units per node.
    op.execute("""
        UPDATE order_lines l SET allocated = a.per_node
        FROM (SELECT order_id, line_id, jsonb_object_agg(node_id, quantity) AS per_node
              FROM order_allocations GROUP BY order_id, line_id) a
        WHERE a.order_id = l.order_id AND a.line_id = l.line_id
    """)
    op.create_check_constraint("units_accounted", "order_lines",
                               "cancelled + shipped <= quantity")
    op.create_check_constraint("returned_shipped", "order_lines",
                               "returned <= shipped")
    op.drop_table("order_allocations")

    op.add_column("order_timeline", sa.Column("actor", sa.Text(), nullable=False,
                                              server_default="system"))
    op.create_table(
        "order_products",
        sa.Column("sku", sa.String(100), nullable=False),
        sa.Column("minimum_order_quantity", sa.Integer(), nullable=False),
        sa.Column("weight_grams", sa.BigInteger(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("change_time", TIME, nullable=False),
        sa.PrimaryKeyConstraint("sku", name="pk_order_products"),
    )
    op.create_table(
        "order_commands",
        sa.Column("request_id", sa.String(100), nullable=False),
        sa.Column("order_id", sa.UUID(), nullable=False),
        sa.Column("method", sa.String(40), nullable=False),
        sa.Column("create_time", TIME, server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"],
                                name="fk_order_commands_order_id_orders", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("request_id", name="pk_order_commands"),
    )


def downgrade() -> None:
    op.drop_table("order_commands")
    op.drop_table("order_products")
    op.drop_column("order_timeline", "actor")
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
    op.execute("""
        INSERT INTO order_allocations (order_id, node_id, line_id, sku, quantity)
        SELECT l.order_id, a.key, l.line_id, l.sku, a.value::int
        FROM order_lines l, jsonb_each_text(l.allocated) a WHERE a.value::int > 0
    """)
    op.drop_constraint(op.f("ck_order_lines_returned_shipped"), "order_lines")
    op.drop_constraint(op.f("ck_order_lines_units_accounted"), "order_lines")
    for name in ["allocated", "backordered", "failed", "cancelled", "shipped", "returned"]:
        op.drop_column("order_lines", name)
    for index in ["ix_orders_payment_due_time", "ix_orders_skus", "ix_orders_tags",
                  "ix_orders_merge_group", "ix_orders_customer_key", "ix_orders_status",
                  "ix_orders_create_time_id"]:
        op.drop_index(index, table_name="orders")
    for name in ["priority", "priority_flag", "tags", "gift_note", "high_value", "region_code",
                 "customer_key", "address_key", "search_text", "skus", "item_count",
                 "weight_grams", "holds", "payments", "shipments", "deliveries", "returns",
                 "order_time", "promise_time", "payment_due_time", "release_time", "ship_time",
                 "deliver_time", "merge_group"]:
        op.drop_column("orders", name)
