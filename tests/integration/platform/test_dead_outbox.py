"""Outbox rows that can never be published are set aside in ``dead_outbox`` and never hold
back the rows behind them; operators list and replay them. Real PostgreSQL and JetStream,
each test with its own database and NATS server."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
from nats.js.api import StreamConfig
from oms_devtools.testkit import eventually
from oms_platform import bus, events
from oms_platform.cli import main
from oms_platform.outbox import (
    OutboxRelay,
    add_event,
    count_dead_events,
    dead_events,
    replay_dead_events,
)
from oms_platform.service import ServiceDefinition
from platform_testkit import (
    ORDER_CREATED_SUBJECT,
    ORDERS_STREAM,
    SOURCE,
    Bus,
    Database,
    commit_events,
    drained,
    order_created,
    running,
    stream_event_ids,
    stream_has,
)
from sqlalchemy import insert

MIB = 1024 * 1024


async def commit_big(db: Database, size: int) -> str:
    """Commits an OrderCreated whose body is over ``size`` bytes, as an order with thousands
    of lines would be."""
    message = order_created("big")
    message.external_order_id = "x" * size
    async with db.sessions.begin() as session:
        event_id = await add_event(session, db.outbox, message, aggregate_id=message.order,
                                   source=SOURCE)
    return str(event_id)


async def commit_row(db: Database, *, subject: str | None = None,
                     headers: dict[str, str] | None = None, payload: bytes | None = None) -> str:
    """Commits an outbox row as a faulty writer might have stored it."""
    message = order_created("odd")
    envelope = events.encode(message, aggregate_id=message.order, source=SOURCE)
    async with db.engine.begin() as conn:
        await conn.execute(insert(db.outbox).values(
            event_id=envelope.event_id, subject=subject or envelope.subject,
            headers={**envelope.headers, **(headers or {})},
            payload=envelope.payload if payload is None else payload))
    return str(envelope.event_id)


async def test_an_event_over_the_max_payload_is_set_aside_and_the_ones_behind_it_published(
    platform_db: Database, private_bus: Bus
) -> None:
    db, js = platform_db, private_bus.js
    before = await commit_events(db, 2)
    big = await commit_big(db, MIB)
    after = await commit_events(db, 3)

    # Batches of two: the events behind the big one come in batches of their own.
    relay = OutboxRelay(db.engine, db.metadata, js, batch_size=2)
    async with running(relay):
        await eventually(lambda: drained(db), what="every event but the big one published")
        await eventually(lambda: stream_has(js, 5), what="the events around the big one stored")

    assert await stream_event_ids(js) == before + after
    assert big not in await db.outbox_event_ids()
    assert await count_dead_events(db.engine, db.metadata) == 1
    [dead] = await dead_events(db.engine, db.metadata)
    assert (str(dead.event_id), dead.subject, dead.attempts) == (big, ORDER_CREATED_SUBJECT, 1)
    assert dead.size > MIB
    assert "max payload" in dead.error
    assert relay.set_aside == 1

    # Replayed, it is back at the end of the outbox; still too big, it is set aside again.
    assert await replay_dead_events(db.engine, db.metadata, [dead.id]) == 1
    assert await db.outbox_event_ids() == [*before, *after, big]
    assert await count_dead_events(db.engine, db.metadata) == 0
    assert await relay.publish_batch() == 1
    [again] = await dead_events(db.engine, db.metadata)
    assert (str(again.event_id), again.attempts) == (big, 1)
    assert await stream_event_ids(js) == before + after


async def test_an_event_over_the_streams_limit_is_published_when_replayed_after_it_is_raised(
    platform_db: Database, private_bus: Bus
) -> None:
    db, js = platform_db, private_bus.js
    await js.update_stream(StreamConfig(name=ORDERS_STREAM,
                                        subjects=events.stream_subjects("orders"),
                                        duplicate_window=bus.DUPLICATE_WINDOW_SECONDS,
                                        max_msg_size=4096))
    first = await commit_events(db, 1)
    big = await commit_big(db, 8192)
    last = await commit_events(db, 1)

    relay = OutboxRelay(db.engine, db.metadata, js, poll_seconds=0.2)
    async with running(relay):
        await eventually(lambda: stream_has(js, 2), what="the events around the big one published")
        [dead] = await dead_events(db.engine, db.metadata)
        assert str(dead.event_id) == big
        assert "BadRequestError" in dead.error and dead.attempts == 1

        await bus.ensure_stream(js, "orders")  # the operator raises the limit, and replays
        assert await replay_dead_events(db.engine, db.metadata, [uuid.UUID(big)]) == 1
        await eventually(lambda: stream_has(js, 3), what="the replayed event published")
        await eventually(lambda: drained(db), what="nothing left to publish")

    assert await stream_event_ids(js) == first + last + [big]
    assert await count_dead_events(db.engine, db.metadata) == 0


@pytest.mark.parametrize("fault", ["header name", "wildcard subject", "headers over max payload"])
async def test_a_malformed_row_is_set_aside_at_once(
    platform_db: Database, private_bus: Bus, fault: str
) -> None:
    """Rows the server would answer with a closed connection (looking like an outage) or with
    no responders are refused before they are sent."""
    db, js = platform_db, private_bus.js
    max_payload = private_bus.nc.max_payload
    rows = {
        "header name": {"headers": {"bad header": "x"}},
        "wildcard subject": {"subject": "oms.orders.*"},
        "headers over max payload": {"headers": {"x-note": "n" * 200},
                                     "payload": b"{}".ljust(max_payload - 100)},
    }
    before = await commit_events(db, 1)
    bad = await commit_row(db, **rows[fault])  # type: ignore[arg-type]
    after = await commit_events(db, 1)

    relay = OutboxRelay(db.engine, db.metadata, js)
    assert await relay.publish_batch() == 3

    assert await stream_event_ids(js) == before + after
    [dead] = await dead_events(db.engine, db.metadata)
    assert (str(dead.event_id), dead.attempts) == (bad, 1)
    assert private_bus.nc.is_connected


async def test_an_event_no_stream_takes_is_set_aside_after_max_attempts(
    platform_db: Database, private_bus: Bus
) -> None:
    """No stream answering could also be a stream being recreated: the row is retried, and
    set aside only once it has failed ``max_attempts`` times."""
    db, js = platform_db, private_bus.js
    before = await commit_events(db, 1)
    lost = await commit_row(db, subject="oms.nowhere.order_created")
    after = await commit_events(db, 1)

    relay = OutboxRelay(db.engine, db.metadata, js, max_attempts=3, poll_seconds=0.05)
    async with running(relay):
        await eventually(lambda: stream_has(js, 2), what="the events around it published")
        await eventually(lambda: drained(db), what="nothing left to publish")

    assert await stream_event_ids(js) == before + after
    [dead] = await dead_events(db.engine, db.metadata)
    assert (str(dead.event_id), dead.attempts) == (lost, 3)
    assert "NoStreamResponseError" in dead.error
    assert relay.failures == 2


async def test_an_outage_sets_nothing_aside_however_long_it_lasts(
    platform_db: Database, private_bus: Bus
) -> None:
    db, server = platform_db, private_bus.server
    relay_nc = await bus.connect(server.url, name="relay")
    relay = OutboxRelay(db.engine, db.metadata, relay_nc.jetstream(), max_attempts=1,
                        publish_timeout=0.5, poll_seconds=0.05)
    try:
        async with running(relay):
            await asyncio.to_thread(server.stop)
            await eventually(lambda: not relay_nc.is_connected, what="relay sees NATS down")
            expected = await commit_events(db, 20)
            await eventually(lambda: relay.failures >= 3, what="three failed attempts")
            assert await db.unpublished() == 20

            await asyncio.to_thread(server.start)
            await eventually(lambda: drained(db), timeout=30, what="outbox drained after outage")
    finally:
        await relay_nc.close()

    assert await stream_event_ids(private_bus.js) == expected
    assert await count_dead_events(db.engine, db.metadata) == 0


async def test_operators_list_count_and_replay_from_the_command_line(
    platform_db: Database, private_bus: Bus, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db = platform_db
    definition = ServiceDefinition("platform-tests", db.metadata, lambda server, runtime: ())
    monkeypatch.setenv("OMS_DATABASE_URL", db.url)

    async def run(*argv: str) -> str:
        # In a thread of its own, as the command runs its own event loop.
        await asyncio.to_thread(main, definition, Path("unused"), list(argv))
        return capsys.readouterr().out

    first, second = [await commit_row(db, subject="oms.orders.*") for _ in range(2)]
    await commit_events(db, 1)
    assert await OutboxRelay(db.engine, db.metadata, private_bus.js).publish_batch() == 3
    capsys.readouterr()  # the relay's log lines

    assert await run("outbox", "count") == "2\n"
    listed = [json.loads(line) for line in (await run("outbox", "list")).splitlines()]
    assert [row["event_id"] for row in listed] == [first, second]
    assert set(listed[0]) == {"id", "event_id", "subject", "size", "attempts", "error",
                              "created_at", "failed_at"}
    limited = (await run("outbox", "list", "--limit", "1")).splitlines()
    assert [json.loads(line)["event_id"] for line in limited] == [first]

    assert await run("outbox", "replay", second) == "1 moved back into the outbox\n"
    assert await run("outbox", "replay", str(listed[0]["id"])) == "1 moved back into the outbox\n"
    assert await run("outbox", "count") == "0\n"
    assert await db.unpublished() == 2
    with pytest.raises(SystemExit):
        await run("outbox", "replay")
