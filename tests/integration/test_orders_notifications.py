"""Customer notifications of the orders service over real gRPC, PostgreSQL, NATS and SMTP.

The service runs in-process; events are published to JetStream as their producers would, and
emails arrive at a real aiosmtpd server listening on a free port.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import grpc
import nats
import pytest
from aiosmtpd.controller import Controller
from google.protobuf.timestamp_pb2 import Timestamp
from nats.js import JetStreamContext
from nats.js.api import PubAck
from oms.common.v1 import common_pb2
from oms.fulfilment.v1 import events_pb2 as fulfilment_events
from oms.orders.v1 import events_pb2, insights_pb2, insights_pb2_grpc, orders_pb2, orders_pb2_grpc
from oms.shipping.v1 import events_pb2 as shipping_events
from oms_devtools.inprocess import running_service
from oms_devtools.servers import free_port
from oms_devtools.testkit import caught_up, eventually, publish
from oms_orders.app import DEFINITION, MIGRATIONS
from oms_orders.notifications.handlers import MailServerUnavailable, Sender
from oms_orders.settings import NotificationSettings
from oms_orders.tables import notifications
from oms_platform.bus import ensure_stream
from oms_platform.service import Service
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

# The read model (KPIs, notifications) is the orders service's own consumer group.
READ_MODEL_CONSUMER = "orders-read-model"

SURVEY_DELAY = timedelta(seconds=2)
MAIL_FROM = "Shop <orders@shop.test>"


# --- A real SMTP server ----------------------------------------------------------------------


@dataclass
class Mailbox:
    """What the SMTP server received, and how it answers chosen recipients."""

    messages: list[EmailMessage] = field(default_factory=list)
    refused: set[str] = field(default_factory=set)
    busy: dict[str, int] = field(default_factory=dict)  # address -> 451 replies left
    lock: threading.Lock = field(default_factory=threading.Lock)
    controller: Any = None

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        with self.lock:
            if address in self.refused:
                return "550 5.1.1 no such mailbox"
            if self.busy.get(address, 0) > 0:
                self.busy[address] -= 1
                return "451 4.3.0 mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(
        self, server: Any, session: Any, envelope: Any
    ) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        with self.lock:
            self.messages.append(message)
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for m in self.messages if m["To"] == address]


@pytest.fixture(scope="module")
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    box.controller = controller
    try:
        yield box, port
    finally:
        box.controller.stop()


# --- The service -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def database_url(database_factory: Callable[[str], str]) -> str:
    return database_factory("orders_notifications")


@pytest.fixture(scope="module")
async def service(
    database_url: str, nats_url: str, mailbox: tuple[Mailbox, int]
) -> AsyncIterator[Service]:
    _, port = mailbox
    with pytest.MonkeyPatch.context() as env:
        for name, value in {
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(port),
            "SMTP_STARTTLS": "false",
            "MAIL_FROM": MAIL_FROM,
            "SURVEY_DELAY": "PT2S",  # ISO 8601, as in production ("P7D")
            "SURVEY_URL": "https://survey.shop.test/r/{order}",
            "NOTIFY_POLL_SECONDS": "0.1",
            "NOTIFY_RETRY_BASE": "PT0.2S",
            "NOTIFY_MAX_ATTEMPTS": "4",
        }.items():
            env.setenv(f"OMS_ORDERS_{name}", value)
        async with running_service(
            DEFINITION, MIGRATIONS, database_url=database_url, nats_url=nats_url
        ) as running:
            yield running


@pytest.fixture(scope="module")
def engine(service: Service) -> AsyncEngine:
    assert service.runtime is not None
    return service.runtime.engine


@pytest.fixture(scope="module")
async def insights(service: Service) -> AsyncIterator[insights_pb2_grpc.OrderInsightsServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.bound_port}") as channel:
        yield insights_pb2_grpc.OrderInsightsServiceStub(channel)


@pytest.fixture(scope="module")
async def js(nats_url: str) -> AsyncIterator[JetStreamContext]:
    client = await nats.connect(nats_url)
    jetstream = client.jetstream()
    for producer in ("orders", "fulfilment", "shipping"):
        await ensure_stream(jetstream, producer)
    yield jetstream
    await client.drain()


# --- Helpers ---------------------------------------------------------------------------------


def stamp(moment: datetime) -> Timestamp:
    result = Timestamp()
    result.FromDatetime(moment)
    return result


async def refused_once(js: JetStreamContext, ack: PubAck) -> None:
    """Waits until the read model has tried the published event and not acknowledged it.
    JetStream redelivers a message only after its handler failed (a nak), so a redelivery
    of this, the consumer's only unacknowledged message, proves the attempt ran and failed."""

    async def redelivered() -> bool:
        info = await js.consumer_info(ack.stream, READ_MODEL_CONSUMER)
        return (info.delivered.stream_seq >= ack.seq and info.num_redelivered >= 1
                and info.ack_floor.stream_seq < ack.seq)

    await eventually(redelivered)


