"""One order across every service, each its own process, from the sales channel's post to
the customer's door: the gateway takes the order and its payment, orders releases it, inventory
allocates it, fulfilment picks it over gRPC, packs it with scans (a wrong one refused and
changing nothing) and buys its label from the shipping process, inventory consumes the stock,
the carrier's tracking events go to shipping, and orders shows it delivered.

The suite runs with the demo data `make run` loads (warehouses and their bins, the catalogue,
the carriers with their table rates, slots) and the demo partners, made with the gateway's
CLI as an operator makes them. Figures worked out by hand from that data are in the comments.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import grpc
import httpx
import nats
import pytest
from e2e_kit import add_idempotency_key, load_demo, order_json, stream_messages
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp
from nats.js import JetStreamContext
from oms.fulfilment.v1 import events_pb2 as fulfilment_events
from oms.fulfilment.v1 import fulfilment_pb2, fulfilment_pb2_grpc
from oms.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from oms.orders.v1 import events_pb2 as order_events
from oms.shipping.v1 import shipping_pb2, shipping_pb2_grpc
from oms_devtools import demo
from oms_devtools.servers import EmbeddedNats
from oms_devtools.stack import Stack
from oms_devtools.testkit import caught_up, eventually

# Six processes start and the demo data loads before the one test runs, all counted in its
# time: on a busy two-core machine that alone has taken over four minutes.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

NODE = "us-west-reno"  # the demo warehouse nearest Los Angeles
SKU = "TSHIRT-BLK-M"  # 180 g, 300 x 250 x 20 mm, not fragile
GTIN = "4006381333931"  # the T-shirt's
OTHER_GTIN = "4006381333955"  # the mug's: a unit that is not in the parcel
BIN = "A-02-2"  # Reno's SKUs slotted in bin order: HOODIE, MUG, STICKER, then the T-shirt
ON_HAND = 120  # the demo's T-shirts at Reno

Fulfilment = fulfilment_pb2_grpc.FulfilmentServiceStub
Shipping = shipping_pb2_grpc.ShippingServiceStub
Inventory = inventory_pb2_grpc.InventoryServiceStub


@pytest.fixture(scope="module")
def demo_keys(stack: Stack) -> dict[str, str]:
    """The demo data loaded as `make run` loads it, and the API keys of the demo's web shop
    and its payment provider."""
    load_demo(stack)
    return {partner_id: stack.create_partner(partner_id, kind, channels=tuple(channels))
            for partner_id, kind, channels in demo.PARTNERS
            if partner_id in ("demo-shop", "demo-payments")}


def partner(stack: Stack, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=stack.services["gateway"].endpoint, timeout=15,
                             headers={"Authorization": f"Bearer {key}"},
                             event_hooks={"request": [add_idempotency_key]})


@pytest.fixture
async def shop(stack: Stack, demo_keys: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with partner(stack, demo_keys["demo-shop"]) as client:
        yield client


@pytest.fixture
async def payments(stack: Stack, demo_keys: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with partner(stack, demo_keys["demo-payments"]) as client:
        yield client


@pytest.fixture
async def grpc_stubs(stack: Stack) -> AsyncIterator[tuple[Inventory, Fulfilment, Shipping]]:
    endpoints = stack.endpoints()
    async with grpc.aio.insecure_channel(endpoints["inventory"]) as inventory, \
            grpc.aio.insecure_channel(endpoints["fulfilment"]) as fulfilment, \
            grpc.aio.insecure_channel(endpoints["shipping"]) as shipping:
        yield Inventory(inventory), Fulfilment(fulfilment), Shipping(shipping)


@pytest.fixture
async def js(stack_nats: EmbeddedNats) -> AsyncIterator[JetStreamContext]:
    client = await nats.connect(stack_nats.url)
    try:
        yield client.jetstream()
    finally:
        await client.close()


async def order_in(shop: httpx.AsyncClient, name: str, status: str) -> dict[str, Any]:
    async def order() -> dict[str, Any]:
        return (await shop.get(f"/v1/{name}")).json()  # type: ignore[no-any-return]

    return await eventually(order, until=lambda got: got.get("status") == status,
                            what=f"{name} {status}", retry_on=(httpx.TransportError,))


async def level(inventory: Inventory) -> tuple[int, int]:
    reply = await inventory.GetStockLevel(inventory_pb2.GetStockLevelRequest(
        name=f"fulfilmentNodes/{NODE}/stockLevels/{SKU}"))
    return reply.on_hand, reply.reserved


async def level_is(inventory: Inventory, expected: tuple[int, int]) -> None:
    await eventually(lambda: level(inventory), until=lambda got: got == expected,
                     what=f"{NODE}/{SKU} at (on_hand, reserved) = {expected}")


async def catalogue_replicated(nats_url: str, js: JetStreamContext) -> None:
    """Fulfilment has handled inventory's `ProductChanged` of the demo SKU (its weight and
    size are what the pick list and the cartons are worked out from)."""
    async def published() -> bool:
        changes = await stream_messages(nats_url, "OMS_INVENTORY",
                                        "oms.inventory.product_changed")
        return any((m.headers or {}).get("ce-subject") == f"products/{SKU}" for m in changes)

    await eventually(published, what=f"ProductChanged of {SKU} published")
    await caught_up(js, "fulfilment", "OMS_INVENTORY")


def stamp(moment: datetime) -> Timestamp:
    result = Timestamp()
    result.FromDatetime(moment)
    return result


async def test_an_order_posted_to_the_gateway_is_picked_packed_shipped_and_delivered(
    stack: Stack, stack_nats: EmbeddedNats, js: JetStreamContext, shop: httpx.AsyncClient,
    payments: httpx.AsyncClient, grpc_stubs: tuple[Inventory, Fulfilment, Shipping],
) -> None:
    inventory, fulfilment, shipping = grpc_stubs
    await catalogue_replicated(stack_nats.url, js)
    assert await level(inventory) == (ON_HAND, 0)

    # The web shop posts the order unpaid; the payment provider then reports the capture.
    body = order_json(SKU, 2, channel="shopify-demo")
    body["paymentStatus"] = "PAYMENT_STATUS_PENDING"
    created = await shop.post("/v1/orders", json=body)
    assert created.status_code == 201, created.text
    name = created.json()["name"]
    assert created.json()["total"] == {"currencyCode": "USD", "amount": "25.00"}  # 2 x 12.50
    await level_is(inventory, (ON_HAND, 2))  # reserved while the payment is awaited
    capture = {"transactionId": f"pi_{secrets.token_hex(6)}", "kind": "PAYMENT_KIND_CAPTURE",
               "amount": {"currencyCode": "USD", "amount": "25.00"}, "provider": "stripe"}
    paid = await payments.post(f"/v1/{name}/payments", json=capture)
    assert paid.status_code == 200, paid.text
    order = await order_in(shop, name, "ORDER_STATUS_RELEASED")
    assert order["paymentStatus"] == "PAYMENT_STATUS_PAID"
    assert [(p["kind"], p["amount"]["amount"]) for p in order["payments"]] == [
        ("PAYMENT_KIND_CAPTURE", "25.00")]
    assert [a["nodeId"] for a in order["allocations"]] == [NODE]

    # Fulfilment made its fulfilment order from the release orders sent Reno, once (read
    # once fulfilment has it, so the relay has published it).
    found = await eventually(lambda: fulfilment.ListFulfilmentOrders(
        fulfilment_pb2.ListFulfilmentOrdersRequest(filter=f'order = "{name}"')),
        until=lambda r: len(r.fulfilment_orders) == 1, what="the fulfilment order")
    released = [json_format.Parse(m.data, order_events.OrderReleased(),
                                  ignore_unknown_fields=True)
                for m in await stream_messages(stack_nats.url, "OMS_ORDERS",
                                               f"oms.orders.order_released.{NODE}")]
    assert [[(li.sku, li.quantity) for li in r.lines] for r in released if name in r.orders] == [
        [(SKU, 2)]]
    (fulfilment_order,) = found.fulfilment_orders
    assert fulfilment_order.status == fulfilment_pb2.FULFILMENT_ORDER_STATUS_OPEN
    assert [(li.sku, li.quantity, li.bin_code) for li in fulfilment_order.lines] == [
        (SKU, 2, BIN)]
    # Promised to leave at Reno's next 15:00 cut-off, Pacific time (a day ahead at most).
    release = fulfilment_order.release_time.ToDatetime(tzinfo=UTC)
    promised = fulfilment_order.promised_ship_time.ToDatetime(tzinfo=UTC)
    local = promised.astimezone(ZoneInfo("America/Los_Angeles"))
    assert (local.hour, local.minute) == (15, 0)
    assert release < promised <= release + timedelta(days=1)

    # The picker's handset asks for the next list (the node's default, batch) and confirms
    # its one stop: two T-shirts from A-02-2, 2 x 180 g to carry.
    (pick_list,) = (await fulfilment.CreatePickList(fulfilment_pb2.CreatePickListRequest(
        node_id=NODE, request_id=uuid.uuid4().hex))).pick_lists
    assert pick_list.strategy == fulfilment_pb2.PICK_STRATEGY_BATCH
    assert list(pick_list.fulfilment_orders) == [fulfilment_order.name]
    assert [(s.sequence, s.bin_code, s.zone, s.sku, s.quantity) for s in pick_list.stops] == [
        (1, BIN, "A", SKU, 2)]
    assert (pick_list.units, pick_list.weight_grams) == (2, 360)
    confirmed = await fulfilment.ConfirmPick(fulfilment_pb2.ConfirmPickRequest(
        name=pick_list.name, sequence=1, picked_quantity=2))
    assert confirmed.completed
    current = await fulfilment.GetFulfilmentOrder(fulfilment_pb2.GetFulfilmentOrderRequest(
        name=fulfilment_order.name))
    assert current.status == fulfilment_pb2.FULFILMENT_ORDER_STATUS_PICKED
    assert await level(inventory) == (ON_HAND, 2), "picking moves no stock in inventory"

    # Packing: two T-shirts stacked (300 x 250 x 40) fit the padded mailer (350 x 250 x 50,
    # 40 g), the smallest box by volume: 2 x 180 + 40 = 400 g.
    (package,) = (await fulfilment.StartPacking(fulfilment_pb2.StartPackingRequest(
        fulfilment_order=fulfilment_order.name, station="pack-01"))).packages
    assert (package.box_code, package.weight.grams) == ("mailer", 400)
    wrong = await fulfilment.ScanUnit(fulfilment_pb2.ScanUnitRequest(
        package=package.name, code=OTHER_GTIN))
    assert (wrong.accepted, wrong.refusal, wrong.units_missing) == (
        False, fulfilment_pb2.SCAN_REFUSAL_WRONG_SKU, 2)
    assert [(li.units_verified, li.units_refused) for li in wrong.package.lines] == [(0, 1)]
    assert wrong.package.status == fulfilment_pb2.PACKAGE_STATUS_PACKING
    with pytest.raises(grpc.aio.AioRpcError) as incomplete:
        await fulfilment.SealPackage(fulfilment_pb2.SealPackageRequest(name=package.name))
    assert incomplete.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert list((await shipping.ListLabels(shipping_pb2.ListLabelsRequest(
        filter=f'package = "{package.name}"'))).labels) == [], "no label for a refused scan"
    for code in (GTIN, SKU):  # the GTIN, then the SKU barcode: each verifies one unit
        assert (await fulfilment.ScanUnit(fulfilment_pb2.ScanUnitRequest(
            package=package.name, code=code))).accepted, code
    stats = await fulfilment.GetFloorStats(fulfilment_pb2.GetFloorStatsRequest(node_id=NODE))
    assert stats.pack_refusals == 1

    # Sealing hands the parcel to shipping, which buys the label by the rate shop's choice:
    # for a standard level with no promise, the cheapest demo service collecting at Reno is
    # USPS Ground Advantage. The mailer's dimensional weight, 35 x 25 x 5 cm / 5000 = 875 g,
    # bills on the 1 kg break: 5.40 + 1.20 = 6.60 USD, fuel 8.5 % = 0.56, total 7.16 USD.
    sealed = await fulfilment.SealPackage(fulfilment_pb2.SealPackageRequest(name=package.name))
    assert sealed.status == fulfilment_pb2.PACKAGE_STATUS_SHIPPED, sealed.hand_off_error
    assert (sealed.carrier, sealed.carrier_service) == ("usps", "usps_ground_advantage")
    label = await shipping.GetLabel(shipping_pb2.GetLabelRequest(name=sealed.label))
    assert (label.package, list(label.orders), label.node_id) == (package.name, [name], NODE)
    assert (label.cost.currency_code, label.cost.amount) == ("USD", "7.16")
    assert label.tracking_number == sealed.tracking_number
    assert (label.destination.locality, label.parcel.weight.grams) == ("Los Angeles", 400)
    again = await fulfilment.ShipPackage(fulfilment_pb2.ShipPackageRequest(name=package.name))
    assert again.tracking_number == sealed.tracking_number
    labels = await shipping.ListLabels(shipping_pb2.ListLabelsRequest(
        filter=f'package = "{package.name}"'))
    assert [x.name for x in labels.labels] == [sealed.label], "one label bought, once"

    # Orders follows PackageShipped (published once); inventory consumes the reservation:
    # two units left.
    order = await order_in(shop, name, "ORDER_STATUS_SHIPPED")
    shipped = [json_format.Parse(m.data, fulfilment_events.PackageShipped(),
                                 ignore_unknown_fields=True)
               for m in await stream_messages(stack_nats.url, "OMS_FULFILMENT",
                                              f"oms.fulfilment.package_shipped.{NODE}")]
    mine = [s for s in shipped if s.package == package.name]
    assert [(s.tracking_number, [(li.order, li.sku, li.quantity) for li in s.lines])
            for s in mine] == [(sealed.tracking_number, [(name, SKU, 2)])]
    assert [(s["trackingNumber"], s["carrier"]) for s in order["shipments"]] == [
        (sealed.tracking_number, "usps")]
    assert [line["shippedQuantity"] for line in order["lines"]] == [2]
    await level_is(inventory, (ON_HAND - 2, 0))

    # USPS's webhook reports the scans, the delivery first (carriers send them in any order)
    # and then the whole lot again: one delivery, recorded once.
    bought = label.create_time.ToDatetime(tzinfo=UTC)
    scans = [shipping_pb2.TrackingEvent(
        carrier="usps", tracking_number=sealed.tracking_number, carrier_code=code,
        event_time=stamp(bought + timedelta(seconds=seconds)), location=where,
        description=description)
        for code, seconds, where, description in [
            ("01", 3, "Los Angeles, CA 90012", "Delivered, Front Door/Porch"),
            ("03", 1, "Reno, NV 89502", "Accepted at USPS Origin Facility"),
            ("OF", 2, "Los Angeles, CA 90012", "Out for Delivery")]]
    recorded = await shipping.RecordTrackingEvents(
        shipping_pb2.RecordTrackingEventsRequest(events=scans))
    assert (recorded.recorded, recorded.duplicates, list(recorded.unknown_tracking_numbers)) == (
        3, 0, [])
    replayed = await shipping.RecordTrackingEvents(
        shipping_pb2.RecordTrackingEventsRequest(events=scans))
    assert (replayed.recorded, replayed.duplicates) == (0, 3)
    tracking = await shipping.GetTracking(shipping_pb2.GetTrackingRequest(
        tracking_number=sealed.tracking_number))
    assert tracking.status == shipping_pb2.TRACKING_STATUS_DELIVERED
    assert [e.carrier_code for e in tracking.events] == ["03", "OF", "01"]

    delivered = await order_in(shop, name, "ORDER_STATUS_DELIVERED")
    assert delivered["paymentStatus"] == "PAYMENT_STATUS_PAID"
    assert len(delivered["payments"]) == 1, "no money moved after the capture"
    assert await level(inventory) == (ON_HAND - 2, 0)
    delivered_events = [m for m in await stream_messages(
        stack_nats.url, "OMS_SHIPPING", "oms.shipping.shipment_delivered")
        if (m.headers or {}).get("ce-subject") == sealed.label]
    assert len(delivered_events) == 1
