"""Transactional outbox: events are rows written with the change, published by a relay.

A handler calls :func:`add_event` inside its transaction; the row commits (or rolls back)
with the change, and a trigger on the table sends a ``NOTIFY`` on commit. The relay wakes on
that notification (and, as a fallback, every ``poll_seconds``), publishes pending rows in id
order to JetStream with ``Nats-Msg-Id`` set to the event id, and marks them published.

Design choices:
- One relay per service publishes at a time: each batch runs under a transaction-scoped
  advisory lock, so several replicas never interleave and events leave in outbox order.
  The one exception: when a publish fails mid-batch, publishes already in flight behind it
  may be stored before it is retried. Nothing is lost or duplicated, and consumers guard on
  state, so a late event cannot move an aggregate backwards.
- Several publishes are in flight at once (pipelined on one connection, acks awaited
  together); one awaited publish at a time would cap the relay at the round-trip rate.
- After a failure only the prefix of the batch that was acknowledged is marked; the rest
  is retried, and JetStream drops any copy it already stored within its duplicate window.
- While NATS is down rows simply stay; the relay backs off and catches up when it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import psycopg
import structlog
from google.protobuf.message import Message
from nats.js import JetStreamContext
from sqlalchemy import MetaData, Table, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from oms_platform.db import OUTBOX_CHANNEL, libpq_dsn
from oms_platform.events import encode
from oms_platform.telemetry import inject_headers

log = structlog.get_logger(__name__)

RELAY_LOCK_KEY = 0x6F6D735F6F7574  # "oms_out": one relay per database publishes at a time


async def add_event(
    session: AsyncSession | AsyncConnection,
    outbox: Table,
    message: Message,
    *,
    aggregate_id: str,
    source: str,
    partition: str | None = None,
) -> uuid.UUID:
    """Stores ``message`` for publishing when the surrounding transaction commits."""
    (event_id,) = await add_events(session, outbox, [(message, aggregate_id, partition)],
                                   source=source)
    return event_id


async def add_events(
    session: AsyncSession | AsyncConnection,
    outbox: Table,
    messages: Iterable[tuple[Message, str, str | None]],
    *,
    source: str,
) -> list[uuid.UUID]:
    """Stores messages, each with its aggregate id and partition (or None), for publishing
    when the surrounding transaction commits: one statement however many there are."""
    trace_headers = inject_headers()
    envelopes = [
        encode(message, aggregate_id=aggregate_id, source=source, partition=partition,
               trace_headers=trace_headers)
        for message, aggregate_id, partition in messages
    ]
    if envelopes:
        await session.execute(insert(outbox), [
            {"event_id": e.event_id, "subject": e.subject, "headers": e.headers,
             "payload": e.payload}
            for e in envelopes
        ])
    return [e.event_id for e in envelopes]


class OutboxRelay:
    def __init__(
        self,
        engine: AsyncEngine,
        metadata: MetaData,
        js: JetStreamContext,
        *,
        batch_size: int = 500,
        max_in_flight: int = 256,
        poll_seconds: float = 1.0,
        coalesce_seconds: float = 0.002,
        publish_timeout: float = 5.0,
        retention_hours: float = 24.0,
    ) -> None:
        self._engine = engine
        self._outbox = metadata.tables["outbox"]
        self._js = js
        self._batch_size = batch_size
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._poll_seconds = poll_seconds
        self._coalesce_seconds = coalesce_seconds
        self._publish_timeout = publish_timeout
        self._retention_hours = retention_hours
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self.published = 0

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        listener = asyncio.create_task(self._listen(), name="outbox-listen")
        failures = 0
        next_purge = asyncio.get_running_loop().time() + 60.0
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                if asyncio.get_running_loop().time() >= next_purge:
                    next_purge += 60.0
                    with contextlib.suppress(Exception):
                        await self.purge_published()
                try:
                    while await self.publish_batch() >= self._batch_size:
                        pass
                    failures = 0
                except Exception as error:
                    failures += 1
                    delay = min(0.1 * 2**failures, 5.0)
                    log.warning("outbox relay failed, retrying", error=repr(error), delay=delay)
                    await self._sleep(delay)
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll_seconds)
                    # Under load commits arrive in bursts: a moment's wait lets one batch
                    # carry them all instead of a transaction for every single event.
                    await asyncio.sleep(self._coalesce_seconds)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def publish_batch(self) -> int:
        """Publishes up to one batch of pending events; returns how many were published."""
        outbox = self._outbox
        async with self._engine.begin() as conn:
            locked = await conn.scalar(select(func.pg_try_advisory_xact_lock(RELAY_LOCK_KEY)))
            if not locked:
                return 0
            rows = (
                await conn.execute(
                    select(outbox.c.id, outbox.c.subject, outbox.c.headers, outbox.c.payload)
                    .where(outbox.c.published_at.is_(None))
                    .order_by(outbox.c.id)
                    .limit(self._batch_size)
                )
            ).all()
            if not rows:
                return 0
            results = await asyncio.gather(
                *(self._publish(row.subject, row.headers, row.payload) for row in rows),
                return_exceptions=True,
            )
            done: list[int] = []
            failure: BaseException | None = None
            for row, result in zip(rows, results, strict=True):
                if isinstance(result, BaseException):
                    failure = result
                    break
                done.append(row.id)
            if done:
                await conn.execute(
                    update(outbox).where(outbox.c.id.in_(done)).values(published_at=func.now())
                )
        self.published += len(done)
        if failure is not None:
            raise failure
        return len(done)

    async def _publish(self, subject: str, headers: Mapping[str, Any], payload: bytes) -> None:
        async with self._in_flight:
            await self._js.publish(
                subject,
                payload,
                timeout=self._publish_timeout,
                headers={k: str(v) for k, v in headers.items()},
            )

    async def purge_published(self) -> int:
        outbox = self._outbox
        async with self._engine.begin() as conn:
            result = await conn.execute(
                outbox.delete().where(
                    outbox.c.published_at
                    < func.now() - text(f"interval '{float(self._retention_hours)} hours'")
                )
            )
        return result.rowcount or 0

    async def _listen(self) -> None:
        """Wakes the relay on every commit that wrote to the outbox."""
        dsn = libpq_dsn(self._engine.url.render_as_string(hide_password=False))
        while not self._stopping.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {OUTBOX_CHANNEL}")
                    self._wake.set()
                    async for _ in conn.notifies():
                        self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("outbox listener lost its connection", error=repr(error))
                await self._sleep(1.0)
