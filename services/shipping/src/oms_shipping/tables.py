"""The shipping database: carriers and their services, origins, rate cards and shipping
rules, next to the outbox, inbox and dead letters; and the one way every capability's events
reach the outbox."""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf.message import Message
from oms_platform import outbox
from oms_platform.db import create_metadata
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    SmallInteger,
    String,
    Table,
    Text,
    Time,
    false,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.asyncio import AsyncSession

SOURCE = "/oms/shipping"

metadata = create_metadata()

# --- Carriers and origins (carriers/) ---

carriers = Table(
    "carriers",
    metadata,
    Column("carrier_id", String(63), primary_key=True),
    Column("display_name", Text, nullable=False, server_default=""),
    Column("mode", SmallInteger, nullable=False),  # oms.shipping.v1.CarrierMode
    Column("karrio_carrier", String(63), nullable=False, server_default=""),
    Column("tracking_scheme", SmallInteger, nullable=False, server_default="0"),
    Column("tracking_url_template", Text, nullable=False, server_default=""),
    # The services, replaced whole by an update; `carrier_services` keeps their codes unique
    # across carriers.
    Column("services", JSONB, nullable=False),
    Column("disabled", Boolean, nullable=False, server_default=false()),
    Column("request_id", String(128), unique=True),
    Column("create_time", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("update_time", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

carrier_services = Table(
    "carrier_services",
    metadata,
    Column("code", String(100), primary_key=True),
    Column("carrier_id", String(63), ForeignKey("carriers.carrier_id", ondelete="CASCADE"),
           nullable=False, index=True),
)

origins = Table(
    "origins",
    metadata,
    Column("node_id", String(63), primary_key=True),
    Column("address", JSONB, nullable=False),
    Column("time_zone", String(64), nullable=False),
    Column("cutoff_time", Time),
    Column("carriers", ARRAY(String(63)), nullable=False, server_default="{}"),
    Column("update_time", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# --- Rate cards and shipping rules (rating/) ---

rate_cards = Table(
    "rate_cards",
    metadata,
    Column("rate_card_id", String(100), primary_key=True),
    Column("service_code", String(100), nullable=False, index=True),
    Column("carrier_id", String(63), nullable=False, index=True),
    Column("currency_code", String(3), nullable=False),
    # Zones, breaks and surcharges as one document: a card is always read and written whole.
    Column("body", JSONB, nullable=False),
    Column("request_id", String(128), unique=True),
    Column("create_time", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

shipping_rules = Table(
    "shipping_rules",
    metadata,
    Column("rule_id", String(36), primary_key=True),
    Column("display_name", Text, nullable=False, server_default=""),
    Column("priority", Integer, nullable=False),
    Column("body", JSONB, nullable=False),  # conditions and price
    Column("request_id", String(128), unique=True),
    Column("create_time", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# One row, bumped by a trigger on every change to the four tables above: each replica's rate
# shop keeps them in memory and re-reads them only when this number moved.
rating_version = Table(
    "rating_version",
    metadata,
    Column("id", SmallInteger, primary_key=True),
    Column("version", BigInteger, nullable=False),
)


async def add_events(session: AsyncSession, messages: Sequence[tuple[Message, str]]) -> None:
    """Adds events, each with its aggregate id, to the outbox in one statement, in the
    caller's transaction."""
    await outbox.add_events(session, metadata.tables["outbox"],
                            [(message, aggregate_id, None) for message, aggregate_id in messages],
                            source=SOURCE)
