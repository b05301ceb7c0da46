"""The hand-off to 3PLs and dropship suppliers over real gRPC, PostgreSQL and NATS, with
inventory (nodes, stock, allocation) and shipping in-process: a 3PL is sent
`FulfilmentRequested` on its own subject only; its progress reports move the fulfilment
order forward once per request id and never back; its shipment is `PackageShipped` per
package, once, and inventory consumes the stock; a short shipment is `PickShorted`, and
inventory allocates the shortfall at another node; a dropship supplier is sent its purchase
order and confirms the shipment the same way."""

from __future__ import annotations

import asyncio
import uuid

import grpc
from fulfilment_kit import (
    ADA,
    Stub,
    fulfilment_order,
    fulfilment_url,
    inventory,
    js,
    next_event,
    outbox_count,
    product,
    refusal,
    release,
    shipping,
    stub,
)
from google.type import timeofday_pb2
from inventory_kit import order_created
from nats.js import JetStreamContext
from oms.fulfilment.v1 import events_pb2, fulfilment_pb2
from oms.inventory.v1 import inventory_pb2
from oms.orders.v1 import events_pb2 as order_events
from oms.orders.v1 import orders_pb2
from oms_devtools.testkit import add_node, add_sku, caught_up, eventually, publish

__all__ = ["fulfilment_url", "inventory", "js", "shipping", "stub"]

F = fulfilment_pb2
P = fulfilment_pb2.ThirdPartyPackage
U = fulfilment_pb2.ThirdPartyUnits


def report(order: F.FulfilmentOrder, progress: int, *, request_id: str | None = None,
           node_id: str | None = None, packages: list[F.ThirdPartyPackage] | None = None,
           short_reason: int = 0) -> F.ReportThirdPartyProgressRequest:
    return F.ReportThirdPartyProgressRequest(
        request_id=request_id or uuid.uuid4().hex, fulfilment_order=order.name,
        node_id=node_id or order.node_id, progress=progress,  # type: ignore[arg-type]
        packages=packages or [], short_reason=short_reason)  # type: ignore[arg-type]


async def third_party(inventory_stub, type_: int = inventory_pb2.NODE_TYPE_THIRD_PARTY_LOGISTICS  # type: ignore[no-untyped-def]
                      ) -> str:
    return await add_node(inventory_stub, type=type_,
                          cutoff_time=timeofday_pb2.TimeOfDay(hours=15))


