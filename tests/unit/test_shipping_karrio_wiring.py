"""The pure parts of wiring karrio carriers in, without a server: a carrier's quote dated and
chosen among table-rate ones, the claim of a purchase under way, the carrier's stored label
document, the compacting of karrio's PDF labels, and which services are bought from a carrier."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

import pypdfium2
import pytest
from google.rpc import code_pb2, error_details_pb2
from karrio.core.utils.helpers import image_to_pdf
from oms_platform.errors import Aborted
from oms_platform.grpc_errors import to_status
from oms_platform.money import Money
from oms_shipping.app import definition
from oms_shipping.carrier_api.domain import compact_pdf
from oms_shipping.carriers.domain import Carrier, CarrierService, Level, Mode, Origin
from oms_shipping.labels import domain as labels
from oms_shipping.rating.cards import Destination, Parcel, RateCard, WeightBreak, Zone
from oms_shipping.rating.domain import Goal, Shipment, carrier_quote, decide, table_rate_quotes
from oms_shipping.settings import KarrioSettings, ShippingSettings, UpsAccount

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "karrio"
EDISON = Origin("edison", "US", "08817", "America/New_York", time(18, 0))
GROUND = CarrierService("ups_ground", Level.STANDARD, 5)
UPS = Carrier("ups", (GROUND,), mode=Mode.KARRIO, karrio_carrier="ups")
TABLE_SERVICE = CarrierService("lonestar_ground", Level.STANDARD, 3)
TABLE = Carrier("lonestar", (TABLE_SERVICE,))
CARD = RateCard("lonestar", "lonestar_ground", "USD", (Zone("us", "US", "US"),),
                (WeightBreak("us", 5000, Decimal("15.40")),))
# Monday 7 December 2026, 09:00 in Edison: ships that day.
MONDAY = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)


def usd(amount: str) -> Money:
    return Money.of("USD", amount)


def shipment(**changes: object) -> Shipment:
    fields: dict[str, object] = {"destination": Destination("US", "98101", True),
                                 "parcels": (Parcel(2100), Parcel(400)), "ready_time": MONDAY}
    fields.update(changes)
    return Shipment(**fields)  # type: ignore[arg-type]


# --- A carrier's quote ---

def test_a_carrier_quote_ships_on_our_date_and_arrives_on_the_carriers_estimate() -> None:
    quote = carrier_quote(shipment(), EDISON, UPS, GROUND, usd("17.13"),
                          [("base_charge", usd("14.60")), ("fuel", usd("2.53")),
                           ("vat", Money.of("EUR", "1.00"))],
                          transit_days=4, estimated_delivery=date(2026, 12, 11))
    assert (quote.ship_date, quote.delivery_date, quote.transit_days) == (
        date(2026, 12, 7), date(2026, 12, 11), 4)
    # a charge in another currency than the total is left out, not summed wrongly
    assert [c.kind for c in quote.price.charges] == ["base_charge", "fuel"]
    assert quote.price.billed_weight_grams == 2500  # actual weight: the carrier's rules unknown
    assert quote.price.rate_card_id == ""


def test_without_an_estimate_the_carriers_transit_days_then_ours_date_the_delivery() -> None:
    theirs = carrier_quote(shipment(), EDISON, UPS, GROUND, usd("17.13"), transit_days=2)
    ours = carrier_quote(shipment(), EDISON, UPS, GROUND, usd("17.13"))
    # Monday + 2 business days = Wednesday; + our 5 = the next Monday
    assert theirs.delivery_date == date(2026, 12, 9)
    assert (ours.delivery_date, ours.transit_days) == (date(2026, 12, 14), 5)


def test_an_estimate_before_our_ship_date_is_not_believed() -> None:
    # Past the cut-off on Friday 11 December: ships Monday 14th; the carrier's date is stale.
    late = shipment(ready_time=datetime(2026, 12, 11, 23, 30, tzinfo=UTC))
    quote = carrier_quote(late, EDISON, UPS, GROUND, usd("17.13"),
                          estimated_delivery=date(2026, 12, 11))
    assert quote.ship_date == date(2026, 12, 14)
    assert quote.delivery_date == date(2026, 12, 21)  # our 5 business days


def test_an_estimate_alone_gives_the_business_days_in_transit() -> None:
    quote = carrier_quote(shipment(), EDISON, UPS, GROUND, usd("17.13"),
                          estimated_delivery=date(2026, 12, 14))
    assert quote.transit_days == 5  # Tue..Fri and Monday


def test_carrier_quotes_are_chosen_among_the_table_rate_ones_by_the_goal() -> None:
    promise = datetime(2026, 12, 10, 23, 0, tzinfo=UTC)
    wanted = shipment(promise_time=promise, parcels=(Parcel(2100),))
    table, ineligible = table_rate_quotes(wanted, EDISON, [TABLE], {"lonestar_ground": [CARD]})
    fast = carrier_quote(wanted, EDISON, UPS, GROUND, usd("17.13"),
                         estimated_delivery=date(2026, 12, 9))
    result = decide(wanted, [*table, fast], [*ineligible, "ups_2nd_day_air: down"],
                    goal=Goal.CHEAPEST_ON_TIME)
    # lonestar: 15.40, Monday + 3 = Thursday 10th, on time; UPS dearer
    assert [q.service_code for q in result.quotes] == ["lonestar_ground", "ups_ground"]
    assert result.quotes[1].lost_reason == "costs 1.73 USD more"
    assert result.ineligible == ("ups_2nd_day_air: down",)
    fastest = decide(wanted, [*table, fast], [], goal=Goal.FASTEST)
    assert fastest.chosen is not None and fastest.chosen.service_code == "ups_ground"


def test_quotes_in_another_currency_than_the_baskets_are_set_aside() -> None:
    wanted = shipment(basket_value=usd("80"), parcels=(Parcel(2100),))
    euro = carrier_quote(wanted, EDISON, UPS, GROUND, Money.of("EUR", "12.00"))
    table, _ = table_rate_quotes(wanted, EDISON, [TABLE], {"lonestar_ground": [CARD]})
    result = decide(wanted, [*table, euro], [])
    assert [q.service_code for q in result.quotes] == ["lonestar_ground"]
    assert result.ineligible == ("ups_ground: priced in EUR, quotes compare in USD",)


# --- Buying from a carrier ---

def _request(service_code: str) -> labels.LabelRequest:
    return labels.LabelRequest(
        request_id="r-1", package="fulfilmentOrders/f/packages/1", orders=(), node_id="edison",
        destination=labels.Address("US", "98101"), residential=True, parcel=Parcel(2100),
        service_code=service_code, service_level=None, promise_time=None,
        goal=Goal.CHEAPEST_ON_TIME, incoterm=labels.Incoterm.DDU)


def test_only_a_named_service_of_a_karrio_carrier_is_bought_from_the_carrier() -> None:
    carriers = [TABLE, UPS]
    assert labels.karrio_service(_request("ups_ground"), carriers) == (UPS, GROUND)
    assert labels.karrio_service(_request("lonestar_ground"), carriers) is None
    assert labels.karrio_service(_request(""), carriers) is None  # the rate shop's choice
    assert labels.karrio_service(_request("nobody_sells_this"), carriers) is None


def test_a_claim_under_way_is_aborted_and_a_stale_or_uncertain_one_held() -> None:
    stale_after = timedelta(seconds=80)
    with pytest.raises(labels.PurchaseInProgress) as busy:
        labels.check_claim("BUYING", timedelta(seconds=3), stale_after, request_id="r-1",
                           carrier="ups", detail="")
    assert busy.value.metadata == {"request_id": "r-1", "carrier": "ups"}
    with pytest.raises(labels.PurchaseUncertain):
        labels.check_claim("BUYING", timedelta(seconds=81), stale_after, request_id="r-1",
                           carrier="ups", detail="")
    with pytest.raises(labels.PurchaseUncertain) as held:
        labels.check_claim("UNCERTAIN", timedelta(seconds=1), stale_after, request_id="r-1",
                           carrier="ups", detail="ups is not available: no answer within 20s")
    assert "no answer within 20s" in held.value.message


def test_an_in_progress_purchase_is_answered_aborted_with_a_retry_delay() -> None:
    status = to_status(labels.PurchaseInProgress("busy", retry_after=timedelta(seconds=2)))
    assert status.code == code_pb2.ABORTED
    kinds = {d.type_url.rsplit("/", 1)[-1] for d in status.details}
    assert {"google.rpc.ErrorInfo", "google.rpc.RetryInfo"} <= kinds
    retry = error_details_pb2.RetryInfo()
    next(d for d in status.details if d.Is(retry.DESCRIPTOR)).Unpack(retry)
    assert retry.retry_delay.seconds == 2
    assert isinstance(labels.PurchaseInProgress("x"), Aborted)


def test_the_carriers_document_is_served_only_in_its_own_format() -> None:
    assert labels.stored_document("ZPL", "") == "ZPL"
    assert labels.stored_document("ZPL", "ZPL") == "ZPL"
    with pytest.raises(labels.LabelFormatUnavailable) as refused:
        labels.stored_document("ZPL", "PDF")
    assert refused.value.metadata == {"available_format": "ZPL"}


# --- Karrio's PDF labels ---

def _karrio_ups_pdf() -> bytes:
    shipped = json.loads((FIXTURES / "ups" / "ship.json").read_text())
    package = shipped["ShipmentResponse"]["ShipmentResults"]["PackageResults"]
    package = package[0] if isinstance(package, list) else package
    # what karrio's UPS plugin does with the carrier's GIF
    return base64.b64decode(image_to_pdf(package["ShippingLabel"]["GraphicImage"], rotate=-90,
                                         resize={"height": 1800, "width": 1200}))


def _pixels(pdf: bytes) -> bytes:
    document = pypdfium2.PdfDocument(pdf)
    try:
        return document[0].render(scale=1).to_pil().convert("RGB").tobytes()
    finally:
        document.close()


def test_karrios_hex_written_label_is_compacted_to_the_same_pixels() -> None:
    original = _karrio_ups_pdf()
    compact = compact_pdf(original)
    assert len(original) > 4 * 1024 * 1024  # over gRPC's default message limit
    assert len(compact) < 100 * 1024
    assert _pixels(compact) == _pixels(original)


def test_a_pdf_with_nothing_to_compact_or_no_pdf_at_all_is_kept_as_it_came() -> None:
    compact = compact_pdf(_karrio_ups_pdf())
    assert compact_pdf(compact) is compact
    assert compact_pdf(b"not a pdf") == b"not a pdf"
    buffer = io.BytesIO()
    assert compact_pdf(buffer.getvalue()) == b""


# --- Settings and start-up ---

def test_karrios_plugins_are_loaded_at_start_only_when_an_account_is_configured() -> None:
    def tasks(karrio: KarrioSettings) -> list[str]:
        return [job.__name__ for job in definition(ShippingSettings(), karrio).background]

    assert not KarrioSettings().any_configured
    assert "open_carriers" not in tasks(KarrioSettings())
    configured = KarrioSettings(ups=UpsAccount(client_id="c", client_secret="s"))
    assert configured.configured("ups") and not configured.configured("dhl_express")
    assert not configured.configured("fedex")
    assert tasks(configured).count("open_carriers") == 1


def test_a_service_with_no_karrio_account_never_imports_karrio() -> None:
    # In a fresh interpreter (this one has karrio loaded by the tests above): the service's
    # definition built, its servicer made and a table-rate shipment rated and answered.
    script = """
