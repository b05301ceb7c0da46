"""Order KPIs over real gRPC, PostgreSQL and NATS: a known data set, worked out by hand.

The events are published to JetStream as their producers would publish them (some twice,
some out of order); the orders service builds its read model from them, and GetOrderKpis
must give the figures computed in the comments below.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import grpc
import nats
import pytest
from alembic import command
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from nats.js import JetStreamContext
from nats.js.api import PubAck
from oms.common.v1 import common_pb2
from oms.fulfilment.v1 import events_pb2 as fulfilment_events
from oms.orders.v1 import events_pb2, insights_pb2, insights_pb2_grpc, orders_pb2
from oms.returns.v1 import events_pb2 as returns_events
from oms.shipping.v1 import events_pb2 as shipping_events
from oms_devtools.inprocess import running_service
from oms_devtools.testkit import caught_up, eventually, publish
from oms_orders.app import DEFINITION, MIGRATIONS
from oms_orders.insights import domain as kpis_rules
from oms_orders.notifications import handlers as notifications
from oms_platform.bus import ensure_stream
from oms_platform.migrations import alembic_config
from oms_platform.service import Service
from sqlalchemy import create_engine, text

# The read model (KPIs, notifications) is the orders service's own consumer group.
READ_MODEL_CONSUMER = "orders-read-model"

Stub = insights_pb2_grpc.OrderInsightsServiceStub
R = returns_events

WEB = f"web-{uuid.uuid4().hex[:6]}"
MARKET = f"market-{uuid.uuid4().hex[:6]}"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


MARCH, APRIL = at("2026-03-01T00:00:00"), at("2026-04-01T00:00:00")


@pytest.fixture(scope="module")
def database_url(database_factory: Callable[[str], str]) -> str:
    return database_factory("orders_kpis")


@pytest.fixture(scope="module")
async def service(database_url: str, nats_url: str) -> AsyncIterator[Service]:
    with pytest.MonkeyPatch.context() as env:
        env.delenv("OMS_ORDERS_SMTP_HOST", raising=False)  # no emails needed here
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


def stamp(moment: datetime) -> Timestamp:
    result = Timestamp()
    result.FromDatetime(moment)
    return result


def money(amount: str, currency: str = "EUR") -> common_pb2.Money:
    return common_pb2.Money(currency_code=currency, amount=amount)


class Events:
    """Publishes events and remembers the last one of each stream."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js
        self.last: dict[str, PubAck] = {}

    async def publish(self, message: Message, aggregate_id: str) -> PubAck:
        ack = (await publish(self.js, message, aggregate_id=aggregate_id)).ack
        known = self.last.get(ack.stream)
        if known is None or ack.seq > known.seq:
            self.last[ack.stream] = ack
        return ack

    async def all_handled(self) -> None:
        for ack in self.last.values():
            await caught_up(self.js, READ_MODEL_CONSUMER, ack)

    async def all_tried(self) -> None:
        """Every event published so far has been handled at least once: the read model has
        delivered them all, and each one it has not acknowledged has been redelivered,
        which JetStream does only after a failed attempt (a nak)."""
        async def done() -> bool:
            for stream, ack in self.last.items():
                info = await self.js.consumer_info(stream, READ_MODEL_CONSUMER)
                if (info.num_pending or info.delivered.stream_seq < ack.seq
                        or info.num_ack_pending != info.num_redelivered):
                    return False
            return True

        await eventually(done)


def order(
    *, channel: str, placed: str, lines: list[tuple[int, str]], currency: str = "EUR",
    email: str = "", customer_id: str = "",
) -> events_pb2.OrderCreated:
    """An OrderCreated; ``lines`` are (quantity, unit price), line ids "1", "2", …"""
    placed_at = at(placed)
    return events_pb2.OrderCreated(
        order=f"orders/{uuid.uuid4()}",
        channel=channel,
        external_order_id=f"#{uuid.uuid4().hex[:8]}",
        customer=orders_pb2.Customer(display_name="Someone", email=email,
                                     external_customer_id=customer_id),
        lines=[
            orders_pb2.OrderLine(line_id=str(n), sku=f"SKU-{n}", quantity=quantity,
                                 unit_price=money(price, currency))
            for n, (quantity, price) in enumerate(lines, start=1)
        ],
        order_time=stamp(placed_at),
        # Captured a little later than placed: the period and lead time go by order_time.
        create_time=stamp(placed_at + timedelta(minutes=30)),
    )


