"""A pick list printed through GetPickListDocument over real gRPC, PostgreSQL and NATS:
the PDF lists the stops in walking order with their bins, items and totes; a list emptied
by a cancellation has nothing to print."""

from __future__ import annotations

import uuid

import grpc
import pypdfium2
from fulfilment_kit import (
    Stub,
    fulfilment_order,
    fulfilment_url,
    inventory,
    js,
    product,
    refusal,
    release,
    shipping,
    stub,
)
from google.type import timeofday_pb2
from nats.js import JetStreamContext
from oms.fulfilment.v1 import fulfilment_pb2 as F
from oms.inventory.v1 import inventory_pb2
from oms.orders.v1 import events_pb2 as order_events
from oms_devtools.testkit import add_node, caught_up, publish

__all__ = ["fulfilment_url", "inventory", "js", "shipping", "stub"]


def text_of(content: bytes) -> str:
    document = pypdfium2.PdfDocument(content)
    try:
        return "".join(page.get_textpage().get_text_range() for page in document)
    finally:
        document.close()


async def test_a_pick_list_prints_its_stops_in_walking_order(  # type: ignore[no-untyped-def]
        inventory, stub: Stub, js: JetStreamContext):
    near, far = f"SKU-{uuid.uuid4().hex[:8]}", f"SKU-{uuid.uuid4().hex[:8]}"
    await caught_up(js, "fulfilment", await publish(js, product(near), aggregate_id=near))
    node_id = await add_node(inventory[1], cutoff_time=timeofday_pb2.TimeOfDay(hours=15),
                             bins=[inventory_pb2.Bin(bin_code=c, zone="ambient")
                                   for c in ("A-01-01", "B-01-01")])
    await stub.BatchSetSlots(F.BatchSetSlotsRequest(slots=[
        F.Slot(node_id=node_id, sku=near, bin_code="A-01-01"),
        F.Slot(node_id=node_id, sku=far, bin_code="B-01-01")]))
    first, second = release(node_id, [(far, 1), (near, 2)]), release(node_id, [(far, 1)])
    for event in (first, second):
        await publish(js, event, partition=node_id)
        await fulfilment_order(stub, node_id, event.order)
    (batch,) = (await stub.CreatePickList(F.CreatePickListRequest(
        node_id=node_id, strategy=F.PICK_STRATEGY_BATCH))).pick_lists

    printed = await stub.GetPickListDocument(F.GetPickListDocumentRequest(name=batch.name))
    assert (printed.pick_list, printed.content_type) == (batch.name, "application/pdf")
    text = text_of(printed.content)
    assert batch.name in text and "Units: 4" in text and "Strategy: batch" in text
    # Aisle A before aisle B; the title from the product replica; both totes at B.
    assert text.index("A-01-01") < text.index("B-01-01")
    assert f"Product {near}" in text and "1, 2" in text

    assert (await refusal(stub.GetPickListDocument(F.GetPickListDocumentRequest(
        name="pickLists/nope"))))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert (await refusal(stub.GetPickListDocument(F.GetPickListDocumentRequest(
        name=f"pickLists/{uuid.uuid4()}"))))[0] == grpc.StatusCode.NOT_FOUND


async def test_a_list_emptied_by_a_cancellation_has_nothing_to_print(  # type: ignore[no-untyped-def]
        inventory, stub: Stub, js: JetStreamContext):
    sku = f"SKU-{uuid.uuid4().hex[:8]}"
    node_id = await add_node(inventory[1],
                             bins=[inventory_pb2.Bin(bin_code="A-01-01", zone="ambient")])
    await stub.BatchSetSlots(F.BatchSetSlotsRequest(slots=[
        F.Slot(node_id=node_id, sku=sku, bin_code="A-01-01")]))
    event = release(node_id, [(sku, 1)])
    await publish(js, event, partition=node_id)
    await fulfilment_order(stub, node_id, event.order)
    (single,) = (await stub.CreatePickList(F.CreatePickListRequest(
        node_id=node_id, strategy=F.PICK_STRATEGY_SINGLE_ORDER))).pick_lists
    await caught_up(js, "fulfilment", await publish(js, order_events.OrderCancelled(
        order=event.order, whole_order=True)))
    code, _ = await refusal(stub.GetPickListDocument(F.GetPickListDocumentRequest(
        name=single.name)))
    assert code == grpc.StatusCode.FAILED_PRECONDITION


async def test_a_pick_lists_packing_slips_print_in_one_pdf_in_tote_order(  # type: ignore[no-untyped-def]
        inventory, stub: Stub, js: JetStreamContext):
    sku = f"SKU-{uuid.uuid4().hex[:8]}"
    await caught_up(js, "fulfilment", await publish(js, product(sku), aggregate_id=sku))
    node_id = await add_node(inventory[1],
                             bins=[inventory_pb2.Bin(bin_code="A-01-01", zone="ambient")])
    await stub.BatchSetSlots(F.BatchSetSlotsRequest(slots=[
        F.Slot(node_id=node_id, sku=sku, bin_code="A-01-01")]))
    events = [release(node_id, [(sku, 1)]) for _ in range(2)]
    for event in events:
        await publish(js, event, partition=node_id)
        await fulfilment_order(stub, node_id, event.order)
    (batch,) = (await stub.CreatePickList(F.CreatePickListRequest(
        node_id=node_id, strategy=F.PICK_STRATEGY_BATCH))).pick_lists
    request = F.GetPickListPackingSlipsRequest(pick_list=batch.name)
    assert (await refusal(stub.GetPickListPackingSlips(request)))[0] == (
        grpc.StatusCode.FAILED_PRECONDITION)  # nothing packed yet

    (stop,) = batch.stops
    await stub.ConfirmPick(F.ConfirmPickRequest(name=batch.name, sequence=stop.sequence,
                                                picked_quantity=stop.quantity))
    packages = []
    for name in batch.fulfilment_orders:
        (package,) = (await stub.StartPacking(F.StartPackingRequest(
            fulfilment_order=name))).packages
        packages.append(package.name)
    slips = await stub.GetPickListPackingSlips(request)
    assert (slips.content_type, list(slips.packages)) == ("application/pdf", packages)
    document = pypdfium2.PdfDocument(slips.content)
    try:
        assert len(document) == 2
    finally:
        document.close()
    text = text_of(slips.content)
    assert text.count("Ada Lovelace") == 2 and text.count(f"Product {sku}") == 2
