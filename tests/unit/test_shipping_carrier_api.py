"""The karrio mapping, without a carrier: our requests as karrio's models (units stated and
converted), karrio's answers as ours (money exact), karrio's messages as our errors."""

from __future__ import annotations

import base64
import json
from datetime import date, datetime
from decimal import Decimal

import pytest
from google.rpc import code_pb2, error_details_pb2
from karrio.core import models as km
from oms_platform.grpc_errors import to_status
from oms_platform.money import Money
from oms_shipping.carrier_api import domain
from oms_shipping.carrier_api.domain import (
    Address,
    CarrierOperationUnsupported,
    CarrierRefused,
    CarrierRequestInvalid,
    CarrierUnavailable,
    LabelPurchase,
    Parcel,
    RateQuery,
    TrackingState,
)
from oms_shipping.settings import KarrioSettings

ORIGIN = Address("DE", "60311", "Frankfurt am Main", "HE", ("1 Logistics Way",),
                 organization="Frankfurt 3PL")
HOME = Address("GB", "CV1 2GT", "Coventry", "", ("Flat 3", "12 Priory Street"),
               recipient="Alex Morgan", phone="+442476000000", email="a@example.com",
               residential=True)


def test_grams_and_millimetres_go_to_karrio_as_kg_and_cm():
    parcel = domain.to_karrio_parcel(Parcel(1234, 305, 200, 0), 0)
    assert (parcel.weight, parcel.weight_unit) == (1.234, "KG")
    assert (parcel.length, parcel.width, parcel.dimension_unit) == (30.5, 20.0, "CM")
    assert parcel.height is None  # not measured is not zero


def test_address_fields_map_one_to_one():
    address = domain.to_karrio_address(HOME)
    assert (address.person_name, address.company_name) == ("Alex Morgan", None)
    assert (address.address_line1, address.address_line2) == ("Flat 3", "12 Priory Street")
    assert (address.city, address.postal_code, address.country_code) == \
        ("Coventry", "CV1 2GT", "GB")
    assert address.state_code is None and address.residential is True
    assert (address.phone_number, address.email) == ("+442476000000", "a@example.com")


def test_a_rate_request_carries_services_declared_value_and_ship_date():
    request = domain.to_rate_request(RateQuery(
        "dhl_express", ORIGIN, HOME,
        (Parcel(1000, declared_value=Money.of("EUR", "19.99")),
         Parcel(500, declared_value=Money.of("EUR", "5.01"))),
        service_codes=("dhl_express_worldwide_nondoc",), ship_date=date(2026, 12, 7)))
    assert request.services == ["dhl_express_worldwide_nondoc"]
    assert request.options == {"currency": "EUR", "declared_value": 25.0,
                               "shipment_date": "2026-12-07"}
    assert [p.weight for p in request.parcels] == [1.0, 0.5]


def test_declared_values_in_two_currencies_are_refused():
    with pytest.raises(ValueError):
        domain.to_rate_request(RateQuery("ups", ORIGIN, HOME, (
            Parcel(1000, declared_value=Money.of("EUR", "1")),
            Parcel(1000, declared_value=Money.of("USD", "1")))))


def test_a_label_across_a_border_has_customs_and_at_home_none():
    abroad = domain.to_shipment_request(LabelPurchase(
        "dhl_express", "dhl_express_worldwide_nondoc", ORIGIN, HOME,
        (Parcel(2500, declared_value=Money.of("EUR", "120"), description="Cotton shirts"),),
        reference="pkg-1", duties_paid=True))
    assert abroad.customs.incoterm == "DDP" and abroad.customs.duty.paid_by == "sender"
    assert abroad.customs.duty.declared_value == 120.0
    (item,) = abroad.customs.commodities
    assert (item.description, item.value_amount, item.value_currency, item.weight) == \
        ("Cotton shirts", 120.0, "EUR", 2.5)
    assert (abroad.service, abroad.reference, abroad.label_type) == \
        ("dhl_express_worldwide_nondoc", "pkg-1", "PDF")

    at_home = domain.to_shipment_request(LabelPurchase(
        "royalmail", "x", HOME, HOME, (Parcel(100),)))
    assert at_home.customs is None


