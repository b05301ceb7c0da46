"""Idempotent event consumers (durable pull consumer + inbox), against real PostgreSQL and a
real JetStream. Every test has its own database and its own NATS server."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from nats.js import JetStreamContext
from oms.orders.v1 import events_pb2
from oms_devtools.testkit import caught_up, envelope_for, eventually, publish
from oms_platform.consumer import EventConsumer, Subscription, one_by_one
from oms_platform.outbox import OutboxRelay, add_event
from oms_platform.telemetry import configure_tracing, tracer
from opentelemetry import trace
from platform_testkit import (
    ORDERS_STREAM,
    SOURCE,
    Bus,
    Database,
    order_created,
    running,
)
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

CONSUMER = "platform-tests"

Handler = Callable[[AsyncSession, events_pb2.OrderCreated], Awaitable[None]]


@dataclass
class Calls:
    """What a test handler saw, per order."""

    attempts: Counter[str] = field(default_factory=Counter)
    times: dict[str, list[float]] = field(default_factory=dict)

    def record(self, message: events_pb2.OrderCreated) -> int:
        self.attempts[message.order] += 1
        self.times.setdefault(message.order, []).append(asyncio.get_running_loop().time())
        return self.attempts[message.order]


def write_effect(
    db: Database,
) -> Callable[[AsyncSession, events_pb2.OrderCreated], Awaitable[None]]:
    async def write(session: AsyncSession, message: events_pb2.OrderCreated) -> None:
        await session.execute(insert(db.effects).values(order_name=message.order))

    return write


@contextlib.asynccontextmanager
async def consuming(
    js: JetStreamContext, db: Database, handler: Handler, *, max_deliver: int = 3
) -> AsyncIterator[EventConsumer]:
    consumer = EventConsumer(
        js,
        db.sessions,
        db.metadata,
        consumer=CONSUMER,
        subscriptions=[Subscription(events_pb2.OrderCreated, handler)],
        max_deliver=max_deliver,
    )
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


async def effects_reach(db: Database, order: str, count: int) -> bool:
    return await db.effects_for(order) >= count


async def inbox_has(db: Database, event_id: uuid.UUID | str) -> int:
    return await db.count(db.inbox, db.inbox.c.event_id == uuid.UUID(str(event_id)))


# --------------------------------------------------------------------------- idempotency


async def test_same_event_stored_twice_has_one_effect(
    platform_db: Database, private_bus: Bus
) -> None:
    """The same event (same ``ce-id``) stored twice in the stream, as happens when it is
    republished after the duplicate window, is applied once and both copies are acked.

    Both copies are in the stream before the consumer starts, so they arrive in one fetch and
    are handled concurrently: the second waits on the first's uncommitted inbox row."""
    db, js = platform_db, private_bus.js
    calls = Calls()

    async def handler(session: AsyncSession, message: events_pb2.OrderCreated) -> None:
        calls.record(message)
        await write_effect(db)(session, message)
        await asyncio.sleep(0.2)  # keep the transaction open while the copy arrives

    message = order_created()
    envelope = await publish(js, message)
    assert not (await publish(js, envelope, msg_id=f"again-{uuid.uuid4()}")).ack.duplicate
    # Both copies are in the stream, with the same event id.
    first = await js.get_msg(ORDERS_STREAM, 1)
    second = await js.get_msg(ORDERS_STREAM, 2)
    assert first.headers["ce-id"] == second.headers["ce-id"] == str(envelope.event_id)
    assert first.headers["Nats-Msg-Id"] != second.headers["Nats-Msg-Id"]

    async with consuming(js, db, handler):
        await caught_up(js, CONSUMER, ORDERS_STREAM)
        await eventually(lambda: effects_reach(db, message.order, 1), what="effect applied")
        # A third copy arriving after the first was committed changes nothing either.
        assert not (await publish(js, envelope, msg_id=f"late-{uuid.uuid4()}")).ack.duplicate
        await caught_up(js, CONSUMER, ORDERS_STREAM)
        info = await js.consumer_info(ORDERS_STREAM, CONSUMER)

    assert info.delivered.stream_seq == 3
    assert info.ack_floor.stream_seq == 3
    assert await db.effects_for(message.order) == 1
    assert calls.attempts[message.order] == 1
    assert await inbox_has(db, envelope.event_id) == 1
    assert await db.count(db.dead_letter) == 0


