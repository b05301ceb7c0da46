"""A partner posts orders to the gateway; inventory reserves stock through events."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest
from e2e_kit import EAST, WEST, add_node, add_sku, order_json, stream_messages
from oms.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from oms_devtools.servers import EmbeddedNats
from oms_devtools.stack import Stack

pytestmark = pytest.mark.e2e

# A paid order that is wholly allocated goes straight on to the warehouse.
RELEASED = "ORDER_STATUS_RELEASED"
SETTLED = {RELEASED, "ORDER_STATUS_AWAITING_STOCK"}


async def wait_for_status(gateway: httpx.AsyncClient, location: str, statuses: set[str],
                          timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            reply = await gateway.get(location)
        except httpx.TransportError as error:  # a kept-alive connection the server closed
            last = repr(error)
        else:
            if reply.status_code == 200 and reply.json().get("status") in statuses:
                return reply.json()
            last = reply.text
        if time.monotonic() > deadline:
            raise AssertionError(f"{location} never reached {statuses}: {last}")
        await asyncio.sleep(0.1)


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

    replies = await asyncio.gather(*(post_order(gateway, body, key) for _ in range(5)))
    assert {r.status_code for r in replies} == {201}
    assert len({r.json()["name"] for r in replies}) == 1

    again = await post_order(gateway, body)
    assert again.json()["name"] == replies[0].json()["name"]

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
    assert {"order.lines[0].quantity", "order.lines[0].unit_price.currency_code",
            "order.shipping_address.recipient", "order.shipping_address.locality"} <= fields

    retry_with_fix = await post_order(gateway, order_json("SKU-1") | {
        "externalOrderId": body["externalOrderId"], "channel": body["channel"]})
    assert retry_with_fix.status_code == 201, "the refused request stored nothing"

    malformed = await gateway.post("/v1/orders", json={"lines": "nope"})
    assert malformed.status_code == 400
    assert (await gateway.get(f"/v1/orders/{uuid.uuid4()}")).status_code == 404


async def test_orders_accepted_while_nats_is_down_are_published_once_when_it_returns(
    gateway: httpx.AsyncClient, inventory: inventory_pb2_grpc.InventoryServiceStub,
    stack: Stack, stack_nats: EmbeddedNats,
) -> None:
    west = await add_node(inventory, WEST)
    sku = await add_sku(inventory, {west: 100})

    stack_nats.stop()
    try:
        replies = await asyncio.gather(*(post_order(gateway, order_json(sku)) for _ in range(20)))
        assert [r.status_code for r in replies] == [201] * 20
        names = {r.json()["name"] for r in replies}
        await asyncio.sleep(1.0)
        for name in list(names)[:3]:
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
    """SIGKILL while orders stream in; the partner retries what failed with the same
    Idempotency-Key, as partners do. Every order then exists once and is reserved once."""
    west = await add_node(inventory, WEST)
    sku = await add_sku(inventory, {west: 1000})
    bodies = {uuid.uuid4().hex: order_json(sku) for _ in range(60)}

    async def post_all(keys: list[str]) -> dict[str, str]:
        async def one(key: str) -> tuple[str, httpx.Response | None]:
            try:
                return key, await post_order(gateway, bodies[key], key)
            except httpx.TransportError:
                return key, None
        replies = await asyncio.gather(*(one(key) for key in keys))
        return {key: r.json()["name"] for key, r in replies if r is not None
                and r.status_code == 201}

    first_wave = asyncio.create_task(post_all(list(bodies)))
    await asyncio.sleep(0.3)
    stack.services[victim].kill()
    accepted = await first_wave
    await asyncio.to_thread(stack.restart, victim)
    deadline = time.monotonic() + 60
    while len(accepted) < len(bodies) and time.monotonic() < deadline:
        accepted |= await post_all([key for key in bodies if key not in accepted])
        await asyncio.sleep(0.5)

    assert len(accepted) == len(bodies)
    names = set(accepted.values())
    assert len(names) == len(bodies), "a retried order is the same order"
    for name in names:
        order = await wait_for_status(gateway, f"/v1/{name}", {RELEASED}, timeout=40)
        assert order["allocations"][0]["lines"][0]["quantity"] == 1
    level = await inventory.GetStockLevel(
        inventory_pb2.GetStockLevelRequest(name=f"fulfilmentNodes/{west}/stockLevels/{sku}"))
    assert level.reserved == len(names), "every order reserved exactly once"