def shipped(package: str, when: str, *parts: tuple[str, str, int]) -> Message:
    """A PackageShipped of (order, line id, units) parts."""
    return fulfilment_events.PackageShipped(
        package=package, node_id="wh-1", carrier="dhl", tracking_number=package[-6:],
        lines=[fulfilment_events.ShippedLine(order=o, line_id=line, sku=f"SKU-{line}",
                                             quantity=units) for o, line, units in parts],
        ship_time=stamp(at(when)),
    )


def delivered(package: str, when: str, *orders: str) -> Message:
    return shipping_events.ShipmentDelivered(package=package, orders=list(orders),
                                             carrier="dhl", deliver_time=stamp(at(when)))


def returned(order_name: str, when: str, *lines: tuple[str, int, int]) -> Message:
    """A ReturnReceived of (line id, units, reason) lines."""
    return R.ReturnReceived(
        order=order_name, node_id="wh-1", receive_time=stamp(at(when)),
        lines=[R.ReturnedLine(line_id=line, sku=f"SKU-{line}", quantity=units, reason=reason)
               for line, units, reason in lines],
        **{"return": f"returns/{uuid.uuid4().hex[:10]}"},
    )


HOUR = 3600.0


@pytest.fixture(scope="module")
async def data_set(js: JetStreamContext, service: Service) -> dict[str, str]:
    """The known data set; returns the order names by letter.

    | order | channel | customer     | placed (UTC)     | lines (qty * price)    | cancelled |
    |-------|---------|--------------|------------------|------------------------|-----------|
    | A     | web     | alice@       | Mon 03-02 10:00  | 2 * 10.00, 1 * 5.50    |           |
    | B     | web     | bob@         | Tue 03-03 09:00  | 4 * 2.25               | 1 unit    |
    | C     | web     | ALICE@ (same)| Tue 03-10 12:00  | 1 * 100.00             |           |
    | D     | market  | id "carol"   | Wed 03-04 08:00  | 5 * 1.10 GBP           |           |
    | E     | web     | dave@        | Thu 03-05 08:00  | 2 * 3.00               | all       |
    | F     | web     | erin@        | 04-01 00:00      | 1 * 1.00  (end is exclusive)     |
    | G     | web     | erin@        | 02-28 23:59:59   | 1 * 1.00  (before the range)     |

    Deliveries: A in two packages, 2 units delivered 03-03 10:00 and 1 unit 03-04 10:00
    (lead time to the last: 48 h); B 03-06 09:00 (72 h); C 03-11 00:00 (12 h); D 03-05 08:00
    (24 h), its delivery published before its shipment.
    Returns: A 1 unit WRONG_ITEM + 1 DAMAGED (received 03-20, counted in A's period);
    B 2 SIZE_OR_FIT; D 1 WRONG_ITEM.
    """
    events = Events(js)
    a = order(channel=WEB, placed="2026-03-02T10:00:00", lines=[(2, "10.00"), (1, "5.50")],
              email="alice@example.test")
    b = order(channel=WEB, placed="2026-03-03T09:00:00", lines=[(4, "2.25")],
              email="bob@example.test")
    c = order(channel=WEB, placed="2026-03-10T12:00:00", lines=[(1, "100.00")],
              email="ALICE@example.test")
    d = order(channel=MARKET, placed="2026-03-04T08:00:00", lines=[(5, "1.10")],
              currency="GBP", customer_id="carol")
    e = order(channel=WEB, placed="2026-03-05T08:00:00", lines=[(2, "3.00")],
              email="dave@example.test")
    f = order(channel=WEB, placed="2026-04-01T00:00:00", lines=[(1, "1.00")],
              email="erin@example.test")
    g = order(channel=WEB, placed="2026-02-28T23:59:59", lines=[(1, "1.00")],
              email="erin@example.test")
    for created in (a, b, c, e, f, g):
        await events.publish(created, created.order)

    cancel_b = events_pb2.OrderCancelled(
        order=b.order, lines=[events_pb2.CancelledLine(line_id="1", sku="SKU-1", quantity=1)],
        reason="customer request", cancel_time=stamp(at("2026-03-03T09:30:00")),
    )
    cancel_e = events_pb2.OrderCancelled(order=e.order, whole_order=True,
                                         cancel_time=stamp(at("2026-03-05T09:00:00")))
    return_a = returned(a.order, "2026-03-20T10:00:00",
                        ("1", 1, R.RETURN_REASON_WRONG_ITEM), ("2", 1, R.RETURN_REASON_DAMAGED))
    ship_b = shipped("pkg-b00001", "2026-03-03T15:00:00", (b.order, "1", 3))
    published = [
        cancel_b, cancel_e,
        shipped("pkg-a00001", "2026-03-02T15:00:00", (a.order, "1", 2)),
        shipped("pkg-a00002", "2026-03-03T15:00:00", (a.order, "2", 1)),
        ship_b,
        shipped("pkg-c00001", "2026-03-10T15:00:00", (c.order, "1", 1)),
        delivered("pkg-a00001", "2026-03-03T10:00:00", a.order),
        delivered("pkg-a00002", "2026-03-04T10:00:00", a.order),
        delivered("pkg-b00001", "2026-03-06T09:00:00", b.order),
        delivered("pkg-c00001", "2026-03-11T00:00:00", c.order),
        # D's delivery and return arrive before D is known, and its delivery before its
        # shipment: the consumer retries them until they fit.
        delivered("pkg-d00001", "2026-03-05T08:00:00", d.order),
        returned(d.order, "2026-03-09T10:00:00", ("1", 1, R.RETURN_REASON_WRONG_ITEM)),
        return_a,
        returned(b.order, "2026-03-12T10:00:00", ("1", 2, R.RETURN_REASON_SIZE_OR_FIT)),
        # The same content again under new event ids: counted once.
        cancel_b, return_a, ship_b,
    ]
    for message in published:
        await events.publish(message, getattr(message, "order", "") or message.package)
    # D's delivery and return are refused (D is unknown) before D arrives.
    await events.all_tried()
    await events.publish(d, d.order)
    await events.publish(shipped("pkg-d00001", "2026-03-04T15:00:00", (d.order, "1", 5)),
                         "pkg-d00001")
    await events.all_handled()
    return {"A": a.order, "B": b.order, "C": c.order, "D": d.order}