async def test_partitioned_subjects_are_consumed(platform_db: Database, private_bus: Bus) -> None:
    db, js = platform_db, private_bus.js
    plain, partitioned = order_created(), order_created()
    async with consuming(js, db, write_effect(db)):
        await publish(js, plain)
        envelope = await publish(js, partitioned, partition="node-1")
        assert envelope.subject == "oms.orders.order_created.node-1"
        await eventually(lambda: effects_reach(db, partitioned.order, 1), what="partitioned")
        await eventually(lambda: effects_reach(db, plain.order, 1), what="plain")
        await caught_up(js, CONSUMER, ORDERS_STREAM)


async def test_handlers_of_one_event_type_share_its_transaction(
    platform_db: Database, private_bus: Bus
) -> None:
    """Two handlers of one event type (a state machine and a read model, say) both run once,
    in order; when the second fails, the first's effect is undone with it and both run
    again on the redelivery."""
    db, js = platform_db, private_bus.js
    ran: list[str] = []

    async def first(session: AsyncSession, message: events_pb2.OrderCreated) -> None:
        ran.append("first")
        await write_effect(db)(session, message)

    async def second(session: AsyncSession, message: events_pb2.OrderCreated) -> None:
        ran.append("second")
        if ran.count("second") == 1:
            raise RuntimeError("the read model fails once")
        await write_effect(db)(session, message)

    consumer = EventConsumer(
        js,
        db.sessions,
        db.metadata,
        consumer=CONSUMER,
        subscriptions=[
            Subscription(events_pb2.OrderCreated, first),
            Subscription(events_pb2.OrderCreated, second),
        ],
    )
    message = order_created()
    await consumer.start()
    try:
        envelope = await publish(js, message)
        await eventually(lambda: effects_reach(db, message.order, 2), what="both effects")
        await caught_up(js, CONSUMER, ORDERS_STREAM)
    finally:
        await consumer.stop()

    assert ran == ["first", "second", "first", "second"]
    assert await db.effects_for(message.order) == 2
    assert await inbox_has(db, envelope.event_id) == 1


# --------------------------------------------------------------------------- failures


async def test_failing_handler_is_retried_with_backoff_and_applied_once(
    platform_db: Database, private_bus: Bus
) -> None:
    db, js = platform_db, private_bus.js
    calls = Calls()

    async def handler(session: AsyncSession, message: events_pb2.OrderCreated) -> None:
        attempt = calls.record(message)
        await write_effect(db)(session, message)
        if attempt < 3:
            raise RuntimeError(f"transient failure {attempt}")

    message = order_created()
    async with consuming(js, db, handler, max_deliver=5):
        envelope = await publish(js, message)
        await eventually(lambda: effects_reach(db, message.order, 1), what="effect applied")
        await caught_up(js, CONSUMER, ORDERS_STREAM)
        info = await js.consumer_info(ORDERS_STREAM, CONSUMER)

    assert calls.attempts[message.order] == 3
    assert await db.effects_for(message.order) == 1
    assert await inbox_has(db, envelope.event_id) == 1
    assert await db.count(db.dead_letter) == 0
    assert info.num_redelivered == 0  # nothing is waiting for another delivery
    # Redelivery was delayed by the nak, not immediate (BACKOFF_SECONDS = 0.5, 1, ...).
    first, second, third = calls.times[message.order]
    assert second - first >= 0.4
    assert third - second >= 0.9


async def test_rolled_back_effect_leaves_no_inbox_row(
    platform_db: Database, private_bus: Bus
) -> None:
    """A handler that raises after writing rolls back its effect AND the inbox row, so the
    next delivery runs the effect again instead of skipping it as already seen."""
    db, js = platform_db, private_bus.js
    calls = Calls()
    seen_on_retry: dict[str, int] = {}

    async def handler(session: AsyncSession, message: events_pb2.OrderCreated) -> None:
        attempt = calls.record(message)
        await write_effect(db)(session, message)
        if attempt == 1:
            raise RuntimeError("fails after writing its effect")
        # What the first attempt left behind, seen from outside this transaction.
        seen_on_retry["inbox"] = await db.count(db.inbox)
        seen_on_retry["effects"] = await db.count(db.effects)

    message = order_created()
    async with consuming(js, db, handler):
        envelope = await publish(js, message)
        await eventually(lambda: effects_reach(db, message.order, 1), what="effect applied")
        await caught_up(js, CONSUMER, ORDERS_STREAM)

    assert calls.attempts[message.order] == 2
    assert seen_on_retry == {"inbox": 0, "effects": 0}
    assert await inbox_has(db, envelope.event_id) == 1
    assert await db.effects_for(message.order) == 1