@pytest.mark.parametrize(("amount", "currency", "expected"), [
    (59.420000000000002, "EUR", Decimal("59.42")),
    (12.7, "GBP", Decimal("12.70")),
    (0.1 + 0.2, "USD", Decimal("0.30")),  # 0.30000000000000004
    (2.675, "GBP", Decimal("2.68")),  # Decimal(2.675) is 2.67499999…, which would round down
    (1234.0, "JPY", Decimal("1234")),
    (7.125, "KWD", Decimal("7.125")),
])
def test_karrio_floats_become_decimals_in_the_currency_minor_units(amount, currency, expected):
    result = domain.money(amount, currency)
    assert result == Money(currency, expected)
    assert str(result.amount) == str(expected)


def test_a_rate_maps_with_charges_and_one_without_currency_is_dropped():
    rate = domain.from_rate_details(km.RateDetails(
        carrier_name="ups", carrier_id="ups", service="ups_ground", currency="USD",
        total_charge=17.13, transit_days=4, estimated_delivery="2026-12-11",
        extra_charges=[km.ChargeDetails(name="BASE CHARGE", amount=14.6, currency="USD"),
                       km.ChargeDetails(name="FUEL", amount=2.53)]))
    assert rate.total == Money("USD", Decimal("17.13"))
    assert [(c.name, c.amount) for c in rate.charges] == [
        ("BASE CHARGE", Money("USD", Decimal("14.60"))), ("FUEL", Money("USD", Decimal("2.53")))]
    assert (rate.transit_days, rate.estimated_delivery) == (4, date(2026, 12, 11))
    assert domain.from_rate_details(km.RateDetails(
        carrier_name="ups", carrier_id="ups", service="ups_ground", total_charge=1.0)) is None


def test_a_label_is_decoded_and_its_price_exact():
    label = domain.from_shipment_details(km.ShipmentDetails(
        carrier_name="dhl_express", carrier_id="dhl_express", tracking_number="4712098351",
        shipment_identifier="4712098351", label_type="ZPL",
        docs=km.Documents(label=base64.encodebytes(b"^XA^FO50,50^FDhi^FS^XZ" * 10).decode()),
        selected_rate=km.RateDetails(carrier_name="dhl_express", carrier_id="dhl_express",
                                     service="dhl_express", total_charge=59.42,
                                     currency="EUR")))
    assert label.label == b"^XA^FO50,50^FDhi^FS^XZ" * 10  # line breaks in base64 are fine
    assert label.label_format is domain.LabelFormat.ZPL
    assert label.price == Money("EUR", Decimal("59.42"))
    assert label.parcel_tracking_numbers == ("4712098351",)


def test_tracking_maps_karrio_statuses_and_local_times():
    tracking = domain.from_tracking_details(km.TrackingDetails(
        carrier_name="ups", carrier_id="ups", tracking_number="1Z4A12E80397452813",
        status="out_for_delivery", delivered=False, estimated_delivery="2026-12-09",
        events=[
            km.TrackingEvent(date="2026-12-09", time="14:22 PM", code="OT",
                             description="Out For Delivery Today ", status="out_for_delivery"),
            km.TrackingEvent(date="2026-12-07", time="08:05 AM", code="AR",
                             status="in_transit", location=" Edison, NJ "),
            km.TrackingEvent(date="2026-12-06", code="MP", status="pending"),
        ]))
    assert tracking.state is TrackingState.OUT_FOR_DELIVERY
    assert [e.state for e in tracking.events] == [
        TrackingState.OUT_FOR_DELIVERY, TrackingState.IN_TRANSIT, TrackingState.PRE_TRANSIT]
    # karrio writes 24-hour times with an AM/PM suffix at times
    assert [e.occurred_at for e in tracking.events] == [
        datetime(2026, 12, 9, 14, 22), datetime(2026, 12, 7, 8, 5), None]
    assert tracking.events[2].occurred_on == date(2026, 12, 6)
    assert tracking.events[1].location == "Edison, NJ"
    assert tracking.events[0].description == "Out For Delivery Today"


def test_delivered_wins_over_karrio_status():
    tracking = domain.from_tracking_details(km.TrackingDetails(
        carrier_name="royalmail", carrier_id="royalmail", tracking_number="JV123456785GB",
        delivered=True, events=[]))
    assert tracking.state is TrackingState.DELIVERED


