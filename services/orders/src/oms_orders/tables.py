"""The orders database: orders, their lines, a timeline, products, and messaging."""

from __future__ import annotations

from oms_platform.db import create_metadata
from sqlalchemy import (
    BigInteger,
    Boolean,
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
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

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
    Column("priority", Boolean, nullable=False, server_default="false"),
    Column("priority_flag", Boolean, nullable=False, server_default="false"),
    Column("tags", ARRAY(Text), nullable=False, server_default="{}"),
    Column("gift_note", Text, nullable=False, server_default=""),
    Column("high_value", Boolean, nullable=False, server_default="false"),
    Column("order_time", DateTime(timezone=True)),
    Column("promise_time", DateTime(timezone=True)),
    Column("payment_due_time", DateTime(timezone=True)),
    Column("release_time", DateTime(timezone=True)),
    Column("ship_time", DateTime(timezone=True)),
    Column("deliver_time", DateTime(timezone=True)),
    # Search and merge keys, kept from the JSON documents above so that they can be indexed.
    Column("region_code", String(2), nullable=False, server_default=""),
    Column("customer_key", Text, nullable=False, server_default=""),
    Column("address_key", Text, nullable=False, server_default=""),
    Column("search_text", Text, nullable=False, server_default=""),
    Column("skus", ARRAY(Text), nullable=False, server_default="{}"),
    Column("item_count", BigInteger, nullable=False, server_default="0"),
    Column("weight_grams", BigInteger, nullable=False, server_default="0"),
    # The id of the order a merged group ships with; NULL when not merged.
    Column("merge_group", UUID(as_uuid=True)),
    # Small histories, loaded and saved with the order in one row rather than in tables of
    # their own: holds, payment transactions, shipments, deliveries and return ids.
    Column("holds", JSONB, nullable=False, server_default="[]"),
    Column("payments", JSONB, nullable=False, server_default="[]"),
    Column("shipments", JSONB, nullable=False, server_default="[]"),
    Column("deliveries", JSONB, nullable=False, server_default="{}"),
    Column("returns", JSONB, nullable=False, server_default="[]"),
    UniqueConstraint("channel", "external_order_id", name="uq_orders_channel_external_order_id"),
)
# Newest first, the order of ListOrders, and the keyset its page tokens continue from.
Index("ix_orders_create_time_id", orders.c.create_time, orders.c.id)
Index("ix_orders_status", orders.c.status)
Index("ix_orders_customer_key", orders.c.customer_key)
Index("ix_orders_merge_group", orders.c.merge_group,
      postgresql_where=orders.c.merge_group.isnot(None))
Index("ix_orders_tags", orders.c.tags, postgresql_using="gin")
Index("ix_orders_skus", orders.c.skus, postgresql_using="gin")
# Substring search (LIKE '%…%'); needs the pg_trgm extension, created by migration 0004.
Index("ix_orders_search_text_trgm", orders.c.search_text, postgresql_using="gin",
      postgresql_ops={"search_text": "gin_trgm_ops"})
# The payment sweep's work list: unpaid orders by due time.
Index("ix_orders_payment_due_time", orders.c.payment_due_time,
      postgresql_where=orders.c.payment_status.in_(["PENDING", "FAILED"]))

