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
- After a failure only the rows of the batch before it are marked (or set aside, below);
  the rest is retried, and JetStream drops any copy it already stored within its duplicate window.
- While NATS is down rows simply stay; the relay backs off and catches up when it returns.
- A row that can never be published as it is must not hold back the rows behind it. Each
  failed publish is classified (:func:`classify`): an outage of NATS or of its stream
  (timeouts, a lost connection, JetStream answering 503) is retried as above, uncounted, for
  as long as it lasts; a fault of the event itself (bigger than the server's max payload or
  the stream's max message size, a malformed subject or header) moves the row to
  ``dead_outbox`` at once; anything else (say, no stream answering the subject, which a
  stream being recreated also looks like) is retried and counted in the row's ``attempts``,
  and the row is set aside once it reaches ``max_attempts``. Either way the row is logged at
  error level, the rest of the batch is published and the relay goes on. Operators list,
  count and replay set-aside rows (:func:`dead_events`, :func:`replay_dead_events`,
  ``python -m oms_<service> outbox list|count|replay``); a replayed row is back in the
  outbox, at its end.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import nats.errors
import psycopg
import structlog
from google.protobuf.message import Message
from nats.js import JetStreamContext
from nats.js.errors import APIError, ServiceUnavailableError
from sqlalchemy import MetaData, Row, Table, delete, func, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from oms_platform.db import OUTBOX_CHANNEL, libpq_dsn
from oms_platform.events import encode
from oms_platform.telemetry import inject_headers

log = structlog.get_logger(__name__)

RELAY_LOCK_KEY = 0x6F6D735F6F7574  # "oms_out": one relay per database publishes at a time
# JetStream's "message size exceeds maximum allowed" (the stream's max_msg_size).
MESSAGE_TOO_BIG = 10054
REPLAY_BATCH = 1000  # rows moved back per transaction when every set-aside row is replayed


class Unpublishable(Exception):
    """An event that no publish of it as stored can ever succeed with."""


class Fault(enum.Enum):
    OUTAGE = "outage"  # NATS or its stream: retried, uncounted, as long as it lasts
    EVENT = "event"  # the event itself: set aside at once
    UNKNOWN = "unknown"  # retried and counted; set aside after max_attempts


_OUTAGES = (
    TimeoutError,  # nats' own TimeoutError is one too
    ServiceUnavailableError,  # JetStream's 503: no leader yet, out of resources, stream full
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionDrainingError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.StaleConnectionError,
    nats.errors.NoServersError,
    OSError,
)
_EVENT_FAULTS = (
    Unpublishable,
    nats.errors.MaxPayloadError,
    nats.errors.BadSubjectError,
    nats.errors.BadHeaderError,
)


def classify(error: BaseException) -> Fault:
    """Whose fault a failed publish is: NATS's (wait), the event's (set it aside), or
    unclear (retry, a bounded number of times)."""
    if isinstance(error, _EVENT_FAULTS):
        return Fault.EVENT
    if isinstance(error, APIError) and error.err_code == MESSAGE_TOO_BIG:
        return Fault.EVENT
    if isinstance(error, _OUTAGES):
        return Fault.OUTAGE
    return Fault.UNKNOWN


def check_publishable(subject: str, headers: Mapping[str, str], payload: bytes,
                      max_payload: int) -> None:
    """Refuses what the server would refuse by closing the connection (so that it would look
    like an outage, retried forever) or answer with a mere "no responders": headers and body
    together over its max payload, a subject that is no valid subject to publish on."""
    tokens = subject.split(".")
    if not subject or any(not t or t in ("*", ">") or any(c.isspace() for c in t)
                          for t in tokens):
        raise Unpublishable(f"{subject!r} is not a subject an event can be published on")
    header_bytes = len("NATS/1.0\r\n\r\n") + sum(
        len(k.strip().encode()) + len(v.strip().encode()) + 4 for k, v in headers.items())
    size = header_bytes + len(payload)
    if size > max_payload:
        raise Unpublishable(f"{size} bytes with headers, over the server's max payload of "
                            f"{max_payload}")


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


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
        max_attempts: int = 10,
    ) -> None:
        self._engine = engine
        self._outbox = metadata.tables["outbox"]
        self._dead = metadata.tables["dead_outbox"]
        self._js = js
        self._batch_size = batch_size
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._poll_seconds = poll_seconds
        self._coalesce_seconds = coalesce_seconds
        self._publish_timeout = publish_timeout
        self._retention_hours = retention_hours
        self._max_attempts = max_attempts
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self.published = 0
        self.set_aside = 0
        self.failures = 0  # batches that stopped at a failure and will be retried

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
                        await self._remind_set_aside()
                try:
                    while await self.publish_batch() >= self._batch_size:
                        pass
                    failures = 0
                except Exception as error:
                    failures += 1
                    self.failures += 1
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
        """Publishes up to one batch of pending events; returns how many left the outbox's
        queue (published, or set aside). Raises the failure the batch stopped at, if any,
        after marking what came before it."""
        outbox = self._outbox
        async with self._engine.begin() as conn:
            locked = await conn.scalar(select(func.pg_try_advisory_xact_lock(RELAY_LOCK_KEY)))
            if not locked:
                return 0
            rows = (
                await conn.execute(
                    select(outbox.c.id, outbox.c.event_id, outbox.c.subject, outbox.c.headers,
                           outbox.c.payload, outbox.c.attempts, outbox.c.created_at)
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
            aside: list[tuple[Row[Any], BaseException, int]] = []
            stopped: tuple[Row[Any], BaseException, Fault] | None = None
            for row, result in zip(rows, results, strict=True):
                if not isinstance(result, BaseException):
                    done.append(row.id)
                    continue
                kind = classify(result)
                attempts = row.attempts + (kind is not Fault.OUTAGE)
                if kind is Fault.EVENT or (kind is Fault.UNKNOWN
                                             and attempts >= self._max_attempts):
                    aside.append((row, result, attempts))
                    continue
                stopped = (row, result, kind)
                break
            if done:
                await conn.execute(
                    update(outbox).where(outbox.c.id.in_(done)).values(published_at=func.now())
                )
            if aside:
                await self._set_aside(conn, aside)
            if stopped is not None and stopped[2] is Fault.UNKNOWN:
                await conn.execute(update(outbox).where(outbox.c.id == stopped[0].id)
                                   .values(attempts=outbox.c.attempts + 1))
        self.published += len(done)
        self.set_aside += len(aside)
        for row, error, attempts in aside:
            log.error("outbox event set aside: it cannot be published", event_id=str(row.event_id),
                      subject=row.subject, attempts=attempts, error=_describe(error))
        if stopped is not None:
            row, error, kind = stopped
            if kind is Fault.UNKNOWN:
                log.warning("outbox event failed to publish", event_id=str(row.event_id),
                            subject=row.subject, attempt=row.attempts + 1,
                            max_attempts=self._max_attempts, error=_describe(error))
            raise error
        return len(done) + len(aside)

    async def _set_aside(self, conn: AsyncConnection,
                         rows: Sequence[tuple[Row[Any], BaseException, int]]) -> None:
        await conn.execute(insert(self._dead), [
            {"event_id": row.event_id, "subject": row.subject, "headers": row.headers,
             "payload": row.payload, "created_at": row.created_at, "error": _describe(error),
             "attempts": attempts}
            for row, error, attempts in rows
        ])
        await conn.execute(delete(self._outbox)
                           .where(self._outbox.c.id.in_([row.id for row, _, _ in rows])))

    async def _publish(self, subject: str, headers: Mapping[str, Any], payload: bytes) -> None:
        text_headers = {k: str(v) for k, v in headers.items()}
        # The limit the server announced on connecting (nats-py keeps it on the client).
        check_publishable(subject, text_headers, payload, self._js._nc.max_payload)
        async with self._in_flight:
            await self._js.publish(
                subject,
                payload,
                timeout=self._publish_timeout,
                headers=text_headers,
            )

    async def _remind_set_aside(self) -> None:
        count = await count_dead_events(self._engine, self._dead.metadata)
        if count:
            log.warning("outbox events set aside await an operator's replay", count=count)

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


@dataclass(frozen=True)
class DeadEvent:
    """An outbox row the relay set aside, as operators see it."""

    id: int
    event_id: uuid.UUID
    subject: str
    size: int
    attempts: int
    error: str
    created_at: datetime
    failed_at: datetime


async def dead_events(engine: AsyncEngine, metadata: MetaData, *,
                      limit: int = 100) -> list[DeadEvent]:
    """The first ``limit`` set-aside rows, oldest first."""
    dead = metadata.tables["dead_outbox"]
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(dead.c.id, dead.c.event_id, dead.c.subject,
                   func.length(dead.c.payload).label("size"), dead.c.attempts, dead.c.error,
                   dead.c.created_at, dead.c.failed_at)
            .order_by(dead.c.id).limit(limit)
        )
        return [DeadEvent(**row._mapping) for row in rows]


async def count_dead_events(engine: AsyncEngine, metadata: MetaData) -> int:
    dead = metadata.tables["dead_outbox"]
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(dead)))


