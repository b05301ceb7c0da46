"""The inventory service in-process, over real gRPC, PostgreSQL and NATS JetStream."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Collection, Iterator
from dataclasses import dataclass

import grpc
import nats
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from inventory_support import StreamReader
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from oms.common.v1 import common_pb2
from oms.inventory.v1 import events_pb2, inventory_pb2, inventory_pb2_grpc
from oms.orders.v1 import events_pb2 as order_events
from oms.orders.v1 import orders_pb2
from oms_devtools.inprocess import running_service
from oms_devtools.testkit import RENO, add_node, add_sku, address, caught_up, new_id, publish
from oms_inventory.app import DEFINITION, MIGRATIONS, SOURCE
from oms_inventory.tables import backorders, metadata, reservations, stock_ledger
from oms_platform import bus
from oms_platform.events import decode, event_type
from oms_platform.service import Service
from sqlalchemy import create_engine, func, select

Stub = inventory_pb2_grpc.InventoryServiceStub

LOS_ANGELES = (34.0522, -118.2437)
NEW_YORK = (40.7128, -74.0060)
EDISON = (40.5187, -74.4121)


ORDER_OUTCOMES = {event_type(t): t for t in (
    events_pb2.StockAllocated, events_pb2.StockBackordered, events_pb2.AllocationFailed)}


@dataclass(frozen=True)
class Received:
    subject: str
    headers: dict[str, str]
    event: Message


class InventoryEvents(StreamReader):
    """Every event the service publishes, by order, read from its stream."""

    def __init__(self, service: Service, js: JetStreamContext) -> None:
        super().__init__(service, js)
        self.by_order: dict[str, list[Received]] = defaultdict(list)

    def take(self, msg: Msg) -> None:
        headers = dict(msg.headers or {})
        if headers.get("ce-type") in ORDER_OUTCOMES:
            event = decode(headers, msg.data, ORDER_OUTCOMES.values())
            self.by_order[headers["ce-subject"]].append(Received(msg.subject, headers, event))

    async def wait_for(self, orders: Collection[str], timeout: float = 60.0,
                       count: int = 1) -> dict[str, list[Received]]:
        """Waits until each order has at least ``count`` events, then until every event
        committed by then has arrived: the lists returned are complete, not a first glimpse."""
        await self.wait(lambda: all(len(self.by_order.get(o, ())) >= count for o in orders),
                        timeout)
        await self.caught_up()
        return {order: list(self.by_order[order]) for order in orders}


@pytest.fixture(scope="module")
def database_url(database_factory) -> str:  # type: ignore[no-untyped-def]
    return str(database_factory("inventory"))


@pytest.fixture(scope="module")
async def service(database_url: str, nats_url: str) -> AsyncIterator[Service]:
    async with running_service(DEFINITION, MIGRATIONS, database_url=database_url,
                               nats_url=nats_url) as service:
        yield service


@pytest.fixture(scope="module")
async def stub(service: Service) -> AsyncIterator[Stub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.bound_port}") as channel:
        yield Stub(channel)


@pytest.fixture(scope="module")
async def nc(nats_url: str) -> AsyncIterator[Client]:
    client = await nats.connect(nats_url)
    yield client
    await client.drain()


@pytest.fixture(scope="module")
async def js(nc: Client) -> JetStreamContext:
    js = nc.jetstream()
    await bus.ensure_stream(js, "orders")
    return js


@pytest.fixture(scope="module")
async def events(service: Service, js: JetStreamContext) -> AsyncIterator[InventoryEvents]:
    collector = InventoryEvents(service, js)
    subscription = await js.subscribe("oms.inventory.>", stream="OMS_INVENTORY",
                                      cb=collector.on_message, ordered_consumer=True)
    yield collector
    await subscription.unsubscribe()


@pytest.fixture
def sync_engine(database_url: str) -> Iterator[object]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


async def adjust(stub: Stub, node_id: str, sku: str, delta: int,
                 request_id: str = "") -> inventory_pb2.StockLevel:
    return await stub.AdjustStock(inventory_pb2.AdjustStockRequest(
        node_id=node_id, sku=sku, delta=delta, reason=inventory_pb2.ADJUSTMENT_REASON_RECEIPT,
        request_id=request_id))


async def level(stub: Stub, node_id: str, sku: str) -> inventory_pb2.StockLevel:
    return await stub.GetStockLevel(inventory_pb2.GetStockLevelRequest(
        name=f"fulfilmentNodes/{node_id}/stockLevels/{sku}"))


def order_created(lines: list[tuple[str, int]],
                  shipping: common_pb2.Address | None = None) -> order_events.OrderCreated:
    return order_events.OrderCreated(
        order=f"orders/{uuid.uuid4().hex}",
        channel="test",
        external_order_id=uuid.uuid4().hex,
        shipping_address=shipping or address(LOS_ANGELES),
        lines=[orders_pb2.OrderLine(line_id=str(i), sku=sku, quantity=quantity)
               for i, (sku, quantity) in enumerate(lines, start=1)],
    )


async def refused(call: object) -> tuple[grpc.StatusCode, list[tuple[str, str]]]:
    """The status code and the BadRequest field violations of a failed call."""
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call  # type: ignore[misc]
    status = rpc_status.from_call(raised.value)
    violations: list[tuple[str, str]] = []
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            violations += [(v.field, v.description) for v in bad_request.field_violations]
    return raised.value.code(), violations


def test_migration_creates_exactly_the_tables(service: Service, sync_engine) -> None:  # type: ignore[no-untyped-def]
    with sync_engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


async def test_create_and_get_product(stub: Stub) -> None:
    sku = new_id("SKU")
    product = inventory_pb2.Product(sku=sku, title="Mug", gtin="4006381333931",
                                    weight=common_pb2.Weight(grams=350),
                                    dimensions=common_pb2.Dimensions(length_mm=120, width_mm=90,
                                                                     height_mm=100))
    created = await stub.CreateProduct(inventory_pb2.CreateProductRequest(product=product))
    assert created.name == f"products/{sku}"
    assert created.create_time.seconds > 0
    assert (created.title, created.gtin, created.weight.grams) == ("Mug", "4006381333931", 350)
    assert created.dimensions == product.dimensions

    fetched = await stub.GetProduct(inventory_pb2.GetProductRequest(name=created.name))
    assert fetched == created

    code, _ = await refused(stub.GetProduct(inventory_pb2.GetProductRequest(
        name=f"products/{new_id('SKU')}")))
    assert code == grpc.StatusCode.NOT_FOUND
    code, violations = await refused(stub.GetProduct(inventory_pb2.GetProductRequest(
        name=f"items/{sku}")))
    assert (code, [field for field, _ in violations]) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                          ["name"])


async def test_create_product_is_idempotent_by_request_id(stub: Stub) -> None:
    sku, request_id = new_id("SKU"), uuid.uuid4().hex
    request = inventory_pb2.CreateProductRequest(
        product=inventory_pb2.Product(sku=sku, title="first"), request_id=request_id)
    first = await stub.CreateProduct(request)
    request.product.title = "second"
    assert await stub.CreateProduct(request) == first

    code, _ = await refused(stub.CreateProduct(inventory_pb2.CreateProductRequest(
        product=inventory_pb2.Product(sku=sku), request_id=uuid.uuid4().hex)))
    assert code == grpc.StatusCode.ALREADY_EXISTS
    code, _ = await refused(stub.CreateProduct(inventory_pb2.CreateProductRequest(
        product=inventory_pb2.Product(sku=sku))))
    assert code == grpc.StatusCode.ALREADY_EXISTS


async def test_concurrent_retries_of_one_create_return_one_product(stub: Stub) -> None:
    request = inventory_pb2.CreateProductRequest(
        product=inventory_pb2.Product(sku=new_id("SKU")), request_id=uuid.uuid4().hex)
    results = await asyncio.gather(*(stub.CreateProduct(request) for _ in range(10)))
    assert all(result == results[0] for result in results)


async def test_invalid_product_reports_every_violation_and_stores_nothing(stub: Stub) -> None:
    code, violations = await refused(stub.CreateProduct(inventory_pb2.CreateProductRequest(
        product=inventory_pb2.Product(sku="bad sku", gtin="123",
                                      weight=common_pb2.Weight(grams=-1)))))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert [field for field, _ in violations] == ["product.sku", "product.gtin",
                                                  "product.weight.grams"]
    code, violations = await refused(stub.CreateProduct(inventory_pb2.CreateProductRequest()))
    assert violations == [("product", "required")]


async def test_create_and_get_fulfilment_node(stub: Stub) -> None:
    node_id, request_id = new_id("node"), uuid.uuid4().hex
    request = inventory_pb2.CreateFulfilmentNodeRequest(
        fulfilment_node=inventory_pb2.FulfilmentNode(
            node_id=node_id, display_name="Reno DC",
            type=inventory_pb2.NODE_TYPE_THIRD_PARTY_LOGISTICS,
            address=address(RENO, administrative_area="NV"), priority=3),
        request_id=request_id)
    created = await stub.CreateFulfilmentNode(request)
    assert created.name == f"fulfilmentNodes/{node_id}"
    assert created.type == inventory_pb2.NODE_TYPE_THIRD_PARTY_LOGISTICS
    assert created.address == request.fulfilment_node.address
    assert (created.display_name, created.priority) == ("Reno DC", 3)
    assert created.create_time.seconds > 0
    assert await stub.GetFulfilmentNode(
        inventory_pb2.GetFulfilmentNodeRequest(name=created.name)) == created
    assert await stub.CreateFulfilmentNode(request) == created

    request.request_id = uuid.uuid4().hex
    code, _ = await refused(stub.CreateFulfilmentNode(request))
    assert code == grpc.StatusCode.ALREADY_EXISTS
    code, _ = await refused(stub.GetFulfilmentNode(
        inventory_pb2.GetFulfilmentNodeRequest(name=f"fulfilmentNodes/{new_id('node')}")))
    assert code == grpc.StatusCode.NOT_FOUND


async def test_invalid_node_reports_every_violation_and_stores_nothing(stub: Stub) -> None:
    node_id = new_id("node")
    code, violations = await refused(stub.CreateFulfilmentNode(
        inventory_pb2.CreateFulfilmentNodeRequest(fulfilment_node=inventory_pb2.FulfilmentNode(
            node_id=node_id, address=address(None), priority=-1))))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert [field for field, _ in violations] == [
        "fulfilment_node.type", "fulfilment_node.address.location", "fulfilment_node.priority",
    ]
    code, _ = await refused(stub.GetFulfilmentNode(
        inventory_pb2.GetFulfilmentNodeRequest(name=f"fulfilmentNodes/{node_id}")))
    assert code == grpc.StatusCode.NOT_FOUND

    code, violations = await refused(stub.CreateFulfilmentNode(
        inventory_pb2.CreateFulfilmentNodeRequest(fulfilment_node=inventory_pb2.FulfilmentNode(
            node_id="Not_Valid", type=inventory_pb2.NODE_TYPE_WAREHOUSE,
            address=address((91.0, -200.0))))))
    assert [field for field, _ in violations] == [
        "fulfilment_node.node_id",
        "fulfilment_node.address.location.latitude",
        "fulfilment_node.address.location.longitude",
    ]


async def test_adjust_stock_is_idempotent_by_request_id(stub: Stub) -> None:
    node_id = await add_node(stub, RENO)
    sku = await add_sku(stub)
    request_id = uuid.uuid4().hex
    concurrent = await asyncio.gather(*(adjust(stub, node_id, sku, 10, request_id)
                                        for _ in range(5)))
    first = concurrent[0]
    assert all(result == first for result in concurrent)
    assert (first.on_hand, first.reserved, first.available) == (10, 0, 10)
    assert first.name == f"fulfilmentNodes/{node_id}/stockLevels/{sku}"
    assert await adjust(stub, node_id, sku, 10, request_id) == first

    second = await adjust(stub, node_id, sku, -3, uuid.uuid4().hex)
    assert (second.on_hand, second.available) == (7, 7)
    assert await level(stub, node_id, sku) == second

    code, violations = await refused(adjust(stub, node_id, sku, 5, request_id))
    assert (code, [field for field, _ in violations]) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                          ["request_id"])


async def test_adjust_stock_validates_before_anything(stub: Stub) -> None:
    code, violations = await refused(stub.AdjustStock(inventory_pb2.AdjustStockRequest(
        node_id="Bad Node", sku="", delta=0)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert [field for field, _ in violations] == ["node_id", "sku", "delta", "reason"]

    node_id, sku = await add_node(stub, RENO), await add_sku(stub)
    unknown_node, unknown_sku = new_id("node"), new_id("SKU")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await adjust(stub, unknown_node, sku, 1)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert unknown_node in (raised.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await adjust(stub, node_id, unknown_sku, 1)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert unknown_sku in (raised.value.details() or "")
    code, _ = await refused(level(stub, node_id, unknown_sku))
    assert code == grpc.StatusCode.NOT_FOUND
    untouched = await level(stub, node_id, sku)
    assert (untouched.on_hand, untouched.reserved) == (0, 0)


async def test_on_hand_never_drops_below_reserved(stub: Stub, js: JetStreamContext,
                                                  events: InventoryEvents) -> None:
    node_id = await add_node(stub, RENO)
    sku = await add_sku(stub, {node_id: 3})
    event = order_created([(sku, 2)])
    await publish(js, event)
    await events.wait_for([event.order])

    request_id = uuid.uuid4().hex
    code, _ = await refused(adjust(stub, node_id, sku, -2, request_id))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    after = await level(stub, node_id, sku)
    assert (after.on_hand, after.reserved, after.available) == (3, 2, 1)
    # The refused change did not use up its request id.
    assert (await adjust(stub, node_id, sku, 5, request_id)).on_hand == 8
    assert (await adjust(stub, node_id, sku, -6)).on_hand == 2


async def test_order_is_allocated_at_the_nearest_node(
    stub: Stub, js: JetStreamContext, events: InventoryEvents, service: Service,
) -> None:
    west = await add_node(stub, RENO, priority=9)
    east = await add_node(stub, EDISON, priority=1)
    sku = await add_sku(stub, {west: 5, east: 5})

    to_la = order_created([(sku, 2)], address(LOS_ANGELES))
    to_ny = order_created([(sku, 1)], address(None, administrative_area="NY"))
    envelope = await publish(js, to_la)
    await publish(js, to_ny)
    received = await events.wait_for([to_la.order, to_ny.order])

    (allocated,) = received[to_la.order]
    assert allocated.subject == "oms.inventory.stock_allocated"
    assert allocated.headers["ce-type"] == "oms.inventory.v1.StockAllocated"
    assert allocated.headers["ce-source"] == SOURCE
    assert allocated.headers["ce-subject"] == to_la.order
    assert allocated.headers["ce-specversion"] == "1.0"
    assert allocated.headers["ce-id"] == allocated.headers["Nats-Msg-Id"]
    assert allocated.headers["ce-id"] != str(envelope.event_id)
    assert "ce-time" in allocated.headers
    assert isinstance(allocated.event, events_pb2.StockAllocated)
    assert allocated.event.order == to_la.order
    assert [(a.node_id, [(line.line_id, line.sku, line.quantity) for line in a.lines])
            for a in allocated.event.allocations] == [(west, [("1", sku, 2)])]
    assert allocated.event.allocate_time.seconds > 0

    (by_state,) = received[to_ny.order]
    assert by_state.event.allocations[0].node_id == east  # type: ignore[attr-defined]

    listed = await stub.ListReservations(inventory_pb2.ListReservationsRequest(
        order=to_la.order))
    assert [(r.order, r.line_id, r.node_id, r.sku, r.quantity)
            for r in listed.reservations] == [(to_la.order, "1", west, sku, 2)]
    assert (await level(stub, west, sku)).reserved == 2
    assert (await level(stub, east, sku)).reserved == 1

    assert service.runtime is not None
    async with service.runtime.engine.connect() as conn:
        ledger = (await conn.execute(
            select(stock_ledger.c.kind, stock_ledger.c.on_hand_delta,
                   stock_ledger.c.reserved_delta, stock_ledger.c.reference)
            .where(stock_ledger.c.node_id == west).order_by(stock_ledger.c.id))).all()
    assert [tuple(row) for row in ledger] == [("RECEIPT", 5, 0, None),
                                              ("RESERVATION", 0, 2, to_la.order)]


async def test_the_whole_order_ships_from_one_node_that_has_every_line(
    stub: Stub, js: JetStreamContext, events: InventoryEvents,
) -> None:
    near = await add_node(stub, RENO)
    far = await add_node(stub, EDISON)
    mug = await add_sku(stub, {near: 10, far: 10})
    tea = await add_sku(stub, {near: 1, far: 10})
    event = order_created([(mug, 1), (tea, 2), (mug, 1)], address(LOS_ANGELES))
    await publish(js, event)
    (allocated,) = (await events.wait_for([event.order]))[event.order]
    assert [a.node_id for a in allocated.event.allocations] == [far]  # type: ignore[attr-defined]
    assert [(r.line_id, r.sku, r.quantity) for r in (await stub.ListReservations(
        inventory_pb2.ListReservationsRequest(order=event.order))).reservations] == [
        ("1", mug, 1), ("2", tea, 2), ("3", mug, 1)]
    assert (await level(stub, far, mug)).reserved == 2
    assert (await level(stub, near, mug)).reserved == 0


async def test_an_unknown_sku_is_refused_and_the_rest_allocated(
    stub: Stub, js: JetStreamContext, events: InventoryEvents,
) -> None:
    node_id = await add_node(stub, RENO)
    sku = await add_sku(stub, {node_id: 1})
    unknown = new_id("SKU")
    event = order_created([(sku, 1), (unknown, 3)], address(None, region_code="FR"))
    await publish(js, event)
    received = (await events.wait_for([event.order], count=2))[event.order]
    # Published together, read in either order.
    (allocated,) = [r for r in received if isinstance(r.event, events_pb2.StockAllocated)]
    (failed,) = [r for r in received if isinstance(r.event, events_pb2.AllocationFailed)]
    assert allocated.event.complete  # type: ignore[attr-defined]
    assert failed.subject == "oms.inventory.allocation_failed"
    assert isinstance(failed.event, events_pb2.AllocationFailed)
    assert [(line.line_id, line.sku, line.quantity, line.reason)
            for line in failed.event.lines] == [
        ("2", unknown, 3, events_pb2.ALLOCATION_FAILURE_REASON_UNKNOWN_SKU)]
    assert [(r.line_id, r.quantity) for r in (await stub.ListReservations(
        inventory_pb2.ListReservationsRequest(order=event.order))).reservations] == [("1", 1)]
    assert (await level(stub, node_id, sku)).reserved == 1


async def test_a_redelivered_event_reserves_once(
    stub: Stub, js: JetStreamContext, events: InventoryEvents, service: Service,
) -> None:
    node_id = await add_node(stub, RENO)
    sku = await add_sku(stub, {node_id: 10})
    event = order_created([(sku, 3)])
    envelope = await publish(js, event)
    await events.wait_for([event.order])

    # The same event again (same ce-id) past JetStream's duplicate window, and the same
    # order as a new event (another ce-id): the inbox drops the first, the state guard the
    # second.
    await publish(js, envelope, msg_id=uuid.uuid4().hex)
    await publish(js, event)
    await caught_up(js, DEFINITION.name, "OMS_ORDERS")
    await events.caught_up()

    assert len(events.by_order[event.order]) == 1
    listed = await stub.ListReservations(inventory_pb2.ListReservationsRequest(
        order=event.order))
    assert [(r.line_id, r.quantity) for r in listed.reservations] == [("1", 3)]
    assert (await level(stub, node_id, sku)).reserved == 3


async def test_copies_of_one_order_racing_for_the_last_unit_allocate_once(
    stub: Stub, js: JetStreamContext, events: InventoryEvents, service: Service,
) -> None:
    node_id = await add_node(stub, RENO)
    sku = await add_sku(stub, {node_id: 1})
    event = order_created([(sku, 1)])
    await asyncio.gather(*(publish(js, event) for _ in range(8)))
    await caught_up(js, DEFINITION.name, "OMS_ORDERS")
    await events.caught_up()

    (only,) = events.by_order[event.order]
    assert isinstance(only.event, events_pb2.StockAllocated)
    assert service.runtime is not None
    async with service.runtime.engine.connect() as conn:
        waiting = await conn.scalar(select(func.count()).select_from(backorders)
                                    .where(backorders.c.order_name == event.order))
    assert waiting == 0
    assert (await level(stub, node_id, sku)).reserved == 1


async def test_list_reservations_needs_an_order_name(stub: Stub) -> None:
    code, violations = await refused(stub.ListReservations(
        inventory_pb2.ListReservationsRequest(order="123")))
    assert (code, [field for field, _ in violations]) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                          ["order"])


@pytest.mark.parametrize(("stock", "orders"), [([50], 200), ([25, 25], 120)])
async def test_concurrent_orders_never_oversell(
    stub: Stub, js: JetStreamContext, events: InventoryEvents, service: Service,
    stock: list[int], orders: int,
) -> None:
    nodes = [await add_node(stub, location) for location in (RENO, EDISON)[: len(stock)]]
    sku = await add_sku(stub, dict(zip(nodes, stock, strict=True)))
    created = [order_created([(sku, 1)], address(NEW_YORK)) for _ in range(orders)]
    await asyncio.gather(*(publish(js, event) for event in created))
    received = await events.wait_for([event.order for event in created], timeout=120)

    outcomes = [r.event for per_order in received.values() for r in per_order]
    allocated = [e for e in outcomes if isinstance(e, events_pb2.StockAllocated)]
    # The product's policy is the default, DENY: what finds no stock is refused.
    refused = [e for e in outcomes if isinstance(e, events_pb2.AllocationFailed)]
    assert len(outcomes) == orders
    assert len(allocated) == sum(stock)
    assert len(refused) == orders - sum(stock)

    for node_id, units in zip(nodes, stock, strict=True):
        after = await level(stub, node_id, sku)
        assert (after.on_hand, after.reserved, after.available) == (units, units, 0)
    assert service.runtime is not None
    order_names = [event.order for event in created]
    async with service.runtime.engine.connect() as conn:
        reserved_orders = (await conn.execute(
            select(reservations.c.order_name, func.sum(reservations.c.quantity))
            .where(reservations.c.sku == sku).group_by(reservations.c.order_name))).all()
        waiting = await conn.scalar(select(func.count()).select_from(backorders)
                                    .where(backorders.c.order_name.in_(order_names)))
        ledger_reserved = await conn.scalar(
            select(func.sum(stock_ledger.c.reserved_delta)).where(stock_ledger.c.sku == sku))
    assert len(reserved_orders) == sum(stock)
    assert all(quantity == 1 for _, quantity in reserved_orders)
    assert {name for name, _ in reserved_orders} == {e.order for e in allocated}
    assert waiting == 0
    assert ledger_reserved == sum(stock)
