"""Tracking over real gRPC, PostgreSQL and NATS JetStream: carrier events in any order and
with duplicates never move a parcel backwards and tell orders once; the no-scan sweep; and a
delivery recorded here moving the order to delivered in the orders service.

Labels are bought through CreateLabel from table-rate carriers whose ids are those of the
carriers' code tables (ups, royal_mail, dhl_express, usps)."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import nats
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from google.type import dayofweek_pb2, timeofday_pb2
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from oms.common.v1 import common_pb2
from oms.fulfilment.v1 import events_pb2 as fulfilment_events
from oms.inventory.v1 import events_pb2 as inventory_events
from oms.orders.v1 import orders_pb2, orders_pb2_grpc
from oms.shipping.v1 import events_pb2, shipping_pb2, shipping_pb2_grpc
from oms_devtools.inprocess import running_service
from oms_devtools.testkit import eventually, publish
from oms_orders.app import DEFINITION as ORDERS
from oms_orders.app import MIGRATIONS as ORDERS_MIGRATIONS
from oms_platform.events import subject_for
from oms_platform.service import Service
from oms_platform.values import timestamp
from oms_shipping.app import MIGRATIONS, definition
from oms_shipping.settings import ShippingSettings
from oms_shipping.tables import labels, metadata, tracking_events
from oms_shipping.tracking.handlers import sweep_stale
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

ShippingStub = shipping_pb2_grpc.ShippingServiceStub
pytestmark = pytest.mark.usefixtures("carriers")
outbox = metadata.tables["outbox"]
STALE_DAYS = 3
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)


@pytest.fixture(scope="module")
def database_url(database_factory: Callable[[str], str]) -> str:
    return database_factory("shipping_tracking")


@pytest.fixture(scope="module")
def settings() -> ShippingSettings:
    return ShippingSettings(stale_after_days=STALE_DAYS, stale_sweep_interval_seconds=0.2)


@pytest.fixture(scope="module")
async def service(database_url: str, nats_url: str,
                  settings: ShippingSettings) -> AsyncIterator[Service]:
    async with running_service(definition(settings), MIGRATIONS, database_url=database_url,
                               nats_url=nats_url) as running:
        yield running


@pytest.fixture(scope="module")
async def shipping(service: Service) -> AsyncIterator[ShippingStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.bound_port}") as channel:
        yield ShippingStub(channel)


@pytest.fixture(scope="module")
def engine(service: Service) -> AsyncEngine:
    assert service.runtime is not None
    return service.runtime.engine


@pytest.fixture(scope="module")
async def js(nats_url: str) -> AsyncIterator[JetStreamContext]:
    client = await nats.connect(nats_url)
    yield client.jetstream()
    await client.drain()


EVERY_DAY = [getattr(dayofweek_pb2, day) for day in (
    "MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")]
CARRIERS = {
    "ups": shipping_pb2.TRACKING_SCHEME_UPS_1Z,
    "royal_mail": shipping_pb2.TRACKING_SCHEME_S10,
    "dhl_express": shipping_pb2.TRACKING_SCHEME_MOD7,
    "usps": shipping_pb2.TRACKING_SCHEME_MOD10,
}
NODE = "node-tracking"
LATE = timeofday_pb2.TimeOfDay(hours=23, minutes=59, seconds=59)


@pytest.fixture(scope="module")
async def carriers(shipping: ShippingStub) -> None:
    """Table-rate carriers whose ids are those of the carriers' code tables, all collecting
    every day at one London origin, each with one service and its rate card."""
    for carrier_id, scheme in CARRIERS.items():
        await shipping.CreateCarrier(shipping_pb2.CreateCarrierRequest(
            request_id=str(uuid.uuid4()), carrier=shipping_pb2.Carrier(
                carrier_id=carrier_id, display_name=carrier_id.upper(),
                mode=shipping_pb2.CARRIER_MODE_TABLE_RATE, tracking_scheme=scheme,
                services=[shipping_pb2.CarrierService(
                    code=f"{carrier_id}_parcel", display_name="Parcel",
                    service_level=shipping_pb2.SERVICE_LEVEL_STANDARD, transit_days=2,
                    pickup_days=EVERY_DAY, cutoff_time=LATE)])))
        await shipping.CreateRateCard(shipping_pb2.CreateRateCardRequest(
            request_id=str(uuid.uuid4()), rate_card_id=f"{carrier_id.replace('_', '-')}-card",
            rate_card=shipping_pb2.RateCard(
                service_code=f"{carrier_id}_parcel", currency_code="GBP",
                zones=[shipping_pb2.Zone(zone="1", origin_country="GB",
                                         destination_country="GB")],
                breaks=[shipping_pb2.WeightBreak(
                    zone="1", max_weight_grams=20000,
                    price=common_pb2.Money(currency_code="GBP", amount="4.20"))])))
    await shipping.CreateOrigin(shipping_pb2.CreateOriginRequest(origin=shipping_pb2.Origin(
        node_id=NODE, time_zone="Europe/London", carriers=list(CARRIERS), cutoff_time=LATE,
        address=common_pb2.Address(organization="OMS Hatfield", address_lines=["1 Dock Road"],
                                   locality="Hatfield", postal_code="AL10 9AA",
                                   region_code="GB"))))


async def add_label(shipping: ShippingStub, carrier: str = "ups", *,
                    orders: list[str] | None = None) -> dict[str, Any]:
    """A label bought through CreateLabel, as the fields tracking needs."""
    label = await shipping.CreateLabel(shipping_pb2.CreateLabelRequest(
        request_id=str(uuid.uuid4()), package=f"fulfilmentOrders/{uuid.uuid4()}/packages/1",
        orders=orders if orders is not None else [f"orders/{uuid.uuid4()}"], node_id=NODE,
        destination=common_pb2.Address(recipient="Ada Lovelace",
                                       address_lines=["12 Marylebone Road"], locality="London",
                                       postal_code="NW1 5LR", region_code="GB"),
        parcel=shipping_pb2.Parcel(weight=common_pb2.Weight(grams=900)),
        service_code=f"{carrier}_parcel"))
    assert label.tracking_status == shipping_pb2.TRACKING_STATUS_PRE_TRANSIT
    return {"id": uuid.UUID(label.name.removeprefix("labels/")), "carrier": label.carrier,
            "tracking_number": label.tracking_number, "package": label.package,
            "orders": list(label.orders), "estimated_delivery_date": label.estimated_delivery_date}


def event(label: dict[str, Any], code: str, hours: float, description: str = "",
          **fields: Any) -> shipping_pb2.TrackingEvent:
    return shipping_pb2.TrackingEvent(
        carrier=label["carrier"], tracking_number=label["tracking_number"], carrier_code=code,
        event_time=timestamp(T0 + timedelta(hours=hours)), description=description, **fields)


async def published(engine: AsyncEngine, js: JetStreamContext, label: dict[str, Any],
                    message_type: type[Message]) -> list[Any]:
    """The events of ``message_type`` about the label on the OMS_SHIPPING stream, read as a
    subscriber reads them, once the outbox has published everything about the label."""
    name = f"labels/{label['id']}"

    async def all_out() -> bool:
        async with engine.connect() as conn:
            pending = await conn.scalar(select(func.count()).select_from(outbox).where(
                outbox.c.headers["ce-subject"].astext == name, outbox.c.published_at.is_(None)))
        return pending == 0

    await eventually(all_out)
    consumer = f"test-{uuid.uuid4().hex}"
    await js.add_consumer("OMS_SHIPPING", ConsumerConfig(
        name=consumer, ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL,
        filter_subject=subject_for(message_type), inactive_threshold=30.0))
    subscription = await js.pull_subscribe_bind(consumer=consumer, stream="OMS_SHIPPING")
    found: list[Msg] = []
    try:
        while True:
            try:
                batch = await subscription.fetch(256, timeout=1.0)
            except TimeoutError:
                break
            found += [m for m in batch if (m.headers or {}).get("ce-subject") == name]
            if batch[-1].metadata.num_pending == 0:
                break
    finally:
        await subscription.unsubscribe()
        await js.delete_consumer("OMS_SHIPPING", consumer)
    messages = []
    for msg in found:
        assert (msg.headers or {})["ce-type"] == message_type.DESCRIPTOR.full_name
        messages.append(json_format.Parse(msg.data, message_type()))
    return messages


async def record(shipping: ShippingStub, events: list[shipping_pb2.TrackingEvent]
                 ) -> shipping_pb2.RecordTrackingEventsResponse:
    return await shipping.RecordTrackingEvents(
        shipping_pb2.RecordTrackingEventsRequest(events=events))


async def status(shipping: ShippingStub, label: dict[str, Any]) -> int:
    tracking = await shipping.GetTracking(
        shipping_pb2.GetTrackingRequest(tracking_number=label["tracking_number"]))
    return tracking.status


async def test_events_in_any_order_with_duplicates_never_move_a_parcel_backwards(
        shipping: ShippingStub, engine: AsyncEngine, js: JetStreamContext) -> None:
    label = await add_label(shipping)
    journey = [
        event(label, "M", 0, "Shipper created a label"),
        event(label, "I", 2, "Origin scan", location="Hatfield"),
        event(label, "I", 9, "Departed facility"),
        event(label, "O", 20, "Out for delivery"),
        event(label, "UU", 21, "The receiver was not available"),
        event(label, "I", 30, "Back at the depot"),
        event(label, "O", 44, "Out for delivery"),
        event(label, "D", 46, "Delivered, front door"),
        event(label, "I", 47, "Scan after delivery"),
    ]
    for seed in range(3):  # three arrival orders, the first recorded, the rest all duplicates
        sent = journey + random.Random(seed).sample(journey, 4)
        random.Random(seed).shuffle(sent)
        seen: list[int] = []
        counts = [0, 0]
        for start in range(0, len(sent), 3):
            response = await record(shipping, sent[start:start + 3])
            counts[0] += response.recorded
            counts[1] += response.duplicates
            assert not response.unknown_tracking_numbers
            seen.append(await status(shipping, label))
        assert counts == ([len(journey), len(sent) - len(journey)] if seed == 0
                          else [0, len(sent)])
        delivered_at = seen.index(shipping_pb2.TRACKING_STATUS_DELIVERED) \
            if shipping_pb2.TRACKING_STATUS_DELIVERED in seen else len(seen)
        assert set(seen[delivered_at:]) <= {shipping_pb2.TRACKING_STATUS_DELIVERED}
        assert shipping_pb2.TRACKING_STATUS_PRE_TRANSIT not in seen[1:]
        assert seen[-1] == shipping_pb2.TRACKING_STATUS_DELIVERED

    tracking = await shipping.GetTracking(
        shipping_pb2.GetTrackingRequest(tracking_number=label["tracking_number"]))
    assert tracking.label == f"labels/{label['id']}"
    assert [e.event_time.ToDatetime() for e in tracking.events] == sorted(
        e.event_time.ToDatetime() for e in journey)
    assert tracking.events[1].location == "Hatfield"
    assert tracking.events[1].status == shipping_pb2.TRACKING_STATUS_IN_TRANSIT
    assert tracking.estimated_delivery_date == label["estimated_delivery_date"]
    assert tracking.estimated_delivery_date.year > 0
    async with engine.connect() as conn:
        stored = (await conn.execute(select(labels.c.tracking_status, labels.c.last_event_time)
                                     .where(labels.c.id == label["id"]))).one()
    assert stored == ("DELIVERED", T0 + timedelta(hours=47))

    delivered = await published(engine, js, label, events_pb2.ShipmentDelivered)
    assert delivered == [events_pb2.ShipmentDelivered(
        package=label["package"], orders=label["orders"], carrier="ups",
        tracking_number=label["tracking_number"],
        deliver_time=timestamp(T0 + timedelta(hours=46)))]
    exceptions = await published(engine, js, label, events_pb2.DeliveryException)
    assert [(e.description, e.exception_time.ToDatetime(tzinfo=UTC)) for e in exceptions] == [
        ("The receiver was not available", T0 + timedelta(hours=21))]
    assert exceptions[0].package == label["package"]
    assert list(exceptions[0].orders) == label["orders"]


async def test_racing_calls_with_the_same_events_store_them_once(
        shipping: ShippingStub, engine: AsyncEngine, js: JetStreamContext) -> None:
    label = await add_label(shipping, "royal_mail")
    journey = [event(label, "EVDAV", 1), event(label, "EVGPD", 20),
               event(label, "EVKNA", 22, "Delivery attempted - no answer"),
               event(label, "EVKSP", 45, "Delivered and signed")]
    responses = await asyncio.gather(*(record(shipping, random.Random(i).sample(journey, 4))
                                       for i in range(4)))
    assert sum(r.recorded for r in responses) == len(journey)
    assert sum(r.duplicates for r in responses) == 3 * len(journey)
    assert await status(shipping, label) == shipping_pb2.TRACKING_STATUS_DELIVERED
    assert len(await published(engine, js, label, events_pb2.ShipmentDelivered)) == 1
    assert len(await published(engine, js, label, events_pb2.DeliveryException)) == 1


async def test_progress_is_published_for_customer_updates(
        shipping: ShippingStub, engine: AsyncEngine, js: JetStreamContext) -> None:
    label = await add_label(shipping, "dhl_express")
    await record(shipping, [event(label, "PU", 1), event(label, "DF", 3)])
    await record(shipping, [event(label, "WC", 20, "With delivery courier")])
    await record(shipping, [event(label, "AF", 19)])  # older: moves nothing
    progressed = await published(engine, js, label, events_pb2.ShipmentProgressed)
    assert [(p.status, p.description) for p in progressed] == [
        ("TRACKING_STATUS_IN_TRANSIT", "In transit (PU)"),
        ("TRACKING_STATUS_OUT_FOR_DELIVERY", "With delivery courier")]
    assert await status(shipping, label) == shipping_pb2.TRACKING_STATUS_OUT_FOR_DELIVERY


async def test_unknown_tracking_numbers_are_reported_and_the_rest_recorded(
        shipping: ShippingStub, engine: AsyncEngine) -> None:
    label = await add_label(shipping, "usps")
    other_carrier = {**label, "carrier": "fedex"}
    response = await record(shipping, [
        event(label, "03", 1), event({**label, "tracking_number": "NOPE1"}, "03", 1),
        event(other_carrier, "PU", 1), event({**label, "tracking_number": "NOPE1"}, "10", 2)])
    assert (response.recorded, response.duplicates) == (1, 0)
    assert list(response.unknown_tracking_numbers) == ["NOPE1", label["tracking_number"]]
    assert await status(shipping, label) == shipping_pb2.TRACKING_STATUS_IN_TRANSIT


async def test_bad_events_are_refused_whole_with_every_violation(
        shipping: ShippingStub, engine: AsyncEngine) -> None:
    label = await add_label(shipping)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await record(shipping, [
            event(label, "I", 1),
            shipping_pb2.TrackingEvent(carrier="ups", carrier_code="I"),
            event(label, "D", 24 * 30),
        ])
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = error.value.details() or ""
    for field in ("events[1].tracking_number", "events[1].event_time", "events[2].event_time"):
        assert field in details
    async with engine.connect() as conn:
        stored = await conn.scalar(select(func.count()).select_from(tracking_events).where(
            tracking_events.c.label_id == label["id"]))
    assert stored == 0
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await record(shipping, [event(label, str(i), 1) for i in range(501)])
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await shipping.GetTracking(shipping_pb2.GetTrackingRequest(tracking_number="NOPE2"))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await shipping.GetTracking(shipping_pb2.GetTrackingRequest())
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_parcel_without_a_scan_for_n_days_becomes_an_exception_once(
        shipping: ShippingStub, engine: AsyncEngine, js: JetStreamContext, service: Service,
        settings: ShippingSettings) -> None:
    label = await add_label(shipping)
    last_scan = T0 - timedelta(days=8)
    await record(shipping, [shipping_pb2.TrackingEvent(
        carrier="ups", tracking_number=label["tracking_number"], carrier_code="I",
        event_time=timestamp(last_scan))])
    fresh = await add_label(shipping)
    await record(shipping, [event(fresh, "I", 0)])

    async def swept() -> bool:
        return await status(shipping, label) == shipping_pb2.TRACKING_STATUS_EXCEPTION

    await eventually(swept)
    # Another replica's sweep, or this one's next pass, finds nothing more to do.
    assert service.runtime is not None
    async with service.runtime.sessions.begin() as session:
        await sweep_stale(session, settings, datetime.now(UTC))
    tracking = await shipping.GetTracking(
        shipping_pb2.GetTrackingRequest(tracking_number=label["tracking_number"]))
    assert [(e.carrier_code, e.description, e.event_time.ToDatetime(tzinfo=UTC))
            for e in tracking.events] == [
        ("I", "", last_scan),
        ("OMS_NO_SCAN", f"no scan for {STALE_DAYS} days", last_scan + timedelta(days=STALE_DAYS))]
    exceptions = await published(engine, js, label, events_pb2.DeliveryException)
    assert [e.description for e in exceptions] == [f"no scan for {STALE_DAYS} days"]
    assert await status(shipping, fresh) == shipping_pb2.TRACKING_STATUS_IN_TRANSIT
    async with engine.connect() as conn:
        last = await conn.scalar(select(labels.c.last_event_time)
                                 .where(labels.c.id == label["id"]))
    assert last == last_scan  # the sweep's event is no scan

    # A scan puts it back on its way.
    await record(shipping, [event(label, "I", 1, "Found at the hub")])
    assert await status(shipping, label) == shipping_pb2.TRACKING_STATUS_IN_TRANSIT


async def test_a_delivery_recorded_here_delivers_the_order_in_the_orders_service(
        shipping: ShippingStub, engine: AsyncEngine, js: JetStreamContext,
        database_factory: Callable[[str], str], nats_url: str) -> None:
    async with running_service(ORDERS, ORDERS_MIGRATIONS,
                               database_url=database_factory("orders_for_tracking"),
                               nats_url=nats_url) as orders_service, \
            grpc.aio.insecure_channel(f"127.0.0.1:{orders_service.bound_port}") as channel:
        orders = orders_pb2_grpc.OrdersServiceStub(channel)
        created = await orders.CreateOrder(orders_pb2.CreateOrderRequest(
            request_id=str(uuid.uuid4()), order=orders_pb2.Order(
                channel="shop-tracking", external_order_id=f"#{uuid.uuid4().hex[:10]}",
                customer=orders_pb2.Customer(display_name="Ada Lovelace",
                                             email="ada@example.com"),
                shipping_address=common_pb2.Address(
                    recipient="Ada Lovelace", address_lines=["12 Marylebone Road"],
                    locality="London", postal_code="NW1 5LR", region_code="GB"),
                lines=[orders_pb2.OrderLine(sku="SKU-MUG", quantity=2, unit_price=common_pb2.Money(
                    currency_code="GBP", amount="9.50"))],
                payment_status=orders_pb2.PAYMENT_STATUS_PAID)))

        async def reaches(wanted: int) -> None:
            async def probe() -> bool:
                order = await orders.GetOrder(orders_pb2.GetOrderRequest(name=created.name))
                return order.status == wanted

            await eventually(probe)

        await publish(js, inventory_events.StockAllocated(order=created.name, allocations=[
            inventory_events.NodeAllocation(node_id="node-london", lines=[
                inventory_events.AllocatedLine(line_id=line.line_id, sku=line.sku,
                                               quantity=line.quantity)
                for line in created.lines])]))
        await reaches(orders_pb2.ORDER_STATUS_RELEASED)
        label = await add_label(shipping, "royal_mail", orders=[created.name])
        await publish(js, fulfilment_events.PackageShipped(
            package=label["package"], node_id="node-london", carrier="royal_mail",
            tracking_number=label["tracking_number"],
            lines=[fulfilment_events.ShippedLine(order=created.name, line_id=line.line_id,
                                                 sku=line.sku, quantity=line.quantity)
                   for line in created.lines]), aggregate_id=created.name)
        await reaches(orders_pb2.ORDER_STATUS_SHIPPED)

        await record(shipping, [event(label, "EVGPD", 40),
                                event(label, "EVKSP", 42, "Delivered and signed")])
        await reaches(orders_pb2.ORDER_STATUS_DELIVERED)
        order = await orders.GetOrder(orders_pb2.GetOrderRequest(
            name=created.name, view=orders_pb2.ORDER_VIEW_FULL))
        assert order.shipments[0].deliver_time.ToDatetime(tzinfo=UTC) == T0 + timedelta(hours=42)