def message(code: str, text: str = "", details: dict | None = None) -> km.Message:
    return km.Message(carrier_name="ups", carrier_id="ups", code=code, message=text,
                      details=details)


def test_karrio_messages_become_our_errors():
    refused = domain.failure("ups", "rating", [message("111285", "bad postcode")])
    assert isinstance(refused, CarrierRefused)
    assert refused.metadata == {"carrier": "ups", "carrier_codes": "111285"}

    down = domain.failure("ups", "labels", [message(
        domain.TRANSPORT_FAILURE, "URLError: refused", {"maybe_executed": False})])
    assert isinstance(down, CarrierUnavailable) and down.maybe_executed is False

    unreadable = domain.failure("ups", "labels", [message(
        "SHIPPING_SDK_INTERNAL_ERROR", "Expecting value: line 1 column 1")])
    assert isinstance(unreadable, CarrierUnavailable) and unreadable.maybe_executed is True

    unsupported = domain.failure("dhl_express", "void", [message(
        "SHIPPING_SDK_NON_SUPPORTED_ERROR", "this operation is not supported.")])
    assert isinstance(unsupported, CarrierOperationUnsupported)

    invalid = domain.failure("ups", "labels", [message(
        "SHIPPING_SDK_FIELD_ERROR", "Invalid request payload",
        {"recipient.phone_number": "required", "parcel[0].weight": "required"})])
    assert isinstance(invalid, CarrierRequestInvalid)
    assert [v.field for v in invalid.violations] == ["recipient.phone_number", "parcel[0].weight"]


def test_our_errors_answer_grpc_codes_with_retry_info_for_unavailable():
    status = to_status(CarrierUnavailable("ups", "no answer within 20s", maybe_executed=True))
    assert status.code == code_pb2.UNAVAILABLE
    retry = error_details_pb2.RetryInfo()
    assert any(d.Unpack(retry) for d in status.details)
    assert retry.retry_delay.seconds == 5
    assert to_status(CarrierRefused("ups", [])).code == code_pb2.FAILED_PRECONDITION
    assert to_status(domain.CarrierNotConfigured("ups", "x")).code == \
        code_pb2.FAILED_PRECONDITION
    assert to_status(CarrierRequestInvalid("ups", [])).code == code_pb2.INVALID_ARGUMENT


def test_parcels_and_tracking_numbers_are_checked_all_at_once():
    with pytest.raises(CarrierRequestInvalid) as bad:
        domain.check_parcels("ups", [Parcel(0), Parcel(100, length_mm=-1)])
    assert [v.field for v in bad.value.violations] == [
        "parcels[0].weight_grams", "parcels[1].length_mm"]
    with pytest.raises(CarrierRequestInvalid) as too_many:
        domain.check_tracking_numbers("ups", ["1Z 4A1"] + ["A"] * domain.MAX_TRACKING_NUMBERS)
    assert [v.field for v in too_many.value.violations] == [
        "tracking_numbers", "tracking_numbers[0]"]


def test_accounts_from_a_credentials_file_and_the_environment_wins(tmp_path, monkeypatch):
    secrets = tmp_path / "carriers.json"
    secrets.write_text(json.dumps({
        "ups": {"client_id": "file-id", "client_secret": "file-secret"},
        "royalmail": {"client_id": "rm", "client_secret": "rm-secret"},
    }))
    monkeypatch.setenv("OMS_SHIPPING_KARRIO_CREDENTIALS_FILE", str(secrets))
    monkeypatch.setenv("OMS_SHIPPING_KARRIO_UPS__CLIENT_ID", "env-id")
    monkeypatch.setenv("OMS_SHIPPING_KARRIO_UPS__CLIENT_SECRET", "env-secret")
    monkeypatch.setenv("OMS_SHIPPING_KARRIO_TEST_MODE", "false")
    settings = KarrioSettings()
    assert settings.ups.client_id.get_secret_value() == "env-id"
    assert settings.royalmail.client_secret.get_secret_value() == "rm-secret"
    assert settings.dhl_express is None and settings.test_mode is False
    assert "env-secret" not in repr(settings)
