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


# --- Customer notifications and the KPI read model (notifications.py, kpis.py) --------------
#
# Built from events (orders' own OrderCreated and OrderCancelled, PackageShipped,
# ShipmentDelivered, ReturnReceived), not from the tables above, so that the figures and the
# emails follow what happened rather than the order's current state. Orders are keyed by
# their resource name, as the events name them.

kpi_orders = Table(
    "kpi_orders",
    metadata,
    Column("order_name", Text, primary_key=True),
    Column("channel", String(100), nullable=False),
    Column("external_order_id", String(200), nullable=False),
    # Who bought, for purchase frequency: the email, else the channel's customer id.
    Column("customer_key", Text, nullable=False),
    Column("customer_name", Text, nullable=False),
    Column("email", Text, nullable=False),
    Column("currency_code", String(3), nullable=False),
    # When the customer placed it: the period it belongs to, and the start of its lead time.
    Column("place_time", DateTime(timezone=True), nullable=False),
    Column("units_ordered", Integer, nullable=False),
    Column("amount_ordered", Numeric, nullable=False),
    Column("units_cancelled", Integer, nullable=False, server_default="0"),
    Column("amount_cancelled", Numeric, nullable=False, server_default="0"),
    Column("units_delivered", Integer, nullable=False, server_default="0"),
    # Set once every unit not cancelled was delivered: the end of the order's lead time.
    Column("delivered_time", DateTime(timezone=True)),
    Column("units_returned_wrong_item", Integer, nullable=False, server_default="0"),
)
Index("ix_kpi_orders_place_time", kpi_orders.c.place_time)

kpi_order_lines = Table(
    "kpi_order_lines",
    metadata,
    Column("order_name", ForeignKey("kpi_orders.order_name", ondelete="CASCADE"),
           primary_key=True),
    Column("line_id", String(20), primary_key=True),
    Column("sku", String(100), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("unit_price", Numeric, nullable=False),
)

# One row per cancelled line and cancellation: the same cancellation re-sent under a new
# event id finds its row and is not counted twice.
kpi_cancellations = Table(
    "kpi_cancellations",
    metadata,
    Column("order_name", ForeignKey("kpi_orders.order_name", ondelete="CASCADE"),
           primary_key=True),
    Column("line_id", String(20), primary_key=True),
    Column("cancel_time", DateTime(timezone=True), primary_key=True),
    Column("quantity", Integer, nullable=False),
)

# Each package's share of each order: shipped, then delivered.
kpi_packages = Table(
    "kpi_packages",
    metadata,
    Column("package", Text, primary_key=True),
    Column("order_name", ForeignKey("kpi_orders.order_name", ondelete="CASCADE"),
           primary_key=True),
    Column("carrier", Text, nullable=False),
    Column("carrier_service", Text, nullable=False),
    Column("tracking_number", Text, nullable=False),
    Column("tracking_url", Text, nullable=False),
    Column("units", Integer, nullable=False),
    Column("ship_time", DateTime(timezone=True), nullable=False),
    Column("deliver_time", DateTime(timezone=True)),
)
Index("ix_kpi_packages_order_name", kpi_packages.c.order_name)

kpi_returns = Table(
    "kpi_returns",
    metadata,
    Column("return_name", Text, primary_key=True),
    Column("order_name", ForeignKey("kpi_orders.order_name", ondelete="CASCADE"),
           primary_key=True),
    Column("line_id", String(20), primary_key=True),
    Column("reason", String(40), primary_key=True),
    Column("units", Integer, nullable=False),
    Column("receive_time", DateTime(timezone=True), nullable=False),
)
Index("ix_kpi_returns_order_name", kpi_returns.c.order_name)

# The email queue. (order, kind, key) is unique, so a notification is enqueued at most once
# however often its event is redelivered or re-sent under a new id; `key` is the package for
# dispatch and delivery emails and empty for the others.
notifications = Table(
    "notifications",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("order_name", Text, nullable=False),
    Column("kind", String(40), nullable=False),
    Column("key", Text, nullable=False),
    Column("recipient", Text, nullable=False),
    # What the template needs, captured when the event arrived.
    Column("context", JSONB, nullable=False),
    Column("status", String(20), nullable=False),
    Column("not_before", DateTime(timezone=True), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text, nullable=False, server_default=""),
    Column("message_id", Text, nullable=False),
    Column("create_time", DateTime(timezone=True), nullable=False),
    Column("send_time", DateTime(timezone=True)),
    UniqueConstraint("order_name", "kind", "key", name="uq_notifications_order_name_kind_key"),
)
Index(
    "ix_notifications_due",
    notifications.c.not_before,
    postgresql_where=notifications.c.status == "PENDING",
)
