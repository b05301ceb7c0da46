"""The operations KPIs, the all-channel entry and the CSV export over real gRPC, PostgreSQL
and NATS, on a data set worked out by hand; and the same figures whatever order the events
arrive in, however often.

The data set (March 2026, UTC; every promise lies in the past, so every promised order is
due). Customers: ann@ buys on web and market, ben@ on web and phone, dan@ on phone and web,
cat only on market (known by the channel's customer id).

Orders (placed on the day of March at the hour; lines L1, L2; EUR unless said):
- O1 web, ann, 02 10:00, L1 2 x 10.00 + L2 1 x 5.00, promised 05 10:00. L1 from wh-1
  shipped 02 16:00, delivered 03 10:00; L2 from wh-2 shipped 03 10:00, delivered 04 10:00
  (split, on time). 1 unit of L1 back WRONG_ITEM; 10.00 refunded. Packing: pkg-1 2 verified
  and 1 refused, pkg-2 1 verified.
- O2 market, ann (as ANN@), 03 08:00, 1 x 40.00, promised 04 08:00. Shipped 03 20:00,
  delivered 05 08:00 (late). 1 back DAMAGED; 40.00 refunded. Packing: 1 verified.
- O3 web, ben, 04 09:00, 4 x 2.50, promised 08 09:00. 1 unit cancelled "out of stock";
  2 units shipped 04 21:00 and delivered 06 09:00, the third never (a partial shipment).
- O4 phone, ben, 05 12:00, 1 x 30.00 GBP, no promise. Shipped 06 12:00, delivered 07 12:00.
- O5 phone, dan, 06 09:00, 2 x 8.00, promised 09 09:00. Cancelled in full, "customer
  request".
- O6 market, cat, 07 15:00, 3 x 5.00, promised 09 15:00, changed on 08 09:00 to 12 15:00
  (an older change, of 07 16:00 to 10 15:00, arrives after it). Shipped 08 15:00,
  delivered 11 15:00: on time by the promise it holds, late by the first. 2 back
  SIZE_OR_FIT; 10.00 refunded. Packing: 3 verified, 2 refused.
- O7 web, dan, 08 11:00, 1 x 12.00, promised 10 11:00. Shipped 08 17:00, delivered 09 11:00.

Per order (hours): order-to-ship (to the last sold unit's shipment), ship-to-delivery (that
shipment to the last delivery), lead time (placement to the last delivery):
O1 24 / 24 / 48, O2 12 / 36 / 48, O4 24 / 24 / 48, O6 24 / 72 / 96, O7 6 / 18 / 24; O3 is
neither fully shipped nor delivered, O5 is cancelled.
"""

from __future__ import annotations

import csv
import io
import random
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import nats
import pytest
from google.protobuf import field_mask_pb2
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from nats.js import JetStreamContext
from oms.common.v1 import common_pb2
from oms.fulfilment.v1 import events_pb2 as fulfilment_events
from oms.orders.v1 import (
    events_pb2,
    insights_pb2,
    insights_pb2_grpc,
    orders_pb2,
    orders_pb2_grpc,
)
from oms.returns.v1 import events_pb2 as returns_events
from oms.shipping.v1 import events_pb2 as shipping_events
from oms_devtools.inprocess import running_service
from oms_devtools.testkit import caught_up, eventually, publish
from oms_orders.app import DEFINITION, MIGRATIONS
from oms_orders.insights import handlers as insights_handlers
from oms_orders.insights.domain import UnknownOrder
from oms_platform.bus import ensure_stream
from oms_platform.service import Service

READ_MODEL_CONSUMER = "orders-read-model"
R = returns_events
Stub = insights_pb2_grpc.OrderInsightsServiceStub
HOUR = 3600.0
MARCH, APRIL = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)


def at(day: int, hour: int) -> Timestamp:
    result = Timestamp()
    result.FromDatetime(datetime(2026, 3, day, hour, tzinfo=UTC))
    return result


def money(amount: str, currency: str = "EUR") -> common_pb2.Money:
    return common_pb2.Money(currency_code=currency, amount=amount)


@dataclass
class DataSet:
    """The events of the data set, for channels and orders of its own."""

    web: str
    market: str
    phone: str
    orders: dict[str, str]
    stages: list[list[Message]]

    @property
    def channels(self) -> list[str]:
        return [self.web, self.market, self.phone]

    def rename(self) -> dict[str, str]:
        return {self.web: "web", self.market: "market", self.phone: "phone", "": ""}


