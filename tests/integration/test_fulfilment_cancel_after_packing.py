"""An order cancelled after it was packed, over real gRPC, PostgreSQL and NATS with
inventory and shipping in-process: its units are put back (listed, then confirmed), the
label shipping sold for its parcel is voided by the void sweep, and the parcel never
ships."""

from __future__ import annotations

import uuid

import grpc
from fulfilment_kit import (
    ADA,
    Stub,
    collecting_carrier,
    fulfilment_order,
    fulfilment_url,
    inventory,
    js,
    outbox_count,
    picked_order,
    refusal,
    shipping,
    stub,
)
from nats.js import JetStreamContext
from oms.common.v1 import common_pb2
from oms.fulfilment.v1 import fulfilment_pb2 as F
from oms.orders.v1 import events_pb2 as order_events
from oms.shipping.v1 import shipping_pb2
from oms_devtools.testkit import caught_up, eventually, publish

__all__ = ["fulfilment_url", "inventory", "js", "shipping", "stub"]


async def test_a_cancel_after_packing_puts_the_units_back_voids_the_label_and_never_ships(  # type: ignore[no-untyped-def]
        inventory, shipping, stub: Stub, js: JetStreamContext, fulfilment_url: str):
    sku = f"SKU-{uuid.uuid4().hex[:8]}"
    node_id, order = await picked_order(inventory[1], stub, js, [(sku, 2)])
    (package,) = (await stub.StartPacking(F.StartPackingRequest(
        fulfilment_order=order.name))).packages
    for _ in range(2):
        assert (await stub.ScanUnit(F.ScanUnitRequest(package=package.name, code=sku))).accepted
    # Shipping knows no origin at the node yet: the seal leaves the package sealed.
    sealed = await stub.SealPackage(F.SealPackageRequest(name=package.name))
    assert sealed.status == F.PACKAGE_STATUS_SEALED and sealed.hand_off_error

    # A label shipping sold for the package that fulfilment never recorded (the purchase
    # keyed by the package's id, as the hand-off buys it, whose answer was lost).
    await collecting_carrier(shipping[1], node_id)
    sold = await shipping[1].CreateLabel(shipping_pb2.CreateLabelRequest(
        request_id=package.name.rsplit("/", 1)[1], package=package.name, orders=[order.order],
        node_id=node_id, destination=ADA, service_level=shipping_pb2.SERVICE_LEVEL_STANDARD,
        parcel=shipping_pb2.Parcel(weight=package.weight, dimensions=package.dimensions)))
    assert sold.state == shipping_pb2.LABEL_STATE_PURCHASED

    cancelled = await publish(js, order_events.OrderCancelled(
        order=order.order, whole_order=True, reason="customer request"))
    await caught_up(js, "fulfilment", cancelled)
    current = await stub.GetFulfilmentOrder(F.GetFulfilmentOrderRequest(name=order.name))
    assert (current.status, current.cancel_reason) == (
        F.FULFILMENT_ORDER_STATUS_CANCELLED, "customer request")
    assert [(p.line_id, p.sku, p.bin_code, p.quantity, p.confirmed)
            for p in current.put_backs] == [("l1", sku, "A-01-01", 2, False)]

    voided = await eventually(
        lambda: stub.GetPackage(F.GetPackageRequest(name=package.name)),
        until=lambda p: not p.void_pending and p.HasField("void_time"),
        what="the cancelled package's label voided")
    assert voided.status == F.PACKAGE_STATUS_CANCELLED
    label = await shipping[1].GetLabel(shipping_pb2.GetLabelRequest(name=sold.name))
    assert label.state == shipping_pb2.LABEL_STATE_VOIDED

    # It never ships: a retried hand-off is refused and buys nothing; sealing changes nothing.
    assert (await refusal(stub.ShipPackage(F.ShipPackageRequest(name=package.name))))[0] == (
        grpc.StatusCode.FAILED_PRECONDITION)
    again = await stub.SealPackage(F.SealPackageRequest(name=package.name))
    assert again.status == F.PACKAGE_STATUS_CANCELLED
    labels = await shipping[1].ListLabels(shipping_pb2.ListLabelsRequest(
        filter=f'package = "{package.name}"'))
    assert [x.name for x in labels.labels] == [sold.name]
    assert outbox_count(fulfilment_url, f"oms.fulfilment.package_shipped.{node_id}") == 0

    # The put-back on the floor's list, confirmed once.
    waiting = await stub.ListPutBacks(F.ListPutBacksRequest(node_id=node_id))
    (put_back,) = waiting.put_backs
    assert (put_back.name, put_back.order) == (current.put_backs[0].name, order.order)
    done = await stub.ConfirmPutBack(F.ConfirmPutBackRequest(name=put_back.name))
    assert done.confirmed
    assert (await stub.ConfirmPutBack(F.ConfirmPutBackRequest(
        name=put_back.name))).confirm_time == done.confirm_time
    assert list((await stub.ListPutBacks(F.ListPutBacksRequest(node_id=node_id))).put_backs) == []
    shown = await stub.ListPutBacks(F.ListPutBacksRequest(node_id=node_id, show_confirmed=True))
    assert [p.name for p in shown.put_backs] == [put_back.name]
    assert (await refusal(stub.ConfirmPutBack(F.ConfirmPutBackRequest(
        name=f"{order.name}/putBacks/x"))))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert (await refusal(stub.ConfirmPutBack(F.ConfirmPutBackRequest(
        name=f"{order.name}/putBacks/999999999"))))[0] == grpc.StatusCode.NOT_FOUND


async def test_a_partial_cancel_after_packing_repacks_what_is_left(  # type: ignore[no-untyped-def]
        inventory, shipping, stub: Stub, js: JetStreamContext):
    keep, drop = f"SKU-{uuid.uuid4().hex[:8]}", f"SKU-{uuid.uuid4().hex[:8]}"
    node_id, order = await picked_order(inventory[1], stub, js, [(keep, 1), (drop, 1)])
    (package,) = (await stub.StartPacking(F.StartPackingRequest(
        fulfilment_order=order.name))).packages

    cancelled = await publish(js, order_events.OrderCancelled(
        order=order.order, reason="out of stock at the channel",
        lines=[order_events.CancelledLine(line_id="l2", quantity=1)]))
    await caught_up(js, "fulfilment", cancelled)
    # The open package is cancelled (no label was ever tried: nothing to void), the
    # dropped unit goes back, and the kept one is packed again in a new package.
    current = await fulfilment_order(stub, node_id, order.order)
    assert current.status == F.FULFILMENT_ORDER_STATUS_PICKED
    assert [(p.sku, p.quantity) for p in current.put_backs] == [(drop, 1)]
    old = await stub.GetPackage(F.GetPackageRequest(name=package.name))
    assert (old.status, old.void_pending) == (F.PACKAGE_STATUS_CANCELLED, False)
    (repacked,) = (await stub.StartPacking(F.StartPackingRequest(
        fulfilment_order=order.name))).packages
    assert repacked.name != package.name
    assert [(li.sku, li.quantity) for li in repacked.lines] == [(keep, 1)]
    assert common_pb2.Weight(grams=repacked.weight.grams) == repacked.weight
