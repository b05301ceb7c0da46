"""Webhooks out: domain events read from NATS JetStream (a real orders service publishes
them) queued in the gateway's database and delivered to real HTTP receivers started here,
signed per Standard Webhooks and verified with ``standardwebhooks`` as a receiver would;
retried with backoff (a short base, waited on, never slept), logged, replayed; and heard
only by the partners whose the event is."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import grpc
import nats
import pytest
import uvicorn
from fastapi import FastAPI
from gateway_webhooks_support import client_of, new_partner
from oms.common.v1 import common_pb2
from oms.orders.v1 import events_pb2 as orders_events
from oms.orders.v1 import orders_pb2, orders_pb2_grpc
from oms_devtools.inprocess import running_service
from oms_devtools.servers import free_port
from oms_devtools.testkit import eventually, publish
from oms_gateway.app import MIGRATIONS, create_app
from oms_gateway.partners.domain import Kind
from oms_gateway.settings import GatewaySettings
from oms_gateway.tables import webhook_deliveries
from oms_orders.app import DEFINITION as ORDERS
from oms_orders.app import MIGRATIONS as ORDERS_MIGRATIONS
from oms_platform.migrations import upgrade
from oms_platform.service import Service
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from standardwebhooks import Webhook

BASE_SECONDS = 0.2  # the backoff's base: 0.2 s, then 0.4 s, ...


class Receiver:
    """A partner's HTTP endpoint: records every request per path and answers each with the
    next status planned for the path (200 when none is left)."""

    def __init__(self) -> None:
        self.got: dict[str, list[tuple[dict[str, str], bytes]]] = defaultdict(list)
        self.plans: dict[str, list[int]] = defaultdict(list)
        self.url = ""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.got[scope["path"]].append(
            ({k.decode(): v.decode() for k, v in scope["headers"]}, body))
        plan = self.plans[scope["path"]]
        status = plan.pop(0) if plan else 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    def events(self, path: str, secret: str) -> list[dict[str, Any]]:
        """The bodies received on ``path``, each verified against ``secret``."""
        return [Webhook(secret).verify(body, headers) for headers, body in self.got[path]]


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[Receiver]:
    target = Receiver()
    server = uvicorn.Server(uvicorn.Config(target, host="127.0.0.1", port=free_port(),
                                           lifespan="off", log_config=None))
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started)
    target.url = f"http://127.0.0.1:{server.config.port}"
    yield target
    server.should_exit = True
    await task


@pytest.fixture(scope="module")
async def orders_service(database_factory: Callable[[str], str],
                         nats_url: str) -> AsyncIterator[Service]:
    async with running_service(ORDERS, ORDERS_MIGRATIONS, database_url=database_factory(
            "gw_hooks_out_orders"), nats_url=nats_url) as service:
        yield service


@pytest.fixture(scope="module")
async def orders(orders_service: Service) -> AsyncIterator[Any]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{orders_service.bound_port}") as channel:
        yield orders_pb2_grpc.OrdersServiceStub(channel)


@pytest.fixture(scope="module")
def settings(database_factory: Callable[[str], str], orders_service: Service,
             nats_url: str) -> GatewaySettings:
    url = database_factory("gw_hooks_out")
    upgrade(MIGRATIONS, url)
    return GatewaySettings(
        database_url=url, orders_target=f"127.0.0.1:{orders_service.bound_port}",
        nats_url=nats_url, webhook_allow_private_urls=True, webhook_max_attempts=4,
        webhook_backoff_base_seconds=BASE_SECONDS, webhook_poll_interval_seconds=0.05,
        webhook_timeout_seconds=30)  # a loaded machine is slow to answer, not failing


@pytest.fixture(scope="module")
async def app(settings: GatewaySettings) -> AsyncIterator[FastAPI]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture(scope="module")
def engine(app: FastAPI) -> AsyncEngine:
    return app.state.engine  # type: ignore[no-any-return]


async def new_order(orders: Any, channel: str) -> orders_pb2.Order:
    return await orders.CreateOrder(orders_pb2.CreateOrderRequest(
        request_id=str(uuid.uuid4()), order=orders_pb2.Order(
            channel=channel, external_order_id=uuid.uuid4().hex,
            shipping_address=common_pb2.Address(
                recipient="Ada", address_lines=["1 Market St"], locality="San Francisco",
                administrative_area="CA", postal_code="94105", region_code="US"),
            lines=[orders_pb2.OrderLine(sku="TSHIRT-BLK-M", quantity=1,
                                        unit_price=common_pb2.Money(currency_code="USD",
                                                                    amount="19.99"))])))


async def subscribe(app: FastAPI, key: str, url: str, *types: str) -> dict[str, Any]:
    async with client_of(app, key) as client:
        reply = await client.post("/v1/webhook-endpoints", json={
            "url": url, "eventTypes": list(types)}, headers={"Idempotency-Key": uuid.uuid4().hex})
    assert reply.status_code == 201, reply.text
    return reply.json()  # type: ignore[no-any-return]


async def queued(engine: AsyncEngine, endpoint: dict[str, Any]) -> int:
    endpoint_id = uuid.UUID(endpoint["name"].removeprefix("webhookEndpoints/"))
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(webhook_deliveries)
                                     .where(webhook_deliveries.c.endpoint_id == endpoint_id)))


def path() -> str:
    return f"/{uuid.uuid4().hex}"


async def test_an_order_event_reaches_its_channels_endpoint_signed_and_no_other_channels(
    app: FastAPI, engine: AsyncEngine, orders: Any, receiver: Receiver,
) -> None:
    ours, theirs = f"shop-{uuid.uuid4().hex[:8]}", f"shop-{uuid.uuid4().hex[:8]}"
    _, our_key, _ = await new_partner(engine, Kind.SALES_CHANNEL, channels=(ours,))
    _, their_key, _ = await new_partner(engine, Kind.SALES_CHANNEL, channels=(theirs,))
    our_path, their_path = path(), path()
    mine = await subscribe(app, our_key, receiver.url + our_path, "order.created")
    other = await subscribe(app, their_key, receiver.url + their_path, "order.created")
    assert mine["secret"].startswith("whsec_")

    order = await new_order(orders, ours)
    got = await eventually(lambda: receiver.events(our_path, mine["secret"]) or None)
    later = await new_order(orders, theirs)
    their_events = await eventually(lambda: receiver.events(their_path, other["secret"]) or None)

    assert [(e["type"], e["data"]["order"], e["data"]["channel"]) for e in got] == [
        ("order.created", order.name, ours)]
    headers = receiver.got[our_path][0][0]
    assert headers["webhook-id"].startswith("msg_") and headers["content-type"] == (
        "application/json")
    assert [e["data"]["order"] for e in their_events] == [later.name]
    # Each event's deliveries are queued together: had the other channel been entitled to
    # ours, its delivery would have been queued with ours.
    assert await queued(engine, other) == 1 and await queued(engine, mine) == 1


async def test_a_release_reaches_the_3pl_of_its_node_only(
    app: FastAPI, engine: AsyncEngine, receiver: Receiver, nats_url: str,
) -> None:
    node, elsewhere = f"node-{uuid.uuid4().hex[:6]}", f"node-{uuid.uuid4().hex[:6]}"
    _, key, _ = await new_partner(engine, Kind.THREE_PL, nodes=(node,))
    hook_path = path()
    endpoint = await subscribe(app, key, receiver.url + hook_path, "fulfilment.requested")
    client = await nats.connect(nats_url)
    try:
        js = client.jetstream()
        for target in (elsewhere, node):
            await publish(js, orders_events.OrderReleased(
                order=f"orders/{uuid.uuid4()}", node_id=target, channel="web"),
                partition=target)
    finally:
        await client.drain()
    got = await eventually(lambda: receiver.events(hook_path, endpoint["secret"]) or None)
    assert [e["data"]["nodeId"] for e in got] == [node]
    assert await queued(engine, endpoint) == 1


async def test_a_receiver_failing_twice_gets_it_on_the_third_attempt_after_backing_off(
    app: FastAPI, engine: AsyncEngine, orders: Any, receiver: Receiver,
) -> None:
    channel = f"shop-{uuid.uuid4().hex[:8]}"
    _, key, _ = await new_partner(engine, Kind.SALES_CHANNEL, channels=(channel,))
    hook_path = path()
    receiver.plans[hook_path] = [500, 503]
    endpoint = await subscribe(app, key, receiver.url + hook_path, "order.created")
    await new_order(orders, channel)
    log_path = f"/v1/{endpoint['name'].replace('webhookEndpoints', 'webhook-endpoints')}" \
               "/deliveries"

    async with client_of(app, key) as client:
        async def taken() -> dict[str, Any] | None:
            page = (await client.get(log_path)).json()
            deliveries = page.get("webhookDeliveries", [])
            return deliveries[0] if deliveries and deliveries[0]["state"] == (
                "STATE_SUCCEEDED") else None

        delivery = await eventually(taken)

    attempts = delivery["attempts"]
    assert [a.get("statusCode") for a in attempts] == [500, 503, 200]
    assert [a.get("error", "") for a in attempts] == ["HTTP 500", "HTTP 503", ""]
    assert delivery["attemptCount"] == 3
    times = [datetime.fromisoformat(a["attemptTime"]) for a in attempts]
    # Each wait at least the backoff: the base after the first failure, twice it after the
    # second (each attempt is due no earlier than its predecessor's end plus the wait).
    assert (times[1] - times[0]).total_seconds() >= BASE_SECONDS
    assert (times[2] - times[1]).total_seconds() >= 2 * BASE_SECONDS
    ids = {headers["webhook-id"] for headers, _ in receiver.got[hook_path]}
    assert len(receiver.got[hook_path]) == 3 and len(ids) == 1, "one message, three tries"


async def test_a_delivery_given_up_is_sent_again_by_a_replay_and_only_by_its_owner(
    app: FastAPI, engine: AsyncEngine, orders: Any, receiver: Receiver,
) -> None:
    channel = f"shop-{uuid.uuid4().hex[:8]}"
    _, key, _ = await new_partner(engine, Kind.SALES_CHANNEL, channels=(channel,))
    _, other_key, _ = await new_partner(engine, Kind.SALES_CHANNEL, channels=("elsewhere",))
    hook_path = path()
    receiver.plans[hook_path] = [500] * 4  # every attempt of the first round fails
    endpoint = await subscribe(app, key, receiver.url + hook_path, "order.created")
    await new_order(orders, channel)
    endpoint_path = endpoint["name"].replace("webhookEndpoints", "webhook-endpoints")

    async with client_of(app, key) as client:
        async def failed() -> dict[str, Any] | None:
            page = (await client.get(f"/v1/{endpoint_path}/deliveries")).json()
            found = page.get("webhookDeliveries", [])
            return found[0] if found and found[0]["state"] == "STATE_FAILED" else None

        delivery = await eventually(failed, timeout=30)
        assert len(delivery["attempts"]) == 4
        delivery_id = delivery["name"].removeprefix("webhookDeliveries/")
        replay_path = f"/v1/webhook-deliveries/{delivery_id}:replay"
        async with client_of(app, other_key) as stranger:
            for reply in (
                await stranger.post(replay_path, headers={"Idempotency-Key": "k1"}),
                await stranger.get(f"/v1/{endpoint_path}/deliveries"),
                await stranger.delete(f"/v1/{endpoint_path}"),
            ):
                assert reply.status_code == 404, reply.text
            assert (await stranger.get("/v1/webhook-endpoints")).json() == {}
        replayed = await client.post(replay_path, headers={"Idempotency-Key": "k1"})
        assert replayed.status_code == 200, replayed.text
        assert replayed.json()["state"] == "STATE_PENDING"
        again = await client.post(replay_path, headers={"Idempotency-Key": "k1"})
        assert again.content == replayed.content, "the stored answer: not replayed twice"

        async def delivered() -> dict[str, Any] | None:
            page = (await client.get(f"/v1/{endpoint_path}/deliveries")).json()
            found = page["webhookDeliveries"][0]
            return found if found["state"] == "STATE_SUCCEEDED" else None

        done = await eventually(delivered)
    assert [a.get("statusCode") for a in done["attempts"]] == [500] * 4 + [200]
    assert len(receiver.got[hook_path]) == 5
    assert len({headers["webhook-id"] for headers, _ in receiver.got[hook_path]}) == 1
    body = receiver.events(hook_path, endpoint["secret"])[-1]
    assert body["type"] == "order.created" and json.dumps(body)


async def test_an_endpoint_is_refused_with_every_bad_field_and_the_log_pages(
    app: FastAPI, engine: AsyncEngine, orders: Any, receiver: Receiver,
) -> None:
    channel = f"shop-{uuid.uuid4().hex[:8]}"
    _, key, _ = await new_partner(engine, Kind.SALES_CHANNEL, channels=(channel,))
    async with client_of(app, key) as client:
        refused = await client.post("/v1/webhook-endpoints", json={
            "url": "ftp://example.com/x", "eventTypes": ["order.created", "order.eaten",
                                                         "fulfilment.requested"]},
            headers={"Idempotency-Key": uuid.uuid4().hex})
        assert refused.status_code == 400
        assert {e["field"] for e in refused.json()["errors"]} == {
            "url", "eventTypes[1]", "eventTypes[2]"}
        hook_path = path()
        endpoint = await subscribe(app, key, receiver.url + hook_path, "order.created")
        for _ in range(3):
            await new_order(orders, channel)
        await eventually(lambda: len(receiver.got[hook_path]) == 3)
        endpoint_path = endpoint["name"].replace("webhookEndpoints", "webhook-endpoints")
        names, token = [], ""
        while True:
            page = (await client.get(f"/v1/{endpoint_path}/deliveries", params={
                "pageSize": 2, "pageToken": token})).json()
            names += [d["name"] for d in page["webhookDeliveries"]]
            token = page.get("nextPageToken", "")
            if not token:
                break
        assert len(names) == len(set(names)) == 3
        forged = await client.get(f"/v1/{endpoint_path}/deliveries",
                                  params={"pageToken": "eyJ4Ijo.bad"})
        assert forged.status_code == 400 and forged.json()["errors"][0]["field"] == "pageToken"
        listed = (await client.get("/v1/webhook-endpoints")).json()["webhookEndpoints"]
        assert [e["name"] for e in listed] == [endpoint["name"]]
        assert "secret" not in listed[0], "shown once, at creation"
        gone = await client.delete(f"/v1/{endpoint_path}")
        assert gone.status_code == 200
        assert (await client.get(f"/v1/{endpoint_path}/deliveries")).status_code == 404


async def test_a_delivery_claimed_by_a_gateway_that_died_is_sent_by_the_next(
    database_factory: Callable[[str], str], receiver: Receiver,
) -> None:
    """A replica claims a delivery and dies before sending it; once its lease lapses, the
    next gateway to start sends it. The queue is in the database, so a restart loses none."""
    from datetime import timedelta

    from oms_gateway.webhooks import store
    from oms_gateway.webhooks.signing import new_secret
    from oms_platform.db import create_engine, session_factory

    url = database_factory("gw_hooks_restart")
    upgrade(MIGRATIONS, url)
    engine = create_engine(url, pool_size=2, max_overflow=0)
    try:
        partner, _, _ = await new_partner(engine, Kind.SALES_CHANNEL, channels=("web",))
        hook_path = path()
        endpoint = await store.create_endpoint(engine, partner.partner_id,
                                               receiver.url + hook_path, ["order.created"], "",
                                               new_secret(), limit=20)
        assert endpoint is not None
        async with session_factory(engine).begin() as session:
            await store.enqueue(session, [endpoint], "msg_restart", "order.created",
                                b'{"type":"order.created"}', max_pending=10)
        dead = await store.claim_due(engine, 10, timedelta(seconds=1))
        assert [d.message_id for d in dead] == ["msg_restart"]
    finally:
        await engine.dispose()

    app = create_app(GatewaySettings(
        database_url=url, orders_target=f"127.0.0.1:{free_port()}",
        webhook_allow_private_urls=True, webhook_poll_interval_seconds=0.05))
    async with app.router.lifespan_context(app):
        await eventually(lambda: len(receiver.got[hook_path]) == 1)
    assert receiver.got[hook_path][0][0]["webhook-id"] == "msg_restart"
