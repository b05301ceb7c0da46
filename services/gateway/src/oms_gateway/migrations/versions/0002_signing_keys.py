"""Signing keys the gateway's replicas share: the key of its OAuth2 access tokens, generated
on first start when OMS_GATEWAY_JWT_SECRET is not set (the platform's table and helper).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

from oms_platform.migrations import create_signing_keys, drop_signing_keys

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_signing_keys()


def downgrade() -> None:
    drop_signing_keys()