def data_set() -> DataSet:
    """A fresh copy of the data set (new channel and order names), in stages: orders' own
    events, then fulfilment's, then shipping's and returns'. Some events are re-sent (the
    same content under a new event id), as producers do after a crash."""
    tag = uuid.uuid4().hex[:6]
    web, market, phone = f"web-{tag}", f"market-{tag}", f"phone-{tag}"
    names = {key: f"orders/{uuid.uuid4()}" for key in ("O1", "O2", "O3", "O4", "O5", "O6",
                                                       "O7")}

    def created(key: str, channel: str, day: int, hour: int, lines: list[tuple[int, str]],
                *, email: str = "", customer_id: str = "", currency: str = "EUR",
                promise: Timestamp | None = None) -> events_pb2.OrderCreated:
        return events_pb2.OrderCreated(
            order=names[key], channel=channel, external_order_id=f"#{key}-{tag}",
            customer=orders_pb2.Customer(display_name=key, email=email,
                                         external_customer_id=customer_id),
            lines=[orders_pb2.OrderLine(line_id=str(n), sku=f"SKU-{n}", quantity=q,
                                        unit_price=money(price, currency))
                   for n, (q, price) in enumerate(lines, start=1)],
            order_time=at(day, hour), create_time=at(day, hour), promise_time=promise,
        )

    def shipped(package: str, node: str, day: int, hour: int,
                *parts: tuple[str, str, int]) -> fulfilment_events.PackageShipped:
        return fulfilment_events.PackageShipped(
            package=f"{package}-{tag}", node_id=node, carrier="dhl", ship_time=at(day, hour),
            lines=[fulfilment_events.ShippedLine(order=names[o], line_id=line, quantity=q)
                   for o, line, q in parts])

    def delivered(package: str, key: str, day: int, hour: int) -> Message:
        return shipping_events.ShipmentDelivered(package=f"{package}-{tag}",
                                                 orders=[names[key]], deliver_time=at(day, hour))

    def packed(package: str, node: str, *lines: tuple[str, str, int, int]) -> Message:
        return fulfilment_events.PackingVerified(
            package=f"{package}-{tag}", node_id=node, verify_time=at(1, 0), station="pack-1",
            lines=[fulfilment_events.VerifiedLine(order=names[o], line_id=line,
                                                  units_verified=ok, units_refused=refused)
                   for o, line, ok, refused in lines])

    def returned(key: str, ret: str, *lines: tuple[str, int, int]) -> Message:
        return R.ReturnReceived(
            order=names[key], node_id="wh-1", receive_time=at(20, 10),
            lines=[R.ReturnedLine(line_id=line, quantity=q, reason=reason)
                   for line, q, reason in lines],
            **{"return": f"returns/{ret}-{tag}"})

    def refunded(key: str, refund: str, amount: str) -> Message:
        return events_pb2.OrderRefunded(order=names[key], refund=f"{refund}-{tag}",
                                        amount=money(amount), refund_time=at(21, 10))

    def promise(key: str, promise_at: Timestamp, changed: Timestamp) -> Message:
        return events_pb2.OrderPromiseChanged(order=names[key], promise_time=promise_at,
                                              change_time=changed)

    o1 = created("O1", web, 2, 10, [(2, "10.00"), (1, "5.00")], email="ann@example.test",
                 promise=at(5, 10))
    o2 = created("O2", market, 3, 8, [(1, "40.00")], email="ANN@example.test",
                 promise=at(4, 8))
    o3 = created("O3", web, 4, 9, [(4, "2.50")], email="ben@example.test", promise=at(8, 9))
    o4 = created("O4", phone, 5, 12, [(1, "30.00")], email="ben@example.test", currency="GBP")
    o5 = created("O5", phone, 6, 9, [(2, "8.00")], email="dan@example.test", promise=at(9, 9))
    o6 = created("O6", market, 7, 15, [(3, "5.00")], customer_id="cat", promise=at(9, 15))
    o7 = created("O7", web, 8, 11, [(1, "12.00")], email="dan@example.test",
                 promise=at(10, 11))
    cancel_o3 = events_pb2.OrderCancelled(
        order=names["O3"], lines=[events_pb2.CancelledLine(line_id="1", quantity=1)],
        reason="out of stock", cancel_time=at(4, 10))
    cancel_o5 = events_pb2.OrderCancelled(order=names["O5"], whole_order=True,
                                          reason="customer request", cancel_time=at(6, 10))
    refund_o1 = refunded("O1", "r1", "10.00")
    ship_o1 = shipped("pkg-1", "wh-1", 2, 16, ("O1", "1", 2))
    pack_o6 = packed("pkg-6", "wh-2", ("O6", "1", 3, 2))
    return_o6 = returned("O6", "ret-6", ("1", 2, R.RETURN_REASON_SIZE_OR_FIT))
    stages: list[list[Message]] = [
        [o1, o2, o3, o4, o5, o6, o7, cancel_o3, cancel_o5, refund_o1,
         refunded("O2", "r2", "40.00"), refunded("O6", "r6", "10.00"),
         promise("O6", at(12, 15), at(8, 9)),
         # An older change arriving after the newer one does not undo it.
         promise("O6", at(10, 15), at(7, 16)),
         # Re-sent: counted once.
         cancel_o3, refund_o1, o1],
        [ship_o1, shipped("pkg-2", "wh-2", 3, 10, ("O1", "2", 1)),
         shipped("pkg-3", "wh-1", 3, 20, ("O2", "1", 1)),
         shipped("pkg-4", "wh-1", 4, 21, ("O3", "1", 2)),
         shipped("pkg-5", "wh-3", 6, 12, ("O4", "1", 1)),
         shipped("pkg-6", "wh-2", 8, 15, ("O6", "1", 3)),
         shipped("pkg-7", "wh-1", 8, 17, ("O7", "1", 1)),
         packed("pkg-1", "wh-1", ("O1", "1", 2, 1)), packed("pkg-2", "wh-2", ("O1", "2", 1, 0)),
         packed("pkg-3", "wh-1", ("O2", "1", 1, 0)), pack_o6,
         ship_o1, pack_o6],
        [delivered("pkg-1", "O1", 3, 10), delivered("pkg-2", "O1", 4, 10),
         delivered("pkg-3", "O2", 5, 8), delivered("pkg-4", "O3", 6, 9),
         delivered("pkg-5", "O4", 7, 12), delivered("pkg-6", "O6", 11, 15),
         delivered("pkg-7", "O7", 9, 11),
         returned("O1", "ret-1", ("1", 1, R.RETURN_REASON_WRONG_ITEM)),
         returned("O2", "ret-2", ("1", 1, R.RETURN_REASON_DAMAGED)),
         return_o6, return_o6],
    ]
    return DataSet(web, market, phone, names, stages)


