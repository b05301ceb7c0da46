"""Helpers for the platform's integration tests: a throwaway database with the messaging
tables, a private JetStream, and reading a stream back."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from oms.orders.v1 import events_pb2
from oms_devtools.servers import EmbeddedNats
from oms_platform.outbox import OutboxRelay, add_event
from sqlalchemy import (
    BigInteger,
    Column,
    Identity,
    MetaData,
    Table,
    Text,
    func,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

ORDERS_STREAM = "OMS_ORDERS"
ORDER_CREATED_SUBJECT = "oms.orders.order_created"
SOURCE = "oms/platform-tests"


def add_test_tables(metadata: MetaData) -> Table:
    """A table a test handler writes its effect into (deliberately without a unique key, so a
    duplicated effect would show as a second row)."""
    return Table(
        "effects",
        metadata,
        Column("id", BigInteger, Identity(always=True), primary_key=True),
        Column("order_name", Text, nullable=False),
        Column("note", Text),
    )


@dataclass
class Database:
    url: str
    engine: AsyncEngine
    metadata: MetaData
    sessions: async_sessionmaker[AsyncSession]

    @property
    def outbox(self) -> Table:
        return self.metadata.tables["outbox"]

    @property
    def inbox(self) -> Table:
        return self.metadata.tables["inbox"]

    @property
    def dead_letter(self) -> Table:
        return self.metadata.tables["dead_letter"]

    @property
    def dead_outbox(self) -> Table:
        return self.metadata.tables["dead_outbox"]

    @property
    def effects(self) -> Table:
        return self.metadata.tables["effects"]

    async def count(self, table: Table, *where: Any) -> int:
        async with self.engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(table).where(*where)))

    async def unpublished(self) -> int:
        return await self.count(self.outbox, self.outbox.c.published_at.is_(None))

    async def outbox_event_ids(self) -> list[str]:
        """Every event id in the outbox, in outbox id (= publishing) order."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(self.outbox.c.event_id).order_by(self.outbox.c.id))
            return [str(event_id) for (event_id,) in rows]

    async def effects_for(self, order_name: str) -> int:
        return await self.count(self.effects, self.effects.c.order_name == order_name)


@dataclass
class Bus:
    server: EmbeddedNats
    nc: Client
    js: JetStreamContext


def order_created(prefix: str = "o") -> events_pb2.OrderCreated:
    return events_pb2.OrderCreated(
        order=f"orders/{prefix}-{uuid.uuid4()}", channel="channels/test", external_order_id="X-1"
    )


async def commit_events(db: Database, count: int, *, per_transaction: int = 1) -> list[str]:
    """Commits ``count`` OrderCreated events through the outbox; returns their ids in order."""
    ids: list[str] = []
    while len(ids) < count:
        async with db.sessions.begin() as session:
            for _ in range(min(per_transaction, count - len(ids))):
                message = order_created()
                event_id = await add_event(
                    session, db.outbox, message, aggregate_id=message.order, source=SOURCE
                )
                ids.append(str(event_id))
    return ids


async def stream_messages(js: JetStreamContext, stream: str = ORDERS_STREAM) -> list[RawStreamMsg]:
    """Every message stored in ``stream``, in stream order."""
    state = (await js.stream_info(stream)).state
    if state.messages == 0:
        return []
    seqs = list(range(state.first_seq, state.last_seq + 1))
    messages: list[RawStreamMsg] = []
    for start in range(0, len(seqs), 200):
        chunk = seqs[start : start + 200]
        messages += await asyncio.gather(*(js.get_msg(stream, seq) for seq in chunk))
    return messages


async def stream_event_ids(js: JetStreamContext, stream: str = ORDERS_STREAM) -> list[str]:
    return [(m.headers or {}).get("ce-id", "") for m in await stream_messages(js, stream)]


async def stream_count(js: JetStreamContext, stream: str = ORDERS_STREAM) -> int:
    return int((await js.stream_info(stream)).state.messages)


@contextlib.asynccontextmanager
async def running(relay: OutboxRelay) -> AsyncIterator[asyncio.Task[None]]:
    """Runs ``relay`` as a task for the body of the block, then stops it and awaits it."""
    task = asyncio.create_task(relay.run(), name="test-outbox-relay")
    try:
        yield task
    finally:
        await relay.stop()
        await asyncio.wait_for(task, 30)


async def listener_connected(db: Database) -> bool:
    """Whether a relay's LISTEN connection is open on this database."""
    async with db.engine.connect() as conn:
        n = await conn.scalar(
            text(
                "select count(*) from pg_stat_activity "
                "where datname = current_database() and query ilike 'LISTEN %'"
            )
        )
    return bool(n)


async def drained(db: Database) -> bool:
    """Whether every outbox row is marked published."""
    return await db.unpublished() == 0


async def stream_has(
    js: JetStreamContext, count: int, *, at_least: bool = False, stream: str = ORDERS_STREAM
) -> bool:
    stored = await stream_count(js, stream)
    return stored >= count if at_least else stored == count