async def replay_dead_events(engine: AsyncEngine, metadata: MetaData,
                             ids: Iterable[int | uuid.UUID] | None = None) -> int:
    """Moves set-aside rows (by dead outbox id or event id; every one for None) back to the
    end of the outbox, where the relay publishes them again; returns how many moved."""
    dead = metadata.tables["dead_outbox"]
    if ids is None:
        moved, total = REPLAY_BATCH, 0
        while moved == REPLAY_BATCH:
            first = select(dead.c.id).order_by(dead.c.id).limit(REPLAY_BATCH)
            moved = await _move_back(engine, metadata, dead.c.id.in_(first.scalar_subquery()))
            total += moved
        return total
    wanted = list(ids)
    numbers = [i for i in wanted if isinstance(i, int)]
    event_ids = [i for i in wanted if isinstance(i, uuid.UUID)]
    return await _move_back(engine, metadata,
                            or_(dead.c.id.in_(numbers), dead.c.event_id.in_(event_ids)))


async def _move_back(engine: AsyncEngine, metadata: MetaData, which: Any) -> int:
    dead, outbox = metadata.tables["dead_outbox"], metadata.tables["outbox"]
    moved = (
        delete(dead).where(which)
        .returning(dead.c.id, dead.c.event_id, dead.c.subject, dead.c.headers, dead.c.payload,
                   dead.c.created_at)
        .cte("moved")
    )
    columns = ["event_id", "subject", "headers", "payload", "created_at"]
    statement = insert(outbox).from_select(
        columns, select(*(moved.c[c] for c in columns)).order_by(moved.c.id)
    ).returning(outbox.c.id)
    async with engine.begin() as conn:
        return len((await conn.execute(statement)).all())
