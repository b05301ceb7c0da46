"""The gateway's database: partners and their API keys, the stored answers of idempotent
requests, the audit log, and the key of its access tokens. No messaging tables: the gateway
publishes no events yet."""

from __future__ import annotations

from oms_platform.db import NAMING_CONVENTION
from sqlalchemy import (
    BigInteger,
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
    func,
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
