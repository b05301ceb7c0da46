"""Helpers for the fulfilment hand-off tests: inventory, shipping and fulfilment in-process on
real PostgreSQL and JetStream (fulfilment's label-void sweep passing every 0.2 s), events read
back from a node's own subject, and what fulfilment's outbox holds."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import nats
import pytest
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from google.type import dayofweek_pb2, timeofday_pb2
from grpc_status import rpc_status
from nats.js import JetStreamContext
from oms.common.v1 import common_pb2
from oms.fulfilment.v1 import fulfilment_pb2, fulfilment_pb2_grpc
from oms.inventory.v1 import events_pb2 as inventory_events
from oms.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from oms.orders.v1 import events_pb2 as order_events
from oms.orders.v1 import orders_pb2
from oms.shipping.v1 import shipping_pb2, shipping_pb2_grpc
from oms_devtools.inprocess import running_service
from oms_devtools.testkit import add_node, caught_up, eventually, new_id, publish
from oms_fulfilment.app import MIGRATIONS, definition
from oms_fulfilment.settings import FulfilmentSettings
from oms_inventory.app import MIGRATIONS as INVENTORY_MIGRATIONS
from oms_inventory.app import definition as inventory_definition
from oms_inventory.settings import InventorySettings
from oms_platform import bus
from oms_platform.events import decode
from oms_shipping.app import MIGRATIONS as SHIPPING_MIGRATIONS
from oms_shipping.app import definition as shipping_definition
from oms_shipping.settings import ShippingSettings
from sqlalchemy import create_engine, text

Stub = fulfilment_pb2_grpc.FulfilmentServiceStub
ADA = common_pb2.Address(recipient="Ada Lovelace", address_lines=["Scott Base"],
                         locality="Ross Island", postal_code="9998", region_code="AQ")


@pytest.fixture(scope="module")
async def inventory(database_factory, nats_url: str):  # type: ignore[no-untyped-def]
    async with running_service(inventory_definition(InventorySettings()), INVENTORY_MIGRATIONS,
                               database_url=database_factory("inventory"),
                               nats_url=nats_url) as service, \
            grpc.aio.insecure_channel(f"127.0.0.1:{service.bound_port}") as channel:
        yield service, inventory_pb2_grpc.InventoryServiceStub(channel)


@pytest.fixture(scope="module")
async def shipping(database_factory, nats_url: str):  # type: ignore[no-untyped-def]
    async with running_service(shipping_definition(ShippingSettings()), SHIPPING_MIGRATIONS,
                               database_url=database_factory("shipping"),
                               nats_url=nats_url) as service, \
            grpc.aio.insecure_channel(f"127.0.0.1:{service.bound_port}") as channel:
        yield service, shipping_pb2_grpc.ShippingServiceStub(channel)


@pytest.fixture(scope="module")
def fulfilment_url(database_factory) -> str:  # type: ignore[no-untyped-def]
    return str(database_factory("fulfilment"))


@pytest.fixture(scope="module")
async def stub(inventory, shipping, fulfilment_url: str, nats_url: str) -> AsyncIterator[Stub]:  # type: ignore[no-untyped-def]
    settings = FulfilmentSettings(inventory_target=f"127.0.0.1:{inventory[0].bound_port}",
                                  shipping_target=f"127.0.0.1:{shipping[0].bound_port}",
                                  node_cache_seconds=0, void_interval_seconds=0.2)
    async with running_service(definition(settings), MIGRATIONS, database_url=fulfilment_url,
                               nats_url=nats_url) as service, \
            grpc.aio.insecure_channel(f"127.0.0.1:{service.bound_port}") as channel:
        yield Stub(channel)


@pytest.fixture(scope="module")
async def js(nats_url: str) -> AsyncIterator[JetStreamContext]:
    client = await nats.connect(nats_url)
    js = client.jetstream()
    for producer in ("orders", "inventory", "fulfilment", "shipping"):
        await bus.ensure_stream(js, producer)
    yield js
    await client.drain()


def product(sku: str, *, gtin: str = "") -> inventory_events.ProductChanged:
    return inventory_events.ProductChanged(product=inventory_pb2.Product(
        sku=sku, title=f"Product {sku}", gtin=gtin, weight=common_pb2.Weight(grams=400),
        dimensions=common_pb2.Dimensions(length_mm=200, width_mm=150, height_mm=80)))


def release(node_id: str, lines: list[tuple[str, int]], *, order: str | None = None,
            line_ids: list[str] | None = None,
            service_level: int = orders_pb2.SERVICE_LEVEL_STANDARD,
            ) -> order_events.OrderReleased:
    order = order or f"orders/{uuid.uuid4()}"
    ids = line_ids or [f"l{i}" for i in range(1, len(lines) + 1)]
    return order_events.OrderReleased(
        order=order, orders=[order], node_id=node_id, channel="shop-eu",
        external_order_id=f"WEB-{uuid.uuid4().hex[:8]}", service_level=service_level,  # type: ignore[arg-type]
        shipping_address=ADA, gift_note="Happy birthday, Ada!",
        lines=[order_events.ReleasedLine(order=order, line_id=line_id, sku=sku, quantity=q)
               for line_id, (sku, q) in zip(ids, lines, strict=True)])


async def fulfilment_order(stub: Stub, node_id: str, order: str) -> fulfilment_pb2.FulfilmentOrder:
    reply = await eventually(
        lambda: stub.ListFulfilmentOrders(fulfilment_pb2.ListFulfilmentOrdersRequest(
            filter=f'node_id = "{node_id}" AND order = "{order}"')),
        until=lambda r: len(r.fulfilment_orders) == 1, what=f"{order}'s fulfilment order")
    return reply.fulfilment_orders[0]


async def next_event(subscription: Any, message_type: type[Message]) -> Any:
    message = await subscription.next_msg(timeout=30)
    return decode(dict(message.headers or {}), message.data, [message_type])


def outbox_count(url: str, subject: str) -> int:
    """Rows fulfilment's outbox holds for the subject (published or not): what it ever
    meant to publish there."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM outbox WHERE subject = :s"),
                                    {"s": subject}).scalar_one())
    finally:
        engine.dispose()


