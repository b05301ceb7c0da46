"""The dead outbox: events the relay sets aside because they can never be published as they
are, for operators to see and replay; and the outbox's count of failed attempts per row.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

from oms_platform.migrations import create_dead_outbox, drop_dead_outbox

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_dead_outbox()


def downgrade() -> None:
    drop_dead_outbox()
