"""A partner's signing secrets for the webhooks it sends: issued by the CLI, rotated with an
overlap like API keys, so a partner switches over without refused webhooks."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from oms_gateway.partners.store import UnknownPartner
from oms_gateway.tables import partners, webhook_secrets
from oms_gateway.webhooks.signing import new_secret


async def issue(engine: AsyncEngine, partner_id: str, overlap: timedelta) -> str:
    """A new secret; the partner's current ones stay valid for ``overlap`` more."""
    async with engine.begin() as conn:
        live = await conn.scalar(select(partners.c.id).where(
            partners.c.id == partner_id, partners.c.revoked_at.is_(None)).with_for_update())
        if live is None:
            raise UnknownPartner(partner_id)
        until = func.now() + overlap
        await conn.execute(
            update(webhook_secrets).where(webhook_secrets.c.partner_id == partner_id)
            .values(expires_at=func.least(func.coalesce(webhook_secrets.c.expires_at, until),
                                          until)))
        secret = new_secret()
        await conn.execute(webhook_secrets.insert().values(partner_id=partner_id,
                                                           secret=secret))
    return secret


async def live(engine: AsyncEngine, partner_id: str) -> list[str]:
    """The partner's secrets a signature may be made with now, newest first."""
    async with engine.connect() as conn:
        rows = await conn.scalars(
            select(webhook_secrets.c.secret)
            .where(webhook_secrets.c.partner_id == partner_id,
                   or_(webhook_secrets.c.expires_at.is_(None),
                       webhook_secrets.c.expires_at > func.now()))
            .order_by(webhook_secrets.c.id.desc()).limit(5))
        return list(rows)