def order_created(*, email: str, name: str = "Ada Lovelace",
                  placed: datetime | None = None) -> events_pb2.OrderCreated:
    placed = placed or datetime.now(UTC)
    return events_pb2.OrderCreated(
        order=f"orders/{uuid.uuid4()}",
        channel="shop-eu",
        external_order_id=f"#{uuid.uuid4().hex[:8]}",
        customer=orders_pb2.Customer(display_name=name, email=email),
        shipping_address=common_pb2.Address(recipient=name, locality="London",
                                            region_code="GB"),
        lines=[
            orders_pb2.OrderLine(line_id="1", sku="SKU-MUG", quantity=2,
                                 unit_price=common_pb2.Money(currency_code="EUR",
                                                             amount="19.99")),
            orders_pb2.OrderLine(line_id="2", sku="SKU-PEN", quantity=1,
                                 unit_price=common_pb2.Money(currency_code="EUR", amount="0.10")),
        ],
        total=common_pb2.Money(currency_code="EUR", amount="40.08"),
        create_time=stamp(placed),
        order_time=stamp(placed),
    )


def package_shipped(order: str, package: str) -> fulfilment_events.PackageShipped:
    return fulfilment_events.PackageShipped(
        package=package,
        node_id="wh-1",
        lines=[fulfilment_events.ShippedLine(order=order, line_id="1", sku="SKU-MUG", quantity=2),
               fulfilment_events.ShippedLine(order=order, line_id="2", sku="SKU-PEN", quantity=1)],
        carrier="ups",
        carrier_service="ups_ground",
        tracking_number="1Z999AA10123456784",
        tracking_url="https://track.ups.test/?n=1Z999AA10123456784&lang=en",
        ship_time=stamp(datetime.now(UTC)),
    )


async def rows_of(engine: AsyncEngine, order: str) -> list[Any]:
    async with engine.connect() as conn:
        result = await conn.execute(
            select(notifications).where(notifications.c.order_name == order)
            .order_by(notifications.c.id)
        )
        return list(result.all())


async def sent(engine: AsyncEngine, order: str, kind: str) -> Any:
    rows = [r for r in await rows_of(engine, order) if r.kind == kind and r.status == "SENT"]
    return rows[0] if rows else None


def email_address() -> str:
    return f"customer-{uuid.uuid4().hex[:10]}@example.test"


# --- Tests -----------------------------------------------------------------------------------


