"""A long backorder queue is served in bounded passes: a stock movement reads and locks at most
as many waiting lines as its stock could fill, and never more than the bound; the background
sweep serves the rest pass after pass, in the queue's order, without overselling."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from inventory_kit import (
    LOS_ANGELES,
    NEW_YORK,
    Outcomes,
    Stub,
    database_url,
    js,
    level,
    order_created,
    outcomes,
    quiet,
    service,
    stub,
)
from nats.js import JetStreamContext
from oms.inventory.v1 import events_pb2, inventory_pb2
from oms.orders.v1 import events_pb2 as order_events
from oms_devtools.testkit import RENO, add_node, add_sku, address, publish
from oms_inventory.settings import InventorySettings
from oms_inventory.tables import backorders, stock_ledger
from oms_platform.service import Service
from sqlalchemy import event, func, select

__all__ = ["database_url", "js", "outcomes", "service", "stub"]

BOUND = 5


@pytest.fixture(scope="module")
def inventory_settings() -> InventorySettings:
    return InventorySettings(backorder_serve_batch_size=BOUND,
                             backorder_sweep_interval_seconds=0.2)


@pytest.fixture
def queue_reads(service: Service) -> Iterator[list[int]]:
    """The number of rows of every read of a backorder queue (they are locked as read)."""
    assert service.runtime is not None
    engine = service.runtime.engine.sync_engine
    reads: list[int] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        if "FROM backorders" in statement and "FOR UPDATE" in statement:
            reads.append(cursor.rowcount)  # type: ignore[attr-defined]

    event.listen(engine, "after_cursor_execute", record)
    yield reads
    event.remove(engine, "after_cursor_execute", record)


async def receive(stub: Stub, node_id: str, sku: str, units: int) -> inventory_pb2.StockLevel:
    (after,) = (await stub.ReceiveStock(inventory_pb2.ReceiveStockRequest(
        parent=f"fulfilmentNodes/{node_id}", reference="PO-1",
        lines=[inventory_pb2.ReceiptLine(sku=sku, quantity=units)]))).stock_levels
    return after


async def backordered(js: JetStreamContext, outcomes: Outcomes,
                      orders: list[order_events.OrderCreated]) -> None:
    for order in orders:
        await publish(js, order)
    await outcomes.wait_for([o.order for o in orders], events_pb2.StockBackordered)
    await quiet(js, outcomes)


async def test_a_long_queue_is_served_completely_in_order_in_bounded_passes(
    stub: Stub, js: JetStreamContext, outcomes: Outcomes, service: Service,
    queue_reads: list[int],
) -> None:
    node = await add_node(stub, RENO)
    sku = await add_sku(stub, backorder_policy=inventory_pb2.BACKORDER_POLICY_ALLOW)
    start = datetime.now(UTC)
    orders = [order_created([(sku, 1)], captured=start + timedelta(seconds=i),
                            priority=i % 4 == 3) for i in range(23)]
    await backordered(js, outcomes, orders)
    serving_order = [o.order for o in sorted(orders, key=lambda o: (
        not o.priority, o.create_time.ToDatetime()))]

    # Two units: the movement reads no more waiting lines than two units can fill.
    queue_reads.clear()
    assert (await receive(stub, node, sku, 2)).reserved == 2
    assert queue_reads and max(queue_reads) <= 2
    # Plenty: the movement serves the bound and leaves the rest to the sweep's passes.
    queue_reads.clear()
    assert (await receive(stub, node, sku, 100)).reserved == 2 + BOUND
    await outcomes.wait_for(serving_order, events_pb2.StockAllocated, timeout=30)
    await quiet(js, outcomes)
    assert max(queue_reads) <= BOUND
    assert len([n for n in queue_reads if n]) >= (len(orders) - 2) // BOUND

    assert await level(stub, node, sku) == (102, 23)
    assert service.runtime is not None
    async with service.runtime.engine.connect() as conn:
        reserved_for = (await conn.scalars(
            select(stock_ledger.c.reference)
            .where(stock_ledger.c.sku == sku, stock_ledger.c.kind == "RESERVATION")
            .order_by(stock_ledger.c.id))).all()
        waiting = await conn.scalar(select(func.count()).select_from(backorders)
                                    .where(backorders.c.sku == sku))
    assert list(reserved_for) == serving_order
    assert waiting == 0


async def test_lines_the_node_cannot_ship_to_do_not_use_up_the_bound(
    stub: Stub, js: JetStreamContext, outcomes: Outcomes, queue_reads: list[int],
) -> None:
    california = await add_node(stub, LOS_ANGELES, service_regions=["US-CA"])
    sku = await add_sku(stub, backorder_policy=inventory_pb2.BACKORDER_POLICY_ALLOW)
    start = datetime.now(UTC)
    # Ahead in the queue, more than the bound: lines for New York, which the node does not
    # serve. Behind them, one for California.
    east = [order_created([(sku, 1)], address(NEW_YORK, administrative_area="NY"), priority=True,
                          captured=start + timedelta(seconds=i)) for i in range(2 * BOUND)]
    west = order_created([(sku, 1)], address(LOS_ANGELES, administrative_area="CA"),
                         captured=start)
    await backordered(js, outcomes, [*east, west])

    queue_reads.clear()
    assert (await receive(stub, california, sku, 1)).reserved == 1
    await quiet(js, outcomes)
    assert outcomes.of(west.order, events_pb2.StockAllocated)
    assert not any(outcomes.of(o.order, events_pb2.StockAllocated) for o in east)
    assert max(queue_reads) <= 1
