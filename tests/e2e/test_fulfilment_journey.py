"""The journey after capture, across services: a web order waits for its payment, is released
to the right warehouse, ships, is delivered and partly returned, with every email sent once;
cancellations give stock back; splits and backorders reach the warehouses.

Fulfilment, shipping and returns are not services yet: the tests publish their events exactly
as those services will, and read what orders and inventory publish as a 3PL would."""

from __future__ import annotations

import email
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from email.message import Message as EmailMessage
from typing import Any

import grpc
import httpx
import nats
import pytest
from aiosmtpd.controller import Controller
from e2e_kit import EAST, WEST, order_json, stream_messages
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp
from nats.js import JetStreamContext
from oms.fulfilment.v1 import events_pb2 as fulfilment_events
from oms.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from oms.orders.v1 import events_pb2 as order_events
from oms.orders.v1 import insights_pb2, insights_pb2_grpc
from oms.returns.v1 import events_pb2 as returns_events
from oms.shipping.v1 import events_pb2 as shipping_events
from oms_devtools.servers import EmbeddedNats, free_port
from oms_devtools.stack import UNTHROTTLED, Stack
from oms_devtools.testkit import add_node, add_sku, caught_up, eventually, publish

pytestmark = pytest.mark.e2e


class Mailbox:
    """An aiosmtpd handler keeping every message it is given."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] and address in m["To"]]


@pytest.fixture(scope="module")
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    handler = Mailbox()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def stack(postgres_server_url: str, stack_nats: EmbeddedNats,
          tmp_path_factory: pytest.TempPathFactory,
          mailbox: tuple[Mailbox, int]) -> Iterator[Stack]:
    """The suite with its mail going to the test's SMTP server."""
    suite = Stack(
        state_dir=tmp_path_factory.mktemp("stack"),
        database_server_url=postgres_server_url,
        nats_url=stack_nats.url,
        database_prefix=f"e2e_{secrets.token_hex(4)}",
        extra_env={
            **UNTHROTTLED,
            "OMS_ORDERS_SMTP_HOST": "127.0.0.1",
            "OMS_ORDERS_SMTP_PORT": str(mailbox[1]),
            "OMS_ORDERS_SMTP_STARTTLS": "false",
            "OMS_ORDERS_NOTIFY_POLL_SECONDS": "0.2",
        },
    )
    try:
        suite.start()
        yield suite
    finally:
        suite.stop()


@pytest.fixture
async def js(stack_nats: EmbeddedNats) -> AsyncIterator[JetStreamContext]:
    client = await nats.connect(stack_nats.url)
    try:
        yield client.jetstream()
    finally:
        await client.close()


def now() -> Timestamp:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp


async def order_in(gateway: httpx.AsyncClient, name: str, *statuses: str) -> dict[str, Any]:
    async def order() -> dict[str, Any]:
        return (await gateway.get(f"/v1/{name}")).json()  # type: ignore[no-any-return]

    return await eventually(order, until=lambda got: got.get("status") in statuses,
                            what=f"{name} in {statuses}", retry_on=(httpx.TransportError,))


async def level(inventory: inventory_pb2_grpc.InventoryServiceStub, node_id: str,
                sku: str) -> tuple[int, int]:
    reply = await inventory.GetStockLevel(inventory_pb2.GetStockLevelRequest(
        name=f"fulfilmentNodes/{node_id}/stockLevels/{sku}"))
    return reply.on_hand, reply.reserved


async def level_is(inventory: inventory_pb2_grpc.InventoryServiceStub, node_id: str, sku: str,
                   expected: tuple[int, int]) -> None:
    await eventually(lambda: level(inventory, node_id, sku), until=lambda got: got == expected,
                     what=f"{node_id}/{sku} at (on_hand, reserved) = {expected}")


async def released_to(nats_url: str, node_id: str, order: str) -> list[order_events.OrderReleased]:
    """What a 3PL subscribed to its own node's subject has been sent for the order."""
    messages = await stream_messages(nats_url, "OMS_ORDERS",
                                     f"oms.orders.order_released.{node_id}")
    released = [json_format.Parse(m.data, order_events.OrderReleased(),
                                  ignore_unknown_fields=True) for m in messages]
    return [r for r in released if order in r.orders]


CONFIRMATION = insights_pb2.NOTIFICATION_KIND_ORDER_CONFIRMATION
DISPATCH = insights_pb2.NOTIFICATION_KIND_DISPATCH
DELIVERY = insights_pb2.NOTIFICATION_KIND_DELIVERY


@pytest.fixture
async def insights(stack: Stack) -> AsyncIterator[insights_pb2_grpc.OrderInsightsServiceStub]:
    async with grpc.aio.insecure_channel(stack.services["orders"].endpoint) as channel:
        yield insights_pb2_grpc.OrderInsightsServiceStub(channel)