async def test_a_3pl_is_sent_its_request_on_its_own_subject_and_its_reports_ship_it_once(  # type: ignore[no-untyped-def]
        inventory, stub: Stub, js: JetStreamContext, fulfilment_url: str):
    sku1, sku2 = f"SKU-{uuid.uuid4().hex[:8]}", f"SKU-{uuid.uuid4().hex[:8]}"
    await caught_up(js, "fulfilment", await publish(js, product(sku1, gtin="4006381333931"),
                                                    aggregate_id=sku1))
    ours, theirs = await third_party(inventory[1]), await third_party(inventory[1])
    mine = await js.subscribe(f"oms.fulfilment.fulfilment_requested.{ours}",
                              ordered_consumer=True)
    other = await js.subscribe(f"oms.fulfilment.fulfilment_requested.{theirs}",
                               ordered_consumer=True)
    shipped = await js.subscribe(f"oms.fulfilment.package_shipped.{ours}",
                                 ordered_consumer=True)

    event = release(ours, [(sku1, 2), (sku2, 1)], service_level=orders_pb2.SERVICE_LEVEL_EXPRESS)
    await publish(js, event, partition=ours)
    order = await fulfilment_order(stub, ours, event.order)
    assert (order.status, order.mode, order.third_party_progress) == (
        F.FULFILMENT_ORDER_STATUS_AWAITING_THIRD_PARTY, F.FULFILMENT_MODE_THIRD_PARTY_LOGISTICS,
        F.THIRD_PARTY_PROGRESS_REQUESTED)
    assert not any(line.needs_slot for line in order.lines)

    requested = await next_event(mine, events_pb2.FulfilmentRequested)
    assert (requested.fulfilment_order, requested.order, requested.node_id) == (
        order.name, event.order, ours)
    assert [(li.line_id, li.sku, li.quantity, li.title, li.gtin) for li in requested.lines] == [
        ("l1", sku1, 2, f"Product {sku1}", "4006381333931"), ("l2", sku2, 1, "", "")]
    assert requested.shipping_address == ADA
    assert requested.service_level == orders_pb2.SERVICE_LEVEL_EXPRESS and requested.priority
    assert requested.promised_ship_time == order.promised_ship_time
    assert requested.gift_note == "Happy birthday, Ada!"
    # The other 3PL's subject carries its own request first: it never saw ours.
    theirs_event = release(theirs, [(sku2, 1)])
    await publish(js, theirs_event, partition=theirs)
    assert (await next_event(other, events_pb2.FulfilmentRequested)).order == (
        theirs_event.order)

    # Bad input names every field; another node's report is as if the order did not exist.
    code, fields = await refusal(stub.ReportThirdPartyProgress(
        F.ReportThirdPartyProgressRequest(fulfilment_order="orders/1", packages=[P()])))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert fields == ["fulfilment_order", "request_id", "node_id", "progress", "packages",
                      "packages[0].carrier", "packages[0].tracking_number"]
    assert (await refusal(stub.ReportThirdPartyProgress(report(
        order, F.THIRD_PARTY_PROGRESS_ACCEPTED, node_id=theirs))))[0] == (
        grpc.StatusCode.NOT_FOUND)

    accepted = report(order, F.THIRD_PARTY_PROGRESS_ACCEPTED)
    first = await stub.ReportThirdPartyProgress(accepted)
    assert first.third_party_progress == F.THIRD_PARTY_PROGRESS_ACCEPTED
    packed = await stub.ReportThirdPartyProgress(report(order, F.THIRD_PARTY_PROGRESS_PACKED))
    assert packed.third_party_progress == F.THIRD_PARTY_PROGRESS_PACKED
    # The ACCEPTED retried is answered and changes nothing; PICKED now is out of order.
    assert (await stub.ReportThirdPartyProgress(accepted)) == packed
    assert (await refusal(stub.ReportThirdPartyProgress(report(
        order, F.THIRD_PARTY_PROGRESS_PICKED))))[0] == grpc.StatusCode.FAILED_PRECONDITION
    # More units than the line has: impossible, nothing changes.
    assert (await refusal(stub.ReportThirdPartyProgress(report(
        order, F.THIRD_PARTY_PROGRESS_SHIPPED, packages=[P(
            carrier="ups", tracking_number="1Z1", lines=[U(line_id="l1", quantity=3)])]))))[0] == (
        grpc.StatusCode.FAILED_PRECONDITION)
    assert (await stub.GetFulfilmentOrder(F.GetFulfilmentOrderRequest(name=order.name))) == packed

    # Two packages, the report sent twice at once: shipped once, one event per package.
    shipment = report(order, F.THIRD_PARTY_PROGRESS_SHIPPED, packages=[
        P(carrier="ups", carrier_service="ups_ground", tracking_number="1ZA",
          tracking_url="https://t.example/1ZA", lines=[U(line_id="l1", quantity=2)]),
        P(carrier="ups", carrier_service="ups_ground", tracking_number="1ZB",
          lines=[U(line_id="l2", quantity=1)])])
    replies = await asyncio.gather(*[stub.ReportThirdPartyProgress(shipment) for _ in range(2)])
    assert replies[0] == replies[1]
    done = replies[0]
    assert done.status == F.FULFILMENT_ORDER_STATUS_SHIPPED
    assert done.third_party_progress == F.THIRD_PARTY_PROGRESS_SHIPPED
    assert len(done.packages) == 2
    events = [await next_event(shipped, events_pb2.PackageShipped) for _ in range(2)]
    assert sorted((e.package, e.tracking_number, [(li.order, li.line_id, li.sku, li.quantity)
                                                  for li in e.lines]) for e in events) == sorted([
        (done.packages[0], "1ZA", [(event.order, "l1", sku1, 2)]),
        (done.packages[1], "1ZB", [(event.order, "l2", sku2, 1)])])
    assert {(e.node_id, e.carrier, e.carrier_service) for e in events} == {
        (ours, "ups", "ups_ground")}
    assert outbox_count(fulfilment_url, f"oms.fulfilment.package_shipped.{ours}") == 2
    package = await stub.GetPackage(F.GetPackageRequest(name=done.packages[0]))
    assert (package.status, package.tracking_url) == (
        F.PACKAGE_STATUS_SHIPPED, "https://t.example/1ZA")
    # Shipped in full: the order is closed to every report.
    assert (await refusal(stub.ReportThirdPartyProgress(report(
        order, F.THIRD_PARTY_PROGRESS_SHORT_SHIPPED))))[0] == grpc.StatusCode.FAILED_PRECONDITION


