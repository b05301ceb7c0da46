"""The orders database: orders, their lines and allocations, a timeline, and messaging."""

from __future__ import annotations

from oms_platform.db import create_metadata
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

metadata = create_metadata()

orders = Table(
    "orders",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("channel", String(100), nullable=False),
    Column("external_order_id", String(200), nullable=False),
    # Idempotency key of the CreateOrder call; NULLs are distinct, so keyless calls coexist.
    Column("request_id", String(100), unique=True),
    Column("status", String(40), nullable=False),
    Column("customer", JSONB, nullable=False),
    Column("shipping_address", JSONB, nullable=False),
    Column("service_level", String(40), nullable=False),
    Column("payment_status", String(40), nullable=False),
    Column("currency_code", String(3), nullable=False),
    # Unbounded NUMERIC keeps the scale it is given: amounts are stored in minor units
    # of their currency ("19.99", "500", "1.250") and read back exactly so.
    Column("total_amount", Numeric, nullable=False),
    Column("create_time", DateTime(timezone=True), nullable=False),
    Column("update_time", DateTime(timezone=True), nullable=False),
    UniqueConstraint("channel", "external_order_id", name="uq_orders_channel_external_order_id"),
)

order_lines = Table(
    "order_lines",
    metadata,
    Column("order_id", ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True),
    Column("line_id", String(20), primary_key=True),
    Column("external_line_id", String(200), nullable=False),
    Column("sku", String(100), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("unit_price", Numeric, nullable=False),
    CheckConstraint("quantity > 0", name="quantity_positive"),
    CheckConstraint("unit_price >= 0", name="unit_price_not_negative"),
)

order_allocations = Table(
    "order_allocations",
    metadata,
    Column("order_id", ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True),
    Column("node_id", Text, primary_key=True),
    Column("line_id", String(20), primary_key=True),
    Column("sku", Text, nullable=False),
    Column("quantity", Integer, nullable=False),
    CheckConstraint("quantity > 0", name="quantity_positive"),
)

order_timeline = Table(
    "order_timeline",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("order_id", ForeignKey("orders.id", ondelete="CASCADE"), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("detail", JSONB, nullable=False),
)
Index("ix_order_timeline_order_id_at", order_timeline.c.order_id, order_timeline.c.at)
