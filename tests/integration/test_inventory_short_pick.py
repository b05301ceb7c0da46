"""Short picks, driven the way production drives them: fulfilment's PickShorted published to
JetStream, inventory's events read back from its stream, stock and tasks read over gRPC."""

from __future__ import annotations

import uuid

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from inventory_kit import (
    LOS_ANGELES,
    SEATTLE,
    Outcomes,
    Stub,
    allocated_lines,
    database_url,
    inventory_settings,
    js,
    level,
    order_created,
    outcomes,
    quiet,
    receive,
    service,
    stub,
)
from nats.js import JetStreamContext
from oms.fulfilment.v1 import events_pb2 as fulfilment_events
from oms.inventory.v1 import events_pb2, inventory_pb2
from oms.orders.v1 import events_pb2 as order_events
from oms_devtools.testkit import add_node, add_sku, publish
from oms_inventory.allocation.handlers import sweep_backorders
from oms_inventory.settings import InventorySettings
from oms_platform.service import Service
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["database_url", "inventory_settings", "js", "outcomes", "service", "stub"]

BIN_EMPTY = fulfilment_events.PICK_SHORT_REASON_BIN_EMPTY


async def created(js: JetStreamContext, outcomes: Outcomes,
                  event: order_events.OrderCreated) -> None:
    await publish(js, event)
    await outcomes.wait_for([event.order])
    await quiet(js, outcomes)


def shorted(node_id: str, order: str, sku: str, quantity: int,
            bin_code: str = "A-01-01") -> fulfilment_events.PickShorted:
    return fulfilment_events.PickShorted(
        node_id=node_id, order=order, line_id="1", sku=sku, bin_code=bin_code,
        quantity=quantity, reason=BIN_EMPTY,
        fulfilment_order=f"fulfilmentOrders/{uuid.uuid4().hex}",
        pick_list=f"pickLists/{uuid.uuid4().hex}")


async def short(js: JetStreamContext, event: fulfilment_events.PickShorted):  # type: ignore[no-untyped-def]
    return await publish(js, event, aggregate_id=event.fulfilment_order,
                         partition=event.node_id)


async def sweep(service: Service) -> int:
    """One pass of the background sweep of backorders, now: the levels it served."""
    assert service.runtime is not None
    async with AsyncSession(service.runtime.engine) as session, session.begin():
        return await sweep_backorders(session, InventorySettings())


async def reservations(stub: Stub, order: str) -> dict[str, int]:
    """Units of the order reserved per node."""
    got = await stub.ListReservations(inventory_pb2.ListReservationsRequest(order=order))
    return {r.node_id: r.quantity for r in got.reservations}


async def tasks(stub: Stub, node_id: str, *, show_closed: bool = False,
                ) -> list[inventory_pb2.CountTask]:
    got = await stub.ListCountTasks(inventory_pb2.ListCountTasksRequest(
        parent=f"fulfilmentNodes/{node_id}", show_closed=show_closed))
    return list(got.count_tasks)


async def test_a_short_pick_moves_the_line_to_another_node_once(
    stub: Stub, js: JetStreamContext, outcomes: Outcomes,
) -> None:
    near = await add_node(stub, LOS_ANGELES)
    far = await add_node(stub, SEATTLE)
    sku = await add_sku(stub, {near: 5, far: 5})
    order = order_created([(sku, 3)])
    await created(js, outcomes, order)
    assert await reservations(stub, order.order) == {near: 3}

    event = shorted(near, order.order, sku, 2)
    first = await short(js, event)
    await outcomes.wait_for([order.order], events_pb2.StockAllocated, count=2)
    await quiet(js, outcomes)
    moved = outcomes.of(order.order, events_pb2.StockAllocated)[1]
    assert allocated_lines(moved) == [(far, "1", sku, 2)]
    assert moved.complete  # type: ignore[attr-defined]
    assert await level(stub, near, sku) == (3, 1)
    assert await level(stub, far, sku) == (5, 2)
    assert await reservations(stub, order.order) == {far: 2, near: 1}
    (task,) = await tasks(stub, near)
    assert (task.node_id, task.bin_code, task.sku, task.reason) == (
        near, "A-01-01", sku, "PICK_SHORT_BIN_EMPTY")
    assert event.pick_list in task.reference and not task.HasField("close_time")
    movements = (await stub.ListStockMovements(inventory_pb2.ListStockMovementsRequest(
        parent=f"fulfilmentNodes/{near}/stockLevels/{sku}"))).stock_movements
    assert [(m.kind, m.on_hand_delta, m.reserved_delta) for m in movements] == [
        (inventory_pb2.STOCK_MOVEMENT_KIND_PICK_SHORT, -2, -2),
        (inventory_pb2.STOCK_MOVEMENT_KIND_RESERVATION, 0, 3),
        (inventory_pb2.STOCK_MOVEMENT_KIND_RECEIPT, 5, 0)]

    # Redelivered: the same event past JetStream's duplicate window (the inbox), and a copy
    # under a new event id (the ledger's claim). Neither changes anything.
    await publish(js, first, msg_id=uuid.uuid4().hex)
    await short(js, event)
    await quiet(js, outcomes)
    assert len(outcomes.of(order.order, events_pb2.StockAllocated)) == 2
    assert await level(stub, near, sku) == (3, 1)
    assert await level(stub, far, sku) == (5, 2)
    assert await reservations(stub, order.order) == {far: 2, near: 1}
    assert len(await tasks(stub, near)) == 1

    # A count of the SKU at the node closes the task.
    await stub.CountStock(inventory_pb2.CountStockRequest(
        name=f"fulfilmentNodes/{near}/stockLevels/{sku}", counted_on_hand=2))
    assert await tasks(stub, near) == []
    (closed,) = await tasks(stub, near, show_closed=True)
    assert closed.name == task.name and closed.HasField("close_time")
    assert await level(stub, near, sku) == (2, 1)


