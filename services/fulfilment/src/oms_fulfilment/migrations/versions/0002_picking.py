"""Fulfilment orders and their lines, the product replica, slots, pick lists, stops, tote
allocations and put-backs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("fulfilment_orders", "fulfilment_order_lines", "fulfilment_products", "slots",
          "pick_lists", "pick_requests", "pick_stops", "pick_allocations", "put_backs")


def upgrade() -> None:
    # The first revision of these tables is their declaration in tables.py; a later change
    # to them is a revision of its own, written out in full.
    from oms_fulfilment.tables import metadata

    bind = op.get_bind()
    for name in TABLES:
        metadata.tables[name].create(bind)


def downgrade() -> None:
    for name in reversed(TABLES):
        op.drop_table(name)
