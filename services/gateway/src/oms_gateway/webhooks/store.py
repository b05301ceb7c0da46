"""Outbound webhooks in the gateway's database: endpoints, the delivery queue (an outbox of
deliveries: queued with the consumer's inbox row, claimed with SKIP LOCKED and a lease, so
a restart loses none and two replicas never send one at once) and the attempts' log."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from oms_gateway.partners.domain import Kind, Partner
from oms_gateway.tables import partners, webhook_attempts, webhook_deliveries, webhook_endpoints
from oms_gateway.tables import webhook_order_channels as order_channels

MAX_ATTEMPTS_SHOWN = 20
SWEEP_BATCH = 1000


@dataclass(frozen=True)
class Endpoint:
    id: uuid.UUID
    partner_id: str
    url: str
    event_types: list[str]
    description: str
    secret: str
    created_at: datetime


def _endpoint(row: Any) -> Endpoint:
    return Endpoint(row.id, row.partner_id, row.url, list(row.event_types), row.description,
                    row.secret, row.created_at)


async def create_endpoint(engine: AsyncEngine, partner_id: str, url: str,
                          event_types: Sequence[str], description: str, secret: str,
                          limit: int) -> Endpoint | None:
    """The new endpoint, or None when the partner has ``limit`` already (counted under a
    lock on the partner, so two creates at once cannot both pass)."""
    async with engine.begin() as conn:
        await conn.execute(select(partners.c.id).where(partners.c.id == partner_id)
                           .with_for_update())
        count = await conn.scalar(select(func.count()).select_from(webhook_endpoints).where(
            webhook_endpoints.c.partner_id == partner_id))
        if count >= limit:
            return None
        row = (await conn.execute(webhook_endpoints.insert().values(
            id=uuid.uuid4(), partner_id=partner_id, url=url, event_types=list(event_types),
            description=description, secret=secret).returning(webhook_endpoints))).one()
    return _endpoint(row)


async def endpoints_of(engine: AsyncEngine, partner_id: str) -> list[Endpoint]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(webhook_endpoints).where(
            webhook_endpoints.c.partner_id == partner_id).order_by(
            webhook_endpoints.c.created_at, webhook_endpoints.c.id))).all()
    return [_endpoint(row) for row in rows]


async def endpoint(engine: AsyncEngine, partner_id: str, endpoint_id: uuid.UUID
                   ) -> Endpoint | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(webhook_endpoints).where(
            webhook_endpoints.c.id == endpoint_id,
            webhook_endpoints.c.partner_id == partner_id))).one_or_none()
    return _endpoint(row) if row is not None else None


async def delete_endpoint(engine: AsyncEngine, partner_id: str, endpoint_id: uuid.UUID
                          ) -> Endpoint | None:
    """Deletes the endpoint with its queue and log."""
    async with engine.begin() as conn:
        row = (await conn.execute(delete(webhook_endpoints).where(
            webhook_endpoints.c.id == endpoint_id,
            webhook_endpoints.c.partner_id == partner_id).returning(webhook_endpoints)
        )).one_or_none()
    return _endpoint(row) if row is not None else None


# --- who hears of an event ----------------------------------------------------------------

async def remember_channel(session: AsyncSession, order_name: str, channel: str) -> None:
    await session.execute(insert(order_channels).values(order_name=order_name, channel=channel)
                          .on_conflict_do_nothing())


async def channels_of(session: AsyncSession, order_names: Sequence[str]) -> dict[str, str]:
    rows = await session.execute(select(order_channels.c.order_name, order_channels.c.channel)
                                 .where(order_channels.c.order_name.in_(list(order_names))))
    return {row.order_name: row.channel for row in rows}


async def subscribed(session: AsyncSession, event_type: str) -> list[tuple[Endpoint, Any]]:
    """The live partners' endpoints subscribed to ``event_type``, with their partner rows;
    the handler keeps those entitled to the event."""
    rows = (await session.execute(
        select(webhook_endpoints, partners.c.kind, partners.c.name.label("partner_name"),
               partners.c.channels, partners.c.scopes, partners.c.carriers, partners.c.nodes)
        .join(partners, partners.c.id == webhook_endpoints.c.partner_id)
        .where(webhook_endpoints.c.event_types.contains([event_type]),
               partners.c.revoked_at.is_(None)))).all()
    return [(_endpoint(row), row) for row in rows]


async def enqueue(session: AsyncSession, endpoints: Sequence[Endpoint], message_id: str,
                  event_type: str, payload: bytes, max_pending: int) -> None:
    """One delivery per endpoint, due now; an endpoint with ``max_pending`` deliveries queued
    gets this one logged failed instead (its owner can replay it), so one endpoint that is
    down for long cannot grow the queue without end."""
    for target in endpoints:
        pending = await session.scalar(text(
            "SELECT count(*) FROM (SELECT 1 FROM webhook_deliveries WHERE endpoint_id = :e "
            "AND state = 'pending' LIMIT :cap) AS queued"), {"e": target.id, "cap": max_pending})
        full = pending >= max_pending
        await session.execute(insert(webhook_deliveries).values(
            id=uuid.uuid4(), endpoint_id=target.id, message_id=message_id,
            event_type=event_type, payload=payload, state="failed" if full else "pending",
            next_attempt_at=func.now(), finished_at=func.now() if full else None,
        ).on_conflict_do_nothing())


# --- the queue ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Due:
    id: uuid.UUID
    lease: uuid.UUID
    url: str
    secret: str
    message_id: str
    payload: bytes
    attempts: int


async def claim_due(engine: AsyncEngine, limit: int, lease: timedelta) -> list[Due]:
    """Up to ``limit`` due deliveries, leased to this worker: rows other workers are claiming
    are skipped, and a lease that lapses (a worker gone) makes its rows due again."""
    token = uuid.uuid4()
    due = (select(webhook_deliveries.c.id)
           .where(webhook_deliveries.c.state == "pending",
                  webhook_deliveries.c.next_attempt_at <= func.now())
           .order_by(webhook_deliveries.c.next_attempt_at).limit(limit)
           .with_for_update(skip_locked=True).scalar_subquery())
    async with engine.begin() as conn:
        rows = (await conn.execute(
            update(webhook_deliveries)
            .where(webhook_deliveries.c.id.in_(due),
                   webhook_deliveries.c.endpoint_id == webhook_endpoints.c.id)
            .values(lease=token, next_attempt_at=func.now() + lease)
            .returning(webhook_deliveries.c.id, webhook_deliveries.c.message_id,
                       webhook_deliveries.c.payload, webhook_deliveries.c.attempts,
                       webhook_endpoints.c.url, webhook_endpoints.c.secret))).all()
    return [Due(row.id, token, row.url, row.secret, row.message_id, row.payload, row.attempts)
            for row in rows]


async def record_attempt(engine: AsyncEngine, due: Due, *, status_code: int, error: str,
                         duration_ms: int, succeeded: bool, retry_in: timedelta | None) -> None:
    """Logs the attempt and moves the delivery on: succeeded, due again after ``retry_in``,
    or failed (``retry_in`` None). A delivery replayed meanwhile (its lease gone) keeps the
    replay's state; the attempt is logged all the same."""
    if succeeded:
        values: dict[str, Any] = {"state": "succeeded", "finished_at": func.now()}
    elif retry_in is None:
        values = {"state": "failed", "finished_at": func.now()}
    else:
        values = {"next_attempt_at": func.now() + retry_in}
    async with engine.begin() as conn:
        await conn.execute(webhook_attempts.insert().values(
            delivery_id=due.id, status_code=status_code, error=error[:500],
            duration_ms=duration_ms, succeeded=succeeded))
        await conn.execute(update(webhook_deliveries).where(
            webhook_deliveries.c.id == due.id, webhook_deliveries.c.lease == due.lease)
            .values(lease=None, attempts=webhook_deliveries.c.attempts + 1, **values))