async def test_a_short_shipment_ships_what_left_and_inventory_allocates_the_rest_elsewhere(  # type: ignore[no-untyped-def]
        inventory, stub: Stub, js: JetStreamContext, fulfilment_url: str):
    inventory_stub = inventory[1]
    node = await third_party(inventory_stub)
    other = await add_node(inventory_stub)
    sku = await add_sku(inventory_stub, {node: 3})
    created = order_created([(sku, 3)])
    await publish(js, created)
    reservations = inventory_pb2.ListReservationsRequest(order=created.order)

    def held(reply: inventory_pb2.ListReservationsResponse) -> dict[str, int]:
        return {r.node_id: r.quantity for r in reply.reservations if r.quantity}

    await eventually(lambda: inventory_stub.ListReservations(reservations),
                     until=lambda r: held(r) == {node: 3}, what="3 units reserved at the 3PL")
    await inventory_stub.AdjustStock(inventory_pb2.AdjustStockRequest(
        node_id=other, sku=sku, delta=5, reason=inventory_pb2.ADJUSTMENT_REASON_RECEIPT))
    shorted = await js.subscribe(f"oms.fulfilment.pick_shorted.{node}", ordered_consumer=True)

    await publish(js, release(node, [(sku, 3)], order=created.order, line_ids=["1"]),
                  partition=node)
    order = await fulfilment_order(stub, node, created.order)
    # Short-shipped: 2 leave in one package, the third is short (damaged).
    closed = await stub.ReportThirdPartyProgress(report(
        order, F.THIRD_PARTY_PROGRESS_SHORT_SHIPPED, short_reason=F.SHORT_REASON_DAMAGED,
        packages=[P(carrier="dhl", tracking_number="JD1", lines=[U(line_id="1", quantity=2)])]))
    assert closed.status == F.FULFILMENT_ORDER_STATUS_SHIPPED
    assert closed.third_party_progress == F.THIRD_PARTY_PROGRESS_SHORT_SHIPPED
    assert [(li.picked_quantity, li.short_quantity, li.short_reason) for li in closed.lines] == [
        (2, 1, F.SHORT_REASON_DAMAGED)]
    short = await next_event(shorted, events_pb2.PickShorted)
    assert (short.order, short.line_id, short.sku, short.quantity, short.reason,
            short.fulfilment_order) == (created.order, "1", sku, 1,
                                        events_pb2.PICK_SHORT_REASON_DAMAGED, order.name)
    assert (await refusal(stub.ReportThirdPartyProgress(report(
        order, F.THIRD_PARTY_PROGRESS_SHIPPED, packages=[P(
            carrier="dhl", tracking_number="JD2")]))))[0] == grpc.StatusCode.FAILED_PRECONDITION

    # Inventory: the 2 shipped left the 3PL's stock and reservation, the short unit left
    # its stock and was reserved at the other node.
    await eventually(lambda: inventory_stub.ListReservations(reservations),
                     until=lambda r: held(r) == {other: 1},
                     what="the shortfall reserved at the other node")
    level = await inventory_stub.GetStockLevel(inventory_pb2.GetStockLevelRequest(
        name=f"fulfilmentNodes/{node}/stockLevels/{sku}"))
    assert (level.on_hand, level.reserved) == (0, 0)
    assert outbox_count(fulfilment_url, f"oms.fulfilment.package_shipped.{node}") == 1


