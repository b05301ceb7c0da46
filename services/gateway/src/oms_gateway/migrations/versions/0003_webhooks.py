"""Webhooks both ways: partners bound to carriers and nodes, their signing secrets, the
inbound webhook ids seen, outbound endpoints, the delivery queue and its attempts, the
orders' channels, and the consumer's inbox and dead letters (the platform's).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from oms_platform.migrations import create_consumer_tables, drop_consumer_tables
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _now() -> sa.TextClause:
    return sa.text("now()")


def _created() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(),
                     nullable=False)


def upgrade() -> None:
    for column in ("carriers", "nodes"):
        op.add_column("partners", sa.Column(column, postgresql.ARRAY(sa.String(100)),
                                            server_default=sa.text("'{}'"), nullable=False))
    create_consumer_tables()
    op.create_table(
        "webhook_secrets",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("partner_id", sa.String(64), nullable=False),
        sa.Column("secret", sa.String(100), nullable=False),
        _created(),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["partner_id"], ["partners.id"],
                                name="fk_webhook_secrets_partner_id_partners"),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_secrets"),
    )
    op.create_index("ix_webhook_secrets_partner_id", "webhook_secrets", ["partner_id"])
    op.create_table(
        "inbound_webhooks",
        sa.Column("partner_id", sa.String(64), nullable=False),
        sa.Column("webhook_id", sa.String(255), nullable=False),
        sa.Column("lease", sa.UUID(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=_now(),
                  nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("partner_id", "webhook_id", name="pk_inbound_webhooks"),
    )
    op.create_index("ix_inbound_webhooks_expires_at", "inbound_webhooks", ["expires_at"])
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("partner_id", sa.String(64), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("event_types", postgresql.ARRAY(sa.String(50)), nullable=False),
        sa.Column("description", sa.String(500), server_default="", nullable=False),
        sa.Column("secret", sa.String(100), nullable=False),
        _created(),
        sa.ForeignKeyConstraint(["partner_id"], ["partners.id"],
                                name="fk_webhook_endpoints_partner_id_partners"),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_endpoints"),
    )
    op.create_index("ix_webhook_endpoints_partner_id", "webhook_endpoints", ["partner_id"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("endpoint_id", sa.UUID(), nullable=False),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(50), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease", sa.UUID(), nullable=True),
        _created(),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("state IN ('pending', 'succeeded', 'failed')",
                           name="ck_webhook_deliveries_state"),
        sa.ForeignKeyConstraint(["endpoint_id"], ["webhook_endpoints.id"], ondelete="CASCADE",
                                name="fk_webhook_deliveries_endpoint_id_webhook_endpoints"),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_deliveries"),
        sa.UniqueConstraint("endpoint_id", "message_id",
                            name="uq_webhook_deliveries_endpoint_id"),
    )
    op.create_index("ix_webhook_deliveries_due", "webhook_deliveries", ["next_attempt_at"],
                    postgresql_where=sa.text("state = 'pending'"))
    op.create_index("ix_webhook_deliveries_endpoint_id_created_at", "webhook_deliveries",
                    ["endpoint_id", "created_at"])
    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("delivery_id", sa.UUID(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(500), server_default="", nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("succeeded", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["delivery_id"], ["webhook_deliveries.id"], ondelete="CASCADE",
                                name="fk_webhook_attempts_delivery_id_webhook_deliveries"),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_attempts"),
    )
    op.create_index("ix_webhook_attempts_delivery_id", "webhook_attempts", ["delivery_id"])
    op.create_table(
        "webhook_order_channels",
        sa.Column("order_name", sa.String(100), nullable=False),
        sa.Column("channel", sa.String(100), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=_now(),
                  nullable=False),
        sa.PrimaryKeyConstraint("order_name", name="pk_webhook_order_channels"),
    )
    op.create_index("ix_webhook_order_channels_recorded_at", "webhook_order_channels",
                    ["recorded_at"])


def downgrade() -> None:
    for table in ("webhook_order_channels", "webhook_attempts", "webhook_deliveries",
                  "webhook_endpoints", "inbound_webhooks", "webhook_secrets"):
        op.drop_table(table)
    drop_consumer_tables()
    op.drop_column("partners", "nodes")
    op.drop_column("partners", "carriers")
