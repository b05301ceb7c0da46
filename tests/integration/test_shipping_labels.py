"""Labels and manifests over real gRPC and PostgreSQL: a bought label's PDF barcode reads back
as its tracking number, a retried purchase (even a concurrent one) buys one label, a bulk run
with one bad request, voiding against closing the day.

The origin is in Antarctica ("AQ", time zone UTC), collected every day until 23:59:59: a
country with no public holidays in the calendar, so the day a label ships is today whatever
day the suite runs on, and closing today takes it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, date, datetime, timedelta

import grpc
import pypdfium2
import pytest
import zxingcpp
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from google.rpc import error_details_pb2
from google.type import dayofweek_pb2, timeofday_pb2
from grpc_status import rpc_status
from oms.common.v1 import common_pb2
from oms.shipping.v1 import shipping_pb2, shipping_pb2_grpc
from oms_devtools.inprocess import running_service
from oms_devtools.testkit import new_id
from oms_platform.migrations import upgrade
from oms_platform.service import Service
from oms_shipping.app import DEFINITION, MIGRATIONS
from oms_shipping.labels.domain import TrackingScheme, is_valid
from oms_shipping.tables import labels, metadata
from sqlalchemy import create_engine, func, select

Stub = shipping_pb2_grpc.ShippingServiceStub
EVERY_DAY = [getattr(dayofweek_pb2, day) for day in (
    "MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")]


def test_migrations_build_the_labels_and_manifests_tables(
        database_factory: Callable[[str], str]) -> None:
    url = database_factory("shipping_schema")
    upgrade(MIGRATIONS, url)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True})
            assert list(compare_metadata(context, metadata)) == []
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def database_url(database_factory: Callable[[str], str]) -> str:
    return database_factory("shipping_labels")


@pytest.fixture(scope="module")
async def service(database_url: str, nats_url: str) -> AsyncIterator[Service]:
    async with running_service(DEFINITION, MIGRATIONS, database_url=database_url,
                               nats_url=nats_url) as service:
        yield service


@pytest.fixture(scope="module")
async def stub(service: Service) -> AsyncIterator[Stub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.bound_port}") as channel:
        yield Stub(channel)


@pytest.fixture
def sync_engine(database_url: str) -> Iterator[object]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


def _money(amount: str) -> common_pb2.Money:
    return common_pb2.Money(currency_code="EUR", amount=amount)


async def _carrier_at_new_node(stub: Stub) -> tuple[str, str, str]:
    """A table-rate carrier with one S10-numbered service and its rate card, the only one
    collecting at a new origin: (carrier, service code, node)."""
    carrier_id = new_id("post").replace("-", "_")
    code = f"{carrier_id}_parcel"
    node = new_id("aq")
    await stub.CreateCarrier(shipping_pb2.CreateCarrierRequest(
        request_id=new_id("carrier"),
        carrier=shipping_pb2.Carrier(
            carrier_id=carrier_id, display_name="Polar Post",
            mode=shipping_pb2.CARRIER_MODE_TABLE_RATE,
            tracking_scheme=shipping_pb2.TRACKING_SCHEME_S10,
            tracking_url_template="https://track.example/{tracking_number}",
            services=[shipping_pb2.CarrierService(
                code=code, display_name="Polar Parcel",
                service_level=shipping_pb2.SERVICE_LEVEL_STANDARD, transit_days=2,
                pickup_days=EVERY_DAY,
                cutoff_time=timeofday_pb2.TimeOfDay(hours=23, minutes=59, seconds=59))])))
    await stub.CreateOrigin(shipping_pb2.CreateOriginRequest(origin=shipping_pb2.Origin(
        node_id=node, time_zone="UTC", carriers=[carrier_id],
        cutoff_time=timeofday_pb2.TimeOfDay(hours=23, minutes=59, seconds=59),
        address=common_pb2.Address(organization="McMurdo Depot", address_lines=["Hut Point"],
                                   locality="McMurdo", postal_code="9999",
                                   region_code="AQ"))))
    await stub.CreateRateCard(shipping_pb2.CreateRateCardRequest(
        request_id=new_id("card"), rate_card_id=new_id("card").lower(),
        rate_card=shipping_pb2.RateCard(
            service_code=code, currency_code="EUR",
            zones=[shipping_pb2.Zone(zone="1", origin_country="AQ", destination_country="AQ")],
            breaks=[shipping_pb2.WeightBreak(zone="1", max_weight_grams=2000,
                                             price=_money("4.20")),
                    shipping_pb2.WeightBreak(zone="1", max_weight_grams=20000,
                                             price=_money("9.90"))])))
    return carrier_id, code, node


def _label_request(node: str, **changes: object) -> shipping_pb2.CreateLabelRequest:
    fields: dict[str, object] = {
        "request_id": new_id("label"),
        "package": f"fulfilmentOrders/{new_id('fo')}/packages/1",
        "orders": [f"orders/{new_id('o')}"],
        "node_id": node,
        "destination": common_pb2.Address(recipient="Ada Lovelace",
                                          address_lines=["Scott Base"], locality="Ross Island",
                                          postal_code="9998", region_code="AQ"),
        "parcel": shipping_pb2.Parcel(weight=common_pb2.Weight(grams=1500)),
        "service_level": shipping_pb2.SERVICE_LEVEL_STANDARD,
        **changes,
    }
    return shipping_pb2.CreateLabelRequest(**fields)  # type: ignore[arg-type]


def _day(value: object) -> date:
    return date(value.year, value.month, value.day)  # type: ignore[attr-defined]


def _barcodes(pdf: bytes) -> list[str]:
    document = pypdfium2.PdfDocument(pdf)
    try:
        image = document[0].render(scale=3).to_pil()
    finally:
        document.close()
    return [found.text for found in zxingcpp.read_barcodes(image)]


async def _refused(call: object) -> tuple[grpc.StatusCode, str, list[str]]:
    """The code, ErrorInfo reason and field violations of a failed call."""
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call  # type: ignore[misc]
    status = rpc_status.from_call(raised.value)
    reason, fields = "", []
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields += [v.field for v in bad.field_violations]
    return raised.value.code(), reason, fields


async def test_a_bought_label_prints_its_tracking_number_as_code_128(stub: Stub) -> None:
    carrier, code, node = await _carrier_at_new_node(stub)
    label = await stub.CreateLabel(_label_request(node))
    assert (label.carrier, label.service_code, label.node_id) == (carrier, code, node)
    assert label.state == shipping_pb2.LABEL_STATE_PURCHASED
    assert label.cost == _money("4.20")
    assert is_valid(TrackingScheme.S10, label.tracking_number)
    assert label.tracking_number.endswith("AQ")
    assert label.tracking_url == f"https://track.example/{label.tracking_number}"
    assert _day(label.ship_date) == datetime.now(UTC).date()
    assert _day(label.estimated_delivery_date) > _day(label.ship_date)
    assert label.tracking_status == shipping_pb2.TRACKING_STATUS_PRE_TRANSIT

    pdf = await stub.GetLabelDocument(shipping_pb2.GetLabelDocumentRequest(name=label.name))
    assert pdf.content_type == "application/pdf"
    assert _barcodes(pdf.content) == [label.tracking_number]
    zpl = await stub.GetLabelDocument(shipping_pb2.GetLabelDocumentRequest(
        name=label.name, format=shipping_pb2.DOCUMENT_FORMAT_ZPL))
    assert zpl.content_type == "application/zpl"
    assert f"^FD{label.tracking_number}^FS" in zpl.content.decode()
    assert await stub.GetLabel(shipping_pb2.GetLabelRequest(name=label.name)) == label


async def test_a_retried_purchase_buys_one_label_even_when_concurrent(
        stub: Stub, sync_engine) -> None:  # type: ignore[no-untyped-def]
    _, _, node = await _carrier_at_new_node(stub)
    request = _label_request(node)
    first, second, third = await asyncio.gather(*(stub.CreateLabel(request) for _ in range(3)))
    assert first == second == third
    again = await stub.CreateLabel(request)
    assert again == first
    with sync_engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(labels)
                           .where(labels.c.package == request.package)) == 1

    reused = _label_request(node, request_id=request.request_id)
    code, _, fields = await _refused(stub.CreateLabel(reused))
    assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["request_id"])


async def test_bad_label_requests_name_every_field_and_buy_nothing(
        stub: Stub, sync_engine) -> None:  # type: ignore[no-untyped-def]
    bad = shipping_pb2.CreateLabelRequest(
        package="box", node_id="", destination=common_pb2.Address(region_code="aq"),
        parcel=shipping_pb2.Parcel(weight=common_pb2.Weight(grams=0)), service_level=99)
    code, _, fields = await _refused(stub.CreateLabel(bad))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert sorted(fields) == ["destination.postal_code", "destination.region_code", "node_id",
                              "package", "parcel.weight.grams", "request_id", "service_level"]
    with sync_engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(labels)
                           .where(labels.c.package == "box")) == 0


async def test_a_bulk_run_with_one_bad_request_buys_the_others(stub: Stub) -> None:
    _, _, node = await _carrier_at_new_node(stub)
    requests = [_label_request(node) for _ in range(4)]
    requests[2].parcel.weight.grams = 50_000  # heavier than any weight break
    requests[3].package = "not a package"
    response = await stub.BatchCreateLabels(
        shipping_pb2.BatchCreateLabelsRequest(requests=requests))
    results = list(response.results)
    assert [r.request_id for r in results] == [r.request_id for r in requests]
    assert [r.HasField("label") for r in results] == [True, True, False, False]
    assert results[2].error_code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert results[3].error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "package" in results[3].error_message
    numbers = {r.label.tracking_number for r in results[:2]}
    assert len(numbers) == 2

    again = await stub.BatchCreateLabels(
        shipping_pb2.BatchCreateLabelsRequest(requests=requests[:2]))
    assert [r.label for r in again.results] == [r.label for r in results[:2]]

    code, _, fields = await _refused(stub.BatchCreateLabels(
        shipping_pb2.BatchCreateLabelsRequest(requests=[requests[0]] * 101)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "requests" in fields


async def test_voided_labels_stay_off_the_manifest_and_closed_ones_cannot_be_voided(
        stub: Stub) -> None:
    carrier, _, node = await _carrier_at_new_node(stub)
    kept, voided = [await stub.CreateLabel(_label_request(node)) for _ in range(2)]
    void = await stub.VoidLabel(shipping_pb2.VoidLabelRequest(name=voided.name))
    assert void.state == shipping_pb2.LABEL_STATE_VOIDED
    assert await stub.VoidLabel(shipping_pb2.VoidLabelRequest(name=voided.name)) == void

    close = shipping_pb2.CloseManifestRequest(request_id=new_id("close"), carrier=carrier,
                                              node_id=node)
    manifest = await stub.CloseManifest(close)
    assert list(manifest.labels) == [kept.name]
    assert (manifest.parcel_count, manifest.total_weight.grams) == (1, 1500)
    assert _day(manifest.ship_date) == _day(kept.ship_date)
    assert await stub.CloseManifest(close) == manifest
    assert await stub.GetManifest(shipping_pb2.GetManifestRequest(name=manifest.name)) \
        == manifest

    on_it = await stub.GetLabel(shipping_pb2.GetLabelRequest(name=kept.name))
    assert on_it.state == shipping_pb2.LABEL_STATE_MANIFESTED
    assert on_it.manifest == manifest.name
    assert (await stub.GetLabel(shipping_pb2.GetLabelRequest(name=voided.name))).state \
        == shipping_pb2.LABEL_STATE_VOIDED
    code, reason, _ = await _refused(stub.VoidLabel(shipping_pb2.VoidLabelRequest(
        name=kept.name)))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "LABEL_MANIFESTED")

    late = await stub.CreateLabel(_label_request(node))
    assert _day(late.ship_date) == _day(manifest.ship_date) + timedelta(days=1)
    assert late.state == shipping_pb2.LABEL_STATE_PURCHASED
    code, reason, _ = await _refused(stub.CloseManifest(shipping_pb2.CloseManifestRequest(
        request_id=new_id("close"), carrier=carrier, node_id=node)))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "NOTHING_TO_CLOSE")
    assert (await stub.VoidLabel(shipping_pb2.VoidLabelRequest(name=late.name))).state \
        == shipping_pb2.LABEL_STATE_VOIDED

    document = await stub.GetManifestDocument(
        shipping_pb2.GetManifestDocumentRequest(name=manifest.name))
    assert document.content_type == "application/pdf"
    pdf = pypdfium2.PdfDocument(document.content)
    try:
        text = "".join(page.get_textpage().get_text_range() for page in pdf)
    finally:
        pdf.close()
    assert kept.tracking_number in text and voided.tracking_number not in text


async def test_a_manifest_takes_each_open_label_once_under_concurrent_purchases(
        stub: Stub) -> None:
    carrier, _, node = await _carrier_at_new_node(stub)
    close = shipping_pb2.CloseManifestRequest(request_id=new_id("close"), carrier=carrier,
                                              node_id=node)
    bought = await asyncio.gather(*(stub.CreateLabel(_label_request(node)) for _ in range(8)),
                                  stub.CloseManifest(close),
                                  *(stub.CreateLabel(_label_request(node)) for _ in range(8)))
    manifest = bought[8]
    purchased = [label for label in bought if isinstance(label, shipping_pb2.Label)]
    on_manifest = set(manifest.labels)
    for label in purchased:
        # Every label is either on the manifest (bought before the close, shipping that day)
        # or bought after it and shipping the next day: none falls between.
        if label.name in on_manifest:
            assert _day(label.ship_date) == _day(manifest.ship_date)
        else:
            assert _day(label.ship_date) == _day(manifest.ship_date) + timedelta(days=1)
    assert manifest.parcel_count == len(on_manifest)


async def test_lists_filter_and_page(stub: Stub) -> None:
    carrier, _, node = await _carrier_at_new_node(stub)
    made = [await stub.CreateLabel(_label_request(node)) for _ in range(5)]
    await stub.VoidLabel(shipping_pb2.VoidLabelRequest(name=made[0].name))
    seen: list[str] = []
    token = ""
    while True:
        page = await stub.ListLabels(shipping_pb2.ListLabelsRequest(
            filter=f'node_id = "{node}" AND state = PURCHASED', page_size=2, page_token=token))
        seen += [label.name for label in page.labels]
        token = page.next_page_token
        if not token:
            break
    assert seen == [label.name for label in reversed(made[1:])]
    code, _, fields = await _refused(stub.ListLabels(shipping_pb2.ListLabelsRequest(
        filter="colour = red", page_token="forged")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and sorted(fields) == ["filter",
                                                                           "page_token"]
    await stub.CloseManifest(shipping_pb2.CloseManifestRequest(
        request_id=new_id("close"), carrier=carrier, node_id=node))
    manifests = await stub.ListManifests(shipping_pb2.ListManifestsRequest(
        filter=f'carrier = "{carrier}"'))
    assert [m.parcel_count for m in manifests.manifests] == [4]


async def test_a_return_label_travels_from_the_customer_back_to_the_node(stub: Stub) -> None:
    _, _, node = await _carrier_at_new_node(stub)
    request = _label_request(node, package=f"returns/{new_id('rma')}", return_label=True)
    label = await stub.CreateLabel(request)
    # The same lane as outbound (AQ to AQ, 1.5 kg): the card's first break.
    assert label.cost == _money("4.20")
    assert (label.destination.organization, label.destination.postal_code) == (
        "McMurdo Depot", "9999")
    assert await stub.CreateLabel(request) == label
    pdf = await stub.GetLabelDocument(shipping_pb2.GetLabelDocumentRequest(name=label.name))
    document = pypdfium2.PdfDocument(pdf.content)
    try:
        printed = document[0].get_textpage().get_text_range()
    finally:
        document.close()
    # Printed in drawing order: the sender under FROM, the node under SHIP TO.
    assert 0 <= printed.find("Ada Lovelace") < printed.find("SHIP TO") < printed.find(
        "McMurdo Depot")
    assert _barcodes(pdf.content) == [label.tracking_number]

    outbound_name = _label_request(node, return_label=True)
    code, _, fields = await _refused(stub.CreateLabel(outbound_name))
    assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["package"])
