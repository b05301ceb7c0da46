"""Count tasks: a bin to count, opened when a picker finds it short of a SKU and closed by a
count of the SKU at the node.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "count_tasks",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("node_id", sa.String(63), nullable=False),
        sa.Column("bin_code", sa.String(64), nullable=False),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(40), nullable=False),
        sa.Column("reference", sa.Text(), nullable=False, server_default=""),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("close_time", sa.DateTime(timezone=True)),
        sa.ForeignKeyConstraint(["node_id"], ["fulfilment_nodes.node_id"],
                                name="fk_count_tasks_node_id_fulfilment_nodes"),
        sa.ForeignKeyConstraint(["sku"], ["products.sku"], name="fk_count_tasks_sku_products"),
        sa.PrimaryKeyConstraint("id", name="pk_count_tasks"),
    )
    # One open task per bin and SKU: a second short pick before the count adds nothing.
    op.create_index("ux_count_tasks_open", "count_tasks", ["node_id", "bin_code", "sku"],
                    unique=True, postgresql_where=sa.text("close_time IS NULL"))
    op.create_index("ix_count_tasks_node_id_id", "count_tasks", ["node_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_count_tasks_node_id_id", "count_tasks")
    op.drop_index("ux_count_tasks_open", "count_tasks")
    op.drop_table("count_tasks")
