"""A partner posts orders to the gateway; inventory reserves stock through events."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from typing import Any

import grpc
import httpx
import pytest
from e2e_kit import EAST, WEST, database_unreachable, order_json, stream_messages
from grpc_health.v1 import health_pb2, health_pb2_grpc
from oms.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from oms_devtools.servers import EmbeddedNats
from oms_devtools.stack import Stack
from oms_devtools.testkit import add_node, add_sku, eventually

pytestmark = pytest.mark.e2e

NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
NAMES = health_pb2.HealthCheckResponse.ServingStatus
# Orders a kill test posts at most while it waits for some to be in flight.
MAX_ORDERS = 400
# A paid order that is wholly allocated goes straight on to the warehouse.
RELEASED = "ORDER_STATUS_RELEASED"
SETTLED = {RELEASED, "ORDER_STATUS_AWAITING_STOCK"}


async def wait_for_status(gateway: httpx.AsyncClient, location: str, statuses: set[str],
                          timeout: float = 20.0) -> dict[str, Any]:
    async def order() -> Any:
        reply = await gateway.get(location)
        return reply.json() if reply.status_code == 200 else reply.text

    # A kept-alive connection the server closed is a TransportError: asked again.
    return await eventually(  # type: ignore[no-any-return]
        order, until=lambda got: isinstance(got, dict) and got.get("status") in statuses,
        timeout=timeout, what=f"{location} in {statuses}", retry_on=(httpx.TransportError,))


async def overall_health_is(stack: Stack, service: str, status: int,
                            timeout: float = 20.0) -> None:
    async with grpc.aio.insecure_channel(stack.services[service].endpoint) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        await eventually(lambda: health.Check(health_pb2.HealthCheckRequest(service="")),
                         until=lambda reply: reply.status == status, timeout=timeout,
                         what=f"{service} health {NAMES.Name(status)}")


async def gateway_ready(gateway: httpx.AsyncClient, timeout: float = 30.0) -> None:
    """The gateway reaches a serving orders service (after a restart, its channel may still
    be waiting to reconnect)."""
    await eventually(lambda: gateway.get("/readyz"), until=lambda r: r.status_code == 200,
                     timeout=timeout, what="the gateway ready", retry_on=(httpx.TransportError,))


async def post_order(gateway: httpx.AsyncClient, body: dict[str, Any],
                     key: str | None = None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return await gateway.post("/v1/orders", json=body, headers=headers)


async def test_an_order_posted_to_the_gateway_is_allocated_at_the_nearest_node(
    gateway: httpx.AsyncClient, inventory: inventory_pb2_grpc.InventoryServiceStub,
    stack: Stack, stack_nats: EmbeddedNats,
) -> None:
    west, east = await add_node(inventory, WEST), await add_node(inventory, EAST)
    sku = await add_sku(inventory, {west: 5, east: 5})

    traceparent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"
    reply = await gateway.post("/v1/orders", json=order_json(sku, 2),
                               headers={"traceparent": traceparent})
    assert reply.status_code == 201, reply.text
    created = reply.json()
    assert created["status"] == "ORDER_STATUS_PENDING_ALLOCATION"
    assert reply.headers["Location"] == f"/v1/{created['name']}"

    order = await wait_for_status(gateway, reply.headers["Location"], {RELEASED})
    assert order["allocations"] == [
        {"nodeId": west, "lines": [{"lineId": "1", "sku": sku, "quantity": 2}]}
    ]
    level = await inventory.GetStockLevel(
        inventory_pb2.GetStockLevelRequest(name=f"fulfilmentNodes/{west}/stockLevels/{sku}"))
    assert (level.on_hand, level.reserved, level.available) == (5, 2, 3)

    trace_id = traceparent.split("-")[1]
    created_events = [
        m for m in await stream_messages(stack_nats.url, "OMS_ORDERS", "oms.orders.order_created")
        if m.headers and m.headers.get("ce-subject") == order["name"]
    ]
    assert len(created_events) == 1
    headers = created_events[0].headers or {}
    assert headers["ce-type"] == "oms.orders.v1.OrderCreated"
    assert headers["ce-source"] == "/oms/orders"
    assert headers["ce-specversion"] == "1.0"
    assert headers["Nats-Msg-Id"] == headers["ce-id"]
    assert headers["traceparent"].split("-")[1] == trace_id

    allocated = [
        m for m in await stream_messages(stack_nats.url, "OMS_INVENTORY",
                                         "oms.inventory.stock_allocated")
        if m.headers and m.headers.get("ce-subject") == order["name"]
    ]
    assert len(allocated) == 1
    assert (allocated[0].headers or {})["traceparent"].split("-")[1] == trace_id, (
        "the consumer's span continues the producer's trace"
    )


async def test_retries_and_duplicate_channel_orders_create_one_order(
    gateway: httpx.AsyncClient, inventory: inventory_pb2_grpc.InventoryServiceStub,
) -> None:
    west = await add_node(inventory, WEST)
    sku = await add_sku(inventory, {west: 10})
    body = order_json(sku)
    key = uuid.uuid4().hex

    # Concurrent requests with one key: one runs, the others find it in flight (409) or, once
    # it answered, get its stored answer; retried, every one gets that answer byte for byte.
    replies = await asyncio.gather(*(post_order(gateway, body, key) for _ in range(5)))
    assert {r.status_code for r in replies} <= {201, 409}
    assert 201 in {r.status_code for r in replies}
    replayed = await eventually(lambda: post_order(gateway, body, key),
                                until=lambda r: r.status_code == 201,
                                what="the stored answer replayed")
    assert replayed.headers["idempotent-replayed"] == "true"
    assert {r.content for r in replies if r.status_code == 201} == {replayed.content}

    again = await post_order(gateway, body)  # a new key: the channel's order id is the same
    assert again.json()["name"] == replayed.json()["name"]

    order = await wait_for_status(gateway, f"/v1/{again.json()['name']}", SETTLED)
    level = await inventory.GetStockLevel(
        inventory_pb2.GetStockLevelRequest(name=f"fulfilmentNodes/{west}/stockLevels/{sku}"))
    assert order["status"] == RELEASED
    assert level.reserved == 1


async def test_invalid_orders_are_problem_details_and_store_nothing(
    gateway: httpx.AsyncClient,
) -> None:
    body = order_json("SKU-1")
    body["lines"] = [{"sku": "SKU-1", "quantity": 0,
                      "unitPrice": {"currencyCode": "XXY", "amount": "-1"}}]
    body["shippingAddress"] = {"recipient": "", "regionCode": "US"}

    reply = await post_order(gateway, body)

    assert reply.status_code == 400
    assert reply.headers["content-type"] == "application/problem+json"
    problem = reply.json()
    assert problem["status"] == 400 and problem["type"].endswith("/invalid-argument")
    fields = {e["field"] for e in problem["errors"]}
    assert {"lines[0].quantity", "lines[0].unitPrice.currencyCode",
            "shippingAddress.recipient", "shippingAddress.locality"} <= fields

    retry_with_fix = await post_order(gateway, order_json("SKU-1") | {
        "externalOrderId": body["externalOrderId"], "channel": body["channel"]})
    assert retry_with_fix.status_code == 201, "the refused request stored nothing"

    malformed = await gateway.post("/v1/orders", json={"lines": "nope"})
    assert malformed.status_code == 400
    assert malformed.json()["errors"] == [{"field": "lines", "detail": "must be an array"}]
    assert (await gateway.get(f"/v1/orders/{uuid.uuid4()}")).status_code == 404

    for reply, status in [
        (await gateway.post("/v1/orders", content=b"\xff{}",
                            headers={"content-type": "application/json"}), 400),
        (await gateway.post("/v1/orders", content=b"{",
                            headers={"content-type": "application/json"}), 400),
        (await gateway.get("/v1/no-such-thing"), 404),
        (await gateway.put("/v1/orders"), 405),
    ]:
        assert reply.status_code == status, reply.text
        assert reply.headers["content-type"] == "application/problem+json", reply.text
        assert reply.json()["status"] == status


async def test_orders_accepted_while_nats_is_down_are_published_once_when_it_returns(
    gateway: httpx.AsyncClient, inventory: inventory_pb2_grpc.InventoryServiceStub,
    stack: Stack, stack_nats: EmbeddedNats,
) -> None:
    west = await add_node(inventory, WEST)
    sku = await add_sku(inventory, {west: 100})

    stack_nats.stop()
    try:
        # Posted once orders itself reports NATS gone, so they are taken during the outage.
        await overall_health_is(stack, "orders", NOT_SERVING)
        replies = await asyncio.gather(*(post_order(gateway, order_json(sku)) for _ in range(20)))
        assert [r.status_code for r in replies] == [201] * 20
        names = {r.json()["name"] for r in replies}
        for name in names:
            still = (await gateway.get(f"/v1/{name}")).json()
            assert still["status"] == "ORDER_STATUS_PENDING_ALLOCATION"
    finally:
        stack_nats.start()

    for name in names:
        order = await wait_for_status(gateway, f"/v1/{name}", SETTLED, timeout=30)
        assert order["status"] == RELEASED
    published = [
        m.headers.get("ce-subject")
        for m in await stream_messages(stack_nats.url, "OMS_ORDERS", "oms.orders.order_created")
        if m.headers and m.headers.get("ce-subject") in names
    ]
    assert sorted(published) == sorted(names), "every event exactly once"
    level = await inventory.GetStockLevel(
        inventory_pb2.GetStockLevelRequest(name=f"fulfilmentNodes/{west}/stockLevels/{sku}"))
    assert level.reserved == 20


@pytest.mark.parametrize("victim", ["inventory", "orders"])
async def test_a_service_killed_mid_flow_loses_nothing(
    victim: str, gateway: httpx.AsyncClient,
    inventory: inventory_pb2_grpc.InventoryServiceStub, stack: Stack,
) -> None:
    """SIGKILL while orders stream in, once some are provably in flight (accepted, not yet
    allocated); the partner retries what failed with the same Idempotency-Key, as partners
    do. Every order then exists once and is reserved once, and no answer was a 500."""
    west = await add_node(inventory, WEST)
    sku = await add_sku(inventory, {west: 1000})
    bodies: dict[str, dict[str, Any]] = {}
    accepted: dict[str, str] = {}
    statuses: list[int] = []
    killed = asyncio.Event()

    async def post(key: str) -> None:
        try:
            reply = await post_order(gateway, bodies[key], key)
        except httpx.TransportError:
            return
        statuses.append(reply.status_code)
        if reply.status_code == 201:
            accepted[key] = reply.json()["name"]
        else:
            assert reply.headers.get("retry-after"), reply.text

    async def partner() -> None:
        """Posts new orders one after another until shortly after the kill."""
        after_kill = 0
        while after_kill < 3 and len(bodies) < MAX_ORDERS:
            key = uuid.uuid4().hex
            bodies[key] = order_json(sku)
            await post(key)
            after_kill += killed.is_set()

    async def kill_once_in_flight() -> set[str]:
        """Inventory is frozen (SIGSTOP) once orders stream in, so the orders accepted after
        that provably wait for their allocation; the victim is killed while they do, and a
        frozen inventory thaws (or, the victim, dies) with them in flight."""
        await eventually(lambda: accepted or None, what="a first order accepted")
        frozen = stack.services["inventory"].process
        assert frozen is not None
        frozen.send_signal(signal.SIGSTOP)
        try:
            first = len(accepted)
            waiting = await eventually(
                lambda: _pending(gateway, list(accepted.values())[first:]),
                what="orders accepted while inventory is frozen, awaiting allocation")
            stack.services[victim].kill()
            killed.set()
        finally:
            if frozen.poll() is None:
                frozen.send_signal(signal.SIGCONT)
        return waiting

    partners = [asyncio.create_task(partner()) for _ in range(8)]
    in_flight = await kill_once_in_flight()
    await asyncio.gather(*partners)
    assert in_flight, "the kill came while orders awaited their allocation"

    await asyncio.to_thread(stack.restart, victim)
    deadline = time.monotonic() + 60
    while len(accepted) < len(bodies) and time.monotonic() < deadline:
        await gateway_ready(gateway)
        await asyncio.gather(*(post(key) for key in bodies if key not in accepted))

    assert len(accepted) == len(bodies)
    assert set(statuses) <= {201, 503}, "a lost service is a 503 to retry, never a 500"
    names = set(accepted.values())
    assert len(names) == len(bodies), "a retried order is the same order"
    for name in names:
        order = await wait_for_status(gateway, f"/v1/{name}", {RELEASED}, timeout=40)
        assert order["allocations"][0]["lines"][0]["quantity"] == 1
    level = await inventory.GetStockLevel(
        inventory_pb2.GetStockLevelRequest(name=f"fulfilmentNodes/{west}/stockLevels/{sku}"))
    assert level.reserved == len(names), "every order reserved exactly once"


async def test_orders_without_its_database_answers_503_with_retry_after_never_500(
    gateway: httpx.AsyncClient, inventory: inventory_pb2_grpc.InventoryServiceStub,
    stack: Stack,
) -> None:
    west = await add_node(inventory, WEST)
    sku = await add_sku(inventory, {west: 10})
    key = uuid.uuid4().hex
    body = order_json(sku)

    with database_unreachable(stack.database_url("orders")):
        for reply in (await post_order(gateway, body, key),
                      await gateway.get(f"/v1/orders/{uuid.uuid4()}")):
            assert reply.status_code == 503, reply.text
            assert reply.headers["content-type"] == "application/problem+json"
            assert int(reply.headers["retry-after"]) >= 1
            assert reply.json()["status"] == 503

    await gateway_ready(gateway)
    retried = await post_order(gateway, body, key)
    assert retried.status_code == 201, retried.text
    await wait_for_status(gateway, f"/v1/{retried.json()['name']}", {RELEASED})
    assert stack.services["orders"].alive(), "orders rode out the outage"
    access = stack.services["gateway"].log_path.read_text()
    assert "status=503" in access and "status=500" not in access


async def _pending(gateway: httpx.AsyncClient, names: list[str]) -> set[str] | None:
    """The orders among ``names`` still awaiting their allocation; None while there are none."""
    replies = await asyncio.gather(*(gateway.get(f"/v1/{name}") for name in names))
    pending = {name for name, reply in zip(names, replies, strict=True)
               if reply.json()["status"] == "ORDER_STATUS_PENDING_ALLOCATION"}
    return pending or None