async def test_an_order_confirmation_is_sent_once_however_often_its_event_arrives(
    js: JetStreamContext, engine: AsyncEngine, mailbox: tuple[Mailbox, int]
) -> None:
    box, _ = mailbox
    address = email_address()
    event = order_created(email=address, name="Ada <b>Lovelace</b>")
    event_id = uuid.uuid4()
    acks = [
        await publish(js, event, event_id=event_id),
        # The same event again: JetStream drops it as a duplicate.
        await publish(js, event, event_id=event_id),
        # A redelivery past JetStream's duplicate window: the inbox drops it.
        await publish(js, event, event_id=event_id, msg_id="late-copy" + uuid.uuid4().hex),
        # The same content under a new event id: the notification's unique key drops it.
        await publish(js, event, event_id=uuid.uuid4()),
    ]
    for ack in acks:
        await caught_up(js, READ_MODEL_CONSUMER, ack)
    row = await eventually(lambda: sent(engine, event.order, "CONFIRMATION"))

    assert len(await rows_of(engine, event.order)) == 1
    [email] = box.to(address)
    assert email["From"] == MAIL_FROM
    assert email["Message-ID"] == row.message_id
    assert row.message_id.endswith("@shop.test>")
    assert email["Subject"] == f"We have received your order {event.external_order_id}"
    text = email.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    html = email.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    assert "2 x SKU-MUG at 19.99 EUR" in text
    assert "Total: 40.08 EUR" in text
    assert "Hello Ada <b>Lovelace</b>," in text  # plain text is not HTML: nothing to escape
    # In HTML the name is data, not markup.
    assert "Ada &lt;b&gt;Lovelace&lt;/b&gt;" in html
    assert "<b>Lovelace" not in html


async def test_dispatch_delivery_and_a_later_survey_are_each_sent_once(
    js: JetStreamContext, engine: AsyncEngine, mailbox: tuple[Mailbox, int],
    insights: insights_pb2_grpc.OrderInsightsServiceStub,
) -> None:
    box, _ = mailbox
    address = email_address()
    created = order_created(email=address)
    await caught_up(js, READ_MODEL_CONSUMER, await publish(js, created))
    package = f"fulfilmentOrders/{uuid.uuid4().hex[:8]}/packages/1"
    shipped = package_shipped(created.order, package)
    for _ in range(2):  # the second time under a new event id
        await caught_up(js, READ_MODEL_CONSUMER, await publish(js, shipped, aggregate_id=package))
    dispatch = await eventually(lambda: sent(engine, created.order, "DISPATCH"))

    delivered_at = datetime.now(UTC).replace(microsecond=0)
    delivered = shipping_events.ShipmentDelivered(
        package=package, orders=[created.order], carrier="ups",
        tracking_number=shipped.tracking_number, deliver_time=stamp(delivered_at),
    )
    for _ in range(2):
        await caught_up(js, READ_MODEL_CONSUMER, await publish(js, delivered, aggregate_id=package))
    await eventually(lambda: sent(engine, created.order, "DELIVERY"))
    survey = [r for r in await rows_of(engine, created.order) if r.kind == "SURVEY"]
    assert len(survey) == 1
    # Scheduled the configured delay after the delivery, not sent before then.
    assert survey[0].not_before >= delivered_at + SURVEY_DELAY
    survey_row = await eventually(lambda: sent(engine, created.order, "SURVEY"))
    assert survey_row.send_time >= delivered_at + SURVEY_DELAY

    emails = box.to(address)
    assert [e["Subject"] for e in emails] == [
        f"We have received your order {created.external_order_id}",
        f"Your order {created.external_order_id} is on its way",
        f"Your order {created.external_order_id} has been delivered",
        f"How was your order {created.external_order_id}?",
    ]
    assert emails[1]["Message-ID"] == dispatch.message_id
    dispatch_text = emails[1].get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    dispatch_html = emails[1].get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    assert "with ups" in dispatch_text
    assert "Tracking number: 1Z999AA10123456784" in dispatch_text
    assert shipped.tracking_url in dispatch_text
    assert ('<a href="https://track.ups.test/?n=1Z999AA10123456784&amp;lang=en">'
            in dispatch_html)
    survey_text = emails[3].get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert f"https://survey.shop.test/r/{created.order.removeprefix('orders/')}" in survey_text

    # The back office sees all four, in order, with the package where there is one.
    listing = await insights.ListOrderNotifications(
        insights_pb2.ListOrderNotificationsRequest(parent=created.order)
    )
    assert [(n.kind, n.package, n.state) for n in listing.notifications] == [
        (insights_pb2.NOTIFICATION_KIND_ORDER_CONFIRMATION, "",
         insights_pb2.NOTIFICATION_STATE_SENT),
        (insights_pb2.NOTIFICATION_KIND_DISPATCH, package, insights_pb2.NOTIFICATION_STATE_SENT),
        (insights_pb2.NOTIFICATION_KIND_DELIVERY, package, insights_pb2.NOTIFICATION_STATE_SENT),
        (insights_pb2.NOTIFICATION_KIND_SURVEY, "", insights_pb2.NOTIFICATION_STATE_SENT),
    ]
    assert all(n.recipient == address and n.HasField("send_time")
               for n in listing.notifications)
    assert all(n.name.startswith(f"{created.order}/notifications/")
               for n in listing.notifications)
    # Pages of one, chained by opaque tokens.
    names, token = [], ""
    while True:
        page = await insights.ListOrderNotifications(
            insights_pb2.ListOrderNotificationsRequest(parent=created.order, page_size=1,
                                                       page_token=token)
        )
        names += [n.name for n in page.notifications]
        token = page.next_page_token
        if not token:
            break
    assert names == [n.name for n in listing.notifications]


