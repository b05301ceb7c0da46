"""Per-partner rate limits, in the gateway in process over its real database in front of a
real orders service: a burst past the quota is refused with 429 and stores nothing, other
partners keep their own budget, and every answer says what is left.

The quotas are per minute, so that the whole test runs inside one window however slow the
machine: which requests pass is decided by their count, not by the clock."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI
from gateway_kit import (
    assert_problem,
    client_of,
    key,
    new_partner,
    order_body,
    orders_of,
    serving,
)
from oms_devtools.inprocess import running_service
from oms_gateway.app import MIGRATIONS
from oms_gateway.partners.domain import Kind
from oms_gateway.settings import GatewaySettings
from oms_gateway.tables import idempotency_keys
from oms_orders.app import DEFINITION as ORDERS
from oms_orders.app import MIGRATIONS as ORDERS_MIGRATIONS
from oms_platform.migrations import upgrade
from oms_platform.service import Service
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

QUOTA = 3
GENEROUS = "generous-shop"


@pytest.fixture(scope="module")
async def orders_service(database_factory: Callable[[str], str],
                         nats_url: str) -> AsyncIterator[Service]:
    async with running_service(ORDERS, ORDERS_MIGRATIONS, database_url=database_factory(
            "gateway_limits_orders"), nats_url=nats_url) as service:
        yield service


@pytest.fixture(scope="module")
async def app(database_factory: Callable[[str], str],
              orders_service: Service) -> AsyncIterator[FastAPI]:
    url = database_factory("gateway_limits")
    upgrade(MIGRATIONS, url)
    async for serving_app in serving(GatewaySettings(
            database_url=url, orders_target=f"127.0.0.1:{orders_service.bound_port}",
            rate_limits={"sales_channel": f"{QUOTA}/minute"},
            partner_rate_limits={GENEROUS: "5/minute;100/hour"})):
        yield serving_app


@pytest.fixture(scope="module")
def engine(app: FastAPI) -> AsyncEngine:
    return app.state.engine  # type: ignore[no-any-return]


def remaining(reply: httpx.Response) -> list[int]:
    return [int(r) for r in re.findall(r";r=(\d+)", reply.headers["ratelimit"])]


async def stored_keys(engine: AsyncEngine, partner_id: str) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(idempotency_keys).where(
            idempotency_keys.c.partner_id == partner_id)))


async def test_a_burst_past_the_quota_is_429_and_stores_nothing_of_the_refused(
    app: FastAPI, engine: AsyncEngine, orders_service: Service,
) -> None:
    partner, secret = await new_partner(engine)
    _, other_secret = await new_partner(engine)
    channel = next(iter(partner.channels))
    bodies = [order_body(channel, external=f"burst-{n}") for n in range(QUOTA + 2)]
    async with client_of(app, secret) as client:
        replies = [await client.post("/v1/orders", json=body, headers=key())
                   for body in bodies]
    async with client_of(app, other_secret) as other:
        unaffected = await other.get("/v1/orders")

    assert [r.status_code for r in replies] == [201] * QUOTA + [429, 429]
    assert [remaining(r) for r in replies] == [[2], [1], [0], [0], [0]]
    for refused in replies[QUOTA:]:
        problem = assert_problem(refused, 429, "rate-limited")
        assert "3 per 1 minute" in problem["detail"]
        # The oldest request of the window leaves it within the minute, not sooner than a
        # second from now.
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.headers["ratelimit-policy"] == '"3 per 1 minute";q=3;w=60'
    assert await orders_of(orders_service, channel) == ["burst-0", "burst-1", "burst-2"]
    assert await stored_keys(engine, partner.partner_id) == QUOTA, "refused keys stay free"
    assert unaffected.status_code == 200, unaffected.text
    assert remaining(unaffected) == [QUOTA - 1], "another partner has its own budget"


async def test_concurrent_requests_spend_the_quota_exactly_once(
    app: FastAPI, engine: AsyncEngine,
) -> None:
    _, secret = await new_partner(engine)
    async with client_of(app, secret) as client:
        replies = await asyncio.gather(*(client.get("/v1/orders") for _ in range(QUOTA * 3)))
    statuses = sorted(r.status_code for r in replies)
    assert statuses == [200] * QUOTA + [429] * (QUOTA * 2), statuses


async def test_every_answer_carries_the_budget_and_replays_spend_it_too(
    app: FastAPI, engine: AsyncEngine,
) -> None:
    partner, secret = await new_partner(engine)
    headers = key()
    body = order_body(next(iter(partner.channels)))
    async with client_of(app, secret) as client:
        missing = await client.get("/v1/orders/00000000-0000-0000-0000-000000000000")
        first = await client.post("/v1/orders", json=body, headers=headers)
        replay = await client.post("/v1/orders", json=body, headers=headers)
    assert_problem(missing, 404, "not-found")
    assert replay.headers["idempotent-replayed"] == "true"
    assert [remaining(r) for r in (missing, first, replay)] == [[2], [1], [0]]
    async with client_of(app) as anonymous:
        refused = await anonymous.get("/v1/orders")
    assert_problem(refused, 401, "unauthenticated")
    assert "ratelimit" not in refused.headers, "no budget before the partner is known"


async def test_a_partners_own_limit_replaces_its_kinds(
    app: FastAPI, engine: AsyncEngine,
) -> None:
    _, generous = await new_partner(engine, partner_id=f"{GENEROUS}")
    _, carrier = await new_partner(engine, Kind.CARRIER)
    async with client_of(app, generous) as client:
        own = await client.get("/v1/orders")
    async with client_of(app, carrier) as client:
        default = await client.get(f"/v1/orders/{'0' * 8}-0000-0000-0000-{'0' * 12}")
    assert own.headers["ratelimit-policy"] == (
        '"5 per 1 minute";q=5;w=60, "100 per 1 hour";q=100;w=3600')
    assert remaining(own) == [4, 99]
    assert default.headers["ratelimit-policy"] == (
        '"100 per 1 second";q=100;w=1, "3600 per 1 minute";q=3600;w=60')
