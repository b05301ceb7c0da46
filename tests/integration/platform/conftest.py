"""Fixtures for the platform's integration tests: each test gets its own database and its own
NATS server, so no test sees another's outbox rows, streams or consumers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from oms_devtools.servers import EmbeddedNats
from oms_platform import bus
from oms_platform.db import create_engine, create_metadata, session_factory
from platform_testkit import Bus, Database, add_test_tables


@pytest.fixture
async def platform_db(database_factory: Callable[[str], str]) -> AsyncIterator[Database]:
    url = database_factory("platform")
    metadata = create_metadata()
    add_test_tables(metadata)
    engine = create_engine(url, pool_size=10, max_overflow=10)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    try:
        yield Database(url, engine, metadata, session_factory(engine))
    finally:
        await engine.dispose()


@pytest.fixture
async def private_bus(private_nats: EmbeddedNats) -> AsyncIterator[Bus]:
    """A connection to the test's own NATS, with the ``OMS_ORDERS`` stream created."""
    nc = await bus.connect(private_nats.url, name="platform-tests", attempts=20)
    js = nc.jetstream()
    await bus.ensure_stream(js, "orders")
    try:
        yield Bus(private_nats, nc, js)
    finally:
        await nc.close()