import sys
from datetime import UTC, datetime
from decimal import Decimal
from oms_shipping.app import ShippingServicer, definition
from oms_shipping.carriers.domain import Carrier, CarrierService, Level, Origin
from oms_shipping.rating import convert
from oms_shipping.rating.cards import Destination, Parcel, RateCard, WeightBreak, Zone
from oms_shipping.rating.domain import Shipment, rate_shipment
from oms_shipping.settings import KarrioSettings, ShippingSettings

karrio = KarrioSettings()
assert not karrio.any_configured
service = definition(ShippingSettings(), karrio)
ShippingServicer(None, ShippingSettings(), karrio)
card = RateCard("post", "post_standard", "GBP", (Zone("uk", "GB", "GB"),),
                (WeightBreak("uk", 2000, Decimal("3.00")),))
result = rate_shipment(
    Shipment(Destination("GB", "SW1A 1AA"), (Parcel(1000),), datetime.now(UTC)),
    Origin("uk", "GB", "M1 1AA", "Europe/London"),
    [Carrier("post", (CarrierService("post_standard", Level.STANDARD, 2),))],
    {"post_standard": [card]})
convert.rate_response(result).SerializeToString()
assert result.chosen is not None
print(sorted(m for m in sys.modules if m.split(".")[0] == "karrio"))
"""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("OMS_SHIPPING_KARRIO_")}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]", done.stdout