def by_reason(kpis: insights_pb2.OrderKpis) -> dict[int, tuple[int, float]]:
    return {entry.reason: (entry.units, entry.return_rate)
            for entry in kpis.units_returned_by_reason}


def seconds(duration: Any) -> float:
    return float(duration.ToTimedelta().total_seconds())


async def test_monthly_kpis_per_channel(insights: Stub, data_set: dict[str, str]) -> None:
    response = await insights.GetOrderKpis(insights_pb2.GetOrderKpisRequest(
        start_time=stamp(MARCH), end_time=stamp(APRIL),
        granularity=insights_pb2.GRANULARITY_MONTH,
    ))
    ours = [k for k in response.kpis if k.channel in (WEB, MARKET)]
    assert [k.channel for k in ours] == sorted([WEB, MARKET])
    kpis = {k.channel: k for k in ours}
    web, market = kpis[WEB], kpis[MARKET]

    for k in (web, market):
        assert k.period_start_time.ToDatetime(tzinfo=UTC) == MARCH
        assert k.period_end_time.ToDatetime(tzinfo=UTC) == APRIL

    # web: A, B, C (E is cancelled in full, F and G lie outside the range) → 3 orders.
    assert web.orders == 3
    # Units sold: A 2+1 = 3, B 4-1 cancelled = 3 (the cancellation re-sent is not counted
    # again), C 1 → 7.
    assert web.units_sold == 7
    # Returned: A 1 WRONG_ITEM + 1 DAMAGED (the return re-sent counts once), B 2 SIZE_OR_FIT
    # → 4; return rate 4 / 7 * 100 = 57.142857…%.
    assert web.units_returned == 4
    assert web.return_rate == pytest.approx(400 / 7)
    # By reason: WRONG_ITEM 1 / 7 * 100 = 14.2857…%, DAMAGED the same, SIZE_OR_FIT
    # 2 / 7 * 100 = 28.5714…%.
    assert by_reason(web) == {
        R.RETURN_REASON_WRONG_ITEM: (1, pytest.approx(100 / 7)),
        R.RETURN_REASON_DAMAGED: (1, pytest.approx(100 / 7)),
        R.RETURN_REASON_SIZE_OR_FIT: (2, pytest.approx(200 / 7)),
    }
    # Picking accuracy: 1 order (A) had a wrong item → (3 - 1) / 3 * 100 = 66.666…%.
    assert web.orders_returned_wrong_item == 1
    assert web.picking_accuracy == pytest.approx(200 / 3)
    # Lead times, placed → last delivery: A 03-02 10:00 → 03-04 10:00 = 48 h, B 03-03 09:00 →
    # 03-06 09:00 = 72 h, C 03-10 12:00 → 03-11 00:00 = 12 h. Mean (48 + 72 + 12) / 3 = 44 h.
    # p90 (continuous) over [12, 48, 72]: rank 0.9 * (3 - 1) = 1.8 → 48 + 0.8 * (72 - 48)
    # = 67.2 h.
    assert web.orders_delivered == 3
    assert seconds(web.lead_time_mean) == pytest.approx(44 * HOUR)
    assert seconds(web.lead_time_p90) == pytest.approx(67.2 * HOUR)
    # Customers: alice (A and C, one address in two cases) and bob → 2; frequency 3 / 2.
    assert web.customers == 2
    assert web.purchase_frequency == pytest.approx(1.5)
    # Sales: A 2 * 10.00 + 5.50 = 25.50, B 3 * 2.25 = 6.75, C 100.00 → 132.25 EUR.
    assert [(m.currency_code, m.amount) for m in web.sales_amount] == [("EUR", "132.25")]

    # market: D alone. 5 sold, 1 returned WRONG_ITEM → 1 / 5 * 100 = 20%; picking accuracy
    # (1 - 1) / 1 * 100 = 0%; lead time 03-04 08:00 → 03-05 08:00 = 24 h (mean and p90);
    # one customer (known by the channel's customer id) → frequency 1; 5 * 1.10 = 5.50 GBP.
    assert (market.orders, market.units_sold, market.units_returned) == (1, 5, 1)
    assert market.return_rate == pytest.approx(20.0)
    assert by_reason(market) == {R.RETURN_REASON_WRONG_ITEM: (1, pytest.approx(20.0))}
    assert market.orders_returned_wrong_item == 1
    assert market.picking_accuracy == pytest.approx(0.0)
    assert market.HasField("picking_accuracy")
    assert market.orders_delivered == 1
    assert seconds(market.lead_time_mean) == pytest.approx(24 * HOUR)
    assert seconds(market.lead_time_p90) == pytest.approx(24 * HOUR)
    assert (market.customers, market.purchase_frequency) == (1, pytest.approx(1.0))
    assert [(m.currency_code, m.amount) for m in market.sales_amount] == [("GBP", "5.50")]


