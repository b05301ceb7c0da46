"""The inbound webhook ids taken and the answers given: a webhook posted again while its id
is kept gets the first answer back and changes nothing. Claimed with a lease, as
idempotency keys are, so two copies arriving at once reach the service once, and a gateway
that dies mid-call leaves an id another replica takes over once the lease lapses."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from oms_gateway.tables import inbound_webhooks as seen

SWEEP_BATCH = 1000


@dataclass(frozen=True)
class Answer:
    status: int | None  # None while the first copy is still being handled
    body: bytes


async def claim(engine: AsyncEngine, partner_id: str, webhook_id: str, *, lease: timedelta,
                ttl: timedelta) -> uuid.UUID | None:
    """The lease on the id, or None when it is answered or in flight."""
    now = func.now()
    statement = insert(seen).values(partner_id=partner_id, webhook_id=webhook_id,
                                    lease=uuid.uuid4(), locked_until=now + lease,
                                    expires_at=now + ttl)
    excluded = statement.excluded
    statement = statement.on_conflict_do_update(
        index_elements=[seen.c.partner_id, seen.c.webhook_id],
        set_={"lease": excluded.lease, "locked_until": excluded.locked_until,
              "expires_at": excluded.expires_at, "received_at": now, "status": None,
              "body": None},
        where=(seen.c.expires_at <= now)
        | (seen.c.status.is_(None) & (seen.c.locked_until <= now)),
    ).returning(seen.c.lease)
    async with engine.begin() as conn:
        return await conn.scalar(statement)


async def find(engine: AsyncEngine, partner_id: str, webhook_id: str) -> Answer | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(seen.c.status, seen.c.body).where(
            seen.c.partner_id == partner_id, seen.c.webhook_id == webhook_id,
            seen.c.expires_at > func.now()))).one_or_none()
    return Answer(row.status, row.body or b"") if row is not None else None


async def complete(engine: AsyncEngine, partner_id: str, webhook_id: str, lease: uuid.UUID,
                   status: int, body: bytes) -> None:
    async with engine.begin() as conn:
        await conn.execute(update(seen).where(
            seen.c.partner_id == partner_id, seen.c.webhook_id == webhook_id,
            seen.c.lease == lease, seen.c.status.is_(None),
        ).values(status=status, body=body, locked_until=None))


async def release(engine: AsyncEngine, partner_id: str, webhook_id: str,
                  lease: uuid.UUID) -> None:
    """Frees the id of a webhook that changed nothing (refused, or the service unavailable),
    so its retry is handled afresh."""
    async with engine.begin() as conn:
        await conn.execute(delete(seen).where(
            seen.c.partner_id == partner_id, seen.c.webhook_id == webhook_id,
            seen.c.lease == lease, seen.c.status.is_(None)))


async def sweep(engine: AsyncEngine) -> int:
    swept = 0
    while True:
        async with engine.begin() as conn:
            result = await conn.execute(text(
                "DELETE FROM inbound_webhooks WHERE ctid IN (SELECT ctid FROM inbound_webhooks"
                " WHERE expires_at <= now() LIMIT :batch)"), {"batch": SWEEP_BATCH})
        swept += result.rowcount
        if result.rowcount < SWEEP_BATCH:
            return swept
