"""Partners and API keys in the gateway's database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from oms_gateway.partners.domain import Kind, NewKey, Partner, issue_key, key_prefix, matches
from oms_gateway.tables import api_keys, partners


class UnknownPartner(LookupError):
    pass


@dataclass(frozen=True)
class KeyInfo:
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


def _partner(row: Any) -> Partner:
    return Partner(partner_id=row.id, kind=Kind(row.kind), name=row.name,
                   channels=frozenset(row.channels), scopes=frozenset(row.scopes),
                   carriers=frozenset(row.carriers), nodes=frozenset(row.nodes))


async def authenticate(engine: AsyncEngine, secret: str) -> Partner | None:
    """The partner a key belongs to, if the key is well formed, known, unexpired, not
    revoked, and its partner not revoked either; else None."""
    prefix = key_prefix(secret)
    if prefix is None:
        return None
    now = func.now()
    async with engine.connect() as conn:
        row = (await conn.execute(
            select(partners, api_keys.c.key_hash)
            .join(api_keys, api_keys.c.partner_id == partners.c.id)
            .where(api_keys.c.prefix == prefix, api_keys.c.revoked_at.is_(None),
                   (api_keys.c.expires_at.is_(None)) | (api_keys.c.expires_at > now),
                   partners.c.revoked_at.is_(None))
        )).one_or_none()
    if row is None or not matches(secret, row.key_hash):
        return None
    return _partner(row)


async def active(engine: AsyncEngine, partner_id: str) -> Partner | None:
    """The partner, unless it is unknown or revoked (an access token's partner, checked on
    every request so that revocation ends its tokens at once)."""
    async with engine.connect() as conn:
        row = (await conn.execute(select(partners).where(
            partners.c.id == partner_id, partners.c.revoked_at.is_(None)))).one_or_none()
    return _partner(row) if row is not None else None


async def _add_key(conn: AsyncConnection, partner_id: str) -> NewKey:
    key = issue_key()
    await conn.execute(api_keys.insert().values(prefix=key.prefix, partner_id=partner_id,
                                                key_hash=key.digest))
    return key


async def create(engine: AsyncEngine, partner: Partner) -> NewKey:
    async with engine.begin() as conn:
        await conn.execute(partners.insert().values(
            id=partner.partner_id, name=partner.name, kind=partner.kind.value,
            channels=sorted(partner.channels), scopes=sorted(partner.scopes),
            carriers=sorted(partner.carriers), nodes=sorted(partner.nodes)))
        return await _add_key(conn, partner.partner_id)


async def get(engine: AsyncEngine, partner_id: str) -> Partner | None:
    async with engine.connect() as conn:
        row = (await conn.execute(
            select(partners).where(partners.c.id == partner_id))).one_or_none()
    return _partner(row) if row is not None else None


async def listing(engine: AsyncEngine) -> list[tuple[Partner, datetime | None, list[KeyInfo]]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(partners).order_by(partners.c.id))).all()
        keys = (await conn.execute(select(api_keys).order_by(api_keys.c.created_at))).all()
    by_partner: dict[str, list[KeyInfo]] = {}
    for key in keys:
        by_partner.setdefault(key.partner_id, []).append(KeyInfo(
            key.prefix, key.created_at, key.expires_at, key.revoked_at))
    return [(_partner(row), row.revoked_at, by_partner.get(row.id, [])) for row in rows]


async def rotate_key(engine: AsyncEngine, partner_id: str, overlap: timedelta) -> NewKey:
    """A new key; the partner's current keys stay valid for ``overlap`` more (or until they
    expire anyway, if sooner), so its systems can switch over without an outage."""
    async with engine.begin() as conn:
        live = await conn.scalar(select(partners.c.id).where(
            partners.c.id == partner_id, partners.c.revoked_at.is_(None)).with_for_update())
        if live is None:
            raise UnknownPartner(partner_id)
        until = func.now() + overlap
        await conn.execute(
            update(api_keys)
            .where(api_keys.c.partner_id == partner_id, api_keys.c.revoked_at.is_(None))
            .values(expires_at=func.least(func.coalesce(api_keys.c.expires_at, until), until)))
        return await _add_key(conn, partner_id)


async def revoke(engine: AsyncEngine, partner_id: str, prefix: str | None = None) -> int:
    """Revokes one key of the partner, or the partner itself with every key; returns how
    many keys were revoked by this call."""
    async with engine.begin() as conn:
        exists = await conn.scalar(select(partners.c.id).where(partners.c.id == partner_id))
        if exists is None:
            raise UnknownPartner(partner_id)
        keys = update(api_keys).where(api_keys.c.partner_id == partner_id,
                                      api_keys.c.revoked_at.is_(None))
        if prefix is not None:
            keys = keys.where(api_keys.c.prefix == prefix)
        else:
            await conn.execute(update(partners).where(
                partners.c.id == partner_id, partners.c.revoked_at.is_(None))
                .values(revoked_at=func.now()))
        result = await conn.execute(keys.values(revoked_at=func.now()))
    return int(result.rowcount)
