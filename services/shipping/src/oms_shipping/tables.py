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
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    SmallInteger,
    String,
    Table,
    Text,
    Time,
    UniqueConstraint,
    false,
    func,
)
from sqlalchemy import Sequence as DbSequence
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
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


# --- Labels and manifests (labels helper) ---

# Tracking numbers are drawn from one sequence shared by every carrier, so two labels never
# get the same serial; each carrier's scheme turns the serial into its own format.
tracking_serials = DbSequence("tracking_serials", metadata=metadata, start=1)

# One row per bought label. The row is inserted with its request_id in the same transaction
# as the purchase: a retry (even a concurrent one) meets the unique request_id and returns
# the first label, so a label is never bought twice.
labels = Table(
    "labels",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("request_id", String(128), nullable=False, unique=True),
    # "fulfilmentOrders/{id}/packages/{id}", as fulfilment names it.
    Column("package", String(300), nullable=False),
    # The orders ("orders/{id}") with lines in the package.
    Column("orders", ARRAY(String(200)), nullable=False, server_default="{}"),
    Column("node_id", String(63), nullable=False),
    Column("carrier", String(63), nullable=False),
    Column("service_code", String(100), nullable=False),
    # The service's name and level at purchase, printed on the label.
    Column("service_name", Text, nullable=False, server_default=""),
    Column("service_level", String(32), nullable=False, server_default="UNSPECIFIED"),
    Column("tracking_number", String(64), nullable=False),
    Column("tracking_url", Text, nullable=False, server_default=""),
    Column("cost", Numeric(18, 6), nullable=False),
    Column("currency_code", String(3), nullable=False),
    # PURCHASED, VOIDED or MANIFESTED (the proto enum's names without their prefix).
    Column("state", String(16), nullable=False),
    # The day it is handed over (the origin's local date) and the day it should arrive.
    Column("ship_date", Date, nullable=False),
    Column("estimated_delivery_date", Date),
    Column("manifest_id", ForeignKey("manifests.id")),
    # Snapshots at purchase of where it goes from and to (oms.common.v1.Address as JSON), so
    # a reprinted label is the one bought even after the origin moves.
    Column("ship_from", JSONB, nullable=False),
    Column("destination", JSONB, nullable=False),
    Column("residential", Boolean, nullable=False, server_default=false()),
    Column("weight_grams", BigInteger, nullable=False),
    Column("length_mm", Integer),
    Column("width_mm", Integer),
    Column("height_mm", Integer),
    Column("declared_value", Numeric(18, 6)),
    Column("declared_value_currency", String(3)),
    # Kept by tracking: the parcel's normalised status (TrackingStatus without its prefix;
    # a label made and not yet scanned is PRE_TRANSIT) and when its last scan happened.
    Column("tracking_status", String(32), nullable=False, server_default="PRE_TRANSIT"),
    Column("last_event_time", DateTime(timezone=True)),
    Column("create_time", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("update_time", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("void_time", DateTime(timezone=True)),
    # A label bought from a karrio carrier: its document as the carrier gave it (PDF or ZPL),
    # and what the carrier voids it by. NULL for table-rate labels, printed here on demand.
    Column("carrier_label", LargeBinary),
    Column("carrier_label_format", String(8)),
    Column("carrier_shipment_id", String(128)),
    UniqueConstraint("carrier", "tracking_number"),
    CheckConstraint("state IN ('PURCHASED', 'VOIDED', 'MANIFESTED')", name="state_known"),
    CheckConstraint("(state = 'MANIFESTED') = (manifest_id IS NOT NULL)",
                    name="manifested_has_manifest"),
    CheckConstraint("weight_grams > 0", name="weight_positive"),
    CheckConstraint("(declared_value IS NULL) = (declared_value_currency IS NULL)",
                    name="declared_value_has_currency"),
    CheckConstraint("(carrier_label IS NULL) = (carrier_label_format IS NULL)",
                    name="carrier_label_has_format"),
)
# Newest first, for ListLabels and its page tokens.
Index("ix_labels_create_time_id", labels.c.create_time.desc(), labels.c.id.desc())
# The open labels of a carrier at a node, for closing its day.
Index("ix_labels_open", labels.c.carrier, labels.c.node_id, labels.c.ship_date,
      postgresql_where=labels.c.state == "PURCHASED")
Index("ix_labels_package", labels.c.package)
Index("ix_labels_manifest_id", labels.c.manifest_id)
# The tracking sweep looks for parcels in flight whose last scan is old.
Index("ix_labels_last_event_time", labels.c.last_event_time)

# A closed day of one carrier at one node: its labels point at it (labels.manifest_id).
manifests = Table(
    "manifests",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("request_id", String(128), nullable=False, unique=True),
    Column("carrier", String(63), nullable=False),
    Column("node_id", String(63), nullable=False),
    # The origin's local date it closes; labels bought afterwards for that day ship the next
    # collection day.
    Column("ship_date", Date, nullable=False),
    Column("parcel_count", Integer, nullable=False),
    Column("total_weight_grams", BigInteger, nullable=False),
    Column("create_time", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("parcel_count >= 0", name="parcel_count_not_negative"),
)
Index("ix_manifests_closed_day", manifests.c.carrier, manifests.c.node_id, manifests.c.ship_date)
Index("ix_manifests_create_time_id", manifests.c.create_time.desc(), manifests.c.id.desc())


# --- Tracking (tracking helper) ---

# Every carrier event recorded against a label, as the carrier sent it and normalised. The
# unique key is what makes an event one: a second copy (a retry, a redelivered webhook, two
# calls racing) meets it and is a no-op. `code` is the carrier's code, or the status name
# when the sender gave only a status; `swept` marks the no-scan sweep's own exceptions, which
# are no sign of life from the carrier.
tracking_events = Table(
    "tracking_events",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("label_id", UUID(as_uuid=True), ForeignKey("labels.id"), nullable=False),
    Column("carrier", String(63), nullable=False),
    Column("tracking_number", String(64), nullable=False),
    Column("event_time", DateTime(timezone=True), nullable=False),
    Column("code", String(64), nullable=False),
    Column("carrier_code", String(64), nullable=False, server_default=""),
    # TrackingStatus without its prefix; UNSPECIFIED when nothing told what it means.
    Column("status", String(32), nullable=False),
    Column("location", String(200), nullable=False, server_default=""),
    Column("description", String(500), nullable=False, server_default=""),
    Column("swept", Boolean, nullable=False, server_default=false()),
    Column("create_time", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("carrier", "tracking_number", "event_time", "code"),
)
# A parcel's journey, read whole when new events arrive and newest first for GetTracking.
Index("ix_tracking_events_label_id", tracking_events.c.label_id, tracking_events.c.event_time)


# --- Labels bought from karrio carriers ---

# A purchase at a carrier's API under way, claimed by its request_id in a transaction of its
# own before the carrier is called (a carrier's label is not idempotent: a second call buys a
# second label). BUYING while the call is out; the claim goes when the label row is written
# (one transaction) or when the carrier certainly bought nothing. UNCERTAIN when the call
# ended in a way that may have bought a label (a timeout after the request left, an answer
# that could not be read): the request is refused until an operator settles it, never bought
# again blindly. A BUYING claim older than the carrier timeout plus a margin is read as
# UNCERTAIN too (the process died mid-call).
karrio_label_claims = Table(
    "karrio_label_claims",
    metadata,
    Column("request_id", String(128), primary_key=True),
    Column("package", String(300), nullable=False),
    Column("node_id", String(63), nullable=False),
    Column("carrier", String(63), nullable=False),
    Column("service_code", String(100), nullable=False),
    Column("state", String(16), nullable=False),
    # What the carrier call ended in, for the operator.
    Column("detail", Text, nullable=False, server_default=""),
    Column("create_time", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("update_time", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("state IN ('BUYING', 'UNCERTAIN')", name="state_known"),
)
Index("ix_karrio_label_claims_state", karrio_label_claims.c.state,
      karrio_label_claims.c.create_time)
