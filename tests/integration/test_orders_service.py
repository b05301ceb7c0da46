"""The orders service over real gRPC, PostgreSQL and NATS JetStream."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, timedelta
from typing import Any

import grpc
import nats
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from google.protobuf import field_mask_pb2, json_format
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from oms.common.v1 import common_pb2
from oms.fulfilment.v1 import events_pb2 as fulfilment_events
from oms.inventory.v1 import events_pb2 as inventory_events
from oms.inventory.v1 import inventory_pb2
from oms.orders.v1 import events_pb2, orders_pb2, orders_pb2_grpc
from oms.returns.v1 import events_pb2 as returns_events
from oms.shipping.v1 import events_pb2 as shipping_events
from oms_devtools.inprocess import running_service
from oms_devtools.testkit import caught_up, eventually, publish
from oms_orders.app import DEFINITION, MIGRATIONS
from oms_orders.capture import domain as capture_domain
from oms_orders.lifecycle import domain, handlers
from oms_orders.tables import metadata
from oms_platform import filtering
from oms_platform.bus import ensure_stream
from oms_platform.events import subject_for
from oms_platform.migrations import alembic_config
from oms_platform.pagination import encode_page_token
from oms_platform.service import Service
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

OrdersStub = orders_pb2_grpc.OrdersServiceStub
outbox = metadata.tables["outbox"]
orders_table = metadata.tables["orders"]
timeline = metadata.tables["order_timeline"]
dead_letter = metadata.tables["dead_letter"]


@pytest.fixture(scope="module")
def database_url(database_factory: Callable[[str], str]) -> str:
    return database_factory("orders")


@pytest.fixture(scope="module")
async def service(database_url: str, nats_url: str) -> AsyncIterator[Service]:
    async with running_service(
        DEFINITION, MIGRATIONS, database_url=database_url, nats_url=nats_url
    ) as running:
        yield running


@pytest.fixture(scope="module")
async def orders(service: Service) -> AsyncIterator[OrdersStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.bound_port}") as channel:
        yield OrdersStub(channel)


@pytest.fixture(scope="module")
def engine(service: Service) -> AsyncEngine:
    assert service.runtime is not None
    return service.runtime.engine


@pytest.fixture(scope="module")
async def js(nats_url: str) -> AsyncIterator[JetStreamContext]:
    client = await nats.connect(nats_url)
    jetstream = client.jetstream()
    await ensure_stream(jetstream, "inventory")
    yield jetstream
    await client.drain()


def new_request(*, request_id: str = "", **order: Any) -> orders_pb2.CreateOrderRequest:
    fields: dict[str, Any] = {
        "channel": f"shop-{uuid.uuid4().hex[:8]}",
        "external_order_id": f"#{uuid.uuid4().hex[:10]}",
        "customer": orders_pb2.Customer(display_name="Ada Lovelace", email="ada@example.com"),
        "shipping_address": common_pb2.Address(
            recipient="Ada Lovelace",
            address_lines=["12 Marylebone Road"],
            locality="London",
            postal_code="NW1 5LR",
            region_code="GB",
        ),
        "lines": [
            orders_pb2.OrderLine(sku="SKU-MUG", quantity=3,
                                 unit_price=common_pb2.Money(currency_code="EUR", amount="19.99")),
            orders_pb2.OrderLine(sku="SKU-PEN", quantity=1, external_line_id="L2",
                                 unit_price=common_pb2.Money(currency_code="EUR", amount="0.1")),
        ],
        "service_level": orders_pb2.SERVICE_LEVEL_EXPRESS,
        "payment_status": orders_pb2.PAYMENT_STATUS_PAID,
    }
    fields.update(order)
    return orders_pb2.CreateOrderRequest(order=orders_pb2.Order(**fields), request_id=request_id)


async def scalar(engine: AsyncEngine, query: Any) -> Any:
    async with engine.connect() as conn:
        return await conn.scalar(query)


async def outbox_events(engine: AsyncEngine, name: str, event_type: str) -> int:
    return await scalar(  # type: ignore[no-any-return]
        engine,
        select(func.count()).select_from(outbox).where(
            outbox.c.headers["ce-subject"].astext == name,
            outbox.c.headers["ce-type"].astext == event_type,
        ),
    )


async def all_published(engine: AsyncEngine, name: str) -> bool:
    pending = await scalar(
        engine,
        select(func.count()).select_from(outbox).where(
            outbox.c.headers["ce-subject"].astext == name, outbox.c.published_at.is_(None)
        ),
    )
    return bool(pending == 0)


async def timeline_kinds(engine: AsyncEngine, name: str) -> list[str]:
    order_id = uuid.UUID(name.removeprefix("orders/"))
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(timeline.c.kind).where(timeline.c.order_id == order_id).order_by(timeline.c.id)
        )
        return list(rows.scalars())


async def stream_messages(js: JetStreamContext, subject: str, name: str) -> list[Msg]:
    """Every message on ``subject`` about ``name``, read by an ephemeral consumer."""
    consumer = f"test-{uuid.uuid4().hex}"
    config = ConsumerConfig(
        name=consumer,
        ack_policy=AckPolicy.NONE,
        deliver_policy=DeliverPolicy.ALL,
        filter_subject=subject,
        inactive_threshold=30.0,
    )
    await js.add_consumer("OMS_ORDERS", config)
    subscription = await js.pull_subscribe_bind(consumer=consumer, stream="OMS_ORDERS")
    found: list[Msg] = []
    try:
        while True:
            try:
                batch = await subscription.fetch(256, timeout=1.0)
            except TimeoutError:  # nats' own TimeoutError is one too
                break
            found += [m for m in batch if (m.headers or {}).get("ce-subject") == name]
            if batch[-1].metadata.num_pending == 0:
                break
    finally:
        await subscription.unsubscribe()
        await js.delete_consumer("OMS_ORDERS", consumer)
    return found


def allocated(
    order: orders_pb2.Order, node: str = "node-berlin"
) -> inventory_events.StockAllocated:
    return inventory_events.StockAllocated(
        order=order.name,
        allocations=[
            inventory_events.NodeAllocation(
                node_id=node,
                lines=[
                    inventory_events.AllocatedLine(
                        line_id=line.line_id, sku=line.sku, quantity=line.quantity
                    )
                    for line in order.lines
                ],
            )
        ],
    )


def backordered(order: orders_pb2.Order) -> inventory_events.StockBackordered:
    first = order.lines[0]
    return inventory_events.StockBackordered(
        order=order.name,
        lines=[inventory_events.BackorderedLine(
            line_id=first.line_id, sku=first.sku, quantity=first.quantity)],
    )


async def status_of(orders: OrdersStub, name: str) -> orders_pb2.Order:
    order: orders_pb2.Order = await orders.GetOrder(orders_pb2.GetOrderRequest(name=name))
    return order


async def reaches(orders: OrdersStub, name: str, status: int) -> orders_pb2.Order:
    async def probe() -> orders_pb2.Order | None:
        order = await status_of(orders, name)
        return order if order.status == status else None

    return await eventually(probe)


def field_violations(error: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(error)
    assert status is not None
    fields: list[str] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            fields += [v.field for v in bad_request.field_violations]
    return fields


# --- the schema -----------------------------------------------------------------------------


async def test_the_migrations_create_exactly_the_tables_the_code_uses(
    service: Service, database_url: str
) -> None:
    def differences() -> list[Any]:
        sync_engine = create_engine(database_url)
        try:
            with sync_engine.connect() as conn:
                return list(compare_metadata(MigrationContext.configure(conn), metadata))
        finally:
            sync_engine.dispose()

    assert await asyncio.to_thread(differences) == []


def test_the_migrations_downgrade_and_upgrade_again(
    database_factory: Callable[[str], str],
) -> None:
    url = database_factory("orders_migrations")
    config = alembic_config(MIGRATIONS, url)
    command.upgrade(config, "head")
    command.downgrade(config, "base")
    command.upgrade(config, "head")


# --- CreateOrder and GetOrder ---------------------------------------------------------------


async def test_a_created_order_can_be_read_back(orders: OrdersStub) -> None:
    request = new_request()

    created = await orders.CreateOrder(request)

    assert created.name.startswith("orders/")
    uuid.UUID(created.name.removeprefix("orders/"))
    assert created.status == orders_pb2.ORDER_STATUS_PENDING_ALLOCATION
    assert [line.line_id for line in created.lines] == ["1", "2"]
    assert [line.unit_price.amount for line in created.lines] == ["19.99", "0.10"]
    assert created.total == common_pb2.Money(currency_code="EUR", amount="60.07")
    assert created.channel == request.order.channel
    assert created.shipping_address == request.order.shipping_address
    assert created.customer == request.order.customer
    assert created.service_level == orders_pb2.SERVICE_LEVEL_EXPRESS
    assert created.payment_status == orders_pb2.PAYMENT_STATUS_PAID
    assert created.create_time == created.update_time
    assert created.create_time.seconds > 0
    assert list(created.allocations) == []

    assert await status_of(orders, created.name) == created


async def test_get_order_refuses_a_malformed_name_and_reports_a_missing_one(
    orders: OrdersStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as malformed:
        await orders.GetOrder(orders_pb2.GetOrderRequest(name="orders/42"))
    assert malformed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(malformed.value) == ["name"]

    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await orders.GetOrder(orders_pb2.GetOrderRequest(name=f"orders/{uuid.uuid4()}"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_the_same_channel_order_twice_is_one_order_with_one_event(
    orders: OrdersStub, engine: AsyncEngine, js: JetStreamContext
) -> None:
    request = new_request()

    first = await orders.CreateOrder(request)
    second = await orders.CreateOrder(request)

    assert second.name == first.name
    assert await outbox_events(engine, first.name, "oms.orders.v1.OrderCreated") == 1
    await eventually(lambda: all_published(engine, first.name))
    published = await stream_messages(js, subject_for(events_pb2.OrderCreated), first.name)
    assert len(published) == 1


async def test_a_retried_request_id_returns_the_first_order(
    orders: OrdersStub, engine: AsyncEngine
) -> None:
    request_id = str(uuid.uuid4())
    first = await orders.CreateOrder(new_request(request_id=request_id))

    # A retry carries the same key; even a changed payload gets the first result.
    retried = await orders.CreateOrder(new_request(request_id=request_id))

    assert retried.name == first.name
    assert retried.external_order_id == first.external_order_id
    assert await outbox_events(engine, first.name, "oms.orders.v1.OrderCreated") == 1


@pytest.mark.parametrize("request_id", ["", "idempotency-key"])
async def test_concurrent_identical_creates_make_one_order(
    orders: OrdersStub, engine: AsyncEngine, request_id: str
) -> None:
    request = new_request(request_id=f"{request_id}-{uuid.uuid4()}" if request_id else "")

    results = await asyncio.gather(*(orders.CreateOrder(request) for _ in range(20)))

    assert len({order.name for order in results}) == 1
    stored = await scalar(
        engine,
        select(func.count()).select_from(orders_table).where(
            orders_table.c.channel == request.order.channel),
    )
    assert stored == 1
    assert await outbox_events(engine, results[0].name, "oms.orders.v1.OrderCreated") == 1


def _no_lines(request: orders_pb2.CreateOrderRequest) -> None:
    del request.order.lines[:]


def _zero_quantity(request: orders_pb2.CreateOrderRequest) -> None:
    request.order.lines[0].quantity = 0


def _unknown_currency(request: orders_pb2.CreateOrderRequest) -> None:
    for line in request.order.lines:
        line.unit_price.currency_code = "XXY"


def _negative_price(request: orders_pb2.CreateOrderRequest) -> None:
    request.order.lines[1].unit_price.amount = "-0.10"


def _too_many_fraction_digits(request: orders_pb2.CreateOrderRequest) -> None:
    request.order.lines[0].unit_price.amount = "19.999"


def _address_fields_missing(request: orders_pb2.CreateOrderRequest) -> None:
    address = request.order.shipping_address
    address.recipient = ""
    del address.address_lines[:]
    address.postal_code = ""
    address.region_code = "ZZ"


def _no_address(request: orders_pb2.CreateOrderRequest) -> None:
    request.order.ClearField("shipping_address")


def _unknown_service_level(request: orders_pb2.CreateOrderRequest) -> None:
    request.order.service_level = 42  # type: ignore[assignment]


def _quantities_beyond_32_bits(request: orders_pb2.CreateOrderRequest) -> None:
    for line in request.order.lines:
        line.quantity = 2**31 - 1  # together beyond what an int32 item count holds


def _too_many_lines(request: orders_pb2.CreateOrderRequest) -> None:
    line = request.order.lines[0]
    request.order.lines.extend([line] * domain.MAX_LINES)


def _too_many_tags_and_address_lines(request: orders_pb2.CreateOrderRequest) -> None:
    request.order.tags.extend(f"tag-{n}" for n in range(domain.MAX_TAGS + 1))
    request.order.shipping_address.address_lines.extend(["more"] * capture_domain.MAX_ADDRESS_LINES)


def _text_postgres_cannot_store(request: orders_pb2.CreateOrderRequest) -> None:
    request.order.customer.display_name = "Ada\x00"
    request.order.lines[0].external_line_id = "L\x00"
    request.order.shipping_address.locality = "L" * (capture_domain.MAX_TEXT_LENGTH + 1)


def _not_a_place(request: orders_pb2.CreateOrderRequest) -> None:
    request.order.shipping_address.location.latitude = float("nan")
    request.order.shipping_address.location.longitude = 181.0


def _beyond_the_calendar(request: orders_pb2.CreateOrderRequest) -> None:
    request.order.order_time.seconds = 253402300800  # 10000-01-01


def _everything_at_once(request: orders_pb2.CreateOrderRequest) -> None:
    request.order.channel = ""
    request.order.lines[0].quantity = 0
    request.order.shipping_address.locality = ""
    request.request_id = "k" * 101


@pytest.mark.parametrize(
    ("mutate", "fields"),
    [
        (_no_lines, ["order.lines"]),
        (_zero_quantity, ["order.lines[0].quantity"]),
        (_unknown_currency, ["order.lines[0].unit_price.currency_code",
                             "order.lines[1].unit_price.currency_code"]),
        (_negative_price, ["order.lines[1].unit_price.amount"]),
        (_too_many_fraction_digits, ["order.lines[0].unit_price.amount"]),
        (_address_fields_missing, ["order.shipping_address.recipient",
                                   "order.shipping_address.address_lines[0]",
                                   "order.shipping_address.postal_code",
                                   "order.shipping_address.region_code"]),
        (_no_address, ["order.shipping_address"]),
        (_unknown_service_level, ["order.service_level"]),
        (_quantities_beyond_32_bits, ["order.lines[0].quantity", "order.lines[1].quantity"]),
        (_too_many_lines, ["order.lines"]),
        (_too_many_tags_and_address_lines, ["order.shipping_address.address_lines",
                                            "order.tags"]),
        (_text_postgres_cannot_store, ["order.lines[0].external_line_id",
                                       "order.shipping_address.locality",
                                       "order.customer.display_name"]),
        (_not_a_place, ["order.shipping_address.location.latitude",
                        "order.shipping_address.location.longitude"]),
        (_beyond_the_calendar, ["order.order_time"]),
        (_everything_at_once, ["order.channel", "order.lines[0].quantity",
                               "order.shipping_address.locality", "request_id"]),
    ],
)
async def test_an_invalid_order_is_refused_with_its_field_violations_and_not_stored(
    orders: OrdersStub,
    engine: AsyncEngine,
    mutate: Callable[[orders_pb2.CreateOrderRequest], None],
    fields: list[str],
) -> None:
    request = new_request()
    mutate(request)
    events_before = await scalar(engine, select(func.count()).select_from(outbox))

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await orders.CreateOrder(request)

    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(refused.value) == fields
    stored = await scalar(
        engine,
        select(func.count()).select_from(orders_table).where(
            orders_table.c.external_order_id == request.order.external_order_id),
    )
    assert stored == 0
    assert await scalar(engine, select(func.count()).select_from(outbox)) == events_before


# --- events out -----------------------------------------------------------------------------


async def test_order_created_is_published_as_a_cloudevent(
    orders: OrdersStub, engine: AsyncEngine, js: JetStreamContext
) -> None:
    created = await orders.CreateOrder(new_request())

    await eventually(lambda: all_published(engine, created.name))
    [message] = await stream_messages(js, "oms.orders.order_created", created.name)

    headers = message.headers or {}
    assert message.subject == "oms.orders.order_created"
    uuid.UUID(headers["ce-id"])
    assert headers["Nats-Msg-Id"] == headers["ce-id"]
    assert headers["ce-type"] == "oms.orders.v1.OrderCreated"
    assert headers["ce-source"] == "/oms/orders"
    assert headers["ce-subject"] == created.name
    assert headers["ce-time"].endswith("Z")
    assert headers["ce-specversion"] == "1.0"
    assert headers["ce-datacontenttype"] == "application/json"
    event = json_format.Parse(message.data, events_pb2.OrderCreated())
    assert event.order == created.name
    assert event.channel == created.channel
    assert event.external_order_id == created.external_order_id
    assert list(event.lines) == list(created.lines)
    assert event.shipping_address == created.shipping_address
    assert event.create_time == created.create_time


# --- events in ------------------------------------------------------------------------------


async def test_a_paid_order_is_allocated_once_and_released_to_its_node(
    orders: OrdersStub, engine: AsyncEngine, js: JetStreamContext
) -> None:
    created = await orders.CreateOrder(new_request())
    event = allocated(created)
    event_id = uuid.uuid4()

    await publish(js, event, event_id=event_id)
    order = await reaches(orders, created.name, orders_pb2.ORDER_STATUS_RELEASED)

    assert [(a.node_id, [(x.line_id, x.sku, x.quantity) for x in a.lines])
            for a in order.allocations] == [
        ("node-berlin", [("1", "SKU-MUG", 3), ("2", "SKU-PEN", 1)])]
    assert order.update_time.ToDatetime() > order.create_time.ToDatetime()

    # The same event again: JetStream drops the copy; a copy past its duplicate window (a
    # new message id, the same ce-id) is found in the inbox. Neither changes anything.
    duplicate = await publish(js, event, event_id=event_id)
    assert duplicate.ack.duplicate
    await caught_up(js, "orders",
                    await publish(js, event, event_id=event_id, msg_id=str(uuid.uuid4())))
    # A second, different allocation of an allocated order counts nothing either.
    await caught_up(js, "orders", await publish(js, allocated(created, "node-paris")))

    assert await status_of(orders, created.name) == order
    assert await timeline_kinds(engine, created.name) == [
        "created", "stock_allocated", "allocated", "released"]
    assert await outbox_events(engine, created.name, "oms.orders.v1.OrderStatusChanged") == 2
    await eventually(lambda: all_published(engine, created.name))
    [message] = await stream_messages(js, "oms.orders.order_released.node-berlin", created.name)
    release = json_format.Parse(message.data, events_pb2.OrderReleased())
    assert release.node_id == "node-berlin"
    assert list(release.orders) == [created.name]
    assert [(x.order, x.line_id, x.sku, x.quantity, x.external_line_id)
            for x in release.lines] == [(created.name, "1", "SKU-MUG", 3, ""),
                                        (created.name, "2", "SKU-PEN", 1, "L2")]
    assert release.priority  # express
    assert release.shipping_address == created.shipping_address


async def test_a_backordered_order_is_released_when_stock_arrives(
    orders: OrdersStub, engine: AsyncEngine, js: JetStreamContext
) -> None:
    created = await orders.CreateOrder(new_request())

    await publish(js, backordered(created))
    waiting = await reaches(orders, created.name, orders_pb2.ORDER_STATUS_AWAITING_STOCK)
    assert list(waiting.allocations) == []
    assert waiting.lines[0].backordered_quantity == 3

    await publish(js, allocated(created))
    order = await reaches(orders, created.name, orders_pb2.ORDER_STATUS_RELEASED)

    assert len(order.allocations) == 1
    assert order.lines[0].backordered_quantity == 0
    assert await timeline_kinds(engine, created.name) == [
        "created", "stock_backordered", "awaiting_stock", "stock_allocated", "allocated",
        "released"]
    await eventually(lambda: all_published(engine, created.name))
    changes = []
    for message in await stream_messages(
        js, subject_for(events_pb2.OrderStatusChanged), created.name
    ):
        change = json_format.Parse(message.data, events_pb2.OrderStatusChanged())
        changes.append((change.previous_status, change.status))
    assert changes == [
        (orders_pb2.ORDER_STATUS_PENDING_ALLOCATION, orders_pb2.ORDER_STATUS_AWAITING_STOCK),
        (orders_pb2.ORDER_STATUS_AWAITING_STOCK, orders_pb2.ORDER_STATUS_ALLOCATED),
        (orders_pb2.ORDER_STATUS_ALLOCATED, orders_pb2.ORDER_STATUS_RELEASED),
    ]


async def test_a_late_backorder_leaves_a_released_order_released(
    orders: OrdersStub, engine: AsyncEngine, js: JetStreamContext
) -> None:
    created = await orders.CreateOrder(new_request())
    await publish(js, allocated(created))
    order = await reaches(orders, created.name, orders_pb2.ORDER_STATUS_RELEASED)

    await caught_up(js, "orders", await publish(js, backordered(created)))

    assert await status_of(orders, created.name) == order
    assert await timeline_kinds(engine, created.name) == [
        "created", "stock_allocated", "allocated", "released"]


async def test_events_for_unknown_orders_are_acknowledged_and_ignored(
    engine: AsyncEngine, js: JetStreamContext
) -> None:
    for name in [f"orders/{uuid.uuid4()}", "not-an-order"]:
        for event in (inventory_events.StockAllocated(order=name),
                      inventory_events.StockBackordered(order=name)):
            await caught_up(js, "orders", await publish(js, event))

    assert await scalar(engine, select(func.count()).select_from(dead_letter)) == 0


# --- the lifecycle ---------------------------------------------------------------------------


def capture(transaction_id: str, amount: str = "60.07") -> orders_pb2.PaymentTransaction:
    return orders_pb2.PaymentTransaction(
        transaction_id=transaction_id, kind=orders_pb2.PAYMENT_KIND_CAPTURE,
        amount=common_pb2.Money(currency_code="EUR", amount=amount), provider="stripe")


async def published(js: JetStreamContext, engine: AsyncEngine, subject: str, name: str,
                    message_type: type[Any]) -> list[Any]:
    await eventually(lambda: all_published(engine, name))
    return [json_format.Parse(m.data, message_type())
            for m in await stream_messages(js, subject, name)]


async def test_an_unpaid_order_is_released_only_once_paid(
    orders: OrdersStub, engine: AsyncEngine, js: JetStreamContext
) -> None:
    created = await orders.CreateOrder(
        new_request(payment_status=orders_pb2.PAYMENT_STATUS_PENDING))
    assert created.status == orders_pb2.ORDER_STATUS_PAYMENT_PENDING
    assert created.payment_due_time.ToDatetime() > created.create_time.ToDatetime()

    await caught_up(js, "orders", await publish(js, allocated(created)))
    waiting = await status_of(orders, created.name)
    assert waiting.status == orders_pb2.ORDER_STATUS_PAYMENT_PENDING
    assert waiting.lines[0].allocated_quantity == 3

    paid = await orders.RecordPayment(orders_pb2.RecordPaymentRequest(
        name=created.name, payment=capture("ch_1")))
    assert paid.status == orders_pb2.ORDER_STATUS_RELEASED
    assert paid.payment_status == orders_pb2.PAYMENT_STATUS_PAID
    again = await orders.RecordPayment(orders_pb2.RecordPaymentRequest(
        name=created.name, payment=capture("ch_1")))
    assert again == paid
    [event] = await published(js, engine, "oms.orders.order_paid", created.name,
                              events_pb2.OrderPaid)
    assert event.payment_status == orders_pb2.PAYMENT_STATUS_PAID
    assert len(await stream_messages(js, "oms.orders.order_released.node-berlin",
                                     created.name)) == 1


async def test_an_order_is_paid_only_when_its_captures_cover_its_total(
    orders: OrdersStub, engine: AsyncEngine, js: JetStreamContext
) -> None:
    created = await orders.CreateOrder(
        new_request(payment_status=orders_pb2.PAYMENT_STATUS_PENDING))
    await caught_up(js, "orders", await publish(js, allocated(created)))

    for refused in ("0", "-1.00"):
        with pytest.raises(grpc.aio.AioRpcError) as nothing:
            await orders.RecordPayment(orders_pb2.RecordPaymentRequest(
                name=created.name, payment=capture(f"nothing-{refused}", refused)))
        assert nothing.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(nothing.value) == ["payment.amount.amount"]
    dollars = capture("usd")
    dollars.amount.currency_code = "USD"
    with pytest.raises(grpc.aio.AioRpcError) as other_currency:
        await orders.RecordPayment(orders_pb2.RecordPaymentRequest(name=created.name,
                                                                   payment=dollars))
    assert other_currency.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(other_currency.value) == ["payment.amount.currency_code"]

    part = await orders.RecordPayment(orders_pb2.RecordPaymentRequest(
        name=created.name, payment=capture("part-1", "60.00")))
    assert part.status == orders_pb2.ORDER_STATUS_PAYMENT_PENDING
    assert part.payment_status == orders_pb2.PAYMENT_STATUS_PENDING
    assert [p.transaction_id for p in part.payments] == ["part-1"]

    rest = await orders.RecordPayment(orders_pb2.RecordPaymentRequest(
        name=created.name, payment=capture("part-2", "0.07")))
    assert rest.status == orders_pb2.ORDER_STATUS_RELEASED
    assert rest.payment_status == orders_pb2.PAYMENT_STATUS_PAID
    assert await outbox_events(engine, created.name, "oms.orders.v1.OrderPaid") == 1
    assert await outbox_events(engine, created.name, "oms.orders.v1.OrderReleased") == 1

    refund = orders_pb2.PaymentTransaction(
        transaction_id="too-much", kind=orders_pb2.PAYMENT_KIND_REFUND,
        amount=common_pb2.Money(currency_code="EUR", amount="60.08"))
    with pytest.raises(grpc.aio.AioRpcError) as too_much:
        await orders.RecordPayment(orders_pb2.RecordPaymentRequest(name=created.name,
                                                                   payment=refund))
    assert too_much.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_a_held_order_is_released_when_its_hold_is_lifted(
    orders: OrdersStub, js: JetStreamContext
) -> None:
    created = await orders.CreateOrder(new_request())
    held = await orders.HoldOrder(orders_pb2.HoldOrderRequest(
        name=created.name, reason="fraud check"), metadata=(("oms-actor", "alice"),))
    assert held.status == orders_pb2.ORDER_STATUS_ON_HOLD
    assert (held.holds[0].reason, held.holds[0].placed_by) == ("fraud check", "alice")

    await caught_up(js, "orders", await publish(js, allocated(created)))
    assert (await status_of(orders, created.name)).status == orders_pb2.ORDER_STATUS_ON_HOLD

    lifted = await orders.ReleaseHold(orders_pb2.ReleaseHoldRequest(name=created.name))
    assert lifted.status == orders_pb2.ORDER_STATUS_RELEASED
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await orders.HoldOrder(orders_pb2.HoldOrderRequest(name=created.name, reason="late"))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_cancelling_publishes_the_cancelled_units_and_is_refused_once_shipped(
    orders: OrdersStub, engine: AsyncEngine, js: JetStreamContext
) -> None:
    created = await orders.CreateOrder(new_request())
    await publish(js, allocated(created))
    await reaches(orders, created.name, orders_pb2.ORDER_STATUS_RELEASED)

    request = orders_pb2.CancelOrderRequest(
        name=created.name, lines=[orders_pb2.CancelLineRequest(line_id="1", quantity=2)],
        reason="customer request", request_id=str(uuid.uuid4()))
    cancelled = await orders.CancelOrder(request)
    assert await orders.CancelOrder(request) == cancelled  # a retry changes nothing
    assert cancelled.lines[0].cancelled_quantity == 2
    assert cancelled.status == orders_pb2.ORDER_STATUS_RELEASED
    [event] = await published(js, engine, "oms.orders.order_cancelled", created.name,
                              events_pb2.OrderCancelled)
    assert [(x.line_id, x.sku, x.quantity) for x in event.lines] == [("1", "SKU-MUG", 2)]
    assert not event.whole_order
    assert event.reason == "customer request"

    package = fulfilment_events.PackageShipped(
        package=f"packages/{uuid.uuid4()}", node_id="node-berlin", carrier="ups",
        tracking_number="1Z999", tracking_url="https://track.example/1Z999",
        lines=[fulfilment_events.ShippedLine(order=created.name, line_id="1", sku="SKU-MUG",
                                             quantity=1)])
    await publish(js, package, aggregate_id=created.name)
    await publish(js, package, aggregate_id=created.name)  # a new id, the same package
    shipped = await reaches(orders, created.name, orders_pb2.ORDER_STATUS_PARTIALLY_SHIPPED)
    assert shipped.lines[0].shipped_quantity == 1
    assert shipped.shipments[0].tracking_number == "1Z999"

    with pytest.raises(grpc.aio.AioRpcError) as whole:
        await orders.CancelOrder(orders_pb2.CancelOrderRequest(name=created.name))
    assert whole.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.aio.AioRpcError) as shipped_line:
        await orders.CancelOrder(orders_pb2.CancelOrderRequest(
            name=created.name, lines=[orders_pb2.CancelLineRequest(line_id="1", quantity=1)]))
    assert shipped_line.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    rest = await orders.CancelOrder(orders_pb2.CancelOrderRequest(
        name=created.name, lines=[orders_pb2.CancelLineRequest(line_id="2")]))
    assert rest.status == orders_pb2.ORDER_STATUS_SHIPPED


async def test_an_unpaid_order_is_cancelled_when_its_payment_is_overdue(
    service: Service, orders: OrdersStub, engine: AsyncEngine, js: JetStreamContext
) -> None:
    created = await orders.CreateOrder(
        new_request(payment_status=orders_pb2.PAYMENT_STATUS_PENDING))
    await orders.RecordPayment(orders_pb2.RecordPaymentRequest(
        name=created.name, payment=orders_pb2.PaymentTransaction(
            transaction_id="declined-1", kind=orders_pb2.PAYMENT_KIND_FAILURE)))
    assert (await status_of(orders, created.name)).status == (
        orders_pb2.ORDER_STATUS_PAYMENT_PENDING)  # the customer may still retry

    assert service.runtime is not None
    later = created.payment_due_time.ToDatetime(tzinfo=UTC) + timedelta(seconds=1)
    assert await handlers.cancel_overdue_payments(service.runtime.sessions, later) >= 1

    assert (await status_of(orders, created.name)).status == orders_pb2.ORDER_STATUS_CANCELLED
    [event] = await published(js, engine, "oms.orders.order_cancelled", created.name,
                              events_pb2.OrderCancelled)
    assert event.whole_order and event.reason == "payment not received in time"
    assert [(x.line_id, x.quantity) for x in event.lines] == [("1", 3), ("2", 1)]


async def test_the_payment_sweep_locks_orders_in_id_order_like_the_handlers(
    service: Service, orders: OrdersStub, engine: AsyncEngine
) -> None:
    """A merged pair, the paid order with the lower id and the overdue one with the higher.
    A handler locks the group in id order; the sweep must too, or each holds what the other
    waits for. Here the test is the handler, with the sweep caught between its two locks."""
    while True:
        paid = await orders.CreateOrder(new_request())
        overdue = await orders.CreateOrder(
            new_request(payment_status=orders_pb2.PAYMENT_STATUS_PENDING))
        low, high = (uuid.UUID(o.name.removeprefix("orders/")) for o in (paid, overdue))
        if low < high:
            break
    await orders.MergeOrders(orders_pb2.MergeOrdersRequest(names=[paid.name, overdue.name]))
    assert service.runtime is not None
    later = overdue.payment_due_time.ToDatetime(tzinfo=UTC) + timedelta(seconds=1)

    def lock(order_id: uuid.UUID) -> Any:
        return select(orders_table.c.id).where(orders_table.c.id == order_id).with_for_update()

    async with engine.connect() as handler:
        await handler.begin()
        handler_pid = await handler.scalar(text("SELECT pg_backend_pid()"))
        await handler.execute(lock(low))
        sweep = asyncio.create_task(
            handlers.cancel_overdue_payments(service.runtime.sessions, later, limit=1000))

        async def sweep_waits_for_the_handler() -> bool:
            blocked = await scalar(engine, text(
                "SELECT count(*) FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))"
            ).bindparams(pid=handler_pid))
            return bool(blocked)

        await eventually(sweep_waits_for_the_handler)
        await handler.execute(lock(high))  # a deadlock if the sweep already holds it
        await handler.rollback()
    assert await asyncio.wait_for(sweep, timeout=30) >= 1

    assert (await status_of(orders, overdue.name)).status == orders_pb2.ORDER_STATUS_CANCELLED
    assert (await status_of(orders, paid.name)).status == orders_pb2.ORDER_STATUS_PENDING_ALLOCATION


async def test_merged_orders_of_one_customer_are_released_together(
    orders: OrdersStub, engine: AsyncEngine, js: JetStreamContext
) -> None:
    unpaid = orders_pb2.PAYMENT_STATUS_PENDING
    first = await orders.CreateOrder(new_request(payment_status=unpaid))
    second = await orders.CreateOrder(new_request(payment_status=unpaid))  # another channel
    for order in (first, second):
        await caught_up(js, "orders", await publish(js, allocated(order)))

    merged = await orders.MergeOrders(orders_pb2.MergeOrdersRequest(
        names=[first.name, second.name]))
    assert [list(o.merged_orders) for o in merged.orders] == [[second.name], [first.name]]
    listed = await orders.ListOrders(orders_pb2.ListOrdersRequest(
        filter=f'merged = true AND channel = "{second.channel}"'))
    assert [(o.name, list(o.merged_orders)) for o in listed.orders] == [
        (second.name, [first.name])]

    await orders.RecordPayment(orders_pb2.RecordPaymentRequest(
        name=first.name, payment=capture("a")))
    assert (await status_of(orders, first.name)).status == orders_pb2.ORDER_STATUS_ALLOCATED
    await orders.RecordPayment(orders_pb2.RecordPaymentRequest(
        name=second.name, payment=capture("b")))
    for order in (first, second):
        assert (await status_of(orders, order.name)).status == orders_pb2.ORDER_STATUS_RELEASED
    [release] = await published(js, engine, "oms.orders.order_released.node-berlin",
                                first.name, events_pb2.OrderReleased)
    assert sorted(release.orders) == sorted([first.name, second.name])
    assert {x.order for x in release.lines} == {first.name, second.name}

    other = await orders.CreateOrder(new_request(customer=orders_pb2.Customer(
        email="someone-else@example.com")))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await orders.MergeOrders(orders_pb2.MergeOrdersRequest(names=[other.name, first.name]))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_a_merge_names_a_bounded_number_of_orders_and_a_shipment_stays_bounded(
    orders: OrdersStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as too_many:
        await orders.MergeOrders(orders_pb2.MergeOrdersRequest(
            names=[f"orders/{uuid.uuid4()}" for _ in range(domain.MAX_MERGE_ORDERS + 1)]))
    assert too_many.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(too_many.value) == ["names"]

    batch = await orders.BatchCreateOrders(orders_pb2.BatchCreateOrdersRequest(requests=[
        new_request(payment_status=orders_pb2.PAYMENT_STATUS_PENDING)
        for _ in range(domain.MAX_MERGE_ORDERS + 1)]))
    names = [result.order.name for result in batch.results]
    await orders.MergeOrders(orders_pb2.MergeOrdersRequest(names=names[:-1]))
    with pytest.raises(grpc.aio.AioRpcError) as full:
        await orders.MergeOrders(orders_pb2.MergeOrdersRequest(names=[names[0], names[-1]]))
    assert full.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert not (await status_of(orders, names[-1])).merged_orders


Command = Callable[[OrdersStub, str], Awaitable[Any]]
COMMANDS_REFUSED: dict[str, tuple[Command, list[str]]] = {
    "cancel-too-many-lines": (lambda stub, name: stub.CancelOrder(orders_pb2.CancelOrderRequest(
        name=name, lines=[orders_pb2.CancelLineRequest(line_id="1", quantity=1)]
        * (domain.MAX_LINES + 1))), ["lines"]),
    "hold-reason-nul": (lambda stub, name: stub.HoldOrder(orders_pb2.HoldOrderRequest(
        name=name, reason="why\x00")), ["reason"]),
    "hold-request-id-nul": (lambda stub, name: stub.HoldOrder(orders_pb2.HoldOrderRequest(
        name=name, reason="fraud", request_id="k\x00")), ["request_id"]),
    "payment-id-nul": (lambda stub, name: stub.RecordPayment(orders_pb2.RecordPaymentRequest(
        name=name, payment=orders_pb2.PaymentTransaction(
            transaction_id="t\x00", kind=orders_pb2.PAYMENT_KIND_FAILURE))),
        ["payment.transaction_id"]),
    "payment-time-beyond-calendar": (lambda stub, name: stub.RecordPayment(
        orders_pb2.RecordPaymentRequest(name=name, payment=orders_pb2.PaymentTransaction(
            transaction_id="t", kind=orders_pb2.PAYMENT_KIND_FAILURE,
            transaction_time={"seconds": -62135596801}))), ["payment.transaction_time"]),
    "update-tag-nul": (lambda stub, name: stub.UpdateOrder(orders_pb2.UpdateOrderRequest(
        order=orders_pb2.Order(name=name, tags=["a\x00"]),
        update_mask=field_mask_pb2.FieldMask(paths=["tags"]))), ["order.tags[0]"]),
    "update-mask-too-long": (lambda stub, name: stub.UpdateOrder(orders_pb2.UpdateOrderRequest(
        order=orders_pb2.Order(name=name),
        update_mask=field_mask_pb2.FieldMask(paths=["tags"] * 5))), ["update_mask"]),
}


@pytest.mark.parametrize("case", sorted(COMMANDS_REFUSED))
async def test_commands_refuse_what_cannot_be_stored_and_change_nothing(
    orders: OrdersStub, case: str,
) -> None:
    created = await orders.CreateOrder(new_request())
    call, fields = COMMANDS_REFUSED[case]

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call(orders, created.name)

    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(refused.value) == fields
    assert await status_of(orders, created.name) == created


async def test_a_batch_of_allocations_releases_each_order_once_and_merged_orders_together(
    orders: OrdersStub, engine: AsyncEngine, service: Service
) -> None:
    """The consumer's batch mode hands a whole fetch of StockAllocated to one transaction:
    single orders, a merged pair and a duplicate copy end as they would one by one."""
    single = [await orders.CreateOrder(new_request()) for _ in range(3)]
    unpaid = orders_pb2.PAYMENT_STATUS_PENDING
    first = await orders.CreateOrder(new_request(payment_status=unpaid))
    second = await orders.CreateOrder(new_request(payment_status=unpaid))
    await orders.MergeOrders(orders_pb2.MergeOrdersRequest(names=[first.name, second.name]))
    for order in (first, second):
        await orders.RecordPayment(orders_pb2.RecordPaymentRequest(
            name=order.name, payment=capture(f"batch-{order.name}")))
    unknown = f"orders/{uuid.uuid4()}"

    batch = [allocated(o) for o in (*single, first, second)]
    batch.insert(1, allocated(single[0]))  # a copy under another event id
    batch.append(inventory_events.StockAllocated(order=unknown))
    assert service.runtime is not None
    async with service.runtime.sessions.begin() as session:
        await handlers.on_stocks_allocated(session, batch)

    for order in (*single, first, second):
        got = await status_of(orders, order.name)
        assert got.status == orders_pb2.ORDER_STATUS_RELEASED, order.name
        assert [line.quantity for a in got.allocations for line in a.lines] == [3, 1]
    for order in single:
        assert await outbox_events(engine, order.name, "oms.orders.v1.OrderReleased") == 1
    # The merged pair: one release, under the order the other joined, carrying both.
    assert await outbox_events(engine, first.name, "oms.orders.v1.OrderReleased") == 1
    assert await outbox_events(engine, second.name, "oms.orders.v1.OrderReleased") == 0


async def test_orders_are_searched_by_filters_and_counted_per_status(
    orders: OrdersStub,
) -> None:
    channel = f"search-{uuid.uuid4().hex[:8]}"
    made = []
    for region, tags in [("DE", ["vip"]), ("DE", []), ("FR", ["vip"])]:
        request = new_request(channel=channel, tags=tags,
                              payment_status=orders_pb2.PAYMENT_STATUS_PENDING)
        request.order.shipping_address.region_code = region
        made.append(await orders.CreateOrder(request))

    async def names(filter_: str) -> list[str]:
        found: list[str] = []
        token = ""
        while True:
            page = await orders.ListOrders(orders_pb2.ListOrdersRequest(
                filter=filter_, page_size=1, page_token=token))
            found += [o.name for o in page.orders]
            token = page.next_page_token
            if not token:
                return found

    newest_first = [o.name for o in reversed(made)]
    assert await names(f'channel = "{channel}"') == newest_first
    assert await names(f'channel = "{channel}" AND region_code = DE') == newest_first[1:]
    assert await names(f'channel = "{channel}" AND tags:vip') == [made[2].name, made[0].name]
    assert await names(f'channel = "{channel}" AND item_count >= 4 AND status = '
                       "PAYMENT_PENDING") == newest_first
    assert await names(f'channel = "{channel}" AND "{made[1].external_order_id}"') == [
        made[1].name]
    assert await names(f'channel = "{channel}" AND sku = SKU-NONE') == []

    counts = await orders.CountOrders(orders_pb2.CountOrdersRequest(
        filter=f'channel = "{channel}"'))
    assert (counts.payment_required, counts.total) == (3, 3)

    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await orders.ListOrders(orders_pb2.ListOrdersRequest(filter="colour = red"))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(bad.value) == ["filter"]


MALFORMED_FILTERS = {
    "unknown-escape": 'sku = "\\x"',
    "unterminated-string": 'sku = "SKU-MUG',
    "unknown-field": "colour = red",
    "wrong-type-bool": "priority = maybe",
    "wrong-type-time": "create_time > 5",
    "wrong-type-number": "item_count > many",
    "not-a-time": 'create_time > "2025-13-01T00:00:00Z"',
    "time-without-offset": 'create_time > "2025-11-01T00:00:00"',
    "digits-of-another-script": "item_count > \u0663",
    "number-beyond-range": "item_count > 99999999999999999999",
    "nul-in-value": 'sku = "SKU\x00"',
    "nul-in-text-search": '"Ada\x00"',
    "dangling-and": "status = RELEASED AND",
    "or": "status = RELEASED OR status = SHIPPED",
    "operator-without-field": "= RELEASED",
    "too-long": '"' + "x" * filtering.MAX_FILTER_LENGTH + '"',
    "too-many-terms": " AND ".join(["priority = true"] * (filtering.MAX_FILTER_TERMS + 1)),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_FILTERS))
async def test_a_malformed_filter_is_invalid_argument_on_filter(
    orders: OrdersStub, case: str,
) -> None:
    expression = MALFORMED_FILTERS[case]
    for call in (orders.ListOrders(orders_pb2.ListOrdersRequest(filter=expression)),
                 orders.CountOrders(orders_pb2.CountOrdersRequest(filter=expression))):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(refused.value) == ["filter"]


async def test_a_number_beyond_32_bits_is_compared_not_refused(orders: OrdersStub) -> None:
    for expression in ("item_count < -9999999999", "weight_grams > 999999999999999999"):
        listed = await orders.ListOrders(orders_pb2.ListOrdersRequest(filter=expression))
        assert list(listed.orders) == []
        counted = await orders.CountOrders(orders_pb2.CountOrdersRequest(filter=expression))
        assert counted.total == 0


@pytest.mark.parametrize("after", [
    [1, 2], ["2026-01-01T00:00:00+00:00", 5], ["2026-01-01T00:00:00+00:00"], [None, None],
    [{"a": 1}, "b"], ["yesterday", str(uuid.uuid4())],
], ids=["numbers", "number-id", "short", "nulls", "object", "not-a-time"])
async def test_a_page_token_this_list_did_not_issue_is_invalid_argument(
    orders: OrdersStub, after: list[Any],
) -> None:
    for token in (encode_page_token(after, {"filter": ""}), "not a token", "e30"):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await orders.ListOrders(orders_pb2.ListOrdersRequest(page_token=token))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(refused.value) == ["page_token"]


async def test_a_batch_import_creates_each_valid_order_once(orders: OrdersStub) -> None:
    good, bad = new_request(), new_request(request_id="k" * 101)
    bad.order.lines[0].quantity = 0

    response = await orders.BatchCreateOrders(orders_pb2.BatchCreateOrdersRequest(
        requests=[good, bad, good]))

    first, refused, again = response.results
    assert first.order.name and again.order.name == first.order.name
    assert refused.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    [_, details] = refused.error.details
    bad_request = error_details_pb2.BadRequest()
    assert details.Unpack(bad_request)
    assert [v.field for v in bad_request.field_violations] == [
        "requests[1].order.lines[0].quantity", "requests[1].request_id"]

    with pytest.raises(grpc.aio.AioRpcError) as too_many:
        await orders.BatchCreateOrders(orders_pb2.BatchCreateOrdersRequest(
            requests=[good] * (capture_domain.MAX_BATCH_ORDERS + 1)))
    assert field_violations(too_many.value) == ["requests"]


async def test_overlapping_imports_in_opposite_orders_both_succeed(
    orders: OrdersStub, engine: AsyncEngine
) -> None:
    """Two imports of the same orders, one in reverse: inserted in request order they would
    wait for each other's rows (a deadlock, 40P01) as soon as both had started."""
    for _ in range(3):
        requests = [new_request(request_id=str(uuid.uuid4())) for _ in range(30)]

        forward, backward = await asyncio.gather(*(
            orders.BatchCreateOrders(orders_pb2.BatchCreateOrdersRequest(requests=batch))
            for batch in (requests, requests[::-1])))

        names = [result.order.name for result in forward.results]
        assert all(names) and len(set(names)) == len(requests)
        assert [result.order.name for result in backward.results] == names[::-1]
        assert [result.order.external_order_id for result in forward.results] == [
            request.order.external_order_id for request in requests]
        stored = await scalar(engine, select(func.count()).select_from(orders_table).where(
            orders_table.c.request_id.in_([r.request_id for r in requests])))
        assert stored == len(requests)


