"""Routing, backorders and the reservation lifecycle, driven the way production drives them:
events published to JetStream, the service's events read back from its stream."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from inventory_kit import (
    EDISON,
    LOS_ANGELES,
    NEW_YORK,
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
    past_due,
    quiet,
    receive,
    service,
    settled,
    stub,
)
from nats.js import JetStreamContext
from oms.common.v1 import common_pb2
from oms.fulfilment.v1 import events_pb2 as fulfilment_events
from oms.inventory.v1 import events_pb2, inventory_pb2
from oms.orders.v1 import events_pb2 as order_events
from oms.orders.v1 import orders_pb2
from oms.returns.v1 import events_pb2 as returns_events
from oms_devtools.testkit import RENO, add_node, add_sku, address, publish
from oms_inventory.tables import stock_ledger, stock_levels
from oms_platform.service import Service
from sqlalchemy import insert, select

__all__ = ["database_url", "inventory_settings", "js", "outcomes", "service", "stub"]

ALLOW = inventory_pb2.BACKORDER_POLICY_ALLOW


async def created(js: JetStreamContext, outcomes: Outcomes,
                  *events: order_events.OrderCreated) -> None:
    """Publishes the orders and waits until every outcome of them has arrived: the events of
    one order are published together but may be read in any order."""
    for event in events:
        await publish(js, event)
    await outcomes.wait_for([e.order for e in events])
    await quiet(js, outcomes)


async def test_west_coast_goes_west_then_east_then_split(
    stub: Stub, js: JetStreamContext, outcomes: Outcomes,
) -> None:
    west, east = await add_node(stub, RENO), await add_node(stub, EDISON)
    mug = await add_sku(stub, {west: 2, east: 5})
    to_seattle = order_created([(mug, 2)], address(SEATTLE, administrative_area="WA"))
    await created(js, outcomes, to_seattle)
    (first,) = outcomes.of(to_seattle.order, events_pb2.StockAllocated)
    assert allocated_lines(first) == [(west, "1", mug, 2)]
    assert first.complete  # type: ignore[attr-defined]

    # West is out of mugs now: the next west-coast order ships from the east.
    to_la = order_created([(mug, 1)], address(LOS_ANGELES))
    await created(js, outcomes, to_la)
    (second,) = outcomes.of(to_la.order, events_pb2.StockAllocated)
    assert allocated_lines(second) == [(east, "1", mug, 1)]

    # Neither has both SKUs: split across the two, and only then.
    tea = await add_sku(stub, {west: 3})
    split = order_created([(mug, 1), (tea, 3)], address(LOS_ANGELES))
    await created(js, outcomes, split)
    (third,) = outcomes.of(split.order, events_pb2.StockAllocated)
    assert allocated_lines(third) == sorted([(east, "1", mug, 1), (west, "2", tea, 3)])
    assert third.complete  # type: ignore[attr-defined]
    assert await level(stub, east, mug) == (5, 2)
    assert await level(stub, west, tea) == (3, 3)


async def test_backorders_are_served_express_first_then_by_capture_time(
    stub: Stub, js: JetStreamContext, outcomes: Outcomes,
) -> None:
    node = await add_node(stub, RENO)
    sku = await add_sku(stub, backorder_policy=ALLOW)
    now = datetime.now(UTC)
    late = order_created([(sku, 1)], captured=now)
    early = order_created([(sku, 1)], captured=now - timedelta(minutes=5))
    express = order_created([(sku, 1)], captured=now + timedelta(minutes=1), priority=True)
    big = order_created([(sku, 3)], captured=now + timedelta(minutes=2))
    await created(js, outcomes, late, early, express, big)
    for event in (late, early, express, big):
        assert outcomes.of(event.order, events_pb2.StockBackordered)

    queue = await stub.ListBackorders(inventory_pb2.ListBackordersRequest(
        parent=f"products/{sku}", page_size=3))
    assert [b.order for b in queue.backorders] == [express.order, early.order, late.order]
    rest = await stub.ListBackorders(inventory_pb2.ListBackordersRequest(
        parent=f"products/{sku}", page_size=3, page_token=queue.next_page_token))
    assert [(b.order, b.quantity) for b in rest.backorders] == [(big.order, 3)]
    assert not rest.next_page_token

    await receive(stub, node, sku, 2)
    await outcomes.wait_for([express.order, early.order], events_pb2.StockAllocated)
    await outcomes.caught_up()
    assert not outcomes.of(late.order, events_pb2.StockAllocated)
    await receive(stub, node, sku, 2)
    await outcomes.wait_for([late.order, big.order], events_pb2.StockAllocated)
    await outcomes.caught_up()
    (partial,) = outcomes.of(big.order, events_pb2.StockAllocated)
    assert allocated_lines(partial) == [(node, "1", sku, 1)]
    assert not partial.complete  # type: ignore[attr-defined]
    assert outcomes.of(late.order, events_pb2.StockAllocated)[0].complete  # type: ignore[attr-defined]

    await receive(stub, node, sku, 5)
    await outcomes.wait_for([big.order], events_pb2.StockAllocated, count=2)
    last = outcomes.of(big.order, events_pb2.StockAllocated)[1]
    assert allocated_lines(last) == [(node, "1", sku, 2)] and last.complete  # type: ignore[attr-defined]
    assert await level(stub, node, sku) == (9, 6)
    assert not (await stub.ListBackorders(inventory_pb2.ListBackordersRequest(
        parent=f"products/{sku}"))).backorders


async def test_policies_decide_what_waits_and_what_is_refused(
    stub: Stub, js: JetStreamContext, outcomes: Outcomes,
) -> None:
    node = await add_node(stub, RENO)
    california_only = await add_node(stub, LOS_ANGELES, service_regions=["US-CA"])
    capped = await add_sku(stub, {node: 1}, backorder_limit=3,
                           backorder_policy=inventory_pb2.BACKORDER_POLICY_ALLOW_UP_TO_LIMIT)
    denied = await add_sku(stub, {node: 1})
    regional = await add_sku(stub, {california_only: 5})
    first = order_created([(capped, 4), (denied, 2)])
    second = order_created([(capped, 1), (regional, 1)],
                           address(NEW_YORK, administrative_area="NY"))
    # One after the other: two orders published together may be handled in either order
    # (the consumer runs two fetches at once), and the second must meet the limit the first
    # reached.
    await created(js, outcomes, first)
    await created(js, outcomes, second)

    (allocated,) = outcomes.of(first.order, events_pb2.StockAllocated)
    assert allocated_lines(allocated) == [(node, "1", capped, 1)]
    assert not allocated.complete  # type: ignore[attr-defined]
    (waits,) = outcomes.of(first.order, events_pb2.StockBackordered)
    assert [(ln.line_id, ln.quantity) for ln in waits.lines] == [("1", 3)]  # type: ignore[attr-defined]
    (refused,) = outcomes.of(first.order, events_pb2.AllocationFailed)
    assert [(ln.line_id, ln.quantity, ln.reason) for ln in refused.lines] == [  # type: ignore[attr-defined]
        ("2", 2, events_pb2.ALLOCATION_FAILURE_REASON_BACKORDER_NOT_ALLOWED)]
    assert await level(stub, node, denied) == (1, 0)

    (refused,) = outcomes.of(second.order, events_pb2.AllocationFailed)
    assert sorted((ln.line_id, ln.reason) for ln in refused.lines) == [  # type: ignore[attr-defined]
        ("1", events_pb2.ALLOCATION_FAILURE_REASON_BACKORDER_LIMIT_REACHED),
        ("2", events_pb2.ALLOCATION_FAILURE_REASON_NO_NODE)]
    assert not outcomes.of(second.order, events_pb2.StockAllocated)


async def test_preview_plans_like_allocation_and_changes_nothing(stub: Stub) -> None:
    west = await add_node(stub, RENO, priority=5)
    east = await add_node(stub, EDISON, priority=1)
    mug = await add_sku(stub, {west: 2, east: 2})
    tea = await add_sku(stub, backorder_policy=ALLOW)
    request = inventory_pb2.PreviewAllocationRequest(
        shipping_address=address(LOS_ANGELES),
        lines=[inventory_pb2.PlannedLine(line_id="a", sku=mug, quantity=3),
               inventory_pb2.PlannedLine(line_id="b", sku=tea, quantity=1),
               inventory_pb2.PlannedLine(line_id="c", sku="NO-SUCH-SKU", quantity=1)])
    plan = await stub.PreviewAllocation(request)
    assert plan.strategy == inventory_pb2.ALLOCATION_STRATEGY_NEAREST
    assert [(s.node_id, [(ln.line_id, ln.quantity) for ln in s.lines])
            for s in plan.shipments] == [(west, [("a", 2)]), (east, [("a", 1)])]
    assert [(ln.line_id, ln.quantity) for ln in plan.backordered_lines] == [("b", 1)]
    assert [(r.line.line_id, r.reason) for r in plan.refused_lines] == [("c", "UNKNOWN_SKU")]

    request.strategy = inventory_pb2.ALLOCATION_STRATEGY_PRIORITY
    by_priority = await stub.PreviewAllocation(request)
    assert [s.node_id for s in by_priority.shipments] == [east, west]
    assert await level(stub, west, mug) == (2, 0)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.PreviewAllocation(inventory_pb2.PreviewAllocationRequest(
            shipping_address=address(None, region_code=""),
            lines=[inventory_pb2.PlannedLine(line_id="a", sku=mug, quantity=-1),
                   inventory_pb2.PlannedLine(line_id="a", sku="bad sku", quantity=1)]))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(raised.value) == ["shipping_address.region_code", "lines[0].quantity",
                                        "lines[1].line_id", "lines[1].sku"]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ListBackorders(inventory_pb2.ListBackordersRequest(
            parent=f"products/{uuid.uuid4().hex}"))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ListBackorders(inventory_pb2.ListBackordersRequest(
            parent="skus/x", page_token="garbage"))
    assert violations(raised.value) == ["parent", "page_token"]


async def test_lowest_cost_takes_no_node_without_a_cost_for_free_and_compares_one_currency(
    stub: Stub,
) -> None:
    costless = await add_node(stub, RENO)
    priced = await add_node(stub, EDISON, shipment_cost=common_pb2.Money(
        amount="9.00", currency_code="USD"))
    stored = await stub.GetFulfilmentNode(inventory_pb2.GetFulfilmentNodeRequest(
        name=f"fulfilmentNodes/{costless}"))
    assert not stored.HasField("shipment_cost")  # unknown, not 0 USD
    mug = await add_sku(stub, {costless: 5, priced: 5})

    def request(sku: str) -> inventory_pb2.PreviewAllocationRequest:
        return inventory_pb2.PreviewAllocationRequest(
            shipping_address=address(LOS_ANGELES),
            lines=[inventory_pb2.PlannedLine(line_id="1", sku=sku, quantity=1)],
            strategy=inventory_pb2.ALLOCATION_STRATEGY_LOWEST_COST)

    plan = await stub.PreviewAllocation(request(mug))
    assert [s.node_id for s in plan.shipments] == [priced]
    assert plan.strategy == inventory_pb2.ALLOCATION_STRATEGY_LOWEST_COST

    # Dollars and euros are not compared: ranked by distance instead, and the plan says so.
    dollars = await add_node(stub, SEATTLE, shipment_cost=common_pb2.Money(
        amount="20.00", currency_code="USD"))
    euros = await add_node(stub, NEW_YORK, shipment_cost=common_pb2.Money(
        amount="1.00", currency_code="EUR"))
    tea = await add_sku(stub, {dollars: 5, euros: 5})
    plan = await stub.PreviewAllocation(request(tea))
    assert [s.node_id for s in plan.shipments] == [dollars]
    assert plan.strategy == inventory_pb2.ALLOCATION_STRATEGY_NEAREST


def violations(error: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(error)
    fields = []
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            fields += [v.field for v in bad_request.field_violations]
    return fields


async def test_unpaid_reservations_expire_and_payment_allocates_again(
    stub: Stub, js: JetStreamContext, outcomes: Outcomes, service: Service,
) -> None:
    node = await add_node(stub, RENO)
    sku = await add_sku(stub, {node: 3})
    # Due in an hour; the test moves the due time into the past once the payment is handled,
    # so "paid in time" never depends on how fast this machine is.
    unpaid = order_created([(sku, 2)], due_in=3600)
    paid_in_time = order_created([(sku, 1)], due_in=3600)
    await created(js, outcomes, unpaid, paid_in_time)
    (allocated,) = outcomes.of(unpaid.order, events_pb2.StockAllocated)
    assert allocated.HasField("expire_time")
    await publish(js, order_events.OrderPaid(
        order=paid_in_time.order, payment_status=orders_pb2.PAYMENT_STATUS_PAID))
    await settled(js)
    assert await past_due(service, unpaid.order, paid_in_time.order) == 1

    await outcomes.wait_for([unpaid.order], events_pb2.StockReleased, timeout=15)
    await outcomes.caught_up()
    (released,) = outcomes.of(unpaid.order, events_pb2.StockReleased)
    assert released.reason == events_pb2.RELEASE_REASON_EXPIRED  # type: ignore[attr-defined]
    assert [(ln.node_id, ln.quantity) for ln in released.lines] == [(node, 2)]  # type: ignore[attr-defined]
    assert await level(stub, node, sku) == (3, 1)
    assert not outcomes.of(paid_in_time.order, events_pb2.StockReleased)

    # Paid late: the expired units are allocated again.
    await publish(js, order_events.OrderPaid(
        order=unpaid.order, payment_status=orders_pb2.PAYMENT_STATUS_PAID))
    await outcomes.wait_for([unpaid.order], events_pb2.StockAllocated, count=2)
    await quiet(js, outcomes)
    (_, again) = outcomes.of(unpaid.order, events_pb2.StockAllocated)
    assert allocated_lines(again) == [(node, "1", sku, 2)]
    assert not again.HasField("expire_time")
    assert await level(stub, node, sku) == (3, 3)


async def test_cancellation_releases_units_and_leaves_the_queue(
    stub: Stub, js: JetStreamContext, outcomes: Outcomes,
) -> None:
    node = await add_node(stub, RENO)
    sku = await add_sku(stub, {node: 3}, backorder_policy=ALLOW)
    order = order_created([(sku, 5)])
    waiting = order_created([(sku, 1)])
    await created(js, outcomes, order)
    await created(js, outcomes, waiting)
    assert await level(stub, node, sku) == (3, 3)

    # 2 of 5 cancelled: the 2 waiting units leave the queue, nothing is released.
    partial = order_events.OrderCancelled(order=order.order, lines=[
        order_events.CancelledLine(line_id="1", sku=sku, quantity=2)])
    await publish(js, partial)
    await quiet(js, outcomes)
    assert await level(stub, node, sku) == (3, 3)
    assert not outcomes.of(order.order, events_pb2.StockReleased)
    # 1 more: a reserved unit is released and goes to the order waiting behind.
    await publish(js, order_events.OrderCancelled(order=order.order, lines=[
        order_events.CancelledLine(line_id="1", sku=sku, quantity=1)]))
    await outcomes.wait_for([order.order], events_pb2.StockReleased)
    await outcomes.wait_for([waiting.order], events_pb2.StockAllocated)
    await quiet(js, outcomes)
    (released,) = outcomes.of(order.order, events_pb2.StockReleased)
    assert released.reason == events_pb2.RELEASE_REASON_CANCELLED  # type: ignore[attr-defined]
    assert [ln.quantity for ln in released.lines] == [1]  # type: ignore[attr-defined]

    whole = order_events.OrderCancelled(order=order.order, whole_order=True)
    await publish(js, whole)
    await publish(js, whole)  # the same cancellation again, as a new event
    await outcomes.wait_for([order.order], events_pb2.StockReleased, count=2)
    await quiet(js, outcomes)
    assert len(outcomes.of(order.order, events_pb2.StockReleased)) == 2
    assert await level(stub, node, sku) == (3, 1)
    assert [r.order for r in (await stub.ListReservations(inventory_pb2.ListReservationsRequest(
        order=waiting.order))).reservations] == [waiting.order]
    assert not (await stub.ListReservations(inventory_pb2.ListReservationsRequest(
        order=order.order))).reservations


async def test_shipment_consumes_and_return_restocks_once_each(
    stub: Stub, js: JetStreamContext, outcomes: Outcomes, service: Service,
) -> None:
    node = await add_node(stub, RENO)
    sku = await add_sku(stub, {node: 5}, backorder_policy=ALLOW)
    order = order_created([(sku, 3)])
    await created(js, outcomes, order)
    # Named as fulfilment names packages: with the order's, too long for the ledger's key.
    shipped = fulfilment_events.PackageShipped(
        package=f"fulfilmentOrders/{uuid.uuid4()}/packages/{uuid.uuid4()}", node_id=node,
        lines=[fulfilment_events.ShippedLine(order=order.order, line_id="1", sku=sku,
                                             quantity=2)])
    for _ in range(2):  # redelivered under a new event id: consumed once
        await publish(js, shipped, aggregate_id=shipped.package, partition=node)
    await settled(js)
    assert await level(stub, node, sku) == (3, 1)
    assert [(r.quantity) for r in (await stub.ListReservations(
        inventory_pb2.ListReservationsRequest(order=order.order))).reservations] == [1]

    later = order_created([(sku, 4)])  # 2 available: 2 reserved, 2 wait
    await created(js, outcomes, later)
    returned = returns_events.ReturnReceived(
        order=order.order, node_id=node, lines=[
            returns_events.ReturnedLine(line_id="1", sku=sku, quantity=2, restock=True),
            returns_events.ReturnedLine(line_id="2", sku=sku, quantity=5, restock=False)])
    setattr(returned, "return", f"returns/{uuid.uuid4().hex}")
    for _ in range(2):
        await publish(js, returned, aggregate_id=getattr(returned, "return"))
    await outcomes.wait_for([later.order], events_pb2.StockAllocated, count=2)
    await quiet(js, outcomes)
    assert await level(stub, node, sku) == (5, 5)
    assert outcomes.of(later.order, events_pb2.StockAllocated)[1].complete  # type: ignore[attr-defined]

    assert service.runtime is not None
    async with service.runtime.engine.connect() as conn:
        kinds = (await conn.execute(
            select(stock_ledger.c.kind, stock_ledger.c.on_hand_delta,
                   stock_ledger.c.reserved_delta)
            .where(stock_ledger.c.node_id == node, stock_ledger.c.sku == sku,
                   stock_ledger.c.kind.in_(["SHIPMENT", "RETURN_RESTOCK"]))
            .order_by(stock_ledger.c.id))).all()
    assert [tuple(k) for k in kinds] == [("SHIPMENT", -2, -2), ("RETURN_RESTOCK", 2, 0)]


async def test_a_cancellation_before_the_order_arrives_wins(
    stub: Stub, js: JetStreamContext, outcomes: Outcomes,
) -> None:
    node = await add_node(stub, RENO)
    sku = await add_sku(stub, {node: 2})
    order = order_created([(sku, 1)])
    await publish(js, order_events.OrderCancelled(order=order.order, whole_order=True))
    await settled(js)
    await publish(js, order)
    await quiet(js, outcomes)
    assert not outcomes.by_order.get(order.order)
    assert await level(stub, node, sku) == (2, 0)


async def test_the_sweep_serves_a_line_left_waiting_beside_available_stock(
    stub: Stub, js: JetStreamContext, outcomes: Outcomes, service: Service,
) -> None:
    """What a receipt racing a batch can leave behind (stock on a row the batch never saw,
    the order waiting): written here directly, then the background sweep must serve it."""
    node = await add_node(stub, RENO)
    sku = await add_sku(stub, backorder_policy=ALLOW)
    order = order_created([(sku, 2)])
    await created(js, outcomes, order)
    assert outcomes.of(order.order, events_pb2.StockBackordered)
    assert service.runtime is not None
    async with service.runtime.engine.begin() as conn:
        await conn.execute(insert(stock_levels).values(node_id=node, sku=sku, on_hand=5,
                                                       reserved=0))
        await conn.execute(insert(stock_ledger).values(node_id=node, sku=sku, kind="RECEIPT",
                                                       on_hand_delta=5, reserved_delta=0))
    await outcomes.wait_for([order.order], events_pb2.StockAllocated, timeout=15)
    await outcomes.caught_up()
    (allocated,) = outcomes.of(order.order, events_pb2.StockAllocated)
    assert allocated_lines(allocated) == [(node, "1", sku, 2)]
    assert allocated.complete  # type: ignore[attr-defined]
    assert await level(stub, node, sku) == (5, 2)


async def test_a_payment_that_overtakes_its_order_still_stops_the_expiry(
    stub: Stub, js: JetStreamContext, outcomes: Outcomes, service: Service,
) -> None:
    node = await add_node(stub, RENO)
    sku = await add_sku(stub, {node: 2})
    order = order_created([(sku, 1)], due_in=3600)
    await publish(js, order_events.OrderPaid(
        order=order.order, payment_status=orders_pb2.PAYMENT_STATUS_PAID))
    await publish(js, order)
    await outcomes.wait_for([order.order], events_pb2.StockAllocated)
    await settled(js)  # the payment, retried until its order was here, is handled too

    # Past the due time: an unpaid order due at the same moment expires in the same sweep,
    # so once it has, the paid one would have too.
    unpaid = order_created([(sku, 1)], due_in=3600)
    await created(js, outcomes, unpaid)
    assert await past_due(service, order.order, unpaid.order) == 1
    await outcomes.wait_for([unpaid.order], events_pb2.StockReleased, timeout=15)
    await outcomes.caught_up()
    assert not outcomes.of(order.order, events_pb2.StockReleased)
    assert await level(stub, node, sku) == (2, 1)
