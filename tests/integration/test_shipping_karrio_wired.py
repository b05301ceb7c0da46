"""Karrio carriers wired into the service, over real gRPC and PostgreSQL, the carriers' APIs
answered from recorded responses by a local HTTP server (karrio_replay): the rate shop
mixing table-rate and karrio quotes, a karrio carrier that is down listed ineligible, a karrio
label bought once across retries, a retry while it is being bought, a carrier that cannot be
reached releasing the claim, the carrier's own label document, and void through the carrier.

The origin is Edison, New Jersey; the parcels are ready on Monday 7 December 2026, the day
the recorded UPS answers pick up on, so the dates asserted do not move with the day the suite
runs."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, date, datetime

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from google.type import timeofday_pb2
from grpc_status import rpc_status
from karrio_replay import CarrierReplay, Route
from oms.common.v1 import common_pb2
from oms.shipping.v1 import shipping_pb2, shipping_pb2_grpc
from oms_devtools.inprocess import running_service
from oms_devtools.testkit import new_id
from oms_platform.service import Service
from oms_shipping.app import MIGRATIONS, definition
from oms_shipping.settings import (
    DhlExpressAccount,
    KarrioSettings,
    RoyalMailAccount,
    ShippingSettings,
    UpsAccount,
)
from oms_shipping.tables import karrio_label_claims
from sqlalchemy import create_engine, select

Stub = shipping_pb2_grpc.ShippingServiceStub

UPS_ROUTES = [
    # A purchase whose reference says so never gets an answer (a carrier hanging mid-call).
    Route("POST", "/api/shipments/v2409/ship", None, body_contains="hang-", hang=True),
    Route("POST", "/security/v1/oauth/token", "oauth_token.json"),
    Route("POST", "/api/rating/v2409/Shop", "rate.json"),
    Route("POST", "/api/shipments/v2409/ship", "ship.json"),
    Route("DELETE", "/api/shipments/v2409/void/cancel/", "void.json"),
]
READY = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)  # Monday, 09:00 in Edison
SEATTLE = common_pb2.Address(recipient="Morgan Lee", address_lines=["400 Pine St", "Apt 12"],
                             locality="Seattle", administrative_area="WA", postal_code="98101",
                             region_code="US", phone="+12065550123")
TIMEOUT_SECONDS = 3


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def ups() -> Iterator[CarrierReplay]:
    server = CarrierReplay("ups", list(UPS_ROUTES)).start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def database_url(database_factory: Callable[[str], str]) -> str:
    return database_factory("shipping_karrio_wired")


@pytest.fixture(scope="module")
async def service(database_url: str, nats_url: str,
                  ups: CarrierReplay) -> AsyncIterator[Service]:
    # UPS answers from recordings; DHL Express is configured at a port nobody listens on
    # (connection refused); Royal Mail's plugin only tracks.
    karrio = KarrioSettings(
        timeout_seconds=TIMEOUT_SECONDS,
        ups=UpsAccount(client_id="oms-sandbox-client", client_secret="s3cret",
                       account_number="4A12E8", server_url=ups.url),
        dhl_express=DhlExpressAccount(site_id="omsdemo", password="dhl-pass-9",
                                      server_url=f"http://127.0.0.1:{_free_port()}"),
        royalmail=RoyalMailAccount(client_id="rm", client_secret="rm-secret",
                                   server_url=f"http://127.0.0.1:{_free_port()}"))
    async with running_service(definition(ShippingSettings(), karrio), MIGRATIONS,
                               database_url=database_url, nats_url=nats_url) as service:
        yield service


@pytest.fixture(scope="module")
async def stub(service: Service) -> AsyncIterator[Stub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.bound_port}") as channel:
        yield Stub(channel)


@pytest.fixture(scope="module")
async def node(stub: Stub) -> str:
    """Edison, collected by a table-rate carrier (USD card) and three karrio carriers."""
    evening = timeofday_pb2.TimeOfDay(hours=18)

    standard, expedited = shipping_pb2.SERVICE_LEVEL_STANDARD, shipping_pb2.SERVICE_LEVEL_EXPEDITED

    def service(code: str, level: int, days: int) -> shipping_pb2.CarrierService:
        return shipping_pb2.CarrierService(code=code, display_name=code, service_level=level,
                                           transit_days=days, origin_countries=["US"],
                                           destination_countries=["US"])

    carriers = [
        shipping_pb2.Carrier(carrier_id="lonestar", display_name="Lone Star Parcels",
                             mode=shipping_pb2.CARRIER_MODE_TABLE_RATE,
                             services=[service("lonestar_ground", standard, 5)]),
        shipping_pb2.Carrier(carrier_id="ups", display_name="UPS",
                             mode=shipping_pb2.CARRIER_MODE_KARRIO, karrio_carrier="ups",
                             tracking_url_template="https://ups.example/{tracking_number}",
                             services=[service("ups_ground", standard, 5),
                                       service("ups_2nd_day_air", expedited, 2),
                                       service("ups_next_day_air",
                                               shipping_pb2.SERVICE_LEVEL_NEXT_DAY, 1)]),
        shipping_pb2.Carrier(carrier_id="dhl", display_name="DHL Express",
                             mode=shipping_pb2.CARRIER_MODE_KARRIO, karrio_carrier="dhl_express",
                             services=[service("dhl_express_domestic",
                                               shipping_pb2.SERVICE_LEVEL_EXPRESS, 1)]),
        shipping_pb2.Carrier(carrier_id="royalmail", display_name="Royal Mail",
                             mode=shipping_pb2.CARRIER_MODE_KARRIO, karrio_carrier="royalmail",
                             services=[service("royalmail_tracked_48", standard, 2)]),
    ]
    for carrier in carriers:
        await stub.CreateCarrier(shipping_pb2.CreateCarrierRequest(
            request_id=new_id("carrier"), carrier=carrier))
    node_id = new_id("edison").lower()
    await stub.CreateOrigin(shipping_pb2.CreateOriginRequest(origin=shipping_pb2.Origin(
        node_id=node_id, time_zone="America/New_York", cutoff_time=evening,
        carriers=[c.carrier_id for c in carriers],
        address=common_pb2.Address(organization="Edison fulfilment centre",
                                   address_lines=["1 Logistics Way"], locality="Edison",
                                   administrative_area="NJ", postal_code="08817",
                                   region_code="US", phone="+17325550100"))))
    usd = lambda amount: common_pb2.Money(currency_code="USD", amount=amount)  # noqa: E731
    await stub.CreateRateCard(shipping_pb2.CreateRateCardRequest(
        request_id=new_id("card"), rate_card_id=new_id("lonestar").lower(),
        rate_card=shipping_pb2.RateCard(
            service_code="lonestar_ground", currency_code="USD",
            zones=[shipping_pb2.Zone(zone="us", origin_country="US", destination_country="US")],
            breaks=[shipping_pb2.WeightBreak(zone="us", max_weight_grams=5000,
                                             price=usd("15.40"))])))
    return node_id


def _shipment(node: str, **changes: object) -> shipping_pb2.Shipment:
    ready = Timestamp()
    ready.FromDatetime(READY)
    fields: dict[str, object] = {
        "node_id": node, "destination": SEATTLE, "residential": True,
        "parcels": [shipping_pb2.Parcel(
            weight=common_pb2.Weight(grams=2100),
            dimensions=common_pb2.Dimensions(length_mm=350, width_mm=250, height_mm=140))],
        "ready_time": ready, **changes}
    return shipping_pb2.Shipment(**fields)  # type: ignore[arg-type]


def _label_request(node: str, **changes: object) -> shipping_pb2.CreateLabelRequest:
    fields: dict[str, object] = {
        "request_id": new_id("label"),
        "package": f"fulfilmentOrders/{new_id('fo')}/packages/1",
        "orders": [f"orders/{new_id('o')}"],
        "node_id": node, "destination": SEATTLE, "residential": True,
        "parcel": shipping_pb2.Parcel(weight=common_pb2.Weight(grams=2100)),
        "service_code": "ups_ground", **changes}
    return shipping_pb2.CreateLabelRequest(**fields)  # type: ignore[arg-type]


async def _refused(call: object) -> tuple[grpc.StatusCode, str, str]:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call  # type: ignore[misc]
    status = rpc_status.from_call(raised.value)
    reason = ""
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
    return raised.value.code(), reason, raised.value.details() or ""


def _day(value: object) -> date:
    return date(value.year, value.month, value.day)  # type: ignore[attr-defined]


async def test_the_rate_shop_mixes_table_rate_and_karrio_quotes_and_lists_the_down_ones(
        stub: Stub, node: str, ups: CarrierReplay) -> None:
    before = len(ups.requests_to("/api/rating/"))
    response = await stub.RateShipment(shipping_pb2.RateShipmentRequest(
        shipment=_shipment(node)))

    quotes = {q.service_code: q for q in response.quotes}
    assert set(quotes) == {"lonestar_ground", "ups_ground", "ups_2nd_day_air"}
    ground = quotes["ups_ground"]
    assert (ground.carrier, ground.total.amount, ground.total.currency_code) == \
        ("ups", "17.13", "USD")
    assert [(c.kind, c.amount.amount) for c in ground.charges] == [
        ("base_charge", "14.60"), ("fuel_surcharge", "2.53")]
    # Our ship date (Monday, before the cut-off); the carrier's own transit days.
    assert _day(ground.ship_date) == date(2026, 12, 7)
    assert ground.transit_days == 4
    assert _day(ground.estimated_delivery_date) == date(2026, 12, 11)
    assert quotes["ups_2nd_day_air"].total.amount == "41.87"
    assert quotes["lonestar_ground"].total.amount == "15.40"
    # Cheapest on time: the table-rate quote; the others say why they lost, in one currency.
    assert response.quotes[0].service_code == "lonestar_ground"
    assert ground.lost_reason == "costs 1.73 USD more"

    reasons = {line.split(":", 1)[0]: line for line in response.ineligible}
    assert "not available" in reasons["dhl_express_domestic"]
    assert "Connection refused" in reasons["dhl_express_domestic"]
    assert "does not support rating" in reasons["royalmail_tracked_48"]
    assert "quoted no rate" in reasons["ups_next_day_air"]
    # One rating call to UPS, for the three services it may carry.
    assert len(ups.requests_to("/api/rating/")) == before + 1


async def test_a_level_only_karrio_carriers_offer_lists_each_with_why(
        stub: Stub, node: str) -> None:
    response = await stub.RateShipment(shipping_pb2.RateShipmentRequest(
        shipment=_shipment(node, service_level=shipping_pb2.SERVICE_LEVEL_EXPRESS)))
    assert list(response.quotes) == []
    reasons = {line.split(":", 1)[0]: line for line in response.ineligible}
    assert "slower than express" in reasons["lonestar_ground"]
    assert "slower than express" in reasons["ups_ground"]
    assert "Connection refused" in reasons["dhl_express_domestic"]
    assert "quoted no rate" in reasons["ups_next_day_air"]


async def test_a_karrio_label_is_bought_once_across_retries_and_voided_at_the_carrier(
        stub: Stub, node: str, ups: CarrierReplay) -> None:
    request = _label_request(node)
    ships_before = len(ups.requests_to("/api/shipments/v2409/ship"))

    first = await stub.CreateLabel(request)
    again = await stub.CreateLabel(request)
    batch = await stub.BatchCreateLabels(shipping_pb2.BatchCreateLabelsRequest(
        requests=[request]))

    assert first.tracking_number == "1Z4A12E80397452813"
    assert first.tracking_url == "https://ups.example/1Z4A12E80397452813"
    assert (first.carrier, first.service_code) == ("ups", "ups_ground")
    assert (first.cost.amount, first.cost.currency_code) == ("17.13", "USD")
    assert again == first
    assert batch.results[0].label == first
    assert len(ups.requests_to("/api/shipments/v2409/ship")) == ships_before + 1

    pdf = await stub.GetLabelDocument(shipping_pb2.GetLabelDocumentRequest(name=first.name))
    assert pdf.content_type == "application/pdf"
    assert pdf.content.startswith(b"%PDF")  # the carrier's label as karrio gave it
    code, reason, message = await _refused(stub.GetLabelDocument(
        shipping_pb2.GetLabelDocumentRequest(name=first.name,
                                             format=shipping_pb2.DOCUMENT_FORMAT_ZPL)))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "LABEL_FORMAT_UNAVAILABLE")
    assert "PDF" in message

    voided = await stub.VoidLabel(shipping_pb2.VoidLabelRequest(name=first.name))
    assert voided.state == shipping_pb2.LABEL_STATE_VOIDED
    assert [r.method for r in ups.requests_to(
        "/api/shipments/v2409/void/cancel/1Z4A12E80397452813")] == ["DELETE"]
    # A retried void is answered with the label and calls the carrier no more.
    assert (await stub.VoidLabel(shipping_pb2.VoidLabelRequest(name=first.name))) == voided
    assert len(ups.requests_to("/api/shipments/v2409/void/cancel/")) == 1


async def test_a_retry_while_buying_is_aborted_and_a_purchase_that_may_have_happened_is_held(
        stub: Stub, node: str, ups: CarrierReplay, database_url: str) -> None:
    request = _label_request(node, request_id=new_id("hang"))
    buying = asyncio.ensure_future(stub.CreateLabel(request))
    # The claim is committed before the carrier is called.
    engine = create_engine(database_url)
    try:
        for _ in range(200):
            with engine.connect() as conn:
                state = conn.scalar(select(karrio_label_claims.c.state).where(
                    karrio_label_claims.c.request_id == request.request_id))
            if state is not None:
                break
            await asyncio.sleep(0.02)
        assert state == "BUYING"

        code, reason, _ = await _refused(stub.CreateLabel(request))
        assert (code, reason) == (grpc.StatusCode.ABORTED, "LABEL_PURCHASE_IN_PROGRESS")

        code, reason, message = await _refused(buying)
        assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION,
                                  "LABEL_PURCHASE_UNCERTAIN")
        assert f"no answer within {TIMEOUT_SECONDS}s" in message
        code, reason, _ = await _refused(stub.CreateLabel(request))
        assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION,
                                  "LABEL_PURCHASE_UNCERTAIN")
        with engine.connect() as conn:
            held = conn.execute(select(karrio_label_claims).where(
                karrio_label_claims.c.request_id == request.request_id)).one()
        assert (held.state, held.carrier, held.service_code) == ("UNCERTAIN", "ups",
                                                                  "ups_ground")
    finally:
        engine.dispose()
    # Asked once, and never again for the retries.
    sent = [r for r in ups.requests_to("/api/shipments/v2409/ship")
            if request.request_id in r.body]
    assert len(sent) == 1


async def test_a_carrier_that_cannot_be_reached_releases_the_claim(
        stub: Stub, node: str, database_url: str) -> None:
    request = _label_request(node, service_code="dhl_express_domestic")
    for _ in range(2):  # the retry is tried afresh, not held: nothing was bought
        code, reason, message = await _refused(stub.CreateLabel(request))
        assert (code, reason) == (grpc.StatusCode.UNAVAILABLE, "CARRIER_UNAVAILABLE")
        assert "Connection refused" in message
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            assert conn.scalar(select(karrio_label_claims.c.request_id).where(
                karrio_label_claims.c.request_id == request.request_id)) is None
    finally:
        engine.dispose()


async def test_a_plugin_that_cannot_buy_labels_is_refused_and_buys_nothing(
        stub: Stub, node: str) -> None:
    request = _label_request(node, service_code="royalmail_tracked_48")
    code, reason, message = await _refused(stub.CreateLabel(request))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION,
                              "CARRIER_OPERATION_UNSUPPORTED")
    assert "labels" in message
    assert (await stub.ListLabels(shipping_pb2.ListLabelsRequest(
        filter='carrier = "royalmail"'))).labels == []
