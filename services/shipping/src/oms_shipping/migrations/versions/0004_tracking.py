"""Tracking: the carrier events recorded against each label, one row per (carrier, tracking
number, event time, code).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tracking_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("label_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("carrier", sa.String(63), nullable=False),
        sa.Column("tracking_number", sa.String(64), nullable=False),
        sa.Column("event_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("carrier_code", sa.String(64), nullable=False, server_default=""),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("location", sa.String(200), nullable=False, server_default=""),
        sa.Column("description", sa.String(500), nullable=False, server_default=""),
        sa.Column("swept", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="pk_tracking_events"),
        sa.ForeignKeyConstraint(["label_id"], ["labels.id"],
                                name="fk_tracking_events_label_id_labels"),
        sa.UniqueConstraint("carrier", "tracking_number", "event_time", "code",
                            name="uq_tracking_events_carrier"),
    )
    op.create_index("ix_tracking_events_label_id", "tracking_events",
                    ["label_id", "event_time"])


def downgrade() -> None:
    op.drop_table("tracking_events")