async def test_an_order_is_followed_from_shipment_to_refund(
    orders: OrdersStub, engine: AsyncEngine, js: JetStreamContext
) -> None:
    created = await orders.CreateOrder(new_request())
    await publish(js, allocated(created))
    await reaches(orders, created.name, orders_pb2.ORDER_STATUS_RELEASED)
    shipped = fulfilment_events.PackageShipped(
        package=f"packages/{uuid.uuid4()}", node_id="node-berlin", carrier="dhl",
        tracking_number="JD0001", tracking_url="https://track.example/JD0001",
        lines=[fulfilment_events.ShippedLine(order=created.name, line_id=line.line_id,
                                             sku=line.sku, quantity=line.quantity)
               for line in created.lines])
    await publish(js, shipped, aggregate_id=created.name)
    await reaches(orders, created.name, orders_pb2.ORDER_STATUS_SHIPPED)

    await publish(js, shipping_events.DeliveryException(
        package=shipped.package, orders=[created.name], carrier="dhl",
        description="address not found"), aggregate_id=created.name)

    async def exception_recorded() -> bool:
        full = await orders.GetOrder(orders_pb2.GetOrderRequest(
            name=created.name, view=orders_pb2.ORDER_VIEW_FULL))
        return "delivery_exception" in [entry.kind for entry in full.timeline]

    # Events of one order published back to back may be handled in either order (a fetch's
    # events run concurrently); the timeline below expects the carrier's report first.
    await eventually(exception_recorded)
    await publish(js, shipping_events.ShipmentDelivered(
        package=shipped.package, orders=[created.name], carrier="dhl"), aggregate_id=created.name)
    delivered = await reaches(orders, created.name, orders_pb2.ORDER_STATUS_DELIVERED)
    assert delivered.shipments[0].deliver_time.seconds > 0

    returned = returns_events.ReturnReceived(
        order=created.name, node_id="node-berlin",
        lines=[returns_events.ReturnedLine(line_id="1", sku="SKU-MUG", quantity=1,
                                           reason=returns_events.RETURN_REASON_DAMAGED)])
    setattr(returned, "return", f"returns/{uuid.uuid4()}")
    await publish(js, returned)
    await publish(js, returned)  # re-sent under a new event id
    back = await reaches(orders, created.name, orders_pb2.ORDER_STATUS_PARTIALLY_RETURNED)
    assert back.lines[0].returned_quantity == 1

    refund = returns_events.RefundIssued(
        refund=f"returns/x/refunds/{uuid.uuid4()}", order=created.name,
        amount=common_pb2.Money(currency_code="EUR", amount="19.99"))
    await publish(js, refund)

    async def refunded() -> orders_pb2.Order | None:
        order = await status_of(orders, created.name)
        return order if order.payment_status == (
            orders_pb2.PAYMENT_STATUS_PARTIALLY_REFUNDED) else None

    order = await eventually(refunded)
    assert [p.kind for p in order.payments] == [orders_pb2.PAYMENT_KIND_CAPTURE,
                                                orders_pb2.PAYMENT_KIND_REFUND]
    full = await orders.GetOrder(orders_pb2.GetOrderRequest(
        name=created.name, view=orders_pb2.ORDER_VIEW_FULL))
    kinds = [entry.kind for entry in full.timeline]
    assert kinds == ["created", "stock_allocated", "allocated", "released", "package_shipped",
                     "shipped", "delivery_exception", "package_delivered", "delivered",
                     "return_received", "partially_returned", "payment_refund"]
    assert {entry.actor for entry in full.timeline} >= {"fulfilment", "shipping", "returns"}