async def emails_settled(insights: insights_pb2_grpc.OrderInsightsServiceStub, order: str,
                         kinds: set[int]) -> None:
    """Waits until the order's emails of `kinds` are sent and nothing else is due now (a
    survey waits for days): the sender has nothing left to send."""
    now_seconds = time.time()

    async def check() -> bool:
        reply = await insights.ListOrderNotifications(
            insights_pb2.ListOrderNotificationsRequest(parent=order, page_size=200))
        sent = {n.kind for n in reply.notifications
                if n.state == insights_pb2.NOTIFICATION_STATE_SENT}
        due = [n for n in reply.notifications
               if n.state == insights_pb2.NOTIFICATION_STATE_PENDING
               and n.schedule_time.seconds <= now_seconds + 60]
        return kinds <= sent and not due

    await eventually(check, what=f"the emails of {order} sent, none due")


def unpaid(sku: str, quantity: int, **extra: Any) -> dict[str, Any]:
    body = order_json(sku, quantity, **extra)
    body["paymentStatus"] = "PAYMENT_STATUS_PENDING"
    body["customer"]["email"] = f"{uuid.uuid4().hex[:12]}@example.com"
    return body


async def test_a_web_order_is_paid_released_shipped_delivered_and_returned(
    gateway: httpx.AsyncClient, inventory: inventory_pb2_grpc.InventoryServiceStub,
    insights: insights_pb2_grpc.OrderInsightsServiceStub,
    stack_nats: EmbeddedNats, js: JetStreamContext, mailbox: tuple[Mailbox, int],
) -> None:
    west, east = await add_node(inventory, WEST), await add_node(inventory, EAST)
    sku = await add_sku(inventory, {west: 5, east: 5})
    body = unpaid(sku, 2)
    customer = body["customer"]["email"]

    created = (await gateway.post("/v1/orders", json=body)).json()
    name = created["name"]
    assert created["status"] == "ORDER_STATUS_PAYMENT_PENDING"
    # Inventory reserves at once (with an expiry) but nothing goes to a warehouse unpaid.
    await level_is(inventory, west, sku, (5, 2))
    assert (await gateway.get(f"/v1/{name}")).json()["status"] == "ORDER_STATUS_PAYMENT_PENDING"
    assert await released_to(stack_nats.url, west, name) == []

    capture = {"transactionId": f"pi_{uuid.uuid4().hex[:10]}", "kind": "PAYMENT_KIND_CAPTURE",
               "amount": {"currencyCode": "USD", "amount": "25.00"}, "provider": "stripe"}
    paid = await gateway.post(f"/v1/{name}/payments", json=capture)
    assert paid.status_code == 200, paid.text
    again = await gateway.post(f"/v1/{name}/payments", json=capture)  # a redelivered webhook
    assert again.status_code == 200, again.text
    order = await order_in(gateway, name, "ORDER_STATUS_RELEASED")
    assert order["paymentStatus"] == "PAYMENT_STATUS_PAID"
    assert len(order["payments"]) == 1

    releases = await released_to(stack_nats.url, west, name)
    assert len(releases) == 1
    release = releases[0]
    assert [(line.sku, line.quantity) for line in release.lines] == [(sku, 2)]
    assert release.shipping_address.locality == "Los Angeles"
    assert await released_to(stack_nats.url, east, name) == []

    package = f"fulfilmentOrders/{uuid.uuid4().hex[:8]}/packages/1"
    tracking = f"1Z{secrets.token_hex(6).upper()}"
    shipped = fulfilment_events.PackageShipped(
        package=package, node_id=west, carrier="ups", carrier_service="ups_ground",
        tracking_number=tracking, tracking_url=f"https://track.example.com/{tracking}",
        lines=[fulfilment_events.ShippedLine(order=name, line_id="1", sku=sku, quantity=2)],
        ship_time=now(),
    )
    await publish(js, shipped, aggregate_id=package, partition=west)
    await order_in(gateway, name, "ORDER_STATUS_SHIPPED")
    await level_is(inventory, west, sku, (3, 0))  # the reservation was consumed

    await publish(js, shipping_events.ShipmentDelivered(
        package=package, orders=[name], carrier="ups", tracking_number=tracking,
        deliver_time=now()), aggregate_id=package)
    await order_in(gateway, name, "ORDER_STATUS_DELIVERED")

    return_name = f"returns/{uuid.uuid4().hex[:8]}"
    await publish(js, returns_events.ReturnReceived(
        **{"return": return_name}, order=name, node_id=west, receive_time=now(),
        lines=[returns_events.ReturnedLine(line_id="1", sku=sku, quantity=1, restock=True,
                                           reason=returns_events.RETURN_REASON_SIZE_OR_FIT)],
    ), aggregate_id=return_name)
    await order_in(gateway, name, "ORDER_STATUS_PARTIALLY_RETURNED")
    await level_is(inventory, west, sku, (4, 0))  # it passed inspection: back on the shelf

    # The warehouse system sends its shipment again under a new event id: nothing moves.
    again = await publish(js, shipped, aggregate_id=package, partition=west,
                          event_id=uuid.uuid4())
    for reader in ("orders", "orders-read-model", "inventory"):
        await caught_up(js, reader, again)
    assert await level(inventory, west, sku) == (4, 0)
    assert (await gateway.get(f"/v1/{name}")).json()["status"] == (
        "ORDER_STATUS_PARTIALLY_RETURNED")

    # Every event that could enqueue an email has been handled (the duplicate was the last),
    # so once the three emails are sent and nothing else is due, the mailbox is final.
    await emails_settled(insights, name, {CONFIRMATION, DISPATCH, DELIVERY})
    box = mailbox[0]
    mails = box.to(customer)
    assert len(mails) == 3, [m["Subject"] for m in mails]
    subjects = sorted(str(m["Subject"]) for m in mails)
    number = body["externalOrderId"]
    assert subjects == sorted([f"We have received your order {number}",
                               f"Your order {number} is on its way",
                               f"Your order {number} has been delivered"])
    dispatch = next(m for m in mails if "on its way" in str(m["Subject"]))
    assert tracking in _text(dispatch), "the dispatch email carries the tracking number"


