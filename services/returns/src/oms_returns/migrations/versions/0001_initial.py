"""The returns database's messaging tables: outbox, inbox, dead letters, dead outbox and the
page-token signing keys.

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

from oms_platform.migrations import (
    create_dead_outbox,
    create_messaging_tables,
    create_signing_keys,
    drop_dead_outbox,
    drop_messaging_tables,
    drop_signing_keys,
)

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_messaging_tables()
    create_dead_outbox()
    create_signing_keys()


def downgrade() -> None:
    drop_signing_keys()
    drop_dead_outbox()
    drop_messaging_tables()
