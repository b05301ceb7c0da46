"""Labels and manifests: the labels bought (idempotent by request_id, a tracking number unique
per carrier, the parcel's tracking status and last scan), the closed days, and the sequence
tracking numbers are drawn from.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(sa.schema.CreateSequence(sa.Sequence("tracking_serials", start=1)))
    op.create_table(
        "manifests",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("carrier", sa.String(63), nullable=False),
        sa.Column("node_id", sa.String(63), nullable=False),
        sa.Column("ship_date", sa.Date(), nullable=False),
        sa.Column("parcel_count", sa.Integer(), nullable=False),
        sa.Column("total_weight_grams", sa.BigInteger(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="pk_manifests"),
        sa.UniqueConstraint("request_id", name="uq_manifests_request_id"),
        sa.CheckConstraint("parcel_count >= 0", name="ck_manifests_parcel_count_not_negative"),
    )
    op.create_index("ix_manifests_closed_day", "manifests", ["carrier", "node_id", "ship_date"])
    op.create_index("ix_manifests_create_time_id", "manifests",
                    [sa.text("create_time DESC"), sa.text("id DESC")])

    op.create_table(
        "labels",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("package", sa.String(300), nullable=False),
        sa.Column("orders", postgresql.ARRAY(sa.String(200)), nullable=False,
                  server_default="{}"),
        sa.Column("node_id", sa.String(63), nullable=False),
        sa.Column("carrier", sa.String(63), nullable=False),
        sa.Column("service_code", sa.String(100), nullable=False),
        sa.Column("service_name", sa.Text(), nullable=False, server_default=""),
        sa.Column("service_level", sa.String(32), nullable=False,
                  server_default="UNSPECIFIED"),
        sa.Column("tracking_number", sa.String(64), nullable=False),
        sa.Column("tracking_url", sa.Text(), nullable=False, server_default=""),
        sa.Column("cost", sa.Numeric(18, 6), nullable=False),
        sa.Column("currency_code", sa.String(3), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("ship_date", sa.Date(), nullable=False),
        sa.Column("estimated_delivery_date", sa.Date()),
        sa.Column("manifest_id", postgresql.UUID(as_uuid=True)),
        sa.Column("ship_from", postgresql.JSONB(), nullable=False),
        sa.Column("destination", postgresql.JSONB(), nullable=False),
        sa.Column("residential", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("weight_grams", sa.BigInteger(), nullable=False),
        sa.Column("length_mm", sa.Integer()),
        sa.Column("width_mm", sa.Integer()),
        sa.Column("height_mm", sa.Integer()),
        sa.Column("declared_value", sa.Numeric(18, 6)),
        sa.Column("declared_value_currency", sa.String(3)),
        sa.Column("tracking_status", sa.String(32), nullable=False,
                  server_default="PRE_TRANSIT"),
        sa.Column("last_event_time", sa.DateTime(timezone=True)),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("void_time", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("id", name="pk_labels"),
        sa.ForeignKeyConstraint(["manifest_id"], ["manifests.id"],
                                name="fk_labels_manifest_id_manifests"),
        sa.UniqueConstraint("request_id", name="uq_labels_request_id"),
        sa.UniqueConstraint("carrier", "tracking_number", name="uq_labels_carrier"),
        sa.CheckConstraint("state IN ('PURCHASED', 'VOIDED', 'MANIFESTED')",
                           name="ck_labels_state_known"),
        sa.CheckConstraint("(state = 'MANIFESTED') = (manifest_id IS NOT NULL)",
                           name="ck_labels_manifested_has_manifest"),
        sa.CheckConstraint("weight_grams > 0", name="ck_labels_weight_positive"),
        sa.CheckConstraint("(declared_value IS NULL) = (declared_value_currency IS NULL)",
                           name="ck_labels_declared_value_has_currency"),
    )
    op.create_index("ix_labels_create_time_id", "labels",
                    [sa.text("create_time DESC"), sa.text("id DESC")])
    op.create_index("ix_labels_open", "labels", ["carrier", "node_id", "ship_date"],
                    postgresql_where=sa.text("state = 'PURCHASED'"))
    op.create_index("ix_labels_package", "labels", ["package"])
    op.create_index("ix_labels_manifest_id", "labels", ["manifest_id"])
    op.create_index("ix_labels_last_event_time", "labels", ["last_event_time"])


def downgrade() -> None:
    op.drop_table("labels")
    op.drop_table("manifests")
    op.execute(sa.schema.DropSequence(sa.Sequence("tracking_serials")))