@pytest.fixture(scope="module")
def database_url(database_factory: Callable[[str], str]) -> str:
    return database_factory("orders_insights_operations")


@pytest.fixture(scope="module")
async def service(database_url: str, nats_url: str) -> AsyncIterator[Service]:
    with pytest.MonkeyPatch.context() as env:
        env.delenv("OMS_ORDERS_SMTP_HOST", raising=False)
        async with running_service(
            DEFINITION, MIGRATIONS, database_url=database_url, nats_url=nats_url
        ) as running:
            yield running


@pytest.fixture(scope="module")
async def insights(service: Service) -> AsyncIterator[Stub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.bound_port}") as channel:
        yield Stub(channel)


@pytest.fixture(scope="module")
async def js(nats_url: str) -> AsyncIterator[JetStreamContext]:
    client = await nats.connect(nats_url)
    jetstream = client.jetstream()
    for producer in ("orders", "fulfilment", "shipping", "returns"):
        await ensure_stream(jetstream, producer)
    yield jetstream
    await client.drain()


def aggregate_of(message: Any) -> str:
    return getattr(message, "order", "") or message.package


@pytest.fixture(scope="module")
async def published(js: JetStreamContext, service: Service) -> DataSet:
    """The data set through JetStream, stage by stage (each handled before the next, so
    nothing waits on a retry here; the shuffled test below takes the orders apart)."""
    data = data_set()
    for stage in data.stages:
        acks = [(await publish(js, message, aggregate_id=aggregate_of(message))).ack
                for message in stage]
        for ack in {ack.stream: ack for ack in sorted(acks, key=lambda a: a.seq)}.values():
            await caught_up(js, READ_MODEL_CONSUMER, ack)
    return data


def request(data: DataSet, **fields: Any) -> insights_pb2.GetOrderKpisRequest:
    fields.setdefault("channels", data.channels)
    return insights_pb2.GetOrderKpisRequest(
        start_time=Timestamp(seconds=int(MARCH.timestamp())),
        end_time=Timestamp(seconds=int(APRIL.timestamp())),
        granularity=insights_pb2.GRANULARITY_MONTH, **fields)


async def monthly(insights: Stub, data: DataSet, **fields: Any) -> dict[str, Any]:
    response = await insights.GetOrderKpis(request(data, **fields))
    return {data.rename()[k.channel]: k for k in response.kpis}


def seconds(duration: Any) -> float:
    return float(duration.ToTimedelta().total_seconds())


def amounts(entries: Any) -> list[tuple[str, str]]:
    return [(m.currency_code, m.amount) for m in entries]


def reasons(kpis: Any) -> dict[int, int]:
    return {entry.reason: entry.units for entry in kpis.units_returned_by_reason}