async def test_poison_events_are_dead_lettered_and_the_consumer_moves_on(
    platform_db: Database, private_bus: Bus
) -> None:
    db, js = platform_db, private_bus.js
    calls = Calls()

    async def handler(session: AsyncSession, message: events_pb2.OrderCreated) -> None:
        calls.record(message)
        await write_effect(db)(session, message)
        if message.order.startswith("orders/poison-"):
            raise ValueError(f"boom: cannot handle {message.order}")

    poison, garbled, good = order_created("poison"), order_created("garbled"), order_created()
    async with consuming(js, db, handler, max_deliver=2):
        poison_envelope = await publish(js, poison)
        garbled_envelope = await publish(
            js, dataclasses.replace(envelope_for(garbled), payload=b"{not json"))
        await eventually(
            lambda: _at_least(db.count(db.dead_letter), 2), what="both dead-lettered", timeout=15
        )
        await publish(js, good)
        await eventually(lambda: effects_reach(db, good.order, 1), what="good event handled")
        await caught_up(js, CONSUMER, ORDERS_STREAM)
        info = await js.consumer_info(ORDERS_STREAM, CONSUMER)

    async with db.engine.connect() as conn:
        rows = {
            row.event_id: row
            for row in await conn.execute(select(db.dead_letter).order_by(db.dead_letter.c.id))
        }
    assert set(rows) == {str(poison_envelope.event_id), str(garbled_envelope.event_id)}

    dead = rows[str(poison_envelope.event_id)]
    assert dead.consumer == CONSUMER
    assert dead.subject == "oms.orders.order_created"
    assert dead.deliveries == 2
    assert "boom: cannot handle" in dead.error
    assert dead.headers["ce-id"] == str(poison_envelope.event_id)
    assert dead.headers["ce-type"] == "oms.orders.v1.OrderCreated"
    assert dead.payload == poison_envelope.payload
    assert dead.failed_at is not None

    unreadable = rows[str(garbled_envelope.event_id)]
    assert unreadable.deliveries == 2
    assert unreadable.payload == b"{not json"
    assert "Parse" in unreadable.error or "json" in unreadable.error.lower()

    # Delivered exactly max_deliver times, then terminated: never again, and not applied.
    assert calls.attempts[poison.order] == 2
    assert calls.attempts[garbled.order] == 0
    assert await db.effects_for(poison.order) == 0
    assert await inbox_has(db, poison_envelope.event_id) == 0
    assert await db.effects_for(good.order) == 1
    assert info.num_ack_pending == 0
    assert info.ack_floor.stream_seq == 3


async def _at_least(value: Awaitable[int], minimum: int) -> bool:
    return await value >= minimum


async def test_consumer_keeps_going_when_a_failure_cannot_be_recorded(
    platform_db: Database, private_bus: Bus
) -> None:
    """If settling one message fails (here: the dead letter cannot be written), the pull
    loop must survive and keep handling the following events."""
    db, js = platform_db, private_bus.js

    async def handler(session: AsyncSession, message: events_pb2.OrderCreated) -> None:
        if message.order.startswith("orders/poison-"):
            raise ValueError("boom")
        await write_effect(db)(session, message)

    async with db.engine.begin() as conn:
        await conn.execute(text("DROP TABLE dead_letter"))

    poison, good = order_created("poison"), order_created()
    async with consuming(js, db, handler, max_deliver=2):
        await publish(js, poison)
        info = await eventually(lambda: _delivered_twice(js), what="poison delivered twice")
        assert info.num_redelivered >= 1
        await publish(js, good)
        await eventually(
            lambda: effects_reach(db, good.order, 1), what="event after the failure handled"
        )


async def _delivered_twice(js: JetStreamContext) -> Any:
    info = await js.consumer_info(ORDERS_STREAM, CONSUMER)
    # The second delivery of the first message has gone out once the consumer's delivered
    # sequence passed the stream's.
    return info if info.delivered.consumer_seq >= 2 else None


# --------------------------------------------------------------------------- tracing


def _span_ids(span: trace.Span) -> tuple[int, int, int | None]:
    context = span.get_span_context()
    parent = getattr(span, "parent", None)
    return context.trace_id, context.span_id, parent.span_id if parent is not None else None