async def test_weekly_kpis_of_one_channel(insights: Stub, data_set: dict[str, str]) -> None:
    response = await insights.GetOrderKpis(insights_pb2.GetOrderKpisRequest(
        start_time=stamp(MARCH), end_time=stamp(APRIL),
        granularity=insights_pb2.GRANULARITY_WEEK, channel=WEB,
        breakdown=insights_pb2.KPI_BREAKDOWN_CHANNEL,
    ))
    # ISO weeks from Monday: 03-02..03-09 holds A and B (E cancelled), 03-09..03-16 holds C.
    # The week of 02-23 would be clipped to start at 03-01, but G (02-28) is before the range.
    assert [(k.channel, k.period_start_time.ToDatetime(tzinfo=UTC),
             k.period_end_time.ToDatetime(tzinfo=UTC)) for k in response.kpis] == [
        (WEB, at("2026-03-02T00:00:00"), at("2026-03-09T00:00:00")),
        (WEB, at("2026-03-09T00:00:00"), at("2026-03-16T00:00:00")),
    ]
    first, second = response.kpis
    # Week 1: A and B. Sold 3 + 3 = 6, returned 2 + 2 = 4 → 4 / 6 * 100 = 66.666…%.
    # Picking accuracy (2 - 1) / 2 * 100 = 50%. Lead times 48 h and 72 h: mean 60 h,
    # p90 rank 0.9 * (2 - 1) = 0.9 → 48 + 0.9 * 24 = 69.6 h. Two customers → frequency 1.
    # Sales 25.50 + 6.75 = 32.25 EUR.
    assert (first.orders, first.units_sold, first.units_returned) == (2, 6, 4)
    assert first.return_rate == pytest.approx(200 / 3)
    assert first.picking_accuracy == pytest.approx(50.0)
    assert seconds(first.lead_time_mean) == pytest.approx(60 * HOUR)
    assert seconds(first.lead_time_p90) == pytest.approx(69.6 * HOUR)
    assert (first.customers, first.purchase_frequency) == (2, pytest.approx(1.0))
    assert [(m.currency_code, m.amount) for m in first.sales_amount] == [("EUR", "32.25")]
    # Week 2: C alone. 1 sold, none returned → 0% (a rate, not unset: there were sales);
    # accuracy 100%; lead time 12 h; sales 100.00 EUR.
    assert (second.orders, second.units_sold, second.units_returned) == (1, 1, 0)
    assert second.HasField("return_rate") and second.return_rate == 0.0
    assert list(second.units_returned_by_reason) == []
    assert second.picking_accuracy == pytest.approx(100.0)
    assert seconds(second.lead_time_p90) == pytest.approx(12 * HOUR)
    assert [(m.currency_code, m.amount) for m in second.sales_amount] == [("EUR", "100.00")]


