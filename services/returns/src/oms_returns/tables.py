"""The returns database: return policies, returns (RMAs) and their lines, the units of each
order line already in a return, next to the outbox, inbox and dead letters; and the one way
every capability's events reach the outbox."""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf.message import Message
from oms_platform import outbox
from oms_platform.db import create_metadata
from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Table,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.ext.asyncio import AsyncSession

SOURCE = "/oms/returns"

metadata = create_metadata()

# Return policies: the scope as columns (one policy per scope), the terms as the policy's JSON
# (read whole, never queried into).
return_policies = Table(
    "return_policies",
    metadata,
    Column("id", String(63), primary_key=True),
    Column("request_id", String(200), nullable=False, unique=True),
    Column("channel", String(200), nullable=False),
    Column("sku", String(200), nullable=False),
    Column("category", String(100), nullable=False),
    Column("terms", JSONB, nullable=False),
    Column("create_time", DateTime(timezone=True), nullable=False),
    UniqueConstraint("channel", "sku", "category", name="uq_return_policies_scope"),
)

# A return request (RMA) and what it owes: its state, who pays the shipping, its label.
returns = Table(
    "returns",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("request_id", String(200), nullable=False),
    Column("order_name", String(200), nullable=False),
    Column("channel", String(200), nullable=False),
    Column("state", String(20), nullable=False),
    Column("note", String(2000), nullable=False),
    Column("outcome", String(20), nullable=False),
    Column("review_reasons", ARRAY(String(500)), nullable=False),
    Column("currency_code", String(3), nullable=False),
    Column("shipping_payer", String(20), nullable=False),
    Column("return_shipping_fee", Numeric(20, 4)),
    # Where the label collects from: the order's shipping address (the Address proto's JSON).
    Column("return_from", JSONB, nullable=False),
    Column("weight_grams", Integer, nullable=False),
    Column("label_name", String(200), nullable=False, server_default=""),
    Column("carrier", String(100), nullable=False, server_default=""),
    Column("tracking_number", String(100), nullable=False, server_default=""),
    Column("tracking_url", String(1000), nullable=False, server_default=""),
    Column("label_error", String(1000), nullable=False, server_default=""),
    Column("reject_reason", String(1000), nullable=False, server_default=""),
    Column("create_time", DateTime(timezone=True), nullable=False),
    Column("update_time", DateTime(timezone=True), nullable=False),
    Column("approve_time", DateTime(timezone=True)),
    UniqueConstraint("request_id", name="uq_returns_request_id"),
    # ListReturns: newest first, by state.
    Index("ix_returns_state_time", "state", "create_time", "id"),
    Index("ix_returns_order", "order_name"),
)

# The units of one order line in a return, with the terms its policy gave them.
return_lines = Table(
    "return_lines",
    metadata,
    Column("return_id", UUID(as_uuid=True), ForeignKey("returns.id", ondelete="CASCADE"),
           primary_key=True),
    Column("line_id", String(100), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("sku", String(200), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("reason", String(30), nullable=False),
    Column("note", String(1000), nullable=False),
    Column("policy_id", String(63), nullable=False),
    Column("unit_price", Numeric(20, 4), nullable=False),
    Column("restocking_fee", Numeric(20, 4), nullable=False),
    Column("keep_it", Boolean, nullable=False),
    Column("conditions", ARRAY(String(30)), nullable=False),
    Column("deliver_time", DateTime(timezone=True), nullable=False),
    CheckConstraint("quantity > 0", name="quantity_positive"),
)

# The units of each order line in a return not rejected, against those delivered: the one
# row every return of the line updates, with a conditional increment, so two returns of one
# line (however concurrent) never claim more units than were delivered.
returned_units = Table(
    "returned_units",
    metadata,
    Column("order_name", String(200), primary_key=True),
    Column("line_id", String(100), primary_key=True),
    Column("delivered", Integer, nullable=False),
    Column("requested", Integer, nullable=False),
    CheckConstraint("requested BETWEEN 0 AND delivered", name="within_delivered"),
)


async def add_events(session: AsyncSession,
                     messages: Sequence[tuple[Message, str, str | None]]) -> None:
    """Adds events, each with its aggregate id and partition (none here), to the outbox in one
    statement, in the caller's transaction."""
    await outbox.add_events(session, metadata.tables["outbox"], messages, source=SOURCE)