async def test_handler_runs_in_the_trace_of_the_message(
    platform_db: Database, private_bus: Bus
) -> None:
    db, js = platform_db, private_bus.js
    configure_tracing("platform-tests")
    seen: dict[str, tuple[int, int, int | None]] = {}

    async def handler(session: AsyncSession, message: events_pb2.OrderCreated) -> None:
        seen[message.order] = _span_ids(trace.get_current_span())
        await write_effect(db)(session, message)

    traced, untraced = order_created(), order_created()
    async with consuming(js, db, handler):
        with tracer().start_as_current_span("produce") as producer:
            envelope = await publish(js, traced)
        await publish(js, untraced)
        await eventually(lambda: effects_reach(db, untraced.order, 1), what="untraced handled")
        await eventually(lambda: effects_reach(db, traced.order, 1), what="traced handled")

    _, trace_id, parent_span_id, _ = envelope.headers["traceparent"].split("-")
    assert trace_id == format(producer.get_span_context().trace_id, "032x")
    handler_trace, handler_span, handler_parent = seen[traced.order]
    assert format(handler_trace, "032x") == trace_id
    assert handler_parent == int(parent_span_id, 16)
    assert handler_span != int(parent_span_id, 16)
    # Without a traceparent the handler still runs in a (new, valid) consumer span.
    other_trace, _, other_parent = seen[untraced.order]
    assert other_trace not in (0, handler_trace)
    assert other_parent is None


async def test_a_batch_span_links_to_the_trace_of_every_event_in_it(
    platform_db: Database, private_bus: Bus
) -> None:
    db, js = platform_db, private_bus.js
    configure_tracing("platform-tests")
    links: list[set[int]] = []

    async def one(session: AsyncSession, message: events_pb2.OrderCreated) -> None:
        raise AssertionError("the batch handler should have taken it")

    async def many(session: AsyncSession, messages: list[events_pb2.OrderCreated]) -> None:
        span = trace.get_current_span()
        links.append({link.context.trace_id for link in span.links})  # type: ignore[attr-defined]

    producers = []
    for _ in range(3):
        with tracer().start_as_current_span("produce") as producer:
            await publish(js, order_created())
        producers.append(producer.get_span_context().trace_id)
    consumer = EventConsumer(js, db.sessions, db.metadata, consumer=CONSUMER,
                             subscriptions=[Subscription(events_pb2.OrderCreated, one,
                                                         batch_handler=many)])
    await consumer.start()
    try:
        await caught_up(js, CONSUMER, ORDERS_STREAM)
    finally:
        await consumer.stop()

    assert links == [set(producers)]


async def test_trace_flows_from_the_outbox_through_the_relay_to_the_handler(
    platform_db: Database, private_bus: Bus
) -> None:
    db, js = platform_db, private_bus.js
    configure_tracing("platform-tests")
    seen: dict[str, tuple[int, int, int | None]] = {}

    async def handler(session: AsyncSession, message: events_pb2.OrderCreated) -> None:
        seen[message.order] = _span_ids(trace.get_current_span())
        await write_effect(db)(session, message)

    message = order_created()
    relay = OutboxRelay(db.engine, db.metadata, js, poll_seconds=30)
    async with running(relay), consuming(js, db, handler):
        with tracer().start_as_current_span("capture order") as request_span:
            async with db.sessions.begin() as session:
                await add_event(
                    session, db.outbox, message, aggregate_id=message.order, source=SOURCE
                )
        await eventually(lambda: effects_reach(db, message.order, 1), what="handled")

    trace_id, _, parent = seen[message.order]
    assert trace_id == request_span.get_span_context().trace_id
    assert parent == request_span.get_span_context().span_id


# --------------------------------------------------------------------------- batch mode


async def test_batch_handler_takes_a_fetch_in_one_transaction_and_skips_seen_events(
    platform_db: Database, private_bus: Bus
) -> None:
    """Events already in the stream arrive in one fetch and reach the batch handler together;
    a stored duplicate (same ``ce-id``) and an event handled before are left out of it."""
    db, js = platform_db, private_bus.js
    batches: list[list[str]] = []

    async def one(session: AsyncSession, message: events_pb2.OrderCreated) -> None:
        raise AssertionError("the batch handler should have taken it")

    async def many(session: AsyncSession, messages: list[events_pb2.OrderCreated]) -> None:
        batches.append([m.order for m in messages])
        await session.execute(insert(db.effects), [{"order_name": m.order} for m in messages])

    seen = order_created()
    seen_envelope = envelope_for(seen)
    async with db.sessions.begin() as session:
        await session.execute(insert(db.inbox).values(consumer=CONSUMER,
                                                      event_id=seen_envelope.event_id))
    messages = [order_created() for _ in range(20)]
    envelopes = [await publish(js, m) for m in messages]
    assert not (await publish(js, envelopes[0], msg_id=f"again-{uuid.uuid4()}")).ack.duplicate
    await publish(js, seen_envelope)

    consumer = EventConsumer(js, db.sessions, db.metadata, consumer=CONSUMER,
                             subscriptions=[Subscription(events_pb2.OrderCreated, one,
                                                         batch_handler=many)])
    await consumer.start()
    try:
        await caught_up(js, CONSUMER, ORDERS_STREAM)
    finally:
        await consumer.stop()

    assert sorted(order for batch in batches for order in batch) == sorted(
        m.order for m in messages)
    assert len(batches) < len(messages)  # batched, not one by one
    assert [await db.effects_for(m.order) for m in messages] == [1] * len(messages)
    assert await db.effects_for(seen.order) == 0
    assert await db.count(db.inbox) == len(messages) + 1
    assert await db.count(db.dead_letter) == 0


