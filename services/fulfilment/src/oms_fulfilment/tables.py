"""The fulfilment database: fulfilment orders and their lines, the product replica, slots,
pick lists with their stops and tote allocations, put-backs, next to the outbox, inbox and
dead letters; and the one way every capability's events reach the outbox."""

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
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    String,
    Table,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.ext.asyncio import AsyncSession

SOURCE = "/oms/fulfilment"

metadata = create_metadata()

# What one node ships of one release: one row per (order, node), whatever redelivers it.
fulfilment_orders = Table(
    "fulfilment_orders",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("order_name", String(200), nullable=False),
    Column("node_id", String(100), nullable=False),
    Column("status", String(30), nullable=False),
    Column("priority", Boolean, nullable=False),
    Column("service_level", Integer, nullable=False),
    Column("promised_ship_time", DateTime(timezone=True), nullable=False),
    Column("release_time", DateTime(timezone=True), nullable=False),
    Column("channel", String(200), nullable=False),
    Column("external_order_id", String(200), nullable=False),
    Column("cancel_reason", String(500), nullable=False, server_default=""),
    # From the release, for the label and the packing slip: the Address proto in its JSON
    # mapping (fulfilment reads it back as that message and never queries into it).
    Column("shipping_address", JSONB, nullable=False, server_default="{}"),
    Column("promise_time", DateTime(timezone=True)),
    Column("gift_note", String(2000), nullable=False, server_default=""),
    Column("create_time", DateTime(timezone=True), nullable=False),
    Column("update_time", DateTime(timezone=True), nullable=False),
    # Who ships it (IN_HOUSE, THIRD_PARTY_LOGISTICS, DROPSHIP), fixed at the release; and at
    # a 3PL or supplier the last step it reported (REQUESTED, ACCEPTED, PICKED, PACKED,
    # SHIPPED, SHORT_SHIPPED), which only moves forward.
    Column("mode", String(30), nullable=False, server_default="IN_HOUSE"),
    Column("third_party_progress", String(20), nullable=False, server_default=""),
    UniqueConstraint("order_name", "node_id", name="uq_fulfilment_orders_order_node"),
    # The queue CreatePickList reads: open orders of a node, most urgent first.
    Index("ix_fulfilment_orders_queue", "node_id", "status", "priority", "promised_ship_time"),
)

