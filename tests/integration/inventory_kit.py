"""Helpers for the inventory allocation tests: the service in-process on real PostgreSQL and
JetStream, the orders its events are about, and every allocation event the service publishes
read back from its stream. Nodes, SKUs and publishing come from the test kit."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import inventory_support
import pytest
from google.protobuf.message import Message
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from oms.common.v1 import common_pb2
from oms.inventory.v1 import events_pb2, inventory_pb2
from oms.orders.v1 import events_pb2 as order_events
from oms.orders.v1 import orders_pb2
from oms_devtools.testkit import address, caught_up
from oms_inventory.app import DEFINITION
from oms_inventory.tables import order_allocations
from oms_platform.events import decode, event_type
from oms_platform.service import Service
from sqlalchemy import func, update

# The service, its database and clients are the fixtures the catalogue and stock tests use.
Stub = inventory_support.Stub
database_url = inventory_support.database_url
inventory_settings = inventory_support.inventory_settings
service = inventory_support.service
stub = inventory_support.stub
js = inventory_support.js

LOS_ANGELES = (34.0522, -118.2437)
SEATTLE = (47.6062, -122.3321)
NEW_YORK = (40.7128, -74.0060)
EDISON = (40.5187, -74.4121)

OUTCOMES = (events_pb2.StockAllocated, events_pb2.StockBackordered,
            events_pb2.AllocationFailed, events_pb2.StockReleased)
BY_TYPE = {event_type(t): t for t in OUTCOMES}


@dataclass(frozen=True)
class Received:
    subject: str
    event: Message


class Outcomes(inventory_support.StreamReader):
    """The allocation events the service published, per order, in stream order."""

    def __init__(self, service: Service, js: JetStreamContext) -> None:
        super().__init__(service, js)
        self.by_order: dict[str, list[Received]] = defaultdict(list)

    def take(self, msg: Msg) -> None:
        headers = dict(msg.headers or {})
        if headers.get("ce-type") in BY_TYPE:
            event = decode(headers, msg.data, OUTCOMES)
            self.by_order[headers["ce-subject"]].append(Received(msg.subject, event))

    def of(self, order: str, kind: type[Message]) -> list[Message]:
        return [r.event for r in self.by_order.get(order, []) if isinstance(r.event, kind)]

    async def wait_for(self, orders: list[str], kind: type[Message] | None = None,
                       count: int = 1, timeout: float = 60.0) -> None:
        def done() -> bool:
            return all(len([r for r in self.by_order.get(o, [])
                            if kind is None or isinstance(r.event, kind)]) >= count
                       for o in orders)
        await self.wait(done, timeout)


@pytest.fixture(scope="module")
async def outcomes(service: Service, js: JetStreamContext) -> AsyncIterator[Outcomes]:
    collector = Outcomes(service, js)
    subscription = await js.subscribe("oms.inventory.>", stream=inventory_support.STREAM,
                                      cb=collector.on_message, ordered_consumer=True)
    yield collector
    await subscription.unsubscribe()


async def receive(stub: Stub, node_id: str, sku: str, units: int) -> inventory_pb2.StockLevel:
    return await stub.AdjustStock(inventory_pb2.AdjustStockRequest(
        node_id=node_id, sku=sku, delta=units, reason=inventory_pb2.ADJUSTMENT_REASON_RECEIPT))


async def level(stub: Stub, node_id: str, sku: str) -> tuple[int, int]:
    """(on_hand, reserved)."""
    got = await stub.GetStockLevel(inventory_pb2.GetStockLevelRequest(
        name=f"fulfilmentNodes/{node_id}/stockLevels/{sku}"))
    return got.on_hand, got.reserved


def order_created(lines: list[tuple[str, int]], shipping: common_pb2.Address | None = None, *,
                  priority: bool = False, captured: datetime | None = None,
                  due_in: float | None = None) -> order_events.OrderCreated:
    event = order_events.OrderCreated(
        order=f"orders/{uuid.uuid4().hex}",
        channel="test",
        external_order_id=uuid.uuid4().hex,
        shipping_address=shipping or address(LOS_ANGELES, administrative_area="CA"),
        lines=[orders_pb2.OrderLine(line_id=str(i), sku=sku, quantity=quantity)
               for i, (sku, quantity) in enumerate(lines, start=1)],
        priority=priority,
        payment_status=(orders_pb2.PAYMENT_STATUS_PENDING if due_in is not None
                        else orders_pb2.PAYMENT_STATUS_PAID),
    )
    event.create_time.FromDatetime(captured or datetime.now(UTC))
    if due_in is not None:
        event.payment_due_time.FromDatetime(datetime.now(UTC) + timedelta(seconds=due_in))
    return event


async def settled(js: JetStreamContext, timeout: float = 60.0) -> None:
    """Every event published so far to the streams inventory reads has been handled."""
    for stream in ("OMS_ORDERS", "OMS_FULFILMENT", "OMS_RETURNS"):
        await caught_up(js, DEFINITION.name, stream, timeout=timeout)


async def quiet(js: JetStreamContext, outcomes: Outcomes) -> None:
    """Everything published to inventory so far is handled, and every event that handling
    (or anything else committed by now) produced has arrived at ``outcomes``."""
    await settled(js)
    await outcomes.caught_up()


async def past_due(service: Service, *orders: str) -> int:
    """Moves the payment due time of these orders, where they still have one, into the past:
    the clock running past it without the test waiting. Returns how many still had one."""
    assert service.runtime is not None
    async with service.runtime.engine.begin() as conn:
        moved = await conn.execute(
            update(order_allocations)
            .where(order_allocations.c.order_name.in_(orders),
                   order_allocations.c.expire_time.is_not(None))
            .values(expire_time=func.now() - timedelta(seconds=1)))
    return int(moved.rowcount)


def allocated_lines(event: Message) -> list[tuple[str, str, str, int]]:
    assert isinstance(event, events_pb2.StockAllocated)
    return sorted((a.node_id, ln.line_id, ln.sku, ln.quantity)
                  for a in event.allocations for ln in a.lines)