async def test_daily_periods_are_clipped_to_the_range(
    insights: Stub, data_set: dict[str, str]
) -> None:
    # From 03-02 12:00 to 03-03 12:00: A (03-02 10:00) is before the start; B (03-03 09:00)
    # is in the day 03-03, whose period is clipped to end at 12:00.
    response = await insights.GetOrderKpis(insights_pb2.GetOrderKpisRequest(
        start_time=stamp(at("2026-03-02T12:00:00")), end_time=stamp(at("2026-03-03T12:00:00")),
        granularity=insights_pb2.GRANULARITY_DAY, channel=WEB,
        breakdown=insights_pb2.KPI_BREAKDOWN_CHANNEL,
    ))
    [day] = response.kpis
    assert day.period_start_time.ToDatetime(tzinfo=UTC) == at("2026-03-03T00:00:00")
    assert day.period_end_time.ToDatetime(tzinfo=UTC) == at("2026-03-03T12:00:00")
    assert (day.orders, day.units_sold) == (1, 3)


async def test_a_return_counts_in_the_period_of_its_order(
    insights: Stub, data_set: dict[str, str]
) -> None:
    response = await insights.GetOrderKpis(insights_pb2.GetOrderKpisRequest(
        start_time=stamp(at("2026-03-20T00:00:00")), end_time=stamp(at("2026-03-21T00:00:00")),
        granularity=insights_pb2.GRANULARITY_DAY, channel=WEB,
    ))
    # The return received on 03-20 belongs to A's period (03-02), not this one.
    assert list(response.kpis) == []