# --- the log --------------------------------------------------------------------------------

async def deliveries(engine: AsyncEngine, endpoint_id: uuid.UUID, limit: int,
                     after: tuple[datetime, uuid.UUID] | None
                     ) -> list[tuple[Any, list[Any]]]:
    """A page of the endpoint's deliveries, newest first, each with its last attempts."""
    statement = select(webhook_deliveries).where(
        webhook_deliveries.c.endpoint_id == endpoint_id)
    if after is not None:
        statement = statement.where(tuple_(webhook_deliveries.c.created_at,
                                           webhook_deliveries.c.id) < tuple_(*after))
    statement = statement.order_by(webhook_deliveries.c.created_at.desc(),
                                   webhook_deliveries.c.id.desc()).limit(limit)
    async with engine.connect() as conn:
        rows = (await conn.execute(statement)).all()
        attempts = await _attempts(conn, [row.id for row in rows])
    return [(row, attempts.get(row.id, [])) for row in rows]


async def _attempts(conn: AsyncConnection, ids: list[uuid.UUID]) -> dict[uuid.UUID, list[Any]]:
    if not ids:
        return {}
    ranked = select(webhook_attempts, func.row_number().over(
        partition_by=webhook_attempts.c.delivery_id,
        order_by=webhook_attempts.c.id.desc()).label("rank")).where(
        webhook_attempts.c.delivery_id.in_(ids)).subquery()
    rows = (await conn.execute(select(ranked).where(ranked.c.rank <= MAX_ATTEMPTS_SHOWN)
                               .order_by(ranked.c.id))).all()
    found: dict[uuid.UUID, list[Any]] = {}
    for row in rows:
        found.setdefault(row.delivery_id, []).append(row)
    return found