async def test_a_shipment_seen_before_its_order_waits_for_it(
    js: JetStreamContext, engine: AsyncEngine, mailbox: tuple[Mailbox, int]
) -> None:
    box, _ = mailbox
    address = email_address()
    created = order_created(email=address)
    package = f"fulfilmentOrders/{uuid.uuid4().hex[:8]}/packages/1"
    shipped = package_shipped(created.order, package)
    shipment = await publish(js, shipped, aggregate_id=package)
    # The read model is a consumer group of its own: the state machine's consumer settles
    # the event (an unknown order is logged and acknowledged there) while this one refuses
    # it until the order is known.
    await caught_up(js, "orders", shipment)
    await refused_once(js, shipment.ack)
    assert await rows_of(engine, created.order) == []  # not dropped: retried, see below

    await publish(js, created)
    await eventually(lambda: sent(engine, created.order, "DISPATCH"))
    assert {r.kind for r in await rows_of(engine, created.order)} == {"CONFIRMATION", "DISPATCH"}
    assert len(box.to(address)) == 2


async def test_a_busy_mailbox_is_retried_and_a_refused_one_given_up(
    js: JetStreamContext, engine: AsyncEngine, mailbox: tuple[Mailbox, int]
) -> None:
    box, _ = mailbox
    busy, refused = email_address(), email_address()
    box.busy[busy] = 2
    box.refused.add(refused)
    first, second = order_created(email=busy), order_created(email=refused)
    for event in (first, second):
        await publish(js, event)

    row = await eventually(lambda: sent(engine, first.order, "CONFIRMATION"))
    assert row.attempts == 2  # two 451 replies, then accepted
    assert "451" in row.last_error
    assert len(box.to(busy)) == 1

    async def failed() -> Any:
        rows = await rows_of(engine, second.order)
        return rows[0] if rows and rows[0].status == "FAILED" else None

    row = await eventually(failed)
    assert row.attempts == 1  # a 5xx reply is not retried
    assert "550" in row.last_error
    assert box.to(refused) == []


async def test_emails_long_overdue_are_not_enqueued(
    js: JetStreamContext, engine: AsyncEngine
) -> None:
    old = order_created(email=email_address(), placed=datetime.now(UTC) - timedelta(days=30))
    await caught_up(js, READ_MODEL_CONSUMER, await publish(js, old))
    assert await rows_of(engine, old.order) == []


