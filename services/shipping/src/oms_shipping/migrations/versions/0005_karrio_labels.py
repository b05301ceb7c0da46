"""Labels bought from karrio carriers: the carrier's document, format and shipment id on the
label, and the claims of purchases at a carrier's API under way or uncertain.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("labels", sa.Column("carrier_label", sa.LargeBinary()))
    op.add_column("labels", sa.Column("carrier_label_format", sa.String(8)))
    op.add_column("labels", sa.Column("carrier_shipment_id", sa.String(128)))
    op.create_check_constraint(op.f("ck_labels_carrier_label_has_format"), "labels",
                               "(carrier_label IS NULL) = (carrier_label_format IS NULL)")
    op.create_table(
        "karrio_label_claims",
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("package", sa.String(300), nullable=False),
        sa.Column("node_id", sa.String(63), nullable=False),
        sa.Column("carrier", sa.String(63), nullable=False),
        sa.Column("service_code", sa.String(100), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False, server_default=""),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("request_id", name="pk_karrio_label_claims"),
        sa.CheckConstraint("state IN ('BUYING', 'UNCERTAIN')",
                           name="ck_karrio_label_claims_state_known"),
    )
    op.create_index("ix_karrio_label_claims_state", "karrio_label_claims",
                    ["state", "create_time"])


def downgrade() -> None:
    op.drop_table("karrio_label_claims")
    op.drop_constraint(op.f("ck_labels_carrier_label_has_format"), "labels", type_="check")
    op.drop_column("labels", "carrier_shipment_id")
    op.drop_column("labels", "carrier_label_format")
    op.drop_column("labels", "carrier_label")