async def replay(engine: AsyncEngine, partner_id: str, delivery_id: uuid.UUID
                 ) -> tuple[Any, list[Any]] | None:
    """Queues the delivery again, due now, with a fresh count of attempts (its log stays);
    None when it is not the partner's."""
    async with engine.begin() as conn:
        row = (await conn.execute(
            update(webhook_deliveries)
            .where(webhook_deliveries.c.id == delivery_id,
                   webhook_deliveries.c.endpoint_id == webhook_endpoints.c.id,
                   webhook_endpoints.c.partner_id == partner_id)
            .values(state="pending", attempts=0, lease=None, next_attempt_at=func.now(),
                    finished_at=None)
            .returning(*webhook_deliveries.c))).one_or_none()
        if row is None:
            return None
        attempts = await _attempts(conn, [row.id])
    return row, attempts.get(row.id, [])


async def sweep(engine: AsyncEngine, retention: timedelta) -> int:
    """Deletes finished deliveries (with their attempts) and order channels older than
    ``retention``, a bounded batch per transaction."""
    swept = 0
    statements = [
        ("DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries "
         "WHERE state <> 'pending' AND finished_at < now() - :age LIMIT :batch)"),
        ("DELETE FROM webhook_order_channels WHERE order_name IN (SELECT order_name FROM "
         "webhook_order_channels WHERE recorded_at < now() - :age LIMIT :batch)"),
    ]
    for statement in statements:
        while True:
            async with engine.begin() as conn:
                result = await conn.execute(text(statement),
                                            {"age": retention, "batch": SWEEP_BATCH})
            swept += result.rowcount
            if result.rowcount < SWEEP_BATCH:
                break
    return swept


def partner_of_row(row: Any) -> Partner:
    return Partner(partner_id=row.partner_id, kind=Kind(row.kind), name=row.partner_name,
                   channels=frozenset(row.channels), scopes=frozenset(row.scopes),
                   carriers=frozenset(row.carriers), nodes=frozenset(row.nodes))

