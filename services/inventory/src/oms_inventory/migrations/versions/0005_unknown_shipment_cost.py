"""A node's shipment cost may be unknown (NULL with its currency), instead of zero.

Until now a node created without a cost was stored as 0 USD, which the lowest-cost strategy
took for free. Those rows cannot be told from a deliberate zero; they are taken to be the
unknown cost they almost always were (set a cost of 0 again to mean free shipping).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for column in ("shipment_cost", "shipment_cost_currency"):
        op.alter_column("fulfilment_nodes", column, nullable=True, server_default=None)
    op.execute("UPDATE fulfilment_nodes SET shipment_cost = NULL, shipment_cost_currency = NULL "
               "WHERE shipment_cost = 0 AND shipment_cost_currency = 'USD'")
    op.create_check_constraint(
        "ck_fulfilment_nodes_shipment_cost_has_currency", "fulfilment_nodes",
        "(shipment_cost IS NULL) = (shipment_cost_currency IS NULL)")


def downgrade() -> None:
    op.drop_constraint("ck_fulfilment_nodes_shipment_cost_has_currency", "fulfilment_nodes")
    op.execute("UPDATE fulfilment_nodes SET shipment_cost = 0, shipment_cost_currency = 'USD' "
               "WHERE shipment_cost IS NULL")
    op.alter_column("fulfilment_nodes", "shipment_cost", nullable=False, server_default="0")
    op.alter_column("fulfilment_nodes", "shipment_cost_currency", nullable=False,
                    server_default="USD")
