"""What the returns tests share: orders and shipping running beside returns over real gRPC,
PostgreSQL and NATS; a delivered order made the way orders learns it (allocated, shipped,
delivered, each an event on JetStream); a table-rate carrier collecting at the returns node.

The returns node and the customers are in Antarctica ("AQ", time zone UTC, collected every
day), as in the shipping tests: no public holidays, so a label ships whatever day it is."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence

import grpc
import nats
import pytest
from google.rpc import error_details_pb2
from google.type import dayofweek_pb2, timeofday_pb2
from grpc_status import rpc_status
from nats.js import JetStreamContext
from oms.common.v1 import common_pb2
from oms.fulfilment.v1 import events_pb2 as fulfilment_events
from oms.inventory.v1 import events_pb2 as inventory_events
from oms.orders.v1 import orders_pb2, orders_pb2_grpc
from oms.returns.v1 import returns_pb2_grpc
from oms.shipping.v1 import events_pb2 as shipping_events
from oms.shipping.v1 import shipping_pb2, shipping_pb2_grpc
from oms_devtools.inprocess import running_service
from oms_devtools.servers import free_port
from oms_devtools.testkit import eventually, new_id, publish
from oms_orders.app import DEFINITION as ORDERS
from oms_orders.app import MIGRATIONS as ORDERS_MIGRATIONS
from oms_platform import bus
from oms_platform.service import Service
from oms_returns.app import MIGRATIONS, definition
from oms_returns.settings import ReturnsSettings
from oms_shipping.app import MIGRATIONS as SHIPPING_MIGRATIONS
from oms_shipping.app import definition as shipping_definition
from oms_shipping.settings import ShippingSettings

Stub = returns_pb2_grpc.ReturnsServiceStub
OrdersStub = orders_pb2_grpc.OrdersServiceStub
ShippingStub = shipping_pb2_grpc.ShippingServiceStub
RETURNS_NODE = "aq-returns"
EVERY_DAY = [getattr(dayofweek_pb2, day) for day in (
    "MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")]
CUSTOMER = common_pb2.Address(recipient="Ada Lovelace", address_lines=["Scott Base"],
                              locality="Ross Island", postal_code="9998", region_code="AQ")


@pytest.fixture(scope="module")
async def orders_service(database_factory, nats_url: str) -> AsyncIterator[Service]:  # type: ignore[no-untyped-def]
    async with running_service(ORDERS, ORDERS_MIGRATIONS, database_url=database_factory(
            "orders"), nats_url=nats_url) as service:
        yield service


@pytest.fixture(scope="module")
async def orders(orders_service: Service) -> AsyncIterator[OrdersStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{orders_service.bound_port}") as channel:
        yield OrdersStub(channel)


@pytest.fixture(scope="module")
async def shipping(database_factory, nats_url: str) -> AsyncIterator[tuple[Service, ShippingStub]]:  # type: ignore[no-untyped-def]
    async with running_service(shipping_definition(ShippingSettings()), SHIPPING_MIGRATIONS,
                               database_url=database_factory("shipping"),
                               nats_url=nats_url) as service, \
            grpc.aio.insecure_channel(f"127.0.0.1:{service.bound_port}") as channel:
        stub = ShippingStub(channel)
        await returns_carrier(stub)
        yield service, stub


@pytest.fixture(scope="module")
def returns_url(database_factory) -> str:  # type: ignore[no-untyped-def]
    return str(database_factory("returns"))


@pytest.fixture(scope="module")
async def returns_service(orders_service, shipping, returns_url: str, nats_url: str  # type: ignore[no-untyped-def]
                          ) -> AsyncIterator[Service]:
    address = "127.0.0.1:{}".format
    settings = ReturnsSettings(orders_target=address(orders_service.bound_port),
                               shipping_target=address(shipping[0].bound_port),
                               return_node_id=RETURNS_NODE)
    async with running_service(definition(settings), MIGRATIONS, database_url=returns_url,
                               nats_url=nats_url) as service:
        yield service


@pytest.fixture(scope="module")
async def stub(returns_service: Service) -> AsyncIterator[Stub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{returns_service.bound_port}") as channel:
        yield Stub(channel)


@pytest.fixture(scope="module")
async def cut_off(orders_service, returns_service, returns_url: str, nats_url: str  # type: ignore[no-untyped-def]
                  ) -> AsyncIterator[Stub]:
    """A second replica of the same service whose shipping target answers nothing."""
    settings = ReturnsSettings(orders_target=f"127.0.0.1:{orders_service.bound_port}",
                               shipping_target=f"127.0.0.1:{free_port()}",
                               shipping_timeout_seconds=2, return_node_id=RETURNS_NODE)
    async with running_service(definition(settings), MIGRATIONS, database_url=returns_url,
                               nats_url=nats_url) as service, \
            grpc.aio.insecure_channel(f"127.0.0.1:{service.bound_port}") as channel:
        yield Stub(channel)


@pytest.fixture(scope="module")
async def js(nats_url: str) -> AsyncIterator[JetStreamContext]:
    client = await nats.connect(nats_url)
    js = client.jetstream()
    for producer in ("orders", "inventory", "fulfilment", "shipping", "returns"):
        await bus.ensure_stream(js, producer)
    yield js
    await client.drain()


async def returns_carrier(stub: ShippingStub) -> None:
    """A table-rate carrier collecting at the returns node, 4.20 EUR up to 2 kg in AQ."""
    carrier_id = new_id("post").replace("-", "_")
    code = f"{carrier_id}_parcel"
    await stub.CreateCarrier(shipping_pb2.CreateCarrierRequest(
        request_id=new_id("carrier"), carrier=shipping_pb2.Carrier(
            carrier_id=carrier_id, display_name="Polar Post",
            mode=shipping_pb2.CARRIER_MODE_TABLE_RATE,
            tracking_scheme=shipping_pb2.TRACKING_SCHEME_S10,
            tracking_url_template="https://track.example/{tracking_number}",
            services=[shipping_pb2.CarrierService(
                code=code, display_name="Polar Returns",
                service_level=shipping_pb2.SERVICE_LEVEL_STANDARD, transit_days=2,
                pickup_days=EVERY_DAY,
                cutoff_time=timeofday_pb2.TimeOfDay(hours=23, minutes=59, seconds=59))])))
    await stub.CreateOrigin(shipping_pb2.CreateOriginRequest(origin=shipping_pb2.Origin(
        node_id=RETURNS_NODE, time_zone="UTC", carriers=[carrier_id],
        cutoff_time=timeofday_pb2.TimeOfDay(hours=23, minutes=59, seconds=59),
        address=common_pb2.Address(organization="McMurdo Returns", address_lines=["Hut Point"],
                                   locality="McMurdo", postal_code="9999",
                                   region_code="AQ"))))
    money = common_pb2.Money
    await stub.CreateRateCard(shipping_pb2.CreateRateCardRequest(
        request_id=new_id("card"), rate_card_id=new_id("card").lower(),
        rate_card=shipping_pb2.RateCard(
            service_code=code, currency_code="EUR",
            zones=[shipping_pb2.Zone(zone="1", origin_country="AQ", destination_country="AQ")],
            breaks=[shipping_pb2.WeightBreak(zone="1", max_weight_grams=2000,
                                             price=money(currency_code="EUR", amount="4.20")),
                    shipping_pb2.WeightBreak(zone="1", max_weight_grams=20000,
                                             price=money(currency_code="EUR", amount="9.90"))])))


async def placed_order(orders: OrdersStub, lines: Sequence[tuple[str, int, str]], *,
                       channel: str) -> orders_pb2.Order:
    """A paid order of ``(sku, quantity, unit price in EUR)`` lines."""
    return await orders.CreateOrder(orders_pb2.CreateOrderRequest(
        request_id=str(uuid.uuid4()), order=orders_pb2.Order(
            channel=channel, external_order_id=new_id("WEB"),
            customer=orders_pb2.Customer(display_name="Ada Lovelace", email="ada@example.com"),
            shipping_address=CUSTOMER, payment_status=orders_pb2.PAYMENT_STATUS_PAID,
            service_level=orders_pb2.SERVICE_LEVEL_STANDARD,
            lines=[orders_pb2.OrderLine(sku=sku, quantity=quantity, unit_price=common_pb2.Money(
                currency_code="EUR", amount=price)) for sku, quantity, price in lines])))


async def status_reached(orders: OrdersStub, name: str, status: int) -> orders_pb2.Order:
    return await eventually(
        lambda: orders.GetOrder(orders_pb2.GetOrderRequest(name=name)),
        until=lambda order: order.status == status, what=f"{name} in status {status}")


async def ship(orders: OrdersStub, js: JetStreamContext, order: orders_pb2.Order,
               units: dict[str, int] | None = None) -> str:
    """Allocates the whole order (once) and ships ``units`` per line id (all by default) in
    one package: the package."""
    if order.status != orders_pb2.ORDER_STATUS_RELEASED:
        await publish(js, inventory_events.StockAllocated(order=order.name, allocations=[
            inventory_events.NodeAllocation(node_id="aq-depot", lines=[
                inventory_events.AllocatedLine(line_id=line.line_id, sku=line.sku,
                                               quantity=line.quantity)
                for line in order.lines])]))
        await status_reached(orders, order.name, orders_pb2.ORDER_STATUS_RELEASED)
    package = f"fulfilmentOrders/{uuid.uuid4()}/packages/{uuid.uuid4()}"
    shipped = {line.line_id: line.quantity for line in order.lines} if units is None else units
    await publish(js, fulfilment_events.PackageShipped(
        package=package, node_id="aq-depot", carrier="polar", tracking_number=new_id("TN"),
        lines=[fulfilment_events.ShippedLine(order=order.name, line_id=line.line_id,
                                             sku=line.sku, quantity=shipped[line.line_id])
               for line in order.lines if shipped.get(line.line_id)]), aggregate_id=order.name)
    # Delivered only once shipped: the two events may otherwise be handled in either order.
    await eventually(lambda: orders.GetOrder(orders_pb2.GetOrderRequest(name=order.name)),
                     until=lambda found: any(s.package == package for s in found.shipments),
                     what=f"{package} shipped")
    return package


async def deliver(orders: OrdersStub, js: JetStreamContext, order_name: str, package: str
                  ) -> orders_pb2.Order:
    await publish(js, shipping_events.ShipmentDelivered(
        package=package, orders=[order_name], carrier="polar"), aggregate_id=order_name)
    return await eventually(
        lambda: orders.GetOrder(orders_pb2.GetOrderRequest(name=order_name)),
        until=lambda order: any(s.package == package and s.deliver_time.seconds
                                for s in order.shipments), what=f"{package} delivered")


async def delivered_order(orders: OrdersStub, js: JetStreamContext,
                          lines: Sequence[tuple[str, int, str]], *, channel: str
                          ) -> orders_pb2.Order:
    order = await placed_order(orders, lines, channel=channel)
    package = await ship(orders, js, order)
    return await deliver(orders, js, order.name, package)


async def violations_of(call: object) -> list[str]:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call  # type: ignore[misc]
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raised.value.details()
    status = rpc_status.from_call(raised.value)
    fields: list[str] = []
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields += [v.field for v in bad.field_violations]
    return fields