async def test_inventory_failures_and_expiries_hold_or_cancel_orders(
    orders: OrdersStub, js: JetStreamContext
) -> None:
    failing = await orders.CreateOrder(new_request())
    await publish(js, inventory_events.AllocationFailed(
        order=failing.name, lines=[inventory_events.FailedLine(
            line_id="2", sku="SKU-PEN", quantity=1,
            reason=inventory_events.ALLOCATION_FAILURE_REASON_UNKNOWN_SKU)]))
    held = await reaches(orders, failing.name, orders_pb2.ORDER_STATUS_ON_HOLD)
    assert held.holds[0].kind == orders_pb2.HOLD_KIND_SYSTEM
    assert "SKU-PEN" in held.holds[0].reason

    unpaid = await orders.CreateOrder(
        new_request(payment_status=orders_pb2.PAYMENT_STATUS_PENDING))
    await publish(js, allocated(unpaid))
    await publish(js, inventory_events.StockReleased(
        order=unpaid.name, reason=inventory_events.RELEASE_REASON_EXPIRED,
        lines=[inventory_events.ReleasedLine(line_id="1", sku="SKU-MUG", node_id="node-berlin",
                                             quantity=3)]))
    await reaches(orders, unpaid.name, orders_pb2.ORDER_STATUS_CANCELLED)


