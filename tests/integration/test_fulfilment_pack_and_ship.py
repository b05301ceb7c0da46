"""Packing and the hand-off over real gRPC, PostgreSQL and NATS, with inventory (nodes) and
shipping (labels, a table-rate carrier) in-process: a picked order is cartonised into
packages, scans are verified (a wrong one refused and counted, changing nothing else), a
package seals only when complete, `PackingVerified` is published once, its packing slip
prints; a sealed package is labelled by shipping, `PackageShipped` published once with the
tracking number, a refused purchase leaves it sealed and retriable, and retried hand-offs
buy one label.

Shipping's origins are in Antarctica ("AQ", time zone UTC, collected all day), as in the
shipping tests: no public holidays, so a label ships today whatever day the suite runs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import grpc
import nats
import pypdfium2
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from google.rpc import error_details_pb2
from google.type import dayofweek_pb2, timeofday_pb2
from grpc_status import rpc_status
from nats.js import JetStreamContext
from oms.common.v1 import common_pb2
from oms.fulfilment.v1 import events_pb2, fulfilment_pb2, fulfilment_pb2_grpc
from oms.inventory.v1 import events_pb2 as inventory_events
from oms.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from oms.orders.v1 import events_pb2 as order_events
from oms.orders.v1 import orders_pb2
from oms.shipping.v1 import shipping_pb2, shipping_pb2_grpc
from oms_devtools.inprocess import running_service
from oms_devtools.servers import free_port
from oms_devtools.testkit import add_node, caught_up, eventually, new_id, publish
from oms_fulfilment.app import MIGRATIONS, definition
from oms_fulfilment.settings import FulfilmentSettings
from oms_fulfilment.tables import metadata
from oms_inventory.app import MIGRATIONS as INVENTORY_MIGRATIONS
from oms_inventory.app import definition as inventory_definition
from oms_inventory.settings import InventorySettings
from oms_platform import bus
from oms_platform.events import decode
from oms_platform.migrations import alembic_config, upgrade
from oms_shipping.app import MIGRATIONS as SHIPPING_MIGRATIONS
from oms_shipping.app import definition as shipping_definition
from oms_shipping.settings import ShippingSettings
from sqlalchemy import create_engine

Stub = fulfilment_pb2_grpc.FulfilmentServiceStub
GTIN = "4006381333931"


def test_the_migrations_build_the_tables_as_declared_and_go_back(
        database_factory: Callable[[str], str]) -> None:
    url = database_factory("fulfilment_schema")
    upgrade(MIGRATIONS, url)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True})
            assert list(compare_metadata(context, metadata)) == []
        command.downgrade(alembic_config(MIGRATIONS, url), "0002")
        with engine.connect() as conn:
            assert not conn.exec_driver_sql(
                "SELECT to_regclass('packages') IS NOT NULL").scalar()
    finally:
        engine.dispose()


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
                                  node_cache_seconds=0)
    async with running_service(definition(settings), MIGRATIONS, database_url=fulfilment_url,
                               nats_url=nats_url) as service, \
            grpc.aio.insecure_channel(f"127.0.0.1:{service.bound_port}") as channel:
        yield Stub(channel)


@pytest.fixture(scope="module")
async def cut_off(inventory, stub, fulfilment_url: str, nats_url: str) -> AsyncIterator[Stub]:  # type: ignore[no-untyped-def]
    """A second replica of the same service whose shipping target answers nothing."""
    settings = FulfilmentSettings(inventory_target=f"127.0.0.1:{inventory[0].bound_port}",
                                  shipping_target=f"127.0.0.1:{free_port()}",
                                  shipping_timeout_seconds=2, node_cache_seconds=0)
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


def product(sku: str, *, gtin: str = "", grams: int = 400, dims: tuple[int, int, int] = (
        200, 150, 80), fragile: bool = False) -> inventory_events.ProductChanged:
    return inventory_events.ProductChanged(product=inventory_pb2.Product(
        sku=sku, title=f"Product {sku}", gtin=gtin, weight=common_pb2.Weight(grams=grams),
        dimensions=common_pb2.Dimensions(length_mm=dims[0], width_mm=dims[1],
                                         height_mm=dims[2]), fragile=fragile))


async def picked_order(inventory_stub, stub: Stub, js: JetStreamContext,  # type: ignore[no-untyped-def]
                       lines: list[tuple[str, int]], **release: object
                       ) -> tuple[str, fulfilment_pb2.FulfilmentOrder]:
    """A warehouse, a release of ``lines`` to it, picked in full: (node, fulfilment order)."""
    node_id = await add_node(inventory_stub, cutoff_time=timeofday_pb2.TimeOfDay(hours=15),
                             bins=[inventory_pb2.Bin(bin_code="A-01-01", zone="ambient")])
    await stub.BatchSetSlots(fulfilment_pb2.BatchSetSlotsRequest(slots=[
        fulfilment_pb2.Slot(node_id=node_id, sku=sku, bin_code="A-01-01")
        for sku, _ in lines]))
    order = f"orders/{uuid.uuid4()}"
    event = order_events.OrderReleased(
        order=order, orders=[order], node_id=node_id, channel="shop-eu",
        external_order_id=new_id("WEB"),
        service_level=orders_pb2.SERVICE_LEVEL_STANDARD, gift_note="Happy birthday, Ada!",
        shipping_address=common_pb2.Address(
            recipient="Ada Lovelace", address_lines=["Scott Base"], locality="Ross Island",
            postal_code="9998", region_code="AQ"),
        lines=[order_events.ReleasedLine(order=order, line_id=f"l{i}", sku=sku, quantity=q)
               for i, (sku, q) in enumerate(lines, start=1)], **release)  # type: ignore[arg-type]
    await publish(js, event, partition=node_id)
    await eventually(lambda: stub.ListFulfilmentOrders(
        fulfilment_pb2.ListFulfilmentOrdersRequest(filter=f'node_id = "{node_id}"')),
        until=lambda r: len(r.fulfilment_orders) == 1, what="the fulfilment order")
    (pick_list,) = (await stub.CreatePickList(fulfilment_pb2.CreatePickListRequest(
        node_id=node_id, strategy=fulfilment_pb2.PICK_STRATEGY_SINGLE_ORDER))).pick_lists
    for stop in pick_list.stops:
        await stub.ConfirmPick(fulfilment_pb2.ConfirmPickRequest(
            name=pick_list.name, sequence=stop.sequence, picked_quantity=stop.quantity))
    (found,) = (await stub.ListFulfilmentOrders(fulfilment_pb2.ListFulfilmentOrdersRequest(
        filter=f'node_id = "{node_id}"'))).fulfilment_orders
    assert found.status == fulfilment_pb2.FULFILMENT_ORDER_STATUS_PICKED
    return node_id, found


async def code_of(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call  # type: ignore[misc]
    return raised.value.code()


async def violations_of(call: object) -> list[str]:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call  # type: ignore[misc]
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(raised.value)
    fields: list[str] = []
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields += [v.field for v in bad.field_violations]
    return fields


async def test_pack_with_scans_a_wrong_one_refused_seal_and_verified_once(  # type: ignore[no-untyped-def]
        inventory, stub, js):
    boxed, loose = new_id("SKU"), new_id("SKU")
    for changed in (product(boxed, gtin=GTIN), product(loose, grams=150, dims=(100, 80, 30))):
        last = await publish(js, changed, aggregate_id=changed.product.sku)
    await caught_up(js, "fulfilment", last)
    node_id, order = await picked_order(inventory[1], stub, js, [(boxed, 2), (loose, 1)])
    verified = await js.subscribe(f"oms.fulfilment.packing_verified.{node_id}",
                                  ordered_consumer=True)

    assert await code_of(stub.StartPacking(fulfilment_pb2.StartPackingRequest(
        fulfilment_order="fulfilmentOrders/nope", station="x" * 101))) == (
        grpc.StatusCode.INVALID_ARGUMENT)
    started = await stub.StartPacking(fulfilment_pb2.StartPackingRequest(
        fulfilment_order=order.name, station="pack-03"))
    (package,) = started.packages
    # 2 x 200x150x80 + 100x80x30 fit the small carton (300x200x150), 180 g itself.
    assert (package.box_code, package.weight.grams) == ("small", 2 * 400 + 150 + 180)
    assert package.status == fulfilment_pb2.PACKAGE_STATUS_PACKING
    again = await stub.StartPacking(fulfilment_pb2.StartPackingRequest(
        fulfilment_order=order.name))
    assert [p.name for p in again.packages] == [package.name]
    current = await stub.GetFulfilmentOrder(fulfilment_pb2.GetFulfilmentOrderRequest(
        name=order.name))
    assert current.status == fulfilment_pb2.FULFILMENT_ORDER_STATUS_PACKING
    assert list(current.packages) == [package.name]

    # A wrong SKU is refused and counted against the line still missing units, and nothing
    # else changes; the GTIN (its UPC-A form too) and the SKU barcode both verify.
    wrong = await stub.ScanUnit(fulfilment_pb2.ScanUnitRequest(
        package=package.name, code=new_id("SKU")))
    assert (wrong.accepted, wrong.refusal, wrong.units_missing) == (
        False, fulfilment_pb2.SCAN_REFUSAL_WRONG_SKU, 3)
    assert [(li.sku, li.units_verified, li.units_refused) for li in wrong.package.lines] == [
        (boxed, 0, 1), (loose, 0, 0)]
    assert wrong.package.refused_scans == 1
    assert await code_of(stub.SealPackage(fulfilment_pb2.SealPackageRequest(
        name=package.name))) == grpc.StatusCode.FAILED_PRECONDITION
    assert await violations_of(stub.ScanUnit(fulfilment_pb2.ScanUnitRequest(
        package="packages/1", code=" ", line_id="l1"))) == ["package", "code", "order"]
    assert (await stub.GetPackage(fulfilment_pb2.GetPackageRequest(
        name=package.name))) == wrong.package
    for code in (GTIN, boxed, loose):
        scanned = await stub.ScanUnit(fulfilment_pb2.ScanUnitRequest(
            package=package.name, code=code))
        assert scanned.accepted, code
    extra = await stub.ScanUnit(fulfilment_pb2.ScanUnitRequest(package=package.name,
                                                                code=loose))
    assert (extra.accepted, extra.refusal) == (False, fulfilment_pb2.SCAN_REFUSAL_EXTRA_UNIT)

    sealed = await stub.SealPackage(fulfilment_pb2.SealPackageRequest(name=package.name))
    assert sealed.status == fulfilment_pb2.PACKAGE_STATUS_SEALED
    assert (await stub.SealPackage(fulfilment_pb2.SealPackageRequest(
        name=package.name))).seal_time == sealed.seal_time
    assert await code_of(stub.ScanUnit(fulfilment_pb2.ScanUnitRequest(
        package=package.name, code=boxed))) == grpc.StatusCode.FAILED_PRECONDITION

    message = await verified.next_msg(timeout=30)
    event = decode(dict(message.headers or {}), message.data, [events_pb2.PackingVerified])
    assert (event.package, event.station) == (package.name, "pack-03")
    tally = {li.sku: (li.units_verified, li.units_refused) for li in event.lines}
    assert tally[boxed][0] == 2 and tally[loose][0] == 1
    assert sum(r for _, r in tally.values()) == 2
    with pytest.raises(nats.errors.TimeoutError):
        await verified.next_msg(timeout=2)
    stats = await stub.GetFloorStats(fulfilment_pb2.GetFloorStatsRequest(node_id=node_id))
    assert stats.pack_refusals == 2

    slip = await stub.GetPackingSlip(fulfilment_pb2.GetPackingSlipRequest(
        package=package.name))
    assert slip.content_type == "application/pdf"
    document = pypdfium2.PdfDocument(slip.content)
    try:
        text = document[0].get_textpage().get_text_range()
    finally:
        document.close()
    assert boxed in text and "Ada Lovelace" in text and "Happy birthday, Ada!" in text


EVERY_DAY = [getattr(dayofweek_pb2, day) for day in (
    "MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")]
LAST_SECOND = timeofday_pb2.TimeOfDay(hours=23, minutes=59, seconds=59)


async def collecting_carrier(shipping_stub, node_id: str) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """A table-rate carrier with one standard S10-numbered service, the only one collecting
    at the node: (carrier, service code)."""
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


async def packed(stub: Stub, name: str, codes: list[str]) -> None:
    for code in codes:
        assert (await stub.ScanUnit(fulfilment_pb2.ScanUnitRequest(
            package=name, code=code))).accepted


async def test_a_sealed_package_is_labelled_by_shipping_and_shipped_once(  # type: ignore[no-untyped-def]
        inventory, shipping, stub, js):
    sku = new_id("SKU")
    await caught_up(js, "fulfilment", await publish(js, product(sku), aggregate_id=sku))
    node_id, order = await picked_order(inventory[1], stub, js, [(sku, 2)])
    carrier, service = await collecting_carrier(shipping[1], node_id)
    shipped = await js.subscribe(f"oms.fulfilment.package_shipped.{node_id}",
                                 ordered_consumer=True)
    (package,) = (await stub.StartPacking(fulfilment_pb2.StartPackingRequest(
        fulfilment_order=order.name))).packages
    assert await code_of(stub.ShipPackage(fulfilment_pb2.ShipPackageRequest(
        name=package.name))) == grpc.StatusCode.FAILED_PRECONDITION  # not sealed yet
    await packed(stub, package.name, [sku, sku])

    sealed = await stub.SealPackage(fulfilment_pb2.SealPackageRequest(name=package.name))
    assert sealed.status == fulfilment_pb2.PACKAGE_STATUS_SHIPPED
    assert (sealed.carrier, sealed.carrier_service) == (carrier, service)
    assert sealed.tracking_url == f"https://track.example/{sealed.tracking_number}"
    label = await shipping[1].GetLabel(shipping_pb2.GetLabelRequest(name=sealed.label))
    assert (label.package, label.tracking_number) == (package.name, sealed.tracking_number)
    assert label.destination.recipient == "Ada Lovelace"
    assert label.parcel.weight.grams == package.weight.grams
    current = await stub.GetFulfilmentOrder(fulfilment_pb2.GetFulfilmentOrderRequest(
        name=order.name))
    assert current.status == fulfilment_pb2.FULFILMENT_ORDER_STATUS_SHIPPED

    # Retried, twice at once: the same package, no second label, no second event.
    retried = await asyncio.gather(*[stub.ShipPackage(fulfilment_pb2.ShipPackageRequest(
        name=package.name)) for _ in range(2)])
    assert {r.tracking_number for r in retried} == {sealed.tracking_number}
    labels = await shipping[1].ListLabels(shipping_pb2.ListLabelsRequest(
        filter=f'package = "{package.name}"'))
    assert [x.name for x in labels.labels] == [sealed.label]

    message = await shipped.next_msg(timeout=30)
    event = decode(dict(message.headers or {}), message.data, [events_pb2.PackageShipped])
    assert (event.package, event.node_id, event.carrier, event.carrier_service) == (
        package.name, node_id, carrier, service)
    assert (event.tracking_number, event.tracking_url) == (
        sealed.tracking_number, sealed.tracking_url)
    assert [(li.order, li.line_id, li.sku, li.quantity) for li in event.lines] == [
        (order.order, "l1", sku, 2)]
    with pytest.raises(nats.errors.TimeoutError):
        await shipped.next_msg(timeout=2)


async def test_a_refused_label_leaves_the_package_sealed_until_a_retry_buys_one(  # type: ignore[no-untyped-def]
        inventory, shipping, stub, js):
    sku = new_id("SKU")
    await caught_up(js, "fulfilment", await publish(js, product(sku), aggregate_id=sku))
    node_id, order = await picked_order(inventory[1], stub, js, [(sku, 1)])
    shipped = await js.subscribe(f"oms.fulfilment.package_shipped.{node_id}",
                                 ordered_consumer=True)
    (package,) = (await stub.StartPacking(fulfilment_pb2.StartPackingRequest(
        fulfilment_order=order.name))).packages
    await packed(stub, package.name, [sku])

    # Shipping knows no origin at this node yet: it refuses, the package stays sealed.
    sealed = await stub.SealPackage(fulfilment_pb2.SealPackageRequest(name=package.name))
    assert sealed.status == fulfilment_pb2.PACKAGE_STATUS_SEALED
    assert sealed.hand_off_error and not sealed.tracking_number
    assert await code_of(stub.ShipPackage(fulfilment_pb2.ShipPackageRequest(
        name=package.name))) == grpc.StatusCode.FAILED_PRECONDITION
    current = await stub.GetFulfilmentOrder(fulfilment_pb2.GetFulfilmentOrderRequest(
        name=order.name))
    assert current.status == fulfilment_pb2.FULFILMENT_ORDER_STATUS_PACKED
    with pytest.raises(nats.errors.TimeoutError):
        await shipped.next_msg(timeout=1)

    await collecting_carrier(shipping[1], node_id)
    done = await stub.ShipPackage(fulfilment_pb2.ShipPackageRequest(name=package.name))
    assert done.status == fulfilment_pb2.PACKAGE_STATUS_SHIPPED
    assert done.tracking_number and not done.hand_off_error
    message = await shipped.next_msg(timeout=30)
    event = decode(dict(message.headers or {}), message.data, [events_pb2.PackageShipped])
    assert event.tracking_number == done.tracking_number


async def test_shipping_unavailable_leaves_the_package_sealed_and_retriable(  # type: ignore[no-untyped-def]
        inventory, shipping, stub, cut_off, js):
    sku = new_id("SKU")
    await caught_up(js, "fulfilment", await publish(js, product(sku), aggregate_id=sku))
    node_id, order = await picked_order(inventory[1], stub, js, [(sku, 1)])
    await collecting_carrier(shipping[1], node_id)
    (package,) = (await stub.StartPacking(fulfilment_pb2.StartPackingRequest(
        fulfilment_order=order.name))).packages
    await packed(stub, package.name, [sku])

    sealed = await cut_off.SealPackage(fulfilment_pb2.SealPackageRequest(name=package.name))
    assert sealed.status == fulfilment_pb2.PACKAGE_STATUS_SEALED
    assert "UNAVAILABLE" in sealed.hand_off_error
    assert await code_of(cut_off.ShipPackage(fulfilment_pb2.ShipPackageRequest(
        name=package.name))) == grpc.StatusCode.UNAVAILABLE
    done = await stub.ShipPackage(fulfilment_pb2.ShipPackageRequest(name=package.name))
    assert done.status == fulfilment_pb2.PACKAGE_STATUS_SHIPPED and done.tracking_number