def cancellations(kpis: Any) -> list[tuple[str, int, int]]:
    return [(x.reason, x.orders, x.units) for x in kpis.cancellations_by_reason]


async def test_every_figure_per_channel_and_for_all_channels(
    insights: Stub, published: DataSet
) -> None:
    kpis = await monthly(insights, published)
    # By period: the total first (channel empty), then the channels by name.
    assert list(kpis) == ["", "market", "phone", "web"]
    web, market, phone, total = kpis["web"], kpis["market"], kpis["phone"], kpis[""]

    # --- web: O1, O3, O7 ---------------------------------------------------------------
    # Placed 3, none cancelled in full → 3 orders. Units ordered 3 + 4 + 1 = 8, cancelled 1
    # (O3; re-sent, counted once) → sold 7.
    assert (web.orders_placed, web.orders, web.orders_cancelled) == (3, 3, 0)
    assert (web.units_ordered, web.units_cancelled, web.units_sold) == (8, 1, 7)
    # Cancellation rates: orders 0 / 3 = 0 %; units 1 / 8 = 12.5 %.
    assert web.order_cancellation_rate == 0.0 and web.HasField("order_cancellation_rate")
    assert web.unit_cancellation_rate == pytest.approx(12.5)
    assert cancellations(web) == [("out of stock", 1, 1)]
    # Shipped units: O1 3, O3 2 of 4, O7 1 → 6; fill rate 6 / 8 = 75 %. Shipped complete:
    # O1 and O7 (O3 had a unit cancelled and one not shipped) → 2 / 3 = 66.67 %.
    assert (web.units_shipped, web.orders_shipped_complete) == (6, 2)
    assert web.fill_rate == pytest.approx(75.0)
    assert web.order_fill_rate == pytest.approx(200 / 3)
    # Split: O1 went in two packages from two nodes; 3 orders shipped → 1 / 3 = 33.33 %.
    assert (web.orders_shipped, web.orders_split) == (3, 1)
    assert web.split_rate == pytest.approx(100 / 3)
    # OTIF: O1 (04 10:00 ≤ 05 10:00) and O7 (09 11:00 ≤ 10 11:00) on time in full; O3 is
    # due and not delivered in full → 2 / 3 = 66.67 %.
    assert (web.orders_due, web.orders_on_time_in_full) == (3, 2)
    assert web.on_time_in_full == pytest.approx(200 / 3)
    # Order to ship over O1 (24 h) and O7 (6 h): mean 15 h; p90 at rank 0.9 * 1 = 0.9 →
    # 6 + 0.9 * 18 = 22.2 h. Ship to delivery O1 24 h, O7 18 h: mean 21 h, p90 18 + 0.9 * 6
    # = 23.4 h. Lead time O1 48 h, O7 24 h: mean 36 h, p90 24 + 0.9 * 24 = 45.6 h.
    assert (web.orders_fully_shipped, web.orders_delivered) == (2, 2)
    assert seconds(web.order_to_ship_mean) == pytest.approx(15 * HOUR)
    assert seconds(web.order_to_ship_p90) == pytest.approx(22.2 * HOUR)
    assert seconds(web.ship_to_delivery_mean) == pytest.approx(21 * HOUR)
    assert seconds(web.ship_to_delivery_p90) == pytest.approx(23.4 * HOUR)
    assert seconds(web.lead_time_mean) == pytest.approx(36 * HOUR)
    assert seconds(web.lead_time_p90) == pytest.approx(45.6 * HOUR)
    # Returns: O1 1 WRONG_ITEM → 1 / 7 units = 14.29 %; 1 of 3 orders = 33.33 %; picking
    # accuracy by returns (3 - 1) / 3 = 66.67 %.
    assert (web.units_returned, web.orders_returned, web.orders_returned_wrong_item) == (1, 1, 1)
    assert reasons(web) == {R.RETURN_REASON_WRONG_ITEM: 1}
    assert web.return_rate == pytest.approx(100 / 7)
    assert web.order_return_rate == pytest.approx(100 / 3)
    assert web.picking_accuracy == pytest.approx(200 / 3)
    # Customers ann, ben, dan → 3; frequency 3 / 3 = 1.
    assert (web.customers, web.purchase_frequency) == (3, pytest.approx(1.0))
    # Sales: O1 25.00 + O3 3 * 2.50 = 7.50 + O7 12.00 = 44.50; refunded 10.00 (re-sent,
    # once); net 34.50; average order value 44.50 / 3 = 14.8333 → 14.83.
    assert amounts(web.sales_amount) == [("EUR", "44.50")]
    assert amounts(web.refunded_amount) == [("EUR", "10.00")]
    assert amounts(web.net_sales) == [("EUR", "34.50")]
    assert amounts(web.average_order_value) == [("EUR", "14.83")]
    # Packing: O1 2 + 1 verified, 1 refused → 3 / 4 = 75 %.
    assert (web.units_pack_verified, web.units_pack_refused) == (3, 1)
    assert web.scanned_picking_accuracy == pytest.approx(75.0)

    # --- market: O2, O6 ----------------------------------------------------------------
    assert (market.orders_placed, market.orders, market.orders_cancelled) == (2, 2, 0)
    assert (market.units_ordered, market.units_cancelled, market.units_sold) == (4, 0, 4)
    assert market.unit_cancellation_rate == 0.0 and cancellations(market) == []
    # Everything shipped, one package each from one node: fill 4 / 4 and 2 / 2 = 100 %,
    # split 0 / 2 = 0 %.
    assert (market.units_shipped, market.orders_shipped_complete) == (4, 2)
    assert market.fill_rate == pytest.approx(100.0)
    assert market.order_fill_rate == pytest.approx(100.0)
    assert (market.orders_shipped, market.orders_split, market.split_rate) == (2, 0, 0.0)
    # OTIF: O2 delivered 05 08:00 after its promise 04 08:00; O6 delivered 11 15:00 by the
    # promise it holds, 12 15:00 (not the first, 09 15:00, nor the older change) → 1 / 2.
    assert (market.orders_due, market.orders_on_time_in_full) == (2, 1)
    assert market.on_time_in_full == pytest.approx(50.0)
    # Order to ship O2 12 h, O6 24 h: mean 18, p90 12 + 0.9 * 12 = 22.8 h. Ship to delivery
    # 36 h and 72 h: mean 54, p90 36 + 0.9 * 36 = 68.4 h. Lead 48 h and 96 h: mean 72,
    # p90 48 + 0.9 * 48 = 91.2 h.
    assert seconds(market.order_to_ship_mean) == pytest.approx(18 * HOUR)
    assert seconds(market.order_to_ship_p90) == pytest.approx(22.8 * HOUR)
    assert seconds(market.ship_to_delivery_mean) == pytest.approx(54 * HOUR)
    assert seconds(market.ship_to_delivery_p90) == pytest.approx(68.4 * HOUR)
    assert seconds(market.lead_time_mean) == pytest.approx(72 * HOUR)
    assert seconds(market.lead_time_p90) == pytest.approx(91.2 * HOUR)
    # Returns: O2 1 DAMAGED, O6 2 SIZE_OR_FIT (re-sent, once) → 3 / 4 = 75 %; both orders
    # → 100 %; no wrong item → 100 %.
    assert reasons(market) == {R.RETURN_REASON_DAMAGED: 1, R.RETURN_REASON_SIZE_OR_FIT: 2}
    assert market.return_rate == pytest.approx(75.0)
    assert market.order_return_rate == pytest.approx(100.0)
    assert market.picking_accuracy == pytest.approx(100.0)
    # ann (ANN@ is the same) and cat → 2 customers.
    assert (market.customers, market.purchase_frequency) == (2, pytest.approx(1.0))
    # Sales 40.00 + 15.00 = 55.00; refunded 40.00 + 10.00 = 50.00; net 5.00; AOV 27.50.
    assert amounts(market.sales_amount) == [("EUR", "55.00")]
    assert amounts(market.refunded_amount) == [("EUR", "50.00")]
    assert amounts(market.net_sales) == [("EUR", "5.00")]
    assert amounts(market.average_order_value) == [("EUR", "27.50")]
    # Packing: O2 1 verified; O6 3 verified, 2 refused (re-sent, once) → 4 / 6 = 66.67 %.
    assert (market.units_pack_verified, market.units_pack_refused) == (4, 2)
    assert market.scanned_picking_accuracy == pytest.approx(200 / 3)

    # --- phone: O4 (GBP), O5 (cancelled in full) ---------------------------------------
    # Placed 2, 1 with a unit sold; ordered 1 + 2 = 3, cancelled 2 → sold 1. Cancellation
    # rates: 1 / 2 orders = 50 %, 2 / 3 units = 66.67 %.
    assert (phone.orders_placed, phone.orders, phone.orders_cancelled) == (2, 1, 1)
    assert (phone.units_ordered, phone.units_cancelled, phone.units_sold) == (3, 2, 1)
    assert phone.order_cancellation_rate == pytest.approx(50.0)
    assert phone.unit_cancellation_rate == pytest.approx(200 / 3)
    assert cancellations(phone) == [("customer request", 1, 2)]
    # Fill: 1 of 3 units = 33.33 %; O4 complete, O5 not → 1 / 2 = 50 %.
    assert (phone.units_shipped, phone.orders_shipped_complete) == (1, 1)
    assert phone.fill_rate == pytest.approx(100 / 3)
    assert phone.order_fill_rate == pytest.approx(50.0)
    assert (phone.orders_shipped, phone.orders_split) == (1, 0)
    # O4 has no promise and O5 is cancelled: no order is due, OTIF unset.
    assert (phone.orders_due, phone.HasField("on_time_in_full")) == (0, False)
    # O4: 24 h to ship, 24 h to deliver, 48 h lead time.
    assert seconds(phone.order_to_ship_p90) == pytest.approx(24 * HOUR)
    assert seconds(phone.ship_to_delivery_mean) == pytest.approx(24 * HOUR)
    assert seconds(phone.lead_time_mean) == pytest.approx(48 * HOUR)
    assert (phone.units_returned, phone.return_rate, phone.order_return_rate) == (0, 0.0, 0.0)
    # ben alone (dan's O5 is cancelled in full).
    assert (phone.customers, phone.purchase_frequency) == (1, pytest.approx(1.0))
    # O5's EUR was all cancelled: only GBP is sold; nothing refunded.
    assert amounts(phone.sales_amount) == [("GBP", "30.00")]
    assert amounts(phone.refunded_amount) == []
    assert amounts(phone.net_sales) == [("GBP", "30.00")]
    assert amounts(phone.average_order_value) == [("GBP", "30.00")]
    assert not phone.HasField("scanned_picking_accuracy")

    # --- every channel: O1 to O7, from the orders, not from the entries above ------------
    assert (total.orders_placed, total.orders, total.orders_cancelled) == (7, 6, 1)
    assert (total.units_ordered, total.units_cancelled, total.units_sold) == (15, 3, 12)
    # 1 / 7 = 14.29 %; 3 / 15 = 20 %. Reasons by units: customer request 2, out of stock 1.
    assert total.order_cancellation_rate == pytest.approx(100 / 7)
    assert total.unit_cancellation_rate == pytest.approx(20.0)
    assert cancellations(total) == [("customer request", 1, 2), ("out of stock", 1, 1)]
    # Fill 11 / 15 = 73.33 %; complete 5 / 7 = 71.43 %; split 1 / 6 = 16.67 %.
    assert (total.units_shipped, total.orders_shipped_complete) == (11, 5)
    assert total.fill_rate == pytest.approx(1100 / 15)
    assert total.order_fill_rate == pytest.approx(500 / 7)
    assert (total.orders_shipped, total.orders_split) == (6, 1)
    assert total.split_rate == pytest.approx(100 / 6)
    # OTIF 3 of 5 due (O1, O7, O6 of O1, O2, O3, O6, O7) = 60 %.
    assert (total.orders_due, total.orders_on_time_in_full) == (5, 3)
    assert total.on_time_in_full == pytest.approx(60.0)
    # Order to ship [6, 12, 24, 24, 24]: mean 90 / 5 = 18 h; p90 rank 0.9 * 4 = 3.6 → 24 h.
    # Ship to delivery [18, 24, 24, 36, 72]: mean 174 / 5 = 34.8 h; p90 36 + 0.6 * 36 =
    # 57.6 h. Lead [24, 48, 48, 48, 96]: mean 264 / 5 = 52.8 h; p90 48 + 0.6 * 48 = 76.8 h —
    # not any mean of the channels' p90s (45.6, 91.2, 48).
    assert (total.orders_fully_shipped, total.orders_delivered) == (5, 5)
    assert seconds(total.order_to_ship_mean) == pytest.approx(18 * HOUR)
    assert seconds(total.order_to_ship_p90) == pytest.approx(24 * HOUR)
    assert seconds(total.ship_to_delivery_mean) == pytest.approx(34.8 * HOUR)
    assert seconds(total.ship_to_delivery_p90) == pytest.approx(57.6 * HOUR)
    assert seconds(total.lead_time_mean) == pytest.approx(52.8 * HOUR)
    assert seconds(total.lead_time_p90) == pytest.approx(76.8 * HOUR)
    # Returns 1 + 3 = 4 of 12 units = 33.33 %; 3 of 6 orders = 50 %; accuracy 5 / 6.
    assert reasons(total) == {R.RETURN_REASON_WRONG_ITEM: 1, R.RETURN_REASON_DAMAGED: 1,
                              R.RETURN_REASON_SIZE_OR_FIT: 2}
    assert total.return_rate == pytest.approx(100 / 3)
    assert total.order_return_rate == pytest.approx(50.0)
    assert total.picking_accuracy == pytest.approx(500 / 6)
    # Customers: ann, ben, dan, cat → 4, not 3 + 2 + 1 = 6; frequency 6 / 4 = 1.5.
    assert (total.customers, total.purchase_frequency) == (4, pytest.approx(1.5))
    # EUR sales 44.50 + 55.00 = 99.50 over 5 EUR orders → AOV 19.90; refunded 60.00, net
    # 39.50; GBP 30.00 throughout.
    assert amounts(total.sales_amount) == [("EUR", "99.50"), ("GBP", "30.00")]
    assert amounts(total.refunded_amount) == [("EUR", "60.00")]
    assert amounts(total.net_sales) == [("EUR", "39.50"), ("GBP", "30.00")]
    assert amounts(total.average_order_value) == [("EUR", "19.90"), ("GBP", "30.00")]
    # Packing: 7 verified, 3 refused → 70 %.
    assert (total.units_pack_verified, total.units_pack_refused) == (7, 3)
    assert total.scanned_picking_accuracy == pytest.approx(70.0)