async def test_the_next_fetch_is_handled_while_the_last_one_commits(
    platform_db: Database, private_bus: Bus
) -> None:
    """Two fetches are in flight at once: the second batch starts while the first is still
    in its transaction, so the consumer does not idle through every commit."""
    db, js = platform_db, private_bus.js
    first_open = asyncio.Event()
    overlapped = asyncio.Event()
    running = 0

    async def one(session: AsyncSession, message: events_pb2.OrderCreated) -> None:
        raise AssertionError("the batch handler should have taken it")

    async def many(session: AsyncSession, messages: list[events_pb2.OrderCreated]) -> None:
        nonlocal running
        running += 1
        if running > 1:
            overlapped.set()
        first_open.set()
        try:
            # The first batch keeps its transaction open until a second one has started.
            await asyncio.wait_for(overlapped.wait(), timeout=5)
            await session.execute(insert(db.effects), [{"order_name": m.order}
                                                       for m in messages])
        finally:
            running -= 1

    messages = [order_created() for _ in range(10)]
    for message in messages:
        await publish(js, message)
    consumer = EventConsumer(js, db.sessions, db.metadata, consumer=CONSUMER, batch_size=5,
                             subscriptions=[Subscription(events_pb2.OrderCreated, one,
                                                         batch_handler=many)])
    await consumer.start()
    try:
        await caught_up(js, CONSUMER, ORDERS_STREAM)
    finally:
        await consumer.stop()

    assert overlapped.is_set()
    assert [await db.effects_for(m.order) for m in messages] == [1] * len(messages)
    assert await db.count(db.dead_letter) == 0


async def test_one_by_one_applies_a_handler_to_each_event_of_a_fetch_in_one_transaction(
    platform_db: Database, private_bus: Bus
) -> None:
    db, js = platform_db, private_bus.js
    sessions_seen: list[int] = []

    async def handler(session: AsyncSession, message: events_pb2.OrderCreated) -> None:
        sessions_seen.append(id(session))
        await write_effect(db)(session, message)

    messages = [order_created() for _ in range(10)]
    for message in messages:
        await publish(js, message)
    consumer = EventConsumer(js, db.sessions, db.metadata, consumer=CONSUMER,
                             subscriptions=[Subscription(events_pb2.OrderCreated, handler,
                                                         batch_handler=one_by_one(handler))])
    await consumer.start()
    try:
        await caught_up(js, CONSUMER, ORDERS_STREAM)
    finally:
        await consumer.stop()

    assert [await db.effects_for(m.order) for m in messages] == [1] * len(messages)
    assert len(sessions_seen) == len(messages)
    assert len(set(sessions_seen)) < len(messages), "events of one fetch share a transaction"


async def test_a_failing_batch_falls_back_to_one_by_one_and_the_poison_event_alone_fails(
    platform_db: Database, private_bus: Bus
) -> None:
    """One poison event fails its batch: the batch's effects roll back, every event is then
    handled on its own, the good ones succeed and only the poison one is dead-lettered."""
    db, js = platform_db, private_bus.js
    poison = order_created("poison")
    good = [order_created() for _ in range(10)]

    async def one(session: AsyncSession, message: events_pb2.OrderCreated) -> None:
        if message.order == poison.order:
            raise RuntimeError("poison")
        await write_effect(db)(session, message)

    async def many(session: AsyncSession, messages: list[events_pb2.OrderCreated]) -> None:
        for message in messages:
            await one(session, message)

    for message in [*good[:5], poison, *good[5:]]:
        await publish(js, message)
    consumer = EventConsumer(js, db.sessions, db.metadata, consumer=CONSUMER,
                             subscriptions=[Subscription(events_pb2.OrderCreated, one,
                                                         batch_handler=many)],
                             max_deliver=2)
    await consumer.start()
    try:
        await caught_up(js, CONSUMER, ORDERS_STREAM)
    finally:
        await consumer.stop()

    assert [await db.effects_for(m.order) for m in good] == [1] * len(good)
    assert await db.effects_for(poison.order) == 0
    assert await db.count(db.dead_letter) == 1
    assert await db.count(db.inbox) == len(good)
