"""Idempotent event consumers: durable JetStream pull consumers with an inbox.

Each consuming service has one durable consumer per stream it reads, filtered to the event
types it handles. A handler runs inside one database transaction together with the insert of
the event id into the ``inbox`` table, so a redelivered event finds its id there and changes
nothing. Messages are acknowledged only after the commit.

A failing handler is retried with backoff (``nak`` with a delay) up to ``max_deliver``
deliveries; the last failure is written to ``dead_letter`` with the error and terminated, so
one poison message never blocks the rest.

Batch mode: a subscription may also give a ``batch_handler``. The messages of its type in one
fetch are then handled together in one transaction: their inbox rows are inserted in one
statement and the batch handler gets the messages seen for the first time. Work that locks
a hot row (inventory's reservations) then pays for the lock once per batch instead of once
per event. If the batch transaction fails, each of its messages is handled again on its own
through ``handler``, so one poison event is retried and dead-lettered alone. Each batch's
span links to the traces of the events in it.

Two fetches are handled at once, so the next one is decoded and started while the last one
commits. Ordering is per fetch at best anyway (a fetch's events run concurrently): handlers
guard on state, as they must under redelivery.

A service may run several consumers (``Subscription.group``); the runtime gives each group a
durable consumer of its own, with its own retries and dead letters.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from google.protobuf.message import Message
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry import trace
from sqlalchemy import MetaData, String, bindparam, func, insert, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_platform.events import decode, event_type, producing_service, stream_name, subject_for
from oms_platform.telemetry import extract_context, tracer

log = structlog.get_logger(__name__)

Handler = Callable[[AsyncSession, Any], Awaitable[None]]
BatchHandler = Callable[[AsyncSession, Sequence[Any]], Awaitable[None]]
BACKOFF_SECONDS = (0.5, 1, 2, 5, 10, 30, 60)


def one_by_one(handler: Handler) -> BatchHandler:
    """A batch handler that applies ``handler`` to each event in turn, in the batch's one
    transaction: for handlers with no set-based form, it still saves a commit and an inbox
    statement per event."""

    async def handle_all(session: AsyncSession, messages: Sequence[Any]) -> None:
        for message in messages:
            await handler(session, message)

    return handle_all


@dataclass(frozen=True)
class Subscription:
    message_type: type[Message]
    handler: Handler
    # Handles the first-time messages of one fetch together, in one transaction.
    batch_handler: BatchHandler | None = None
    # The service's consumer group; "" is its main durable consumer, another name a durable
    # consumer of its own ("{service}-{group}") that fails and retries independently.
    group: str = ""


class EventConsumer:
    def __init__(
        self,
        js: JetStreamContext,
        sessions: async_sessionmaker[AsyncSession],
        metadata: MetaData,
        *,
        consumer: str,
        subscriptions: Sequence[Subscription],
        batch_size: int = 128,
        concurrency: int = 32,
        max_deliver: int = 8,
        ack_wait_seconds: float = 30.0,
        fetches_in_flight: int = 2,
    ) -> None:
        self._js = js
        self._sessions = sessions
        self._inbox = metadata.tables["inbox"]
        # One constant statement for a batch's inbox rows, whatever its size: compiled once.
        self._inbox_many = (
            pg_insert(self._inbox)
            .from_select(
                ["consumer", "event_id"],
                select(
                    bindparam("consumer", type_=String),
                    func.unnest(bindparam("event_ids", type_=ARRAY(PG_UUID(as_uuid=True)))),
                ),
            )
            .on_conflict_do_nothing()
            .returning(self._inbox.c.event_id)
        )
        self._dead_letter = metadata.tables["dead_letter"]
        self._consumer = consumer
        # Several handlers may take one event type (the order state machine and a read
        # model, say); they run in order, in one transaction, with one inbox row.
        self._subscriptions: dict[str, list[Subscription]] = {}
        for subscription in subscriptions:
            self._subscriptions.setdefault(event_type(subscription.message_type), []).append(
                subscription
            )
        self._batch_size = batch_size
        self._fetches_in_flight = fetches_in_flight
        self._slots = asyncio.Semaphore(concurrency)
        self._max_deliver = max_deliver
        self._ack_wait = ack_wait_seconds
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._pulls: list[JetStreamContext.PullSubscription] = []

    def _by_stream(self) -> dict[str, list[type[Message]]]:
        streams: dict[str, list[type[Message]]] = {}
        for handlers in self._subscriptions.values():
            message_type = handlers[0].message_type
            stream = stream_name(producing_service(message_type))
            streams.setdefault(stream, []).append(message_type)
        return streams

    async def start(self) -> None:
        for stream, types in self._by_stream().items():
            filters = [s for t in types for s in (subject_for(t), subject_for(t) + ".>")]
            config = ConsumerConfig(
                durable_name=self._consumer,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=self._ack_wait,
                # Deliveries are counted here, not capped by the server: a message whose
                # dead-letter write failed is then still redelivered instead of dropped.
                max_deliver=-1,
                max_ack_pending=max(1000, self._batch_size * 4),
                filter_subjects=filters,
            )
            await self._js.add_consumer(stream, config)
            subscription = await self._js.pull_subscribe_bind(
                durable=self._consumer, stream=stream
            )
            self._pulls.append(subscription)
            self._tasks.append(
                asyncio.create_task(self._pull(subscription), name=f"consume-{stream}")
            )

    async def stop(self) -> None:
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # A pull subscription has no callback to empty its queue, so a fetch reply that
        # arrived after its fetch was cancelled would hold up ``drain()`` until its timeout.
        # Unfetched messages are simply redelivered, to this or another replica.
        for pull in self._pulls:
            with contextlib.suppress(Exception):
                await pull.unsubscribe()

    async def _pull(self, subscription: JetStreamContext.PullSubscription) -> None:
        """Fetches and handles, with up to ``fetches_in_flight`` fetches being handled at
        once: the next fetch is decoded and started while the last one's transaction commits,
        instead of the process idling through every commit."""
        handling: set[asyncio.Task[None]] = set()
        try:
            while not self._stopping.is_set():
                if len(handling) >= self._fetches_in_flight:
                    await asyncio.wait(handling, return_when=asyncio.FIRST_COMPLETED)
                try:
                    messages = await subscription.fetch(self._batch_size, timeout=1.0)
                except TimeoutError:  # nats' own TimeoutError is one too
                    continue
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    log.warning("fetch failed", consumer=self._consumer, error=repr(error))
                    await asyncio.sleep(0.5)
                    continue
                task = asyncio.create_task(self._dispatch(messages))
                handling.add(task)
                task.add_done_callback(handling.discard)
        finally:
            # Stopping: what is still being handled is rolled back and redelivered later.
            for task in handling:
                task.cancel()
            await asyncio.gather(*handling, return_exceptions=True)

    async def _dispatch(self, messages: list[Msg]) -> None:
        """Handles one fetch: events of a type with a batch handler together, the rest one
        by one, all concurrently."""
        batches: dict[str, list[Msg]] = {}
        single: list[Msg] = []
        for msg in messages:
            kind = (msg.headers or {}).get("ce-type", "")
            if self._batchable(kind):
                batches.setdefault(kind, []).append(msg)
            else:
                single.append(msg)
        for kind, batch in list(batches.items()):
            if len(batch) == 1:
                single += batches.pop(kind)
        await asyncio.gather(*(self._guarded(m) for m in single),
                             *(self._guarded_batch(kind, b) for kind, b in batches.items()))

    def _batchable(self, kind: str) -> bool:
        handlers = self._subscriptions.get(kind)
        return bool(handlers) and all(s.batch_handler is not None for s in handlers or ())

    async def _guarded_batch(self, kind: str, messages: list[Msg]) -> None:
        async with self._slots:
            try:
                await self.handle_batch(kind, messages)
                return
            except Exception as error:
                log.warning("event batch failed, handling its events one by one",
                            consumer=self._consumer, event_type=kind, size=len(messages),
                            error=repr(error))
        await asyncio.gather(*(self._guarded(m) for m in messages))

    async def handle_batch(self, kind: str, messages: Sequence[Msg]) -> None:
        """Handles messages of one type in one transaction and acknowledges them all; raises
        (acknowledging none) if any part fails."""
        handlers = self._subscriptions[kind]
        # One span for the batch, linked to the trace of every event in it (OpenTelemetry's
        # way for batch consumers): each order's trace still leads to where it was handled.
        links = [
            trace.Link(context)
            for context in (
                trace.get_current_span(extract_context(dict(msg.headers or {})))
                .get_span_context()
                for msg in messages
            )
            if context.is_valid
        ]
        with tracer().start_as_current_span(
            f"consume {kind} batch", kind=trace.SpanKind.CONSUMER, links=links
        ) as span:
            span.set_attribute("messaging.batch.message_count", len(messages))
            decoded: dict[str, Message] = {}
            for msg in messages:
                headers = dict(msg.headers or {})
                # The inbox returns ids as UUIDs: compare them in their canonical spelling.
                event_id = str(uuid.UUID(headers.get("ce-id", "")))
                if event_id not in decoded:
                    decoded[event_id] = decode(headers, msg.data, [handlers[0].message_type])
            async with self._sessions.begin() as session:
                first_time = {
                    str(event_id)
                    for event_id in (
                        await session.scalars(
                            self._inbox_many,
                            {"consumer": self._consumer,
                             "event_ids": [uuid.UUID(event_id) for event_id in decoded]},
                        )
                    ).all()
                }
                fresh = [m for event_id, m in decoded.items() if event_id in first_time]
                if fresh:
                    for subscription in handlers:
                        assert subscription.batch_handler is not None
                        await subscription.batch_handler(session, fresh)
        await asyncio.gather(*(msg.ack() for msg in messages))

    async def _guarded(self, msg: Msg) -> None:
        async with self._slots:
            try:
                await self.handle(msg)
            except Exception as error:
                # Settling this message failed (its ack, nak or dead-letter write). It stays
                # unacknowledged, redelivered after ack_wait while deliveries remain; one such
                # message must not end the pull loop and with it all consumption.
                log.error(
                    "event not settled",
                    consumer=self._consumer,
                    subject=msg.subject,
                    event_id=(msg.headers or {}).get("ce-id"),
                    error=repr(error),
                )

    async def handle(self, msg: Msg) -> None:
        headers = dict(msg.headers or {})
        event_id = headers.get("ce-id", "")
        handlers = self._subscriptions.get(headers.get("ce-type", ""))
        if not handlers:
            await msg.ack()
            return
        span_name = f"consume {headers.get('ce-type')}"
        with tracer().start_as_current_span(
            span_name, context=extract_context(headers), kind=trace.SpanKind.CONSUMER
        ) as span:
            span.set_attribute("messaging.message.id", event_id)
            try:
                message = decode(headers, msg.data, [handlers[0].message_type])
                async with self._sessions.begin() as session:
                    first_time = await session.scalar(
                        pg_insert(self._inbox)
                        .values(consumer=self._consumer, event_id=event_id)
                        .on_conflict_do_nothing()
                        .returning(self._inbox.c.event_id)
                    )
                    if first_time is not None:
                        for subscription in handlers:
                            await subscription.handler(session, message)
            except Exception as error:
                await self._failed(msg, headers, error)
                return
        await msg.ack()

    async def _failed(self, msg: Msg, headers: dict[str, str], error: Exception) -> None:
        deliveries = msg.metadata.num_delivered if msg.metadata else 1
        log.warning(
            "event handler failed",
            consumer=self._consumer,
            event_id=headers.get("ce-id"),
            event_type=headers.get("ce-type"),
            deliveries=deliveries,
            error=repr(error),
        )
        if deliveries < self._max_deliver:
            delay = BACKOFF_SECONDS[min(deliveries - 1, len(BACKOFF_SECONDS) - 1)]
            await msg.nak(delay=delay)
            return
        async with self._sessions.begin() as session:
            await session.execute(
                insert(self._dead_letter).values(
                    consumer=self._consumer,
                    event_id=headers.get("ce-id", ""),
                    subject=msg.subject,
                    headers=headers,
                    payload=msg.data,
                    error=repr(error),
                    deliveries=deliveries,
                )
            )
        log.error("event dead-lettered", consumer=self._consumer, event_id=headers.get("ce-id"))
        await msg.term()
