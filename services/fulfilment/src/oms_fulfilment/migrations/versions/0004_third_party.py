"""3PL and dropship hand-off (the fulfilment order's mode and reported progress, the
reports by request id), put-backs confirmed, cancelled packages' labels to void.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("fulfilment_orders", sa.Column(
        "mode", sa.String(length=30), server_default="IN_HOUSE", nullable=False))
    op.add_column("fulfilment_orders", sa.Column(
        "third_party_progress", sa.String(length=20), server_default="", nullable=False))
    # Orders already waiting at a 3PL or a supplier keep waiting there; which of the two they
    # are is not recorded before this revision, so they are taken as 3PL orders.
    op.execute("UPDATE fulfilment_orders SET mode = 'THIRD_PARTY_LOGISTICS', "
               "third_party_progress = 'REQUESTED' WHERE status = 'AWAITING_THIRD_PARTY'")
    op.add_column("put_backs", sa.Column("confirm_time", sa.DateTime(timezone=True),
                                         nullable=True))
    op.create_index("ix_put_backs_node", "put_backs", ["node_id", "id"], unique=False)
    op.add_column("packages", sa.Column("void_pending", sa.Boolean(), server_default="false",
                                        nullable=False))
    op.add_column("packages", sa.Column("void_time", sa.DateTime(timezone=True),
                                        nullable=True))
    op.create_index("ix_packages_void_pending", "packages", ["id"], unique=False,
                    postgresql_where="void_pending")
    op.create_table(
        "third_party_reports",
        sa.Column("node_id", sa.String(length=100), nullable=False),
        sa.Column("request_id", sa.String(length=200), nullable=False),
        sa.Column("fulfilment_order_id", sa.UUID(), nullable=False),
        sa.Column("progress", sa.String(length=20), nullable=False),
        sa.Column("report_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["fulfilment_order_id"], ["fulfilment_orders.id"],
            name=op.f("fk_third_party_reports_fulfilment_order_id_fulfilment_orders"),
            ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("node_id", "request_id", name=op.f("pk_third_party_reports")),
    )
    op.create_index(op.f("ix_third_party_reports_fulfilment_order_id"), "third_party_reports",
                    ["fulfilment_order_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_third_party_reports_fulfilment_order_id"),
                  table_name="third_party_reports")
    op.drop_table("third_party_reports")
    op.drop_index("ix_packages_void_pending", table_name="packages",
                  postgresql_where="void_pending")
    op.drop_column("packages", "void_time")
    op.drop_column("packages", "void_pending")
    op.drop_index("ix_put_backs_node", table_name="put_backs")
    op.drop_column("put_backs", "confirm_time")
    op.drop_column("fulfilment_orders", "third_party_progress")
    op.drop_column("fulfilment_orders", "mode")