async def test_a_dropship_supplier_is_sent_its_purchase_order_and_confirms_the_shipment(  # type: ignore[no-untyped-def]
        inventory, stub: Stub, js: JetStreamContext):
    supplier = await third_party(inventory[1], inventory_pb2.NODE_TYPE_DROPSHIP_SUPPLIER)
    orders = await js.subscribe(f"oms.fulfilment.purchase_order_requested.{supplier}",
                                ordered_consumer=True)
    shipped = await js.subscribe(f"oms.fulfilment.package_shipped.{supplier}",
                                 ordered_consumer=True)
    sku = f"SKU-{uuid.uuid4().hex[:8]}"
    event = release(supplier, [(sku, 4)])
    await publish(js, event, partition=supplier)
    order = await fulfilment_order(stub, supplier, event.order)
    assert order.mode == F.FULFILMENT_MODE_DROPSHIP

    purchase = await next_event(orders, events_pb2.PurchaseOrderRequested)
    assert (purchase.purchase_order, purchase.node_id, purchase.shipping_address) == (
        order.name, supplier, ADA)
    assert [(li.line_id, li.sku, li.quantity) for li in purchase.lines] == [("l1", sku, 4)]

    # The supplier reports only its shipment: one package with no lines holds every unit.
    done = await stub.ReportThirdPartyProgress(report(
        order, F.THIRD_PARTY_PROGRESS_SHIPPED, packages=[P(carrier="fedex",
                                                          tracking_number="7777")]))
    assert done.status == F.FULFILMENT_ORDER_STATUS_SHIPPED
    package = await next_event(shipped, events_pb2.PackageShipped)
    assert (package.package, package.tracking_number) == (done.packages[0], "7777")
    assert [(li.line_id, li.quantity) for li in package.lines] == [("l1", 4)]


async def test_a_cancellation_tells_the_3pl_what_not_to_ship_and_keeps_what_left(  # type: ignore[no-untyped-def]
        inventory, stub: Stub, js: JetStreamContext):
    node = await third_party(inventory[1])
    told = await js.subscribe(f"oms.fulfilment.fulfilment_cancelled.{node}",
                              ordered_consumer=True)
    sku1, sku2 = f"SKU-{uuid.uuid4().hex[:8]}", f"SKU-{uuid.uuid4().hex[:8]}"
    event = release(node, [(sku1, 2), (sku2, 1)])
    await publish(js, event, partition=node)
    order = await fulfilment_order(stub, node, event.order)
    part = await stub.ReportThirdPartyProgress(report(
        order, F.THIRD_PARTY_PROGRESS_SHIPPED,
        packages=[P(carrier="ups", tracking_number="1ZC", lines=[U(line_id="l1", quantity=1)])]))
    assert part.status == F.FULFILMENT_ORDER_STATUS_PARTIALLY_SHIPPED

    await caught_up(js, "fulfilment", await publish(js, order_events.OrderCancelled(
        order=event.order, whole_order=True, reason="customer request")))
    cancelled = await next_event(told, events_pb2.FulfilmentCancelled)
    assert (cancelled.fulfilment_order, cancelled.whole, cancelled.reason) == (
        order.name, True, "customer request")
    assert [(li.line_id, li.sku, li.quantity) for li in cancelled.lines] == [
        ("l1", sku1, 1), ("l2", sku2, 1)]
    # The unit that left stays shipped; nothing is put back; the order takes no more units.
    current = await stub.GetFulfilmentOrder(F.GetFulfilmentOrderRequest(name=order.name))
    assert current.status == F.FULFILMENT_ORDER_STATUS_SHIPPED
    assert [(li.picked_quantity, li.cancelled_quantity) for li in current.lines] == [
        (1, 1), (0, 1)]
    assert list(current.put_backs) == []
    assert (await refusal(stub.ReportThirdPartyProgress(report(
        order, F.THIRD_PARTY_PROGRESS_SHIPPED, packages=[P(
            carrier="ups", tracking_number="1ZD")]))))[0] == grpc.StatusCode.FAILED_PRECONDITION