async def test_the_total_of_a_set_of_channels(insights: Stub, published: DataSet) -> None:
    kpis = await monthly(insights, published, channels=[published.web, published.market],
                         breakdown=insights_pb2.KPI_BREAKDOWN_TOTAL)
    [total] = kpis.values()
    assert list(kpis) == [""]
    # web and market: O1, O2, O3, O6, O7; customers ann, ben, dan, cat → 4 (ann buys on
    # both); frequency 5 / 4 = 1.25. Lead times [24, 48, 48, 96]: p90 rank 0.9 * 3 = 2.7 →
    # 48 + 0.7 * 48 = 81.6 h.
    assert (total.orders, total.customers) == (5, 4)
    assert total.purchase_frequency == pytest.approx(1.25)
    assert seconds(total.lead_time_p90) == pytest.approx(81.6 * HOUR)
    # Sales 44.50 + 55.00 = 99.50 EUR; no GBP.
    assert amounts(total.sales_amount) == [("EUR", "99.50")]


async def test_the_csv_export_holds_the_same_figures(
    insights: Stub, published: DataSet
) -> None:
    get = request(published)
    export = insights_pb2.ExportOrderKpisRequest()
    export.ParseFromString(get.SerializeToString())  # the same fields, the same numbers
    response = await insights.ExportOrderKpis(export)
    text = response.csv.decode()
    assert text.endswith("\r\n")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert response.rows == len(rows) == 4
    by_channel = {published.rename()[row["channel"]]: row for row in rows}
    assert list(by_channel) == ["", "market", "phone", "web"]
    total, web = by_channel[""], by_channel["web"]
    assert (total["period_start_time"], total["period_end_time"]) == (
        "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z")
    # The hand-computed figures of the test above.
    assert (total["orders"], total["customers"], total["orders_due"]) == ("6", "4", "5")
    assert float(total["on_time_in_full"]) == pytest.approx(60.0)
    assert float(total["lead_time_p90"]) == pytest.approx(76.8 * HOUR)
    assert (total["sales_amount_EUR"], total["sales_amount_GBP"]) == ("99.50", "30.00")
    assert (total["net_sales_EUR"], total["average_order_value_EUR"]) == ("39.50", "19.90")
    assert total["cancellation_reasons"] == "customer request=2; out of stock=1"
    assert (total["returned_units_SIZE_OR_FIT"], total["returned_units_WRONG_ITEM"]) == (
        "2", "1")
    assert (web["fill_rate"], web["sales_amount_GBP"], web["refunded_amount_EUR"]) == (
        "75.0", "", "10.00")
    assert by_channel["phone"]["on_time_in_full"] == ""  # unset: no order due


