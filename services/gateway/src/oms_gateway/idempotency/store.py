"""The stored answers of idempotent requests."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from oms_gateway.idempotency.domain import Stored
from oms_gateway.tables import idempotency_keys as keys

SWEEP_BATCH = 1000


async def claim(engine: AsyncEngine, partner_id: str, key: str, fingerprint: bytes, *,
                lease: timedelta, ttl: timedelta) -> uuid.UUID | None:
    """Takes the key in flight and returns the lease, or None when it is taken: stored,
    in flight, or used for another request. An expired key counts as unused, and so does one
    whose holder let its lease lapse without an answer (a gateway that died mid-request)
    — but only for the same request."""
    token = uuid.uuid4()
    now = func.now()
    statement = insert(keys).values(
        partner_id=partner_id, key=key, fingerprint=fingerprint, lease=token,
        locked_until=now + lease, expires_at=now + ttl,
    )
    excluded = statement.excluded
    statement = statement.on_conflict_do_update(
        index_elements=[keys.c.partner_id, keys.c.key],
        set_={"fingerprint": excluded.fingerprint, "lease": excluded.lease,
              "locked_until": excluded.locked_until, "expires_at": excluded.expires_at,
              "created_at": now, "status": None, "headers": None, "body": None},
        where=(keys.c.expires_at <= now) | (
            keys.c.status.is_(None) & (keys.c.locked_until <= now)
            & (keys.c.fingerprint == excluded.fingerprint)),
    ).returning(keys.c.lease)
    async with engine.begin() as conn:
        claimed = await conn.scalar(statement)
    return claimed


async def find(engine: AsyncEngine, partner_id: str, key: str) -> Stored | None:
    async with engine.connect() as conn:
        row = (await conn.execute(
            select(keys.c.fingerprint, keys.c.status, keys.c.headers, keys.c.body)
            .where(keys.c.partner_id == partner_id, keys.c.key == key,
                   keys.c.expires_at > func.now())
        )).one_or_none()
    if row is None:
        return None
    return Stored(fingerprint=row.fingerprint, status=row.status, headers=row.headers or {},
                  body=row.body or b"")


async def complete(engine: AsyncEngine, partner_id: str, key: str, lease: uuid.UUID, *,
                   status: int, headers: dict[str, str], body: bytes) -> bool:
    async with engine.begin() as conn:
        result = await conn.execute(
            update(keys)
            .where(keys.c.partner_id == partner_id, keys.c.key == key, keys.c.lease == lease,
                   keys.c.status.is_(None))
            .values(status=status, headers=headers, body=body, locked_until=None)
        )
    return bool(result.rowcount)


async def release(engine: AsyncEngine, partner_id: str, key: str, lease: uuid.UUID) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(keys).where(
            keys.c.partner_id == partner_id, keys.c.key == key, keys.c.lease == lease,
            keys.c.status.is_(None)))


async def sweep(engine: AsyncEngine) -> int:
    """Deletes expired keys, a bounded batch per transaction; returns how many went. Lookups
    ignore expired keys anyway, so this only keeps the table small."""
    swept = 0
    while True:
        async with engine.begin() as conn:
            result = await conn.execute(text(
                "DELETE FROM idempotency_keys WHERE ctid IN (SELECT ctid FROM idempotency_keys"
                " WHERE expires_at <= now() LIMIT :batch)"), {"batch": SWEEP_BATCH})
        swept += result.rowcount
        if result.rowcount < SWEEP_BATCH:
            return swept
