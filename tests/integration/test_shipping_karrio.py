"""The karrio adapter end to end over real HTTP: each plugin's server URL points at a local
server answering with recorded carrier responses (tests/fixtures/karrio/<carrier>/), and what
karrio sent is asserted as well as what came back."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal

import pytest
from karrio_replay import CarrierReplay, Route
from oms_platform.money import Money
from oms_shipping.carrier_api import domain
from oms_shipping.carrier_api.client import KarrioCarriers
from oms_shipping.carrier_api.domain import (
    Address,
    CarrierOperationUnsupported,
    CarrierRefused,
    CarrierUnavailable,
    LabelFormat,
    LabelPurchase,
    Parcel,
    RateQuery,
    TrackingState,
)
from oms_shipping.settings import (
    DhlExpressAccount,
    KarrioSettings,
    RoyalMailAccount,
    UpsAccount,
)

EDISON = Address("US", "08817", "Edison", "NJ", ("1 Logistics Way",),
                 organization="Edison fulfilment centre", phone="+17325550100")
SEATTLE = Address("US", "98101", "Seattle", "WA", ("400 Pine St", "Apt 12"),
                  recipient="Morgan Lee", phone="+12065550123", residential=True)
FRANKFURT = Address("DE", "60311", "Frankfurt am Main", "HE", ("1 Logistics Way",),
                    recipient="Dispatch", organization="Frankfurt 3PL", phone="+49690000000")
COVENTRY = Address("GB", "CV1 2GT", "Coventry", "", ("12 Priory Street",),
                   recipient="Alex Morgan", phone="+442476000000", email="alex@example.com")
SHIRTS = Parcel(2500, 300, 200, 150, Money.of("EUR", "120"), "Cotton shirts")
BOOTS = Parcel(2100, 350, 250, 140, Money.of("USD", "80"), "Boots")

UPS_ROUTES = [
    Route("POST", "/security/v1/oauth/token", "oauth_token.json"),
    Route("POST", "/api/rating/v2409/Shop", "rate.json"),
    Route("POST", "/api/shipments/v2409/ship", "ship.json"),
    Route("DELETE", "/api/shipments/v2409/void/cancel/", "void.json"),
    Route("GET", "/api/track/v1/details/", "track.json"),
]
XML = "application/xml"
DHL_ROUTES = [
    Route("POST", "/XMLShippingServlet", "rate.xml", body_contains="DCTRequest",
          content_type=XML),
    Route("POST", "/XMLShippingServlet", "ship_error.xml", body_contains="CV99 9ZZ",
          content_type=XML),
    Route("POST", "/XMLShippingServlet", "ship.xml", body_contains="ShipmentRequest",
          content_type=XML),
    Route("POST", "/XMLShippingServlet", "track.xml", body_contains="KnownTrackingRequest",
          content_type=XML),
]
ROYALMAIL_ROUTES = [
    Route("GET", "/mailpieces/v2/JV123456785GB/events", "track.json"),
    Route("GET", "/mailpieces/v2/", "track_error.json", status=404),
]


def replay(carrier: str, routes: list[Route]) -> Iterator[CarrierReplay]:
    server = CarrierReplay(carrier, routes).start()
    try:
        yield server
    finally:
        server.close()


def carriers_at(**urls: str) -> KarrioCarriers:
    return KarrioCarriers(KarrioSettings(
        timeout_seconds=10,
        ups=UpsAccount(client_id="oms-sandbox-client", client_secret="s3cret",
                       account_number="4A12E8", server_url=urls.get("ups", "")),
        dhl_express=DhlExpressAccount(site_id="omsdemo", password="dhl-pass-9",
                                      account_number="951234567",
                                      server_url=urls.get("dhl_express", "")),
        royalmail=RoyalMailAccount(client_id="rm-client", client_secret="rm-secret",
                                   server_url=urls.get("royalmail", "")),
    ))


def free_port_nobody_listens_on() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def ups() -> Iterator[CarrierReplay]:
    yield from replay("ups", UPS_ROUTES)


@pytest.fixture
def dhl() -> Iterator[CarrierReplay]:
    yield from replay("dhl_express", DHL_ROUTES)


@pytest.fixture
def royalmail() -> Iterator[CarrierReplay]:
    yield from replay("royalmail", ROYALMAIL_ROUTES)


# -- UPS -----------------------------------------------------------------------------------


async def test_ups_rates_come_back_as_decimal_money_and_the_request_in_kg_and_cm(ups):
    client = carriers_at(ups=ups.url)
    try:
        rates = await client.rate(RateQuery("ups", EDISON, SEATTLE, (BOOTS,)))
    finally:
        client.close()

    by_service = {r.service_code: r for r in rates}
    assert set(by_service) == {"ups_ground", "ups_2nd_day_air"}
    ground = by_service["ups_ground"]
    assert ground.total == Money("USD", Decimal("17.13"))
    assert [(c.name, c.amount.amount) for c in ground.charges] == [
        ("BASE CHARGE", Decimal("14.60")), ("FUEL SURCHARGE", Decimal("2.53"))]
    assert ground.transit_days == 4

    # one OAuth token, then the rating call with it, in the units we stated
    assert ups.received[0].path == "/security/v1/oauth/token"
    (sent,) = ups.requests_to("/api/rating/")
    assert sent.headers["authorization"].startswith("Bearer eyJraWQiOiJvbXMtcmVwbGF5")
    shipment = json.loads(sent.body)["RateRequest"]["Shipment"]
    # 2100 g went to karrio as 2.1 KG and 350 mm as 35 CM; its UPS plugin bills a US
    # shipper's packages in pounds and inches, converted from the units we stated
    assert shipment["ShipmentTotalWeight"]["Weight"] == "2.1"
    assert shipment["ShipmentTotalWeight"]["UnitOfMeasurement"]["Code"] == "KGS"
    package = shipment["Package"][0]
    assert (package["PackageWeight"]["Weight"],
            package["PackageWeight"]["UnitOfMeasurement"]["Code"]) == ("4.63", "LBS")
    assert (package["Dimensions"]["Length"], package["Dimensions"]["UnitOfMeasurement"]["Code"]) \
        == ("13.78", "IN")
    assert shipment["ShipTo"]["Address"]["PostalCode"] == "98101"
    assert shipment["ShipFrom"]["Address"]["PostalCode"] == "08817"


async def test_ups_label_void_and_tracking(ups):
    client = carriers_at(ups=ups.url)
    try:
        label = await client.buy_label(LabelPurchase(
            "ups", "ups_ground", EDISON, SEATTLE, (BOOTS,), reference="pkg-7f3a"))
        await client.void_label("ups", label.shipment_identifier)
        (tracking,) = await client.track("ups", [label.tracking_number])
    finally:
        client.close()

    assert label.tracking_number == "1Z4A12E80397452813"
    assert label.label_format is LabelFormat.PDF
    assert label.label.startswith(b"%PDF")  # the carrier's GIF, made a PDF by karrio
    (ship,) = ups.requests_to("/api/shipments/v2409/ship")
    shipment = json.loads(ship.body)["ShipmentRequest"]["Shipment"]
    assert shipment["Service"]["Code"] == "03"  # UPS Ground
    assert shipment["ShipTo"]["Address"]["PostalCode"] == "98101"
    assert shipment["Package"][0]["PackageWeight"]["Weight"] == "4.63"  # lb, from 2100 g
    reference = json.loads(ship.body)["ShipmentRequest"]["Request"]["TransactionReference"]
    assert reference["CustomerContext"] == "pkg-7f3a"
    voids = ups.requests_to("/api/shipments/v2409/void/cancel/1Z4A12E80397452813")
    assert [r.method for r in voids] == ["DELETE"]
    # the token was fetched once and reused by every later call
    assert len(ups.requests_to("/security/v1/oauth/token")) == 1

    assert tracking.tracking_number == "1Z4A12E80397452813"
    assert tracking.delivered and tracking.state is TrackingState.DELIVERED
    newest = tracking.events[0]
    assert (newest.carrier_code, newest.occurred_at) == ("KB", datetime(2026, 12, 9, 14, 22))
    assert newest.location == "Seattle, WA, 98101, US"


async def test_ups_refusal_is_ours_with_the_carrier_code(ups):
    ups.routes.insert(0, Route("POST", "/api/rating/", "rate_error.json", status=400))
    ups.routes.insert(0, Route("DELETE", "/api/shipments/v2409/void/cancel/", "void_error.json",
                               status=400))
    client = carriers_at(ups=ups.url)
    try:
        with pytest.raises(CarrierRefused) as refused:
            await client.rate(RateQuery("ups", EDISON, SEATTLE, (BOOTS,)))
        with pytest.raises(CarrierRefused) as too_late:
            await client.void_label("ups", "1Z4A12E80397452813")
    finally:
        client.close()
    assert refused.value.metadata["carrier_codes"] == "111285"
    assert "postal code 99999 is invalid" in refused.value.message
    assert too_late.value.metadata == {"carrier": "ups", "carrier_codes": "190117"}


async def test_a_gateway_error_page_instead_of_the_api_is_unavailable(ups):
    ups.routes.insert(0, Route("POST", "/api/rating/", None, status=503,
                               content_type="text/html"))
    client = carriers_at(ups=ups.url)
    try:
        with pytest.raises(CarrierUnavailable) as unavailable:
            await client.rate(RateQuery("ups", EDISON, SEATTLE, (BOOTS,)))
    finally:
        client.close()
    assert unavailable.value.reason == "CARRIER_UNAVAILABLE"


async def test_connection_refused_is_unavailable_and_nothing_was_bought():
    client = carriers_at(ups=f"http://127.0.0.1:{free_port_nobody_listens_on()}")
    try:
        with pytest.raises(CarrierUnavailable) as unavailable:
            await client.buy_label(LabelPurchase("ups", "ups_ground", EDISON, SEATTLE, (BOOTS,)))
    finally:
        client.close()
    assert unavailable.value.maybe_executed is False
    assert "Connection refused" in unavailable.value.message


async def test_a_carrier_that_never_answers_times_out_as_unavailable_maybe_bought(ups):
    ups.routes.insert(0, Route("POST", "/api/shipments/v2409/ship", None, hang=True))
    client = KarrioCarriers(KarrioSettings(
        timeout_seconds=1,
        ups=UpsAccount(client_id="c", client_secret="s", server_url=ups.url)))
    await client.open()  # the plugins load outside the timed call
    try:
        with pytest.raises(CarrierUnavailable) as unavailable:
            await client.buy_label(LabelPurchase("ups", "ups_ground", EDISON, SEATTLE, (BOOTS,)))
    finally:
        client.close()
    assert unavailable.value.maybe_executed is True
    assert "no answer within 1s" in unavailable.value.message


# -- DHL Express ---------------------------------------------------------------------------


async def test_dhl_express_rates_floats_become_exact_money(dhl):
    client = carriers_at(dhl_express=dhl.url)
    try:
        rates = await client.rate(RateQuery("dhl_express", FRANKFURT, COVENTRY, (SHIRTS,),
                                            ship_date=date(2026, 12, 7)))
    finally:
        client.close()
    by_service = {r.service_code: r for r in rates}
    worldwide = by_service["dhl_express_worldwide_nondoc"]
    # recorded as 59.420000000000002 and 11.109999999999999
    assert worldwide.total == Money("EUR", Decimal("59.42"))
    assert [c.amount.amount for c in worldwide.charges] == [Decimal("48.31"), Decimal("11.11")]
    assert worldwide.transit_days == 1

    (sent,) = dhl.received
    assert "<ShipmentWeight>2.5</ShipmentWeight>" in sent.body
    assert "<WeightUnit>KG</WeightUnit>" in sent.body
    assert "<DimensionUnit>CM</DimensionUnit>" in sent.body
    assert "<Postalcode>CV1 2GT</Postalcode>" in sent.body
    assert "<SiteID>omsdemo</SiteID>" in sent.body


async def test_dhl_express_label_tracking_and_no_void(dhl):
    client = carriers_at(dhl_express=dhl.url)
    try:
        label = await client.buy_label(LabelPurchase(
            "dhl_express", "dhl_express_worldwide_nondoc", FRANKFURT, COVENTRY, (SHIRTS,),
            reference="pkg-91c2"))
        with pytest.raises(CarrierOperationUnsupported):
            await client.void_label("dhl_express", label.shipment_identifier)
        (tracking,) = await client.track("dhl_express", [label.tracking_number])
    finally:
        client.close()

    assert label.tracking_number == "4712098351"
    assert label.label.startswith(b"%PDF")
    assert label.price == Money("EUR", Decimal("59.42"))
    (ship,) = [r for r in dhl.received if "ShipmentRequest" in r.body]
    assert "<GlobalProductCode>P</GlobalProductCode>" in ship.body
    assert "<PostalCode>CV1 2GT</PostalCode>" in ship.body
    # DE to GB crosses a customs border: the declared value goes with it, duties unpaid
    assert "<DeclaredValue>120</DeclaredValue>" in ship.body
    assert "<TermsOfTrade>DAP</TermsOfTrade>" in ship.body
    # the void never reached the carrier: karrio's DHL Express plugin has none
    assert len(dhl.received) == 2

    assert tracking.state is TrackingState.OUT_FOR_DELIVERY
    assert tracking.estimated_delivery == date(2026, 12, 8)
    assert [e.carrier_code for e in tracking.events] == ["WC", "PU"]


async def test_dhl_express_refusal(dhl):
    client = carriers_at(dhl_express=dhl.url)
    nowhere = Address("GB", "CV99 9ZZ", "Coventry", "", ("1 Nowhere Lane",),
                      recipient="Alex Morgan", phone="+442476000000")
    try:
        with pytest.raises(CarrierRefused) as refused:
            await client.buy_label(LabelPurchase(
                "dhl_express", "dhl_express_worldwide_nondoc", FRANKFURT, nowhere, (SHIRTS,)))
    finally:
        client.close()
    assert refused.value.metadata["carrier_codes"] == "420505"


# -- Royal Mail ----------------------------------------------------------------------------


async def test_royalmail_tracking_and_an_unknown_number(royalmail):
    client = carriers_at(royalmail=royalmail.url)
    try:
        (tracking,) = await client.track("royalmail", ["JV123456785GB"])
        with pytest.raises(CarrierRefused) as unknown:
            await client.track("royalmail", ["JV000000000GB"])
        with pytest.raises(CarrierOperationUnsupported):
            await client.rate(RateQuery("royalmail", COVENTRY, COVENTRY, (SHIRTS,)))
    finally:
        client.close()

    assert tracking.delivered and tracking.state is TrackingState.DELIVERED
    assert [e.carrier_code for e in tracking.events] == ["EVKOP", "EVGPD", "EVPPA"]
    assert tracking.events[0].occurred_at == datetime(2026, 12, 9, 11, 42)
    (sent, _) = royalmail.received
    assert sent.headers["x-ibm-client-id"] == "rm-client"
    assert sent.headers["x-accept-rmg-terms"] == "yes"
    assert unknown.value.metadata["carrier_codes"] == "404"
    # rating never left the service: Royal Mail's plugin only tracks
    assert len(royalmail.received) == 2


async def test_a_carrier_without_an_account_is_not_configured():
    client = KarrioCarriers(KarrioSettings())
    try:
        with pytest.raises(domain.CarrierNotConfigured):
            await client.track("ups", ["1Z4A12E80397452813"])
        with pytest.raises(domain.CarrierNotConfigured):
            await client.track("fedex", ["123"])
    finally:
        client.close()