async def test_a_short_with_nowhere_else_to_go_fails_or_waits_by_the_policy(
    service: Service, stub: Stub, js: JetStreamContext, outcomes: Outcomes,
) -> None:
    node = await add_node(stub, LOS_ANGELES)
    denied = await add_sku(stub, {node: 5}, backorder_policy=inventory_pb2.BACKORDER_POLICY_DENY)
    allowed = await add_sku(stub, {node: 5},
                            backorder_policy=inventory_pb2.BACKORDER_POLICY_ALLOW)
    refused, waiting = order_created([(denied, 2)]), order_created([(allowed, 2)])
    await created(js, outcomes, refused)
    await created(js, outcomes, waiting)

    # The node still has 3 more units of each, but it came up short: not allocated there.
    await short(js, shorted(node, refused.order, denied, 2))
    await short(js, shorted(node, waiting.order, allowed, 1))
    await outcomes.wait_for([refused.order], events_pb2.AllocationFailed)
    await outcomes.wait_for([waiting.order], events_pb2.StockBackordered)
    await quiet(js, outcomes)
    (failed,) = outcomes.of(refused.order, events_pb2.AllocationFailed)
    assert [(ln.line_id, ln.sku, ln.quantity, ln.reason) for ln in failed.lines] == [  # type: ignore[attr-defined]
        ("1", denied, 2, events_pb2.ALLOCATION_FAILURE_REASON_NO_NODE)]
    assert await level(stub, node, denied) == (3, 0)
    assert await reservations(stub, refused.order) == {}
    (backordered,) = outcomes.of(waiting.order, events_pb2.StockBackordered)
    assert [(ln.sku, ln.quantity) for ln in backordered.lines] == [(allowed, 1)]  # type: ignore[attr-defined]
    assert await level(stub, node, allowed) == (4, 1)
    assert await reservations(stub, waiting.order) == {node: 1}
    assert sorted(t.sku for t in await tasks(stub, node)) == sorted([denied, allowed])

    # The background sweep runs, and more stock arrives there: the node that came up short
    # still does not serve the line that waits.
    await receive(stub, node, allowed, 1)
    assert await sweep(service) == 0
    assert await level(stub, node, allowed) == (5, 1)
    assert await reservations(stub, waiting.order) == {node: 1}
    # Its count settles the doubt (on hand as recorded): the waiting unit is served there.
    await stub.CountStock(inventory_pb2.CountStockRequest(
        name=f"fulfilmentNodes/{node}/stockLevels/{allowed}", counted_on_hand=5))
    await outcomes.wait_for([waiting.order], events_pb2.StockAllocated, count=2)
    assert await level(stub, node, allowed) == (5, 2)
    assert await reservations(stub, waiting.order) == {node: 2}
    assert outcomes.of(waiting.order, events_pb2.StockAllocated)[-1].complete  # type: ignore[attr-defined]


async def test_count_tasks_are_paged_and_bad_requests_refused(
    stub: Stub, js: JetStreamContext, outcomes: Outcomes,
) -> None:
    node = await add_node(stub, LOS_ANGELES)
    sku = await add_sku(stub, {node: 9}, backorder_policy=inventory_pb2.BACKORDER_POLICY_ALLOW)
    order = order_created([(sku, 3)])
    await created(js, outcomes, order)
    for bin_code in ("B-1", "B-2", "B-3"):
        await short(js, shorted(node, order.order, sku, 1, bin_code=bin_code))
    await outcomes.wait_for([order.order], events_pb2.StockBackordered, count=3)
    await quiet(js, outcomes)
    seen, token = [], ""
    while True:
        page = await stub.ListCountTasks(inventory_pb2.ListCountTasksRequest(
            parent="fulfilmentNodes/-", page_size=2, page_token=token))
        assert len(page.count_tasks) <= 2
        seen += [t.bin_code for t in page.count_tasks if t.node_id == node]
        token = page.next_page_token
        if not token:
            break
    # Every task once, in the order they were opened (not necessarily the order published:
    # the three shorts are of three fulfilment orders, handled concurrently).
    assert sorted(seen) == ["B-1", "B-2", "B-3"]

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListCountTasks(inventory_pb2.ListCountTasksRequest(
            parent="nodes/x", page_size=-1))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(caught.value)
    assert status is not None
    bad = error_details_pb2.BadRequest()
    assert any(d.Unpack(bad) for d in status.details)
    assert sorted(v.field for v in bad.field_violations) == ["page_size", "parent"]
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.ListCountTasks(inventory_pb2.ListCountTasksRequest(
            parent="fulfilmentNodes/no-such-node"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