async def test_listing_notifications_checks_its_request(
    insights: insights_pb2_grpc.OrderInsightsServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await insights.ListOrderNotifications(
            insights_pb2.ListOrderNotificationsRequest(parent="orders/42", page_token="xyz")
        )
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "parent" in (bad.value.details() or "")
    assert "page_token" in (bad.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await insights.ListOrderNotifications(
            insights_pb2.ListOrderNotificationsRequest(parent=f"orders/{uuid.uuid4()}")
        )
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_mail_server_outage_uses_up_no_attempts(
    js: JetStreamContext, engine: AsyncEngine, service: Service, mailbox: tuple[Mailbox, int]
) -> None:
    box, port = mailbox
    address = email_address()
    assert service.runtime is not None
    sender = Sender(service.runtime.sessions, NotificationSettings())  # as another replica's
    box.controller.stop()
    try:
        event = order_created(email=address)
        await caught_up(js, READ_MODEL_CONSUMER, await publish(js, event))

        async with engine.connect() as conn:
            others = await conn.scalar(select(func.count()).select_from(notifications).where(
                notifications.c.status == "PENDING", notifications.c.order_name != event.order))
        assert others == 0  # so the batch that fails below is this email's

        async def tried_to_send() -> bool:
            # Nothing (0) while the service's own sender holds the row; then it is ours.
            try:
                await sender.send_due()
            except MailServerUnavailable:
                return True
            return False

        await eventually(tried_to_send)
        [row] = await rows_of(engine, event.order)
        assert (row.status, row.attempts) == ("PENDING", 0)
    finally:
        box.controller = Controller(box, hostname="127.0.0.1", port=port)
        box.controller.start()
    row = await eventually(lambda: sent(engine, event.order, "CONFIRMATION"))
    assert row.attempts == 0
    assert len(box.to(address)) == 1


async def test_an_order_captured_through_the_api_is_confirmed_by_email(
    service: Service, engine: AsyncEngine, mailbox: tuple[Mailbox, int]
) -> None:
    """The whole path: CreateOrder → outbox → OMS_ORDERS → the service's own consumer →
    notification → SMTP. A retried CreateOrder sends nothing more."""
    box, _ = mailbox
    address = email_address()
    request = orders_pb2.CreateOrderRequest(
        request_id=str(uuid.uuid4()),
        order=orders_pb2.Order(
            channel="shop-eu",
            external_order_id=f"#{uuid.uuid4().hex[:8]}",
            customer=orders_pb2.Customer(display_name="Grace Hopper", email=address),
            shipping_address=common_pb2.Address(
                recipient="Grace Hopper", address_lines=["1 Navy Way"], locality="Arlington",
                postal_code="22202", administrative_area="VA", region_code="US", email=address,
            ),
            lines=[orders_pb2.OrderLine(sku="SKU-MUG", quantity=2,
                                        unit_price=common_pb2.Money(currency_code="EUR",
                                                                    amount="19.99"))],
            service_level=orders_pb2.SERVICE_LEVEL_STANDARD,
            payment_status=orders_pb2.PAYMENT_STATUS_PAID,
        ),
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.bound_port}") as channel:
        stub = orders_pb2_grpc.OrdersServiceStub(channel)
        created = await stub.CreateOrder(request)
        assert (await stub.CreateOrder(request)).name == created.name

    await eventually(lambda: sent(engine, created.name, "CONFIRMATION"))
    [email] = box.to(address)
    assert email["Subject"] == f"We have received your order {created.external_order_id}"
    text = email.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert "Hello Grace Hopper," in text
    assert "2 x SKU-MUG at 19.99 EUR" in text and "Total: 39.98 EUR" in text
    assert len(await rows_of(engine, created.name)) == 1


async def test_an_order_without_an_email_address_gets_no_notification(
    js: JetStreamContext, engine: AsyncEngine
) -> None:
    event = order_created(email="")
    await caught_up(js, READ_MODEL_CONSUMER, await publish(js, event))
    assert await rows_of(engine, event.order) == []


async def test_two_senders_share_the_queue_and_send_each_email_once(
    js: JetStreamContext, engine: AsyncEngine, service: Service, mailbox: tuple[Mailbox, int]
) -> None:
    """A second replica's sender (here beside the service's own) takes other rows, never
    the same ones: every customer gets exactly one confirmation."""
    box, _ = mailbox
    assert service.runtime is not None
    other = Sender(service.runtime.sessions, NotificationSettings())
    events = [order_created(email=email_address()) for _ in range(20)]

    async def compete() -> None:
        while True:
            await other.send_due()
            await asyncio.sleep(0.01)

    competitor = asyncio.create_task(compete())
    try:
        for event in events:
            await publish(js, event)
        for event in events:
            await eventually(lambda event=event: sent(engine, event.order, "CONFIRMATION"))
    finally:
        competitor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await competitor
    for event in events:
        assert len(box.to(event.customer.email)) == 1
