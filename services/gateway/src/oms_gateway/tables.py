"""The gateway's database: partners and their API keys, the stored answers of idempotent
requests, the audit log, the key of its access tokens, and webhooks both ways (the inbound
ids seen, the partners' endpoints, the delivery queue and its log). It consumes events (an
inbox and dead letters, the platform's) and publishes none: no outbox."""

from __future__ import annotations

from oms_platform.db import NAMING_CONVENTION, add_consumer_tables
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
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

metadata = MetaData(naming_convention=NAMING_CONVENTION)

partners = Table(
    "partners",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("kind", String(20), nullable=False),
    # The sales channels whose orders the partner may see and create (a sales channel's own;
    # the channels a payment provider takes payments for).
    Column("channels", ARRAY(String(100)), nullable=False),
    Column("scopes", ARRAY(String(50)), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("revoked_at", DateTime(timezone=True)),
    # The carriers whose shipments a carrier partner reports, the nodes a 3PL runs.
    Column("carriers", ARRAY(String(100)), nullable=False, server_default=text("'{}'")),
    Column("nodes", ARRAY(String(100)), nullable=False, server_default=text("'{}'")),
    CheckConstraint("kind IN ('sales_channel', '3pl', 'carrier', 'payment_provider')",
                    name="kind"),
)

api_keys = Table(
    "api_keys",
    metadata,
    # The public part of the key, sent with it: one indexed lookup finds the row to compare.
    Column("prefix", String(32), primary_key=True),
    Column("partner_id", String(64), ForeignKey("partners.id"), nullable=False),
    Column("key_hash", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Set when the key was rotated: valid until then, so callers can switch over.
    Column("expires_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    Index("ix_api_keys_partner_id", "partner_id"),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("partner_id", String(64), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("fingerprint", LargeBinary, nullable=False),
    # Who holds the key in flight; a takeover after a lapsed lease gets a new one, so the
    # first holder can no longer store or release it.
    Column("lease", UUID(as_uuid=True), nullable=False),
    Column("locked_until", DateTime(timezone=True)),
    Column("status", Integer),
    Column("headers", JSONB),
    Column("body", LargeBinary),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("ix_idempotency_keys_expires_at", "expires_at"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("partner_id", String(64), nullable=False),
    Column("method", String(10), nullable=False),
    Column("path", Text, nullable=False),
    Column("resource_id", Text),
    Column("status", Integer, nullable=False),
    Column("trace_id", String(32)),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_audit_log_partner_id_at", "partner_id", "at"),
)

# The platform's table (oms_platform.db), for the key that signs access tokens.
signing_keys = Table(
    "signing_keys",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("key", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

add_consumer_tables(metadata)

# A partner's secrets for the webhooks it signs (inbound); after a rotation the old one stays
# valid until ``expires_at``, so the partner can switch over.
webhook_secrets = Table(
    "webhook_secrets",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("partner_id", String(64), ForeignKey("partners.id"), nullable=False),
    # Kept as issued: an HMAC key must be had to check a signature (like signing_keys).
    Column("secret", String(100), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True)),
    Index("ix_webhook_secrets_partner_id", "partner_id"),
)

# The ids of inbound webhooks taken, and the answer given, until they expire: a webhook
# posted again is answered the same and changes nothing.
inbound_webhooks = Table(
    "inbound_webhooks",
    metadata,
    Column("partner_id", String(64), primary_key=True),
    Column("webhook_id", String(255), primary_key=True),
    Column("lease", UUID(as_uuid=True), nullable=False),
    Column("locked_until", DateTime(timezone=True)),
    Column("status", Integer),
    Column("body", LargeBinary),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("ix_inbound_webhooks_expires_at", "expires_at"),
)

webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("partner_id", String(64), ForeignKey("partners.id"), nullable=False),
    Column("url", Text, nullable=False),
    Column("event_types", ARRAY(String(50)), nullable=False),
    Column("description", String(500), nullable=False, server_default=""),
    Column("secret", String(100), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_webhook_endpoints_partner_id", "partner_id"),
)

# The delivery queue: one row per (endpoint, event), claimed by workers with SKIP LOCKED and
# a lease, so a gateway that stops mid-delivery loses none; kept as the delivery log until
# the retention sweep.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("endpoint_id", UUID(as_uuid=True),
           ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), nullable=False),
    Column("message_id", String(64), nullable=False),
    Column("event_type", String(50), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("state", String(10), nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("lease", UUID(as_uuid=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("finished_at", DateTime(timezone=True)),
    UniqueConstraint("endpoint_id", "message_id", name="uq_webhook_deliveries_endpoint_id"),
    CheckConstraint("state IN ('pending', 'succeeded', 'failed')", name="state"),
    Index("ix_webhook_deliveries_due", "next_attempt_at",
          postgresql_where=text("state = 'pending'")),
    Index("ix_webhook_deliveries_endpoint_id_created_at", "endpoint_id", "created_at"),
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("delivery_id", UUID(as_uuid=True),
           ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("status_code", Integer, nullable=False),
    Column("error", String(500), nullable=False, server_default=""),
    Column("duration_ms", Integer, nullable=False),
    Column("succeeded", Boolean, nullable=False),
    Index("ix_webhook_attempts_delivery_id", "delivery_id"),
)

# Each order's channel, from OrderCreated (or asked of orders when an event comes first):
# who may hear of an order's later events.
webhook_order_channels = Table(
    "webhook_order_channels",
    metadata,
    Column("order_name", String(100), primary_key=True),
    Column("channel", String(100), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_webhook_order_channels_recorded_at", "recorded_at"),
)
