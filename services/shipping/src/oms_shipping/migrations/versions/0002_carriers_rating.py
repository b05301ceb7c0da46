"""Carriers and their services, origins, rate cards, shipping rules, and the rating version
every change to them bumps.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RATED_TABLES = ("carriers", "carrier_services", "origins", "rate_cards", "shipping_rules")


def _times() -> list[sa.Column]:
    return [sa.Column("create_time", sa.DateTime(timezone=True), nullable=False,
                      server_default=sa.func.now())]


def upgrade() -> None:
    op.create_table(
        "carriers",
        sa.Column("carrier_id", sa.String(63), primary_key=True),
        sa.Column("display_name", sa.Text(), nullable=False, server_default=""),
        sa.Column("mode", sa.SmallInteger(), nullable=False),
        sa.Column("karrio_carrier", sa.String(63), nullable=False, server_default=""),
        sa.Column("tracking_scheme", sa.SmallInteger(), nullable=False, server_default="0"),
        sa.Column("tracking_url_template", sa.Text(), nullable=False, server_default=""),
        sa.Column("services", postgresql.JSONB(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("request_id", sa.String(128), unique=True),
        *_times(),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
    )
    op.create_table(
        "carrier_services",
        sa.Column("code", sa.String(100), primary_key=True),
        sa.Column("carrier_id", sa.String(63),
                  sa.ForeignKey("carriers.carrier_id", ondelete="CASCADE"), nullable=False),
    )
    op.create_index("ix_carrier_services_carrier_id", "carrier_services", ["carrier_id"])
    op.create_table(
        "origins",
        sa.Column("node_id", sa.String(63), primary_key=True),
        sa.Column("address", postgresql.JSONB(), nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("cutoff_time", sa.Time()),
        sa.Column("carriers", postgresql.ARRAY(sa.String(63)), nullable=False,
                  server_default="{}"),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
    )
    op.create_table(
        "rate_cards",
        sa.Column("rate_card_id", sa.String(100), primary_key=True),
        sa.Column("service_code", sa.String(100), nullable=False),
        sa.Column("carrier_id", sa.String(63), nullable=False),
        sa.Column("currency_code", sa.String(3), nullable=False),
        sa.Column("body", postgresql.JSONB(), nullable=False),
        sa.Column("request_id", sa.String(128), unique=True),
        *_times(),
    )
    op.create_index("ix_rate_cards_service_code", "rate_cards", ["service_code"])
    op.create_index("ix_rate_cards_carrier_id", "rate_cards", ["carrier_id"])
    op.create_table(
        "shipping_rules",
        sa.Column("rule_id", sa.String(36), primary_key=True),
        sa.Column("display_name", sa.Text(), nullable=False, server_default=""),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("body", postgresql.JSONB(), nullable=False),
        sa.Column("request_id", sa.String(128), unique=True),
        *_times(),
    )
    op.create_table(
        "rating_version",
        sa.Column("id", sa.SmallInteger(), primary_key=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
    )
    op.execute("INSERT INTO rating_version (id, version) VALUES (1, 0)")
    # A trigger rather than each writer remembering: whatever changes what the rate shop
    # reads (an API call, a migration, an operator's SQL) moves the version its caches check.
    op.execute("""
        CREATE FUNCTION bump_rating_version() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN UPDATE rating_version SET version = version + 1 WHERE id = 1; RETURN NULL; END $$
    """)
    for table in RATED_TABLES:
        op.execute(f"CREATE TRIGGER {table}_bump_rating_version AFTER INSERT OR UPDATE OR "
                   f"DELETE OR TRUNCATE ON {table} FOR EACH STATEMENT "
                   "EXECUTE FUNCTION bump_rating_version()")


def downgrade() -> None:
    for table in RATED_TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_bump_rating_version ON {table}")
    op.execute("DROP FUNCTION IF EXISTS bump_rating_version()")
    for table in ("rating_version", "shipping_rules", "rate_cards", "origins",
                  "carrier_services", "carriers"):
        op.drop_table(table)
