"""The inventory database: products, nodes, stock per node, reservations, backorders and an
append-only stock ledger, next to the outbox, inbox and dead letters; and the one way every
capability's events reach the outbox."""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf.message import Message
from oms_platform import outbox
from oms_platform.db import create_metadata
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Numeric,
    String,
    Table,
    Text,
    Time,
    UniqueConstraint,
    false,
    func,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.asyncio import AsyncSession

SOURCE = "/oms/inventory"

metadata = create_metadata()

products = Table(
    "products",
    metadata,
    Column("sku", String(64), primary_key=True),
    Column("title", Text, nullable=False),
    Column("gtin", String(14), nullable=False),
    Column("weight_grams", BigInteger),
    Column("length_mm", Integer),
    Column("width_mm", Integer),
    Column("height_mm", Integer),
    Column("request_id", String(128), unique=True),
    Column("create_time", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("fragile", Boolean, nullable=False, server_default=false()),
    Column("hazardous", Boolean, nullable=False, server_default=false()),
    Column("minimum_order_quantity", Integer, nullable=False, server_default="1"),
    Column("returnable", Boolean, nullable=False, server_default=true()),
    # ALLOW, DENY or ALLOW_UP_TO_LIMIT (the proto enum's names without their prefix).
    Column("backorder_policy", String(32), nullable=False, server_default="DENY"),
    Column("backorder_limit", BigInteger, nullable=False, server_default="0"),
    # 0: computed from sales velocity * lead time + safety stock.
    Column("reorder_point", BigInteger, nullable=False, server_default="0"),
    Column("supplier_lead_time_days", Integer, nullable=False, server_default="0"),
    Column("update_time", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("deleted", Boolean, nullable=False, server_default=false()),
    CheckConstraint("minimum_order_quantity >= 1", name="minimum_order_quantity_positive"),
    CheckConstraint("backorder_limit >= 0", name="backorder_limit_not_negative"),
    CheckConstraint("reorder_point >= 0", name="reorder_point_not_negative"),
    CheckConstraint("supplier_lead_time_days >= 0", name="lead_time_not_negative"),
)

fulfilment_nodes = Table(
    "fulfilment_nodes",
    metadata,
    Column("node_id", String(63), primary_key=True),
    Column("display_name", Text, nullable=False),
    Column("node_type", String(40), nullable=False),
    Column("address", JSONB, nullable=False),
    Column("latitude", Double, nullable=False),
    Column("longitude", Double, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("request_id", String(128), unique=True),
    Column("create_time", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Region codes ("US", "US-CA") the node ships to; empty means everywhere.
    Column("service_regions", ARRAY(String(16)), nullable=False, server_default="{}"),
    # The latest local time an order can be released and still ship that day.
    Column("cutoff_time", Time),
    Column("time_zone", String(64), nullable=False, server_default="UTC"),
    # What one shipment from this node costs, for the lowest-cost routing strategy; both NULL
    # when unknown (migration 0005).
    Column("shipment_cost", Numeric(18, 6)),
    Column("shipment_cost_currency", String(3)),
    Column("update_time", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("(shipment_cost IS NULL) = (shipment_cost_currency IS NULL)",
                    name="shipment_cost_has_currency"),
)

# Storage bins of a node, by zone; `walk_sequence` sorts them in walking order for picking.
node_bins = Table(
    "node_bins",
    metadata,
    Column("node_id", ForeignKey("fulfilment_nodes.node_id"), primary_key=True),
    Column("bin_code", String(64), primary_key=True),
    Column("zone", String(64), nullable=False),
    Column("walk_sequence", Integer, nullable=False),
)

stock_levels = Table(
    "stock_levels",
    metadata,
    Column("node_id", ForeignKey("fulfilment_nodes.node_id"), primary_key=True),
    Column("sku", ForeignKey("products.sku"), primary_key=True),
    Column("on_hand", BigInteger, nullable=False),
    Column("reserved", BigInteger, nullable=False),
    # Units kept back from selling; available = on_hand - reserved - safety_stock.
    Column("safety_stock", BigInteger, nullable=False, server_default="0"),
    CheckConstraint("reserved >= 0 AND on_hand >= reserved", name="reserved_within_on_hand"),
    CheckConstraint("safety_stock >= 0", name="safety_stock_not_negative"),
)

# Units held back from one sales channel's available-to-sell, per SKU (or for every SKU
# with sku = '*').
channel_buffers = Table(
    "channel_buffers",
    metadata,
    Column("channel", String(100), primary_key=True),
    Column("sku", String(64), primary_key=True),
    Column("buffer", BigInteger, nullable=False),
    CheckConstraint("buffer >= 0", name="buffer_not_negative"),
)

reservations = Table(
    "reservations",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("order_name", String(200), nullable=False),
    Column("line_id", String(64), nullable=False),
    Column("node_id", ForeignKey("fulfilment_nodes.node_id"), nullable=False),
    Column("sku", ForeignKey("products.sku"), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # A line may be split across nodes: one row per node it is reserved at.
    UniqueConstraint("order_name", "line_id", "node_id"),
    CheckConstraint("quantity > 0", name="quantity_positive"),
)

backorders = Table(
    "backorders",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("order_name", String(200), nullable=False),
    Column("line_id", String(64), nullable=False),
    # Not a foreign key: an order may name a SKU this service does not know (yet).
    Column("sku", String(64), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The queue's order: priority (express) orders first, then by capture time, then arrival.
    Column("priority", Boolean, nullable=False, server_default=false()),
    Column("capture_time", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The node whose bin came up short of this line: the line is not served from there until
    # a count of the SKU there settles what the short left in doubt (``CountStock``).
    Column("shorted_node_id", String(63), nullable=True),
    UniqueConstraint("order_name", "line_id"),
    CheckConstraint("quantity > 0", name="quantity_positive"),
)
Index("ix_backorders_queue", backorders.c.sku, backorders.c.priority.desc(),
      backorders.c.capture_time, backorders.c.id)
Index("ix_backorders_order_name", backorders.c.order_name)

stock_ledger = Table(
    "stock_ledger",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("node_id", ForeignKey("fulfilment_nodes.node_id"), nullable=False),
    Column("sku", ForeignKey("products.sku"), nullable=False),
    # RECEIPT, CORRECTION, CYCLE_COUNT, RESERVATION, RELEASE, SHIPMENT, RETURN_RESTOCK,
    # DRIFT_REPAIR: see the service's README.
    Column("kind", String(32), nullable=False),
    Column("on_hand_delta", BigInteger, nullable=False),
    Column("reserved_delta", BigInteger, nullable=False),
    Column("reference", Text),
    # The idempotency key of an adjustment: a retry finds it here and changes nothing.
    Column("request_id", String(128), unique=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
Index("ix_stock_ledger_node_id_sku", stock_ledger.c.node_id, stock_ledger.c.sku)

# --- Allocation (helper I2): the orders inventory has taken, for backorders and expiry ---

# One row per order seen: where it ships (to serve its backorders later), its place in the
# queues, when its reservations expire unless paid, and what expired (re-allocated on payment).
order_allocations = Table(
    "order_allocations",
    metadata,
    Column("order_name", String(200), primary_key=True),
    Column("priority", Boolean, nullable=False, server_default=false()),
    Column("capture_time", DateTime(timezone=True), nullable=False),
    Column("latitude", Double),
    Column("longitude", Double),
    Column("region_code", String(16), nullable=False, server_default=""),
    Column("administrative_area", String(64), nullable=False, server_default=""),
    Column("expire_time", DateTime(timezone=True)),
    # [{"line_id", "sku", "quantity"}]: units released by expiry, allocated again when paid.
    Column("expired_lines", JSONB, nullable=False, server_default="[]"),
    Column("paid", Boolean, nullable=False, server_default=false()),
    # Cancelled before inventory saw it: a late OrderCreated allocates nothing.
    Column("cancelled", Boolean, nullable=False, server_default=false()),
    Column("create_time", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
Index("ix_order_allocations_expire_time", order_allocations.c.expire_time,
      postgresql_where=order_allocations.c.expire_time.is_not(None))

# --- Replenishment (migration 0004) ---
# The sales velocity cached per level (refreshed when older than the refresh interval) and
# whether the level is at its reorder point: ReorderPointReached fires when this flips on.
stock_levels.append_column(
    Column("daily_velocity", Numeric(18, 4), nullable=False, server_default="0"))
stock_levels.append_column(Column("velocity_time", DateTime(timezone=True)))
stock_levels.append_column(
    Column("at_reorder_point", Boolean, nullable=False, server_default=false()))
Index("ix_stock_levels_at_reorder_point", stock_levels.c.node_id, stock_levels.c.sku,
      postgresql_where=stock_levels.c.at_reorder_point)


# --- Count tasks (migration 0008) ---
# A bin to count, opened when a picker finds it short of a SKU; a CountStock of the SKU at the
# node closes every open task of it there (close_time). One open task per (node, bin, SKU):
# a second short pick of the same bin before the count adds nothing to count.
count_tasks = Table(
    "count_tasks",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("node_id", ForeignKey("fulfilment_nodes.node_id"), nullable=False),
    Column("bin_code", String(64), nullable=False),
    Column("sku", ForeignKey("products.sku"), nullable=False),
    Column("reason", String(40), nullable=False),
    Column("reference", Text, nullable=False, server_default=""),
    Column("create_time", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("close_time", DateTime(timezone=True)),
)
Index("ux_count_tasks_open", count_tasks.c.node_id, count_tasks.c.bin_code, count_tasks.c.sku,
      unique=True, postgresql_where=count_tasks.c.close_time.is_(None))
Index("ix_count_tasks_node_id_id", count_tasks.c.node_id, count_tasks.c.id)


async def add_events(session: AsyncSession, messages: Sequence[tuple[Message, str]]) -> None:
    """Adds events, each with its aggregate id, to the outbox in one statement, in the
    caller's transaction."""
    await outbox.add_events(session, metadata.tables["outbox"],
                            [(message, aggregate_id, None) for message, aggregate_id in messages],
                            source=SOURCE)