async def refusal(call: object) -> tuple[grpc.StatusCode, list[str]]:
    """The code of a refused call and the fields it names."""
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call  # type: ignore[misc]
    status = rpc_status.from_call(raised.value)
    fields: list[str] = []
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields += [v.field for v in bad.field_violations]
    return raised.value.code(), fields


async def picked_order(inventory_stub, stub: Stub, js: JetStreamContext,  # type: ignore[no-untyped-def]
                       lines: list[tuple[str, int]]) -> tuple[str, fulfilment_pb2.FulfilmentOrder]:
    """A warehouse, the products, a release of ``lines`` to it, picked in full: (node,
    fulfilment order)."""
    for sku, _ in lines:
        await caught_up(js, "fulfilment", await publish(js, product(sku), aggregate_id=sku))
    node_id = await add_node(inventory_stub, cutoff_time=timeofday_pb2.TimeOfDay(hours=15),
                             bins=[inventory_pb2.Bin(bin_code="A-01-01", zone="ambient")])
    await stub.BatchSetSlots(fulfilment_pb2.BatchSetSlotsRequest(slots=[
        fulfilment_pb2.Slot(node_id=node_id, sku=sku, bin_code="A-01-01")
        for sku, _ in lines]))
    event = release(node_id, lines)
    await publish(js, event, partition=node_id)
    await fulfilment_order(stub, node_id, event.order)
    (pick_list,) = (await stub.CreatePickList(fulfilment_pb2.CreatePickListRequest(
        node_id=node_id, strategy=fulfilment_pb2.PICK_STRATEGY_SINGLE_ORDER))).pick_lists
    for stop in pick_list.stops:
        await stub.ConfirmPick(fulfilment_pb2.ConfirmPickRequest(
            name=pick_list.name, sequence=stop.sequence, picked_quantity=stop.quantity))
    found = await fulfilment_order(stub, node_id, event.order)
    assert found.status == fulfilment_pb2.FULFILMENT_ORDER_STATUS_PICKED
    return node_id, found


EVERY_DAY = [getattr(dayofweek_pb2, day) for day in (
    "MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")]
LAST_SECOND = timeofday_pb2.TimeOfDay(hours=23, minutes=59, seconds=59)


async def collecting_carrier(shipping_stub, node_id: str) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """A table-rate carrier with one standard service, the only one collecting at the node,
    whose origin is in Antarctica (no public holidays, so a label ships today whatever day
    the suite runs): (carrier, service code)."""
    carrier_id = new_id("post").replace("-", "_")
    code = f"{carrier_id}_parcel"
    await shipping_stub.CreateCarrier(shipping_pb2.CreateCarrierRequest(
        request_id=new_id("carrier"), carrier=shipping_pb2.Carrier(
            carrier_id=carrier_id, display_name="Polar Post",
            mode=shipping_pb2.CARRIER_MODE_TABLE_RATE,
            tracking_scheme=shipping_pb2.TRACKING_SCHEME_S10,
            tracking_url_template="https://track.example/{tracking_number}",
            services=[shipping_pb2.CarrierService(
                code=code, display_name="Polar Parcel",
                service_level=shipping_pb2.SERVICE_LEVEL_STANDARD, transit_days=2,
                pickup_days=EVERY_DAY, cutoff_time=LAST_SECOND)])))
    await shipping_stub.CreateOrigin(shipping_pb2.CreateOriginRequest(
        origin=shipping_pb2.Origin(
            node_id=node_id, time_zone="UTC", carriers=[carrier_id], cutoff_time=LAST_SECOND,
            address=common_pb2.Address(organization="McMurdo Depot",
                                       address_lines=["Hut Point"], locality="McMurdo",
                                       postal_code="9999", region_code="AQ"))))
    await shipping_stub.CreateRateCard(shipping_pb2.CreateRateCardRequest(
        request_id=new_id("card"), rate_card_id=new_id("card").lower(),
        rate_card=shipping_pb2.RateCard(
            service_code=code, currency_code="EUR",
            zones=[shipping_pb2.Zone(zone="1", origin_country="AQ", destination_country="AQ")],
            breaks=[shipping_pb2.WeightBreak(
                zone="1", max_weight_grams=20000,
                price=common_pb2.Money(currency_code="EUR", amount="9.90"))])))
    return carrier_id, code
