"""Fulfilment over real gRPC, PostgreSQL and NATS, with inventory running in-process for its
nodes and bins: releases become fulfilment orders with their bins, pick lists by each
strategy, confirmation, a short pick published once, redelivery and cancellation."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import grpc
import nats
import pytest
from google.type import timeofday_pb2
from nats.js import JetStreamContext
from oms.fulfilment.v1 import events_pb2, fulfilment_pb2, fulfilment_pb2_grpc
from oms.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from oms.orders.v1 import events_pb2 as order_events
from oms.orders.v1 import orders_pb2
from oms_devtools.inprocess import running_service
from oms_devtools.testkit import add_node, caught_up, eventually, new_id, publish
from oms_fulfilment.app import MIGRATIONS, definition
from oms_fulfilment.settings import FulfilmentSettings
from oms_inventory.app import MIGRATIONS as INVENTORY_MIGRATIONS
from oms_inventory.app import definition as inventory_definition
from oms_inventory.settings import InventorySettings
from oms_platform import bus
from oms_platform.events import decode

Stub = fulfilment_pb2_grpc.FulfilmentServiceStub
BINS = [("A-01-01", "ambient"), ("A-02-01", "ambient"), ("B-02-01", "ambient"),
        ("C-01-01", "cold")]


@pytest.fixture(scope="module")
async def inventory(database_factory, nats_url: str):  # type: ignore[no-untyped-def]
    async with running_service(inventory_definition(InventorySettings()), INVENTORY_MIGRATIONS,
                               database_url=database_factory("inventory"),
                               nats_url=nats_url) as service, \
            grpc.aio.insecure_channel(f"127.0.0.1:{service.bound_port}") as channel:
        yield service, inventory_pb2_grpc.InventoryServiceStub(channel)


@pytest.fixture(scope="module")
async def stub(inventory, database_factory, nats_url: str) -> AsyncIterator[Stub]:  # type: ignore[no-untyped-def]
    settings = FulfilmentSettings(inventory_target=f"127.0.0.1:{inventory[0].bound_port}",
                                  node_cache_seconds=0)
    async with running_service(definition(settings), MIGRATIONS,
                               database_url=database_factory("fulfilment"),
                               nats_url=nats_url) as service, \
            grpc.aio.insecure_channel(f"127.0.0.1:{service.bound_port}") as channel:
        yield Stub(channel)


@pytest.fixture(scope="module")
async def js(nats_url: str) -> AsyncIterator[JetStreamContext]:
    client = await nats.connect(nats_url)
    js = client.jetstream()
    for producer in ("orders", "inventory", "fulfilment"):
        await bus.ensure_stream(js, producer)
    yield js
    await client.drain()


async def warehouse(inventory_stub, stub: Stub, skus: dict[str, str]) -> str:  # type: ignore[no-untyped-def]
    node_id = await add_node(inventory_stub, cutoff_time=timeofday_pb2.TimeOfDay(hours=15),
                             time_zone="America/Los_Angeles",
                             bins=[inventory_pb2.Bin(bin_code=c, zone=z) for c, z in BINS])
    await stub.BatchSetSlots(fulfilment_pb2.BatchSetSlotsRequest(slots=[
        fulfilment_pb2.Slot(node_id=node_id, sku=sku, bin_code=code)
        for sku, code in skus.items()]))
    return node_id


def release(node_id: str, lines: list[tuple[str, int]], *, priority: bool = False,
            order: str | None = None) -> order_events.OrderReleased:
    order = order or f"orders/{uuid.uuid4()}"
    return order_events.OrderReleased(
        order=order, orders=[order], node_id=node_id, priority=priority,
        service_level=orders_pb2.SERVICE_LEVEL_STANDARD,
        lines=[order_events.ReleasedLine(order=order, line_id=f"l{i}", sku=sku, quantity=q)
               for i, (sku, q) in enumerate(lines, start=1)])


async def fulfilment_orders(stub: Stub, node_id: str, count: int):  # type: ignore[no-untyped-def]
    reply = await eventually(
        lambda: stub.ListFulfilmentOrders(fulfilment_pb2.ListFulfilmentOrdersRequest(
            filter=f'node_id = "{node_id}"')),
        until=lambda r: len(r.fulfilment_orders) >= count,
        what=f"{count} fulfilment orders at {node_id}")
    return {o.order: o for o in reply.fulfilment_orders}


async def test_a_release_becomes_one_fulfilment_order_with_its_bins(inventory, stub, js):  # type: ignore[no-untyped-def]
    sku1, sku2, unslotted = new_id("SKU"), new_id("SKU"), new_id("SKU")
    node_id = await warehouse(inventory[1], stub, {sku1: "A-01-01", sku2: "C-01-01"})
    event = release(node_id, [(sku1, 2), (sku2, 1), (unslotted, 1)], priority=True)
    first = await publish(js, event, partition=node_id)
    (found,) = (await fulfilment_orders(stub, node_id, 1)).values()
    assert found.status == fulfilment_pb2.FULFILMENT_ORDER_STATUS_OPEN
    assert found.priority
    assert [(line.sku, line.bin_code, line.needs_slot) for line in found.lines] == [
        (sku1, "A-01-01", False), (sku2, "C-01-01", False), (unslotted, "", True)]
    # 15:00 in Los Angeles, the release's day or the next.
    assert found.promised_ship_time.ToDatetime().hour in (22, 23)

    # Redelivered (same event after the duplicate window) and released again (a new event
    # id): still one fulfilment order, unchanged.
    again = await publish(js, event, partition=node_id, event_id=first.event_id,
                          msg_id=str(uuid.uuid4()))
    twice = await publish(js, event, partition=node_id)
    await caught_up(js, "fulfilment", again)
    await caught_up(js, "fulfilment", twice)
    reply = await stub.ListFulfilmentOrders(fulfilment_pb2.ListFulfilmentOrdersRequest(
        filter=f'node_id = "{node_id}"'))
    assert [o.name for o in reply.fulfilment_orders] == [found.name]

    # Waiting for its slot, it stays off the lists; the slot brings it on.
    empty = await stub.CreatePickList(fulfilment_pb2.CreatePickListRequest(node_id=node_id))
    assert list(empty.pick_lists) == []
    slotted = await stub.BatchSetSlots(fulfilment_pb2.BatchSetSlotsRequest(slots=[
        fulfilment_pb2.Slot(node_id=node_id, sku=unslotted, bin_code="B-02-01")]))
    assert slotted.lines_slotted == 1
    made = await stub.CreatePickList(fulfilment_pb2.CreatePickListRequest(
        node_id=node_id, strategy=fulfilment_pb2.PICK_STRATEGY_SINGLE_ORDER))
    (single,) = made.pick_lists
    # Serpentine: up aisle A, down aisle B, up aisle C.
    assert [s.bin_code for s in single.stops] == ["A-01-01", "B-02-01", "C-01-01"]


async def test_batch_pick_confirm_and_a_short_pick_published_once(inventory, stub, js):  # type: ignore[no-untyped-def]
    sku1, sku2 = new_id("SKU"), new_id("SKU")
    node_id = await warehouse(inventory[1], stub, {sku1: "A-02-01", sku2: "A-01-01"})
    shorted = await js.subscribe(f"oms.fulfilment.pick_shorted.{node_id}",
                                 ordered_consumer=True)
    standard = release(node_id, [(sku1, 2)])
    express = release(node_id, [(sku1, 1), (sku2, 1)], priority=True)
    for event in (standard, express):
        await publish(js, event, partition=node_id)
    await fulfilment_orders(stub, node_id, 2)

    request = fulfilment_pb2.CreatePickListRequest(
        node_id=node_id, strategy=fulfilment_pb2.PICK_STRATEGY_BATCH, request_id=new_id("run"))
    (batch,) = (await stub.CreatePickList(request)).pick_lists
    (retried,) = (await stub.CreatePickList(request)).pick_lists
    assert retried.name == batch.name
    assert [(s.bin_code, s.quantity, [a.tote for a in s.allocations]) for s in batch.stops] == [
        ("A-01-01", 1, [1]), ("A-02-01", 3, [1, 2])]
    assert batch.stops[1].allocations[0].order == express.order

    await stub.ConfirmPick(fulfilment_pb2.ConfirmPickRequest(
        name=batch.name, sequence=1, picked_quantity=1))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.ConfirmPick(fulfilment_pb2.ConfirmPickRequest(
            name=batch.name, sequence=2, picked_quantity=1))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    short = fulfilment_pb2.ConfirmPickRequest(
        name=batch.name, sequence=2, picked_quantity=2,
        short_reason=fulfilment_pb2.SHORT_REASON_BIN_EMPTY)
    done = await stub.ConfirmPick(short)
    assert done.completed
    assert (await stub.ConfirmPick(short)) == done  # the same confirmation again

    message = await shorted.next_msg(timeout=30)
    event = decode(dict(message.headers or {}), message.data, [events_pb2.PickShorted])
    assert (event.order, event.sku, event.bin_code, event.quantity, event.reason) == (
        standard.order, sku1, "A-02-01", 1, events_pb2.PICK_SHORT_REASON_BIN_EMPTY)
    with pytest.raises(nats.errors.TimeoutError):
        await shorted.next_msg(timeout=2)

    orders = await fulfilment_orders(stub, node_id, 2)
    assert orders[express.order].status == fulfilment_pb2.FULFILMENT_ORDER_STATUS_PICKED
    line = orders[standard.order].lines[0]
    assert (line.picked_quantity, line.short_quantity, line.short_reason) == (
        1, 1, fulfilment_pb2.SHORT_REASON_BIN_EMPTY)
    assert orders[standard.order].status == fulfilment_pb2.FULFILMENT_ORDER_STATUS_PICKED
    stats = await stub.GetFloorStats(fulfilment_pb2.GetFloorStatsRequest(node_id=node_id))
    assert (stats.pick_lists, stats.units_per_list, stats.stops_per_list) == (1, 4.0, 2.0)
    assert (stats.lines_per_stop, stats.units_shorted) == (1.5, 1)


async def test_zone_and_wave_lists(inventory, stub, js):  # type: ignore[no-untyped-def]
    ambient, cold = new_id("SKU"), new_id("SKU")
    node_id = await warehouse(inventory[1], stub, {ambient: "A-01-01", cold: "C-01-01"})
    events = [release(node_id, [(ambient, 1), (cold, 1)]) for _ in range(2)]
    for event in events:
        await publish(js, event, partition=node_id)
    await fulfilment_orders(stub, node_id, 2)
    zone = await stub.CreatePickList(fulfilment_pb2.CreatePickListRequest(
        node_id=node_id, strategy=fulfilment_pb2.PICK_STRATEGY_ZONE))
    assert [(p.zone, [s.quantity for s in p.stops]) for p in zone.pick_lists] == [
        ("ambient", [2]), ("cold", [2])]

    later = release(node_id, [(ambient, 3)])
    await publish(js, later, partition=node_id)
    await fulfilment_orders(stub, node_id, 3)
    (wave,) = (await stub.CreatePickList(fulfilment_pb2.CreatePickListRequest(
        node_id=node_id, strategy=fulfilment_pb2.PICK_STRATEGY_WAVE,
        due_before={"seconds": 4_000_000_000}))).pick_lists
    assert [(s.bin_code, s.quantity) for s in wave.stops] == [("A-01-01", 3)]


async def test_a_cancel_before_picking_cancels_and_a_3pl_release_is_not_picked_here(
    inventory, stub, js,  # type: ignore[no-untyped-def]
) -> None:
    sku = new_id("SKU")
    node_id = await warehouse(inventory[1], stub, {sku: "A-01-01"})
    event = release(node_id, [(sku, 2)])
    await publish(js, event, partition=node_id)
    await fulfilment_orders(stub, node_id, 1)
    await publish(js, order_events.OrderCancelled(order=event.order, whole_order=True,
                                                  reason="customer request"))
    cancelled = await eventually(
        lambda: fulfilment_orders(stub, node_id, 1),
        until=lambda found: found[event.order].status
        == fulfilment_pb2.FULFILMENT_ORDER_STATUS_CANCELLED)
    assert cancelled[event.order].cancel_reason == "customer request"
    assert cancelled[event.order].lines[0].cancelled_quantity == 2
    empty = await stub.CreatePickList(fulfilment_pb2.CreatePickListRequest(node_id=node_id))
    assert list(empty.pick_lists) == []

    third_party = await add_node(inventory[1], type=inventory_pb2.NODE_TYPE_THIRD_PARTY_LOGISTICS)
    await publish(js, release(third_party, [(sku, 1)]), partition=third_party)
    (found,) = (await fulfilment_orders(stub, third_party, 1)).values()
    assert found.status == fulfilment_pb2.FULFILMENT_ORDER_STATUS_AWAITING_THIRD_PARTY