async def test_an_export_request_is_checked(insights: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await insights.ExportOrderKpis(insights_pb2.ExportOrderKpisRequest(
            channel="web", channels=["market", "x" * 101]))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = bad.value.details() or ""
    for field in ("start_time", "end_time", "granularity", "channels", "channels[1]"):
        assert field in details


def normalised(data: DataSet, response: insights_pb2.GetOrderKpisResponse) -> list[Any]:
    """The response as plain data, with the data set's channel names made generic."""
    names = data.rename()
    entries = []
    for kpis in response.kpis:
        entry = MessageToDict(kpis, preserving_proto_field_name=True)
        entry["channel"] = names[kpis.channel]
        entries.append(entry)
    return entries


HANDLERS = {s.message_type: s.handler for s in insights_handlers.subscriptions()}


async def apply_as_delivered(service: Service, messages: list[Message]) -> None:
    """Each event in a transaction of its own, through the read model's handlers, the way
    the consumer applies them: one that names what is not there yet fails (and rolls back)
    and is tried again after the others."""
    assert service.runtime is not None
    pending = list(messages)
    for _attempt in range(len(messages) + 1):
        retry: list[Message] = []
        for message in pending:
            try:
                async with service.runtime.sessions.begin() as session:
                    await HANDLERS[type(message)](session, message)
            except UnknownOrder:
                retry.append(message)
        if not retry:
            return
        pending = retry
    raise AssertionError(f"{len(pending)} events never applied")


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
async def test_replayed_and_shuffled_events_leave_every_figure_unchanged(
    insights: Stub, published: DataSet, service: Service, seed: int
) -> None:
    """The same data set (under new names) with every event twice and all of them in a
    shuffled order, across the stages: every figure of every entry as in order."""
    expected = normalised(published, await insights.GetOrderKpis(request(published)))
    data = data_set()
    events = [message for stage in data.stages for message in stage]
    events = events + events
    random.Random(seed).shuffle(events)
    await apply_as_delivered(service, events)
    assert normalised(data, await insights.GetOrderKpis(request(data))) == expected


async def test_the_orders_own_promise_changes_and_refunds_reach_the_figures(
    service: Service, insights: Stub
) -> None:
    """Through OrdersService: the promise the order holds (set at capture, then changed)
    and a refund the payment provider reports travel in the service's own events."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.bound_port}") as channel:
        orders = orders_pb2_grpc.OrdersServiceStub(channel)
        now = datetime.now(UTC).replace(microsecond=0)
        later, earlier = Timestamp(), Timestamp()
        later.FromDatetime(now + timedelta(days=10))
        earlier.FromDatetime(now - timedelta(hours=1))
        shop = f"shop-{uuid.uuid4().hex[:8]}"
        created = await orders.CreateOrder(orders_pb2.CreateOrderRequest(
            order=orders_pb2.Order(
                channel=shop, external_order_id=f"#{uuid.uuid4().hex[:10]}",
                customer=orders_pb2.Customer(display_name="Ada", email="ada@example.test"),
                shipping_address=common_pb2.Address(
                    recipient="Ada", address_lines=["1 Road"], locality="London",
                    postal_code="NW1 5LR", region_code="GB"),
                lines=[orders_pb2.OrderLine(sku="SKU-1", quantity=1,
                                            unit_price=money("20.00"))],
                payment_status=orders_pb2.PAYMENT_STATUS_PENDING, promise_time=later)))

        def kpis_request() -> insights_pb2.GetOrderKpisRequest:
            start, end = Timestamp(), Timestamp()
            start.FromDatetime(now - timedelta(days=1))
            end.FromDatetime(now + timedelta(days=1))
            return insights_pb2.GetOrderKpisRequest(
                start_time=start, end_time=end, granularity=insights_pb2.GRANULARITY_MONTH,
                channel=shop, breakdown=insights_pb2.KPI_BREAKDOWN_TOTAL)

        async def figures() -> insights_pb2.OrderKpis | None:
            response = await insights.GetOrderKpis(kpis_request())
            return response.kpis[0] if response.kpis else None

        # Promised ten days on: not due yet.
        first = await eventually(figures)
        assert (first.orders, first.orders_due) == (1, 0)
        await orders.RecordPayment(orders_pb2.RecordPaymentRequest(
            name=created.name, payment=orders_pb2.PaymentTransaction(
                transaction_id="cap-1", kind=orders_pb2.PAYMENT_KIND_CAPTURE,
                amount=money("20.00"))))
        await orders.UpdateOrder(orders_pb2.UpdateOrderRequest(
            order=orders_pb2.Order(name=created.name, promise_time=earlier),
            update_mask=field_mask_pb2.FieldMask(paths=["promise_time"])))
        refund = orders_pb2.PaymentTransaction(
            transaction_id="ref-1", kind=orders_pb2.PAYMENT_KIND_REFUND, amount=money("5.00"))
        for _ in range(2):  # the provider reports it twice: one refund
            await orders.RecordPayment(orders_pb2.RecordPaymentRequest(name=created.name,
                                                                       payment=refund))

        async def settled() -> insights_pb2.OrderKpis | None:
            found = await figures()
            if found is None or not found.refunded_amount or not found.orders_due:
                return None
            return found

        # The promise now lies an hour back: due, and not delivered in full → OTIF 0 %.
        # 20.00 sold, 5.00 refunded → net 15.00.
        kpis = await eventually(settled)
        assert (kpis.orders_due, kpis.orders_on_time_in_full, kpis.on_time_in_full) == (
            1, 0, 0.0)
        assert amounts(kpis.refunded_amount) == [("EUR", "5.00")]
        assert amounts(kpis.net_sales) == [("EUR", "15.00")]