order_lines = Table(
    "order_lines",
    metadata,
    Column("order_id", ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True),
    Column("line_id", String(20), primary_key=True),
    Column("external_line_id", String(200), nullable=False),
    Column("sku", String(100), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("unit_price", Numeric, nullable=False),
    # Units reserved per fulfilment node, {"node-1": 2, ...}, as inventory reported them.
    Column("allocated", JSONB, nullable=False, server_default="{}"),
    Column("backordered", Integer, nullable=False, server_default="0"),
    Column("failed", Integer, nullable=False, server_default="0"),
    Column("cancelled", Integer, nullable=False, server_default="0"),
    Column("shipped", Integer, nullable=False, server_default="0"),
    Column("returned", Integer, nullable=False, server_default="0"),
    CheckConstraint("quantity > 0", name="quantity_positive"),
    CheckConstraint("unit_price >= 0", name="unit_price_not_negative"),
    CheckConstraint("cancelled + shipped <= quantity", name="units_accounted"),
    CheckConstraint("returned <= shipped", name="returned_shipped"),
)

order_timeline = Table(
    "order_timeline",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("order_id", ForeignKey("orders.id", ondelete="CASCADE"), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("detail", JSONB, nullable=False),
    # Who or what: a user, "system", or the service whose event it was.
    Column("actor", Text, nullable=False, server_default="system"),
)
Index("ix_order_timeline_order_id_at", order_timeline.c.order_id, order_timeline.c.at)

# What capture needs of inventory's product master, kept from ProductChanged events.
order_products = Table(
    "order_products",
    metadata,
    Column("sku", String(100), primary_key=True),
    Column("minimum_order_quantity", Integer, nullable=False),
    Column("weight_grams", BigInteger, nullable=False),
    Column("deleted", Boolean, nullable=False),
    # The product's change time: an older ProductChanged arriving late changes nothing.
    Column("change_time", DateTime(timezone=True), nullable=False),
)

# Idempotency keys of commands on existing orders (CancelOrder, HoldOrder).
order_commands = Table(
    "order_commands",
    metadata,
    Column("request_id", String(100), primary_key=True),
    Column("order_id", ForeignKey("orders.id", ondelete="CASCADE"), nullable=False),
    Column("method", String(40), nullable=False),
    Column("create_time", DateTime(timezone=True), nullable=False,
           server_default=text("now()")),
)


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
    # The delivery promised (on time in full), and when it was last changed: of two
    # changes the later holds, in whatever order they arrive.
    Column("promise_time", DateTime(timezone=True)),
    Column("promise_change_time", DateTime(timezone=True)),
    # Refreshed from the rows below after every event of the order (``store.refresh``):
    # recomputed from facts that only accumulate, so the order events arrive in is moot.
    Column("units_shipped", Integer, nullable=False, server_default="0"),
    Column("packages", Integer, nullable=False, server_default="0"),
    Column("ship_nodes", Integer, nullable=False, server_default="0"),
    # Set once every unit not cancelled shipped: the end of the order-to-ship time.
    Column("shipped_time", DateTime(timezone=True)),
    Column("units_returned", Integer, nullable=False, server_default="0"),
    Column("amount_refunded", Numeric, nullable=False, server_default="0"),
    Column("units_pack_verified", Integer, nullable=False, server_default="0"),
    Column("units_pack_refused", Integer, nullable=False, server_default="0"),
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
    Column("reason", Text, nullable=False, server_default=""),
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
    Column("node_id", Text, nullable=False, server_default=""),
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

# Refunds recorded on an order (its OrderRefunded), once per refund.
kpi_refunds = Table(
    "kpi_refunds",
    metadata,
    Column("order_name", ForeignKey("kpi_orders.order_name", ondelete="CASCADE"),
           primary_key=True),
    Column("refund", Text, primary_key=True),
    Column("currency_code", String(3), nullable=False),
    Column("amount", Numeric, nullable=False),
    Column("refund_time", DateTime(timezone=True), nullable=False),
)

# The packing station's scans per parcel and order line (fulfilment's PackingVerified).
kpi_pack_checks = Table(
    "kpi_pack_checks",
    metadata,
    Column("order_name", ForeignKey("kpi_orders.order_name", ondelete="CASCADE"),
           primary_key=True),
    Column("package", Text, primary_key=True),
    Column("line_id", String(20), primary_key=True),
    Column("node_id", Text, nullable=False),
    Column("units_verified", Integer, nullable=False),
    Column("units_refused", Integer, nullable=False),
    Column("verify_time", DateTime(timezone=True), nullable=False),
)

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