async def test_a_kpi_request_is_checked(insights: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await insights.GetOrderKpis(insights_pb2.GetOrderKpisRequest())
    assert missing.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = missing.value.details() or ""
    assert all(name in details for name in ("start_time", "end_time", "granularity"))
    with pytest.raises(grpc.aio.AioRpcError) as backwards:
        await insights.GetOrderKpis(insights_pb2.GetOrderKpisRequest(
            start_time=stamp(APRIL), end_time=stamp(MARCH),
            granularity=insights_pb2.GRANULARITY_DAY,
        ))
    assert backwards.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "end_time" in (backwards.value.details() or "")


async def test_a_kpi_request_produces_a_bounded_number_of_periods_and_figures(
    insights: Stub, data_set: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def days(start: datetime, n: int, **fields: Any) -> insights_pb2.GetOrderKpisRequest:
        return insights_pb2.GetOrderKpisRequest(
            start_time=stamp(start), end_time=stamp(start + timedelta(days=n)),
            granularity=insights_pb2.GRANULARITY_DAY, **fields)

    await insights.GetOrderKpis(days(MARCH, kpis_rules.MAX_PERIODS))
    with pytest.raises(grpc.aio.AioRpcError) as too_many_periods:
        await insights.GetOrderKpis(days(MARCH, kpis_rules.MAX_PERIODS + 1))
    assert too_many_periods.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(too_many_periods.value) == ["end_time"]
    monthly = days(MARCH, 3660)
    monthly.granularity = insights_pb2.GRANULARITY_MONTH
    await insights.GetOrderKpis(monthly)

    # The data set has five (day, channel) entries in March (A, B, C and E, cancelled in
    # full but placed, on the web; D), and five days with orders: ten entries with totals.
    monkeypatch.setattr(kpis_rules, "MAX_FIGURES", 5)
    per_channel = insights_pb2.KPI_BREAKDOWN_CHANNEL
    assert len((await insights.GetOrderKpis(days(MARCH, 31, breakdown=per_channel))).kpis) == 5
    totals = insights_pb2.KPI_BREAKDOWN_TOTAL
    assert len((await insights.GetOrderKpis(days(MARCH, 31, breakdown=totals))).kpis) == 5
    with pytest.raises(grpc.aio.AioRpcError) as too_many_figures:
        await insights.GetOrderKpis(days(MARCH, 31))
    assert too_many_figures.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(too_many_figures.value) == ["channel"]

    beyond = days(MARCH, 1)
    beyond.start_time.seconds = -62135596801  # before the year 1
    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await insights.GetOrderKpis(beyond)
    assert field_violations(invalid.value) == ["start_time"]


def field_violations(error: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(error)
    assert status is not None
    fields: list[str] = []
    for detail in status.details:
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            fields += [v.field for v in bad_request.field_violations]
    return fields


def test_the_migration_takes_in_orders_captured_before_it(
    database_factory: Callable[[str], str],
) -> None:
    """Orders captured before the read model existed are copied into it, so their later
    shipments and returns are not retried into the dead letters for an unknown order."""
    url = database_factory("orders_kpis_backfill")
    config = alembic_config(MIGRATIONS, url)
    command.upgrade(config, "0002")
    order_id = uuid.uuid4()
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("""
                INSERT INTO orders (id, channel, external_order_id, status, customer,
                    shipping_address, service_level, payment_status, currency_code,
                    total_amount, create_time, update_time)
                VALUES (:id, 'shop', '#77', 'ALLOCATED',
                    '{"display_name": "Ada", "email": "Ada@Example.test",
                      "external_customer_id": "", "phone": ""}',
                    '{"recipient": "Ada L", "address_lines": [], "email": ""}',
                    'STANDARD', 'PAID', 'EUR', 40.08, '2026-03-02T10:00:00Z',
                    '2026-03-02T10:00:00Z')"""), {"id": order_id})
            conn.execute(text("""
                INSERT INTO order_lines (order_id, line_id, external_line_id, sku, quantity,
                    unit_price)
                VALUES (:id, '1', '', 'SKU-MUG', 2, 19.99), (:id, '2', '', 'SKU-PEN', 1, 0.10)
            """), {"id": order_id})
        command.upgrade(config, "head")
        with engine.connect() as conn:
            row = conn.execute(text("SELECT * FROM kpi_orders")).one()
            lines = conn.execute(text(
                "SELECT line_id, quantity, unit_price FROM kpi_order_lines ORDER BY line_id"
            )).all()
    finally:
        engine.dispose()
    assert row.order_name == f"orders/{order_id}"
    assert (row.channel, row.external_order_id, row.customer_name) == ("shop", "#77", "Ada")
    assert (row.email, row.customer_key) == ("Ada@Example.test", "ada@example.test")
    assert (row.units_ordered, row.amount_ordered, row.currency_code) == (
        3, Decimal("40.08"), "EUR"
    )
    assert row.place_time == at("2026-03-02T10:00:00")
    assert [(line.line_id, line.quantity, line.unit_price) for line in lines] == [
        ("1", 2, Decimal("19.99")), ("2", 1, Decimal("0.10"))
    ]


async def test_without_a_mail_server_notifications_wait(
    js: JetStreamContext, service: Service, insights: Stub
) -> None:
    """This module's service has no SMTP host: emails are enqueued, and stay pending."""
    events = Events(js)
    created = order(channel=WEB, placed=datetime.now(UTC).isoformat()[:19],
                    lines=[(1, "1.00")], email="wait@example.test")
    await events.publish(created, created.order)
    await events.all_handled()
    # The sender the service runs, run to its end: with no SMTP host it stops at once.
    assert service.runtime is not None
    await asyncio.wait_for(notifications.run_sender(service.runtime), timeout=5)
    listing = await insights.ListOrderNotifications(
        insights_pb2.ListOrderNotificationsRequest(parent=created.order)
    )
    assert [(n.kind, n.state, n.failed_attempts) for n in listing.notifications] == [
        (insights_pb2.NOTIFICATION_KIND_ORDER_CONFIRMATION,
         insights_pb2.NOTIFICATION_STATE_PENDING, 0)
    ]