async def test_minimum_order_quantities_come_from_the_product_master(
    orders: OrdersStub, js: JetStreamContext
) -> None:
    sku = f"SKU-{uuid.uuid4().hex[:8]}"
    await caught_up(js, "orders", await publish(js, inventory_events.ProductChanged(
        product=inventory_pb2.Product(sku=sku, minimum_order_quantity=6,
                                      weight=common_pb2.Weight(grams=500))), aggregate_id=sku))
    request = new_request()
    request.order.lines[0].sku = sku

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await orders.CreateOrder(request)
    assert field_violations(refused.value) == ["order.lines[0].quantity"]

    request.order.lines[0].quantity = 6
    created = await orders.CreateOrder(request)
    assert created.weight.grams == 3000


async def test_update_changes_only_the_fields_in_its_mask(orders: OrdersStub) -> None:
    created = await orders.CreateOrder(new_request(tags=["a"], gift_note="keep"))

    updated = await orders.UpdateOrder(orders_pb2.UpdateOrderRequest(
        order=orders_pb2.Order(name=created.name, tags=["vip", "gift"], gift_note="ignored"),
        update_mask=field_mask_pb2.FieldMask(paths=["tags"])))

    assert (list(updated.tags), updated.gift_note) == (["vip", "gift"], "keep")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await orders.UpdateOrder(orders_pb2.UpdateOrderRequest(
            order=orders_pb2.Order(name=created.name),
            update_mask=field_mask_pb2.FieldMask(paths=["channel"])))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_payment_racing_the_allocation_releases_the_order_once(
    orders: OrdersStub, engine: AsyncEngine, js: JetStreamContext
) -> None:
    unpaid = [await orders.CreateOrder(
        new_request(payment_status=orders_pb2.PAYMENT_STATUS_PENDING)) for _ in range(5)]

    await asyncio.gather(*(
        step for order in unpaid for step in (
            publish(js, allocated(order)),
            orders.RecordPayment(orders_pb2.RecordPaymentRequest(
                name=order.name, payment=capture(f"race-{order.name}"))),
        )
    ))

    for order in unpaid:
        await reaches(orders, order.name, orders_pb2.ORDER_STATUS_RELEASED)
        assert await outbox_events(engine, order.name, "oms.orders.v1.OrderReleased") == 1
        assert await outbox_events(engine, order.name, "oms.orders.v1.OrderPaid") == 1