def _text(message: EmailMessage) -> str:
    parts = message.walk() if message.is_multipart() else [message]
    return "".join(
        part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")
        for part in parts if part.get_content_type() == "text/plain"
    )


async def test_cancelling_an_unpaid_order_gives_its_stock_back(
    gateway: httpx.AsyncClient, inventory: inventory_pb2_grpc.InventoryServiceStub,
    stack_nats: EmbeddedNats,
) -> None:
    west = await add_node(inventory, WEST)
    sku = await add_sku(inventory, {west: 4})
    name = (await gateway.post("/v1/orders", json=unpaid(sku, 3))).json()["name"]
    await level_is(inventory, west, sku, (4, 3))

    reply = await gateway.post(f"/v1/{name}:cancel", json={"reason": "customer request"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["status"] == "ORDER_STATUS_CANCELLED"
    await level_is(inventory, west, sku, (4, 0))

    released = [
        json_format.Parse(m.data, order_events.OrderCancelled(), ignore_unknown_fields=True)
        for m in await stream_messages(stack_nats.url, "OMS_ORDERS",
                                       "oms.orders.order_cancelled")
        if (m.headers or {}).get("ce-subject") == name
    ]
    assert len(released) == 1 and released[0].whole_order
    refused = await gateway.post(f"/v1/{name}/payments", json={
        "transactionId": "late", "kind": "PAYMENT_KIND_REFUND",
        "amount": {"currencyCode": "USD", "amount": "1.00"}})
    assert refused.status_code in (400, 409), refused.text


async def test_an_order_no_warehouse_can_ship_whole_is_split_between_them(
    gateway: httpx.AsyncClient, inventory: inventory_pb2_grpc.InventoryServiceStub,
    stack_nats: EmbeddedNats,
) -> None:
    west, east = await add_node(inventory, WEST), await add_node(inventory, EAST)
    sku = await add_sku(inventory, {west: 2, east: 2})
    name = (await gateway.post("/v1/orders", json=order_json(sku, 3))).json()["name"]

    order = await order_in(gateway, name, "ORDER_STATUS_RELEASED")
    allocated = {a["nodeId"]: sum(line["quantity"] for line in a["lines"])
                 for a in order["allocations"]}
    assert allocated == {west: 2, east: 1}, "the nearer node ships what it has"
    west_release = await released_to(stack_nats.url, west, name)
    east_release = await released_to(stack_nats.url, east, name)
    assert [[line.quantity for line in r.lines] for r in west_release] == [[2]]
    assert [[line.quantity for line in r.lines] for r in east_release] == [[1]]


async def test_a_backorder_is_released_when_the_stock_arrives(
    gateway: httpx.AsyncClient, inventory: inventory_pb2_grpc.InventoryServiceStub,
    stack_nats: EmbeddedNats,
) -> None:
    west = await add_node(inventory, WEST)
    sku = await add_sku(inventory, backorder_policy=inventory_pb2.BACKORDER_POLICY_ALLOW)
    name = (await gateway.post("/v1/orders", json=order_json(sku, 2))).json()["name"]
    await order_in(gateway, name, "ORDER_STATUS_AWAITING_STOCK")

    await inventory.ReceiveStock(inventory_pb2.ReceiveStockRequest(
        parent=f"fulfilmentNodes/{west}", reference="PO-1001",
        lines=[inventory_pb2.ReceiptLine(sku=sku, quantity=5)]))

    await order_in(gateway, name, "ORDER_STATUS_RELEASED")
    await level_is(inventory, west, sku, (5, 2))
    assert len(await released_to(stack_nats.url, west, name)) == 1