fulfilment_order_lines = Table(
    "fulfilment_order_lines",
    metadata,
    Column("fulfilment_order_id", UUID(as_uuid=True),
           ForeignKey("fulfilment_orders.id", ondelete="CASCADE"), primary_key=True),
    Column("line_id", String(100), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("order_name", String(200), nullable=False),
    Column("sku", String(100), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("external_line_id", String(200), nullable=False, server_default=""),
    Column("bin_code", String(100)),  # NULL while the SKU has no slot at the node
    # Units put on a pick list not yet confirmed, picked, short, cancelled: facts that only
    # grow, from which the order's status is derived.
    Column("allocated", Integer, nullable=False, server_default="0"),
    Column("picked", Integer, nullable=False, server_default="0"),
    Column("short", Integer, nullable=False, server_default="0"),
    Column("short_reason", String(20)),
    Column("cancelled", Integer, nullable=False, server_default="0"),
    CheckConstraint("quantity > 0", name="quantity_positive"),
)

# Inventory's product master as far as fulfilment needs it, kept from ProductChanged.
fulfilment_products = Table(
    "fulfilment_products",
    metadata,
    Column("sku", String(100), primary_key=True),
    Column("title", String(500), nullable=False),
    Column("gtin", String(50), nullable=False),
    Column("weight_grams", BigInteger, nullable=False),
    Column("length_mm", Integer, nullable=False),
    Column("width_mm", Integer, nullable=False),
    Column("height_mm", Integer, nullable=False),
    Column("fragile", Boolean, nullable=False),
    Column("deleted", Boolean, nullable=False),
    # An older ProductChanged arriving late changes nothing.
    Column("change_time", DateTime(timezone=True), nullable=False),
)

# Where a SKU is stored at a node: fulfilment owns slotting; the bins are inventory's.
slots = Table(
    "slots",
    metadata,
    Column("node_id", String(100), primary_key=True),
    Column("sku", String(100), primary_key=True),
    Column("bin_code", String(100), nullable=False),
    Column("update_time", DateTime(timezone=True), nullable=False),
)

pick_lists = Table(
    "pick_lists",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("node_id", String(100), nullable=False),
    Column("strategy", String(20), nullable=False),
    Column("zone", String(100), nullable=False),
    Column("fulfilment_orders", ARRAY(UUID(as_uuid=True)), nullable=False),
    Column("units", Integer, nullable=False),
    Column("weight_grams", BigInteger, nullable=False),
    Column("request_id", String(200)),
    Column("create_time", DateTime(timezone=True), nullable=False),
    Column("complete_time", DateTime(timezone=True)),
    Index("ix_pick_lists_node_time", "node_id", "create_time"),
    Index("ix_pick_lists_request", "request_id"),
)

# A CreatePickList request id, taken in the transaction that builds its lists: a retry finds
# it and returns those lists; a concurrent twin waits on the key and then finds it.
pick_requests = Table(
    "pick_requests",
    metadata,
    Column("request_id", String(200), primary_key=True),
    Column("node_id", String(100), nullable=False),
    Column("create_time", DateTime(timezone=True), nullable=False),
)

pick_stops = Table(
    "pick_stops",
    metadata,
    Column("pick_list_id", UUID(as_uuid=True),
           ForeignKey("pick_lists.id", ondelete="CASCADE"), primary_key=True),
    Column("sequence", Integer, primary_key=True),
    Column("bin_code", String(100), nullable=False),
    Column("zone", String(100), nullable=False),
    Column("sku", String(100), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("confirmed", Boolean, nullable=False, server_default="false"),
    Column("picked", Integer, nullable=False, server_default="0"),
    Column("short_reason", String(20)),
    Column("confirm_time", DateTime(timezone=True)),
)

# Which order line's units a stop takes, and the tote they go to.
pick_allocations = Table(
    "pick_allocations",
    metadata,
    Column("pick_list_id", UUID(as_uuid=True), primary_key=True),
    Column("sequence", Integer, primary_key=True),
    Column("fulfilment_order_id", UUID(as_uuid=True), primary_key=True),
    Column("line_id", String(100), primary_key=True),
    Column("position", Integer, nullable=False),  # urgency order within the stop
    Column("tote", Integer, nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("picked", Integer, nullable=False, server_default="0"),
    Column("short", Integer, nullable=False, server_default="0"),
    ForeignKeyConstraint(["pick_list_id", "sequence"],
                         ["pick_stops.pick_list_id", "pick_stops.sequence"], ondelete="CASCADE"),
    Index("ix_pick_allocations_order", "fulfilment_order_id"),
)

# Units picked for an order then cancelled: a task to put them back in their bin.
put_backs = Table(
    "put_backs",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("fulfilment_order_id", UUID(as_uuid=True),
           ForeignKey("fulfilment_orders.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("line_id", String(100), nullable=False),
    Column("node_id", String(100), nullable=False),
    Column("sku", String(100), nullable=False),
    Column("bin_code", String(100), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("create_time", DateTime(timezone=True), nullable=False),
    Column("confirm_time", DateTime(timezone=True)),  # NULL until the units are back
    # The put-away queue of a node: its unconfirmed put-backs, oldest first.
    Index("ix_put_backs_node", "node_id", "id"),
)

# A progress report of a 3PL or a dropship supplier, by its request id (unique per node),
# taken in the transaction that applies it: a retry finds it and changes nothing.
third_party_reports = Table(
    "third_party_reports",
    metadata,
    Column("node_id", String(100), primary_key=True),
    Column("request_id", String(200), primary_key=True),
    Column("fulfilment_order_id", UUID(as_uuid=True),
           ForeignKey("fulfilment_orders.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("progress", String(20), nullable=False),
    Column("report_time", DateTime(timezone=True), nullable=False),
    Column("create_time", DateTime(timezone=True), nullable=False),
)


# One carton of a fulfilment order, from StartPacking to the carrier.
packages = Table(
    "packages",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("fulfilment_order_id", UUID(as_uuid=True),
           ForeignKey("fulfilment_orders.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("position", Integer, nullable=False),
    Column("node_id", String(100), nullable=False),
    Column("status", String(20), nullable=False),
    Column("box_code", String(100), nullable=False),
    Column("length_mm", Integer, nullable=False),
    Column("width_mm", Integer, nullable=False),
    Column("height_mm", Integer, nullable=False),
    Column("weight_grams", BigInteger, nullable=False),
    Column("station", String(100), nullable=False, server_default=""),
    # Refused scans by reason (WRONG_SKU, EXTRA_UNIT, UNREADABLE): misreads belong to no line.
    Column("refusals", JSONB, nullable=False, server_default="{}"),
    Column("seal_time", DateTime(timezone=True)),
    Column("carrier", String(100), nullable=False, server_default=""),
    Column("carrier_service", String(100), nullable=False, server_default=""),
    Column("tracking_number", String(100), nullable=False, server_default=""),
    Column("tracking_url", String(1000), nullable=False, server_default=""),
    Column("label", String(200), nullable=False, server_default=""),
    Column("ship_time", DateTime(timezone=True)),
    Column("hand_off_error", String(1000), nullable=False, server_default=""),
    # Cancelled after a label purchase was tried: shipping's label (if it sold one) is still
    # to void; the void sweep clears it.
    Column("void_pending", Boolean, nullable=False, server_default="false"),
    Column("void_time", DateTime(timezone=True)),
    Column("create_time", DateTime(timezone=True), nullable=False),
    Column("update_time", DateTime(timezone=True), nullable=False),
    UniqueConstraint("fulfilment_order_id", "position", name="uq_packages_order_position"),
    Index("ix_packages_node_time", "node_id", "create_time"),
    Index("ix_packages_void_pending", "id", postgresql_where="void_pending"),
)

package_lines = Table(
    "package_lines",
    metadata,
    Column("package_id", UUID(as_uuid=True),
           ForeignKey("packages.id", ondelete="CASCADE"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("order_name", String(200), nullable=False),
    Column("line_id", String(100), nullable=False),
    Column("sku", String(100), nullable=False),
    Column("gtin", String(50), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("verified", Integer, nullable=False, server_default="0"),
    Column("refused", Integer, nullable=False, server_default="0"),
    CheckConstraint("quantity > 0", name="quantity_positive"),
    CheckConstraint("verified BETWEEN 0 AND quantity", name="verified_within_quantity"),
)


async def add_events(session: AsyncSession,
                     messages: Sequence[tuple[Message, str, str | None]]) -> None:
    """Adds events, each with its aggregate id and partition (the node, for events meant for
    one), to the outbox in one statement, in the caller's transaction."""
    await outbox.add_events(session, metadata.tables["outbox"], messages, source=SOURCE)
