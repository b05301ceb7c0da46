"""Our carrier requests and answers, and their mapping to and from karrio's unified models.

Pure: karrio's models (``karrio.core.models``) are plain attrs records, so building and reading
them here calls no carrier; ``client.py`` sends them.

Units are converted explicitly, never left to a plugin's default: our grams become karrio
``KG`` (grams / 1000) and our millimetres ``CM`` (mm / 10), so each plugin converts from a unit
it was told. A dimension of 0 means "not measured" and is left out.

Money is never a float on our side. Karrio gives amounts as floats; each becomes a ``Decimal``
through ``str(float)`` — Python's shortest repr that reads back as the same float, so 12.7
stays "12.7" where ``Decimal(12.7)`` would be 12.699999999999999289… — and is then quantized
to the currency's ISO 4217 minor units (``Money.of``: 2 for GBP, 0 for JPY, 3 for KWD). Our
declared values go to karrio as floats built from the Decimal's string, the one place a
float of money exists, inside karrio's own model.

A carrier call ends in a result or in one of the errors below, which the gRPC layer answers
by their platform base: ``CarrierUnavailable`` → ``UNAVAILABLE`` (retryable, with a
RetryInfo), ``CarrierRequestInvalid`` → ``INVALID_ARGUMENT``, ``CarrierRefused``,
``CarrierOperationUnsupported`` and ``CarrierNotConfigured`` → ``FAILED_PRECONDITION``.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING

import PyPDF2
from oms_platform.errors import FailedPrecondition, FieldViolation, InvalidArgument, Unavailable
from oms_platform.money import Money
from PyPDF2.generic import NameObject

if TYPE_CHECKING:
    # Imported where karrio's models are built: importing karrio is for a process that has a
    # karrio carrier to call (see client.py).
    from karrio.core import models as km

# The plugins this service installs, by karrio's carrier name.
CARRIERS = ("ups", "dhl_express", "royalmail")

# Karrio's own message codes (karrio.core.errors, karrio.api.gateway).
_NOT_SUPPORTED = "SHIPPING_SDK_NON_SUPPORTED_ERROR"
_FIELD_ERRORS = frozenset({"SHIPPING_SDK_FIELD_ERROR", "SHIPPING_SDK_VALIDATING_ERROR"})
# What karrio reports when a call raised: a network failure (which client.py tags with
# TRANSPORT_FAILURE before karrio sees it) or an answer its parser could not read — most often
# a gateway's HTML error page instead of the API's body.
_INTERNAL = "SHIPPING_SDK_INTERNAL_ERROR"
TRANSPORT_FAILURE = "OMS_CARRIER_TRANSPORT_FAILURE"

# At most this many tracking numbers in one tracking call (UPS and Royal Mail fetch one HTTP
# request per number).
MAX_TRACKING_NUMBERS = 25
# At most this many parcels in one rate or label request.
MAX_PARCELS = 50


# -- errors ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CarrierMessage:
    """One message a carrier (or karrio on its behalf) returned."""

    code: str
    text: str
    level: str = "error"


def _describe(carrier: str, messages: Sequence[CarrierMessage]) -> str:
    said = "; ".join(f"{m.code}: {m.text}" if m.code else m.text for m in messages)
    return f"{carrier}: {said}" if said else carrier


class CarrierUnavailable(Unavailable):
    """The carrier could not be reached, did not answer in time, or answered something that is
    not its API's answer. Retryable. ``maybe_executed`` says whether the carrier may have done
    it anyway (a timeout after the request went out): a label purchase that ends so may have
    bought a label, which the caller reconciles (void it, or look it up) before buying again."""

    reason = "CARRIER_UNAVAILABLE"

    def __init__(self, carrier: str, detail: str, *, maybe_executed: bool,
                 retry_after: timedelta = timedelta(seconds=5)) -> None:
        super().__init__(f"{carrier} is not available: {detail}",
                         metadata={"carrier": carrier}, retry_after=retry_after)
        self.carrier = carrier
        self.maybe_executed = maybe_executed


class CarrierRefused(FailedPrecondition):
    """The carrier answered and refused: an unknown postcode for the service, an account not
    allowed the service, an unknown tracking number. Not retryable as it is."""

    reason = "CARRIER_REFUSED"

    def __init__(self, carrier: str, messages: Sequence[CarrierMessage]) -> None:
        codes = ",".join(m.code for m in messages if m.code)
        super().__init__(_describe(carrier, messages),
                         metadata={"carrier": carrier, "carrier_codes": codes})
        self.carrier = carrier
        self.messages = tuple(messages)


class CarrierRequestInvalid(InvalidArgument):
    """Karrio found the request incomplete for this carrier before sending it (a field the
    carrier needs is missing); each field karrio named is a violation."""

    reason = "CARRIER_REQUEST_INVALID"

    def __init__(self, carrier: str, violations: list[FieldViolation]) -> None:
        super().__init__(violations, f"{carrier}: " + "; ".join(
            f"{v.field}: {v.description}" for v in violations))
        self.carrier = carrier
        self.metadata = {"carrier": carrier}


class CarrierOperationUnsupported(FailedPrecondition):
    """The carrier's plugin cannot do this: Royal Mail's only tracks, DHL Express has no void
    (an unused DHL Express label is not billed)."""

    reason = "CARRIER_OPERATION_UNSUPPORTED"

    def __init__(self, carrier: str, operation: str) -> None:
        super().__init__(f"{carrier} does not support {operation} through karrio",
                         metadata={"carrier": carrier, "operation": operation})


class CarrierNotConfigured(FailedPrecondition):
    """No credentials are configured for the carrier, or no plugin is installed for it."""

    reason = "CARRIER_NOT_CONFIGURED"

    def __init__(self, carrier: str, detail: str) -> None:
        super().__init__(f"{carrier}: {detail}", metadata={"carrier": carrier})


# -- requests ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Address:
    """The fields of ``oms.common.v1.Address`` a carrier uses, plus whether it is residential."""

    region_code: str
    postal_code: str = ""
    locality: str = ""
    administrative_area: str = ""
    address_lines: tuple[str, ...] = ()
    recipient: str = ""
    organization: str = ""
    phone: str = ""
    email: str = ""
    residential: bool = False


@dataclass(frozen=True)
class Parcel:
    weight_grams: int
    length_mm: int = 0
    width_mm: int = 0
    height_mm: int = 0
    declared_value: Money | None = None
    description: str = ""


@dataclass(frozen=True)
class RateQuery:
    carrier: str
    origin: Address
    destination: Address
    parcels: tuple[Parcel, ...]
    # Karrio service codes to quote, e.g. "ups_standard"; empty asks for every service.
    service_codes: tuple[str, ...] = ()
    ship_date: date | None = None
    reference: str = ""


class LabelFormat(StrEnum):
    PDF = "PDF"
    ZPL = "ZPL"


@dataclass(frozen=True)
class LabelPurchase:
    carrier: str
    service_code: str
    origin: Address
    destination: Address
    parcels: tuple[Parcel, ...]
    # Our own reference (the label's request id or package id), printed on the label and
    # sent as the carrier's customer reference.
    reference: str = ""
    label_format: LabelFormat = LabelFormat.PDF
    ship_date: date | None = None
    # Across a customs border: duties and taxes paid by the sender (DDP) or the recipient (DAP).
    duties_paid: bool = False
    contents: str = "Merchandise"


# -- results -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Charge:
    name: str
    amount: Money


@dataclass(frozen=True)
class CarrierRate:
    carrier: str
    service_code: str
    total: Money
    charges: tuple[Charge, ...] = ()
    transit_days: int | None = None
    estimated_delivery: date | None = None


@dataclass(frozen=True)
class PurchasedLabel:
    carrier: str
    tracking_number: str
    # What the carrier voids by (UPS: the shipment id; often the tracking number).
    shipment_identifier: str
    label_format: LabelFormat
    label: bytes
    # What the carrier will bill, when it said.
    price: Money | None = None
    # One per parcel, where the carrier numbers parcels apart (UPS does).
    parcel_tracking_numbers: tuple[str, ...] = ()
    notes: tuple[CarrierMessage, ...] = ()


class TrackingState(StrEnum):
    """Our tracking statuses (``oms.shipping.v1.TrackingStatus``), named without prefix."""

    PRE_TRANSIT = "PRE_TRANSIT"
    IN_TRANSIT = "IN_TRANSIT"
    OUT_FOR_DELIVERY = "OUT_FOR_DELIVERY"
    DELIVERY_FAILED = "DELIVERY_FAILED"
    EXCEPTION = "EXCEPTION"
    RETURNED_TO_SENDER = "RETURNED_TO_SENDER"
    DELIVERED = "DELIVERED"


# Karrio's normalised statuses (karrio.core.units.TrackingStatus) in ours. A parcel waiting at
# a pickup point has failed home delivery as far as the customer is concerned; "unknown" is
# left to the carrier's own event code (None).
KARRIO_STATES: dict[str, TrackingState | None] = {
    "pending": TrackingState.PRE_TRANSIT,
    "picked_up": TrackingState.IN_TRANSIT,
    "in_transit": TrackingState.IN_TRANSIT,
    "delivery_delayed": TrackingState.IN_TRANSIT,
    "out_for_delivery": TrackingState.OUT_FOR_DELIVERY,
    "ready_for_pickup": TrackingState.DELIVERY_FAILED,
    "delivery_failed": TrackingState.DELIVERY_FAILED,
    "on_hold": TrackingState.EXCEPTION,
    "cancelled": TrackingState.EXCEPTION,
    "return_to_sender": TrackingState.RETURNED_TO_SENDER,
    "delivered": TrackingState.DELIVERED,
    "unknown": None,
}


@dataclass(frozen=True)
class CarrierTrackingEvent:
    carrier_code: str
    description: str
    # When the carrier dated the scan, in the scan's local time (carriers give no offset);
    # None when it gave a date only.
    occurred_at: datetime | None
    occurred_on: date | None
    location: str = ""
    state: TrackingState | None = None


@dataclass(frozen=True)
class CarrierTracking:
    carrier: str
    tracking_number: str
    state: TrackingState | None
    delivered: bool
    estimated_delivery: date | None
    # Newest first, as the carriers list them.
    events: tuple[CarrierTrackingEvent, ...] = field(default_factory=tuple)


# -- checks ------------------------------------------------------------------------------


def check_parcels(carrier: str, parcels: Sequence[Parcel]) -> None:
    problems: list[FieldViolation] = []
    if not parcels:
        problems.append(FieldViolation("parcels", "at least one parcel"))
    if len(parcels) > MAX_PARCELS:
        problems.append(FieldViolation("parcels", f"at most {MAX_PARCELS} parcels"))
    for i, parcel in enumerate(parcels):
        if parcel.weight_grams <= 0:
            problems.append(FieldViolation(f"parcels[{i}].weight_grams", "must be more than 0"))
        for name in ("length_mm", "width_mm", "height_mm"):
            if getattr(parcel, name) < 0:
                problems.append(FieldViolation(f"parcels[{i}].{name}", "must not be negative"))
    if problems:
        raise CarrierRequestInvalid(carrier, problems)


def check_tracking_numbers(carrier: str, tracking_numbers: Sequence[str]) -> None:
    problems: list[FieldViolation] = []
    if not tracking_numbers:
        problems.append(FieldViolation("tracking_numbers", "at least one tracking number"))
    if len(tracking_numbers) > MAX_TRACKING_NUMBERS:
        problems.append(FieldViolation(
            "tracking_numbers", f"at most {MAX_TRACKING_NUMBERS} tracking numbers"))
    for i, number in enumerate(tracking_numbers):
        if not number.strip() or not number.isalnum():
            problems.append(FieldViolation(f"tracking_numbers[{i}]", "letters and digits only"))
    if problems:
        raise CarrierRequestInvalid(carrier, problems)


# -- to karrio ---------------------------------------------------------------------------


def grams_to_kg(grams: int) -> float:
    return float(Decimal(grams) / 1000)


def mm_to_cm(mm: int) -> float | None:
    return float(Decimal(mm) / 10) if mm > 0 else None


def to_karrio_address(address: Address) -> km.Address:
    from karrio.core import models as km

    lines = [line for line in address.address_lines if line.strip()]
    return km.Address(
        person_name=address.recipient or None,
        company_name=address.organization or None,
        address_line1=lines[0] if lines else "",
        address_line2=" ".join(lines[1:]) or None,
        city=address.locality or None,
        state_code=address.administrative_area or None,
        postal_code=address.postal_code or None,
        country_code=address.region_code,
        phone_number=address.phone or None,
        email=address.email or None,
        residential=address.residential,
    )


def to_karrio_parcel(parcel: Parcel, index: int) -> km.Parcel:
    from karrio.core import models as km

    return km.Parcel(
        id=str(index + 1),
        weight=grams_to_kg(parcel.weight_grams),
        weight_unit="KG",
        length=mm_to_cm(parcel.length_mm),
        width=mm_to_cm(parcel.width_mm),
        height=mm_to_cm(parcel.height_mm),
        dimension_unit="CM",
        description=parcel.description or None,
    )


def _declared(parcels: Sequence[Parcel]) -> Money | None:
    values = [p.declared_value for p in parcels if p.declared_value is not None]
    if not values:
        return None
    total = values[0]
    for value in values[1:]:
        total = total + value  # one currency per request; Money refuses a mix
    return total


def _options(parcels: Sequence[Parcel], ship_date: date | None) -> dict[str, object]:
    options: dict[str, object] = {}
    declared = _declared(parcels)
    if declared is not None:
        options["currency"] = declared.currency_code
        options["declared_value"] = float(str(declared.amount))
    if ship_date is not None:
        options["shipment_date"] = ship_date.isoformat()
    return options


def to_rate_request(query: RateQuery) -> km.RateRequest:
    from karrio.core import models as km

    return km.RateRequest(
        shipper=to_karrio_address(query.origin),
        recipient=to_karrio_address(query.destination),
        parcels=[to_karrio_parcel(p, i) for i, p in enumerate(query.parcels)],
        services=list(query.service_codes),
        options=_options(query.parcels, query.ship_date),
        reference=query.reference,
    )


def _customs(purchase: LabelPurchase) -> km.Customs | None:
    from karrio.core import models as km

    if purchase.origin.region_code == purchase.destination.region_code:
        return None
    declared = _declared(purchase.parcels)
    commodities = [
        km.Commodity(
            description=(p.description or purchase.contents)[:35],
            quantity=1,
            weight=grams_to_kg(p.weight_grams),
            weight_unit="KG",
            value_amount=float(str(p.declared_value.amount)) if p.declared_value else None,
            value_currency=p.declared_value.currency_code if p.declared_value else None,
            origin_country=purchase.origin.region_code,
        )
        for p in purchase.parcels
    ]
    return km.Customs(
        commodities=commodities,
        content_type="merchandise",
        content_description=purchase.contents,
        incoterm="DDP" if purchase.duties_paid else "DAP",
        duty=km.Duty(
            paid_by="sender" if purchase.duties_paid else "recipient",
            currency=declared.currency_code if declared else None,
            declared_value=float(str(declared.amount)) if declared else None,
        ),
    )


def to_shipment_request(purchase: LabelPurchase) -> km.ShipmentRequest:
    from karrio.core import models as km

    return km.ShipmentRequest(
        service=purchase.service_code,
        shipper=to_karrio_address(purchase.origin),
        recipient=to_karrio_address(purchase.destination),
        parcels=[to_karrio_parcel(p, i) for i, p in enumerate(purchase.parcels)],
        payment=km.Payment(paid_by="sender"),
        customs=_customs(purchase),
        options=_options(purchase.parcels, purchase.ship_date),
        reference=purchase.reference,
        label_type=purchase.label_format.value,
    )


def to_cancel_request(shipment_identifier: str) -> km.ShipmentCancelRequest:
    from karrio.core import models as km

    return km.ShipmentCancelRequest(shipment_identifier=shipment_identifier)


def to_tracking_request(tracking_numbers: Sequence[str]) -> km.TrackingRequest:
    from karrio.core import models as km

    return km.TrackingRequest(tracking_numbers=list(tracking_numbers))


# -- from karrio -------------------------------------------------------------------------


def money(amount: float | int | str | None, currency: str | None) -> Money | None:
    """A karrio amount as Money: through ``str`` (never ``Decimal(float)``), quantized to the
    currency's minor units. None when karrio gave no amount or no currency."""
    if amount is None or not currency:
        return None
    return Money.of(currency.upper(), Decimal(str(amount)))


def _date(value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def from_rate_details(rate: km.RateDetails) -> CarrierRate | None:
    """Our rate, or None for a rate without a currency (unusable as money)."""
    total = money(rate.total_charge, rate.currency)
    if total is None:
        return None
    charges = tuple(
        Charge(c.name or "", amount)
        for c in rate.extra_charges or []
        if (amount := money(c.amount, c.currency or rate.currency)) is not None
    )
    return CarrierRate(
        carrier=rate.carrier_name,
        service_code=rate.service,
        total=total,
        charges=charges,
        transit_days=rate.transit_days,
        estimated_delivery=_date(rate.estimated_delivery),
    )


def from_shipment_details(details: km.ShipmentDetails,
                          notes: Sequence[CarrierMessage] = ()) -> PurchasedLabel:
    """Our label; karrio hands the label document as base64 (with line breaks at times).
    A carrier asked for PDF may still answer in ZPL; ``label_format`` says what came."""
    rate = details.selected_rate
    meta = details.meta or {}
    numbers = tuple(meta.get("tracking_numbers") or (details.tracking_number,))
    return PurchasedLabel(
        carrier=details.carrier_name,
        tracking_number=details.tracking_number,
        shipment_identifier=details.shipment_identifier or details.tracking_number,
        label_format=LabelFormat(details.label_type or "PDF"),
        label=base64.b64decode(details.docs.label or ""),
        price=money(rate.total_charge, rate.currency) if rate is not None else None,
        parcel_tracking_numbers=numbers,
        notes=tuple(notes),
    )


def _event_time(day: date | None, time: str | None, timestamp: str | None) -> datetime | None:
    # Karrio's ISO timestamp carries a "Z" of its own making: carriers report local time.
    if timestamp:
        try:
            return datetime.fromisoformat(timestamp[:19])
        except ValueError:
            pass
    if day is None or not time:
        return None
    text = time.strip()
    for pattern, part in (("%I:%M %p", text), ("%H:%M", text[:5])):
        try:
            return datetime.combine(day, datetime.strptime(part, pattern).time())
        except ValueError:
            continue
    return None


def from_tracking_details(details: km.TrackingDetails) -> CarrierTracking:
    events = []
    for event in details.events or []:
        day = _date(event.date)
        events.append(CarrierTrackingEvent(
            carrier_code=event.code or "",
            description=(event.description or "").strip(),
            occurred_at=_event_time(day, event.time, event.timestamp),
            occurred_on=day,
            location=(event.location or "").strip(),
            state=KARRIO_STATES.get(event.status or "unknown"),
        ))
    state = KARRIO_STATES.get(details.status or "unknown")
    if details.delivered:
        state = TrackingState.DELIVERED
    return CarrierTracking(
        carrier=details.carrier_name,
        tracking_number=details.tracking_number,
        state=state,
        delivered=bool(details.delivered),
        estimated_delivery=_date(details.estimated_delivery),
        events=tuple(events),
    )


def from_messages(messages: Sequence[km.Message]) -> list[CarrierMessage]:
    return [
        CarrierMessage(code=str(m.code or ""), text=str(m.message or "").strip(),
                       level=m.level or "error")
        for m in messages
    ]


def _violations(message: km.Message) -> list[FieldViolation]:
    details = message.details if isinstance(message.details, dict) else {}
    named = [FieldViolation(str(name), str(problem)) for name, problem in details.items()
             if isinstance(problem, str)]
    return named or [FieldViolation("request", str(message.message or "is invalid"))]


def failure(carrier: str, operation: str, messages: Sequence[km.Message]) -> Exception:
    """The error for a call that gave no result, from karrio's messages. Checked in order of
    what the caller can do about it: retry later, fix the request, or nothing."""
    codes = {str(m.code or "") for m in messages}
    if TRANSPORT_FAILURE in codes:
        sent = any(m.code == TRANSPORT_FAILURE and (m.details or {}).get("maybe_executed")
                   for m in messages)
        text = next(str(m.message) for m in messages if m.code == TRANSPORT_FAILURE)
        return CarrierUnavailable(carrier, text, maybe_executed=sent)
    if _INTERNAL in codes:
        text = next(str(m.message) for m in messages if m.code == _INTERNAL)
        return CarrierUnavailable(carrier, f"unreadable answer ({text})", maybe_executed=True)
    if _NOT_SUPPORTED in codes:
        return CarrierOperationUnsupported(carrier, operation)
    if codes & _FIELD_ERRORS:
        return CarrierRequestInvalid(carrier, [
            v for m in messages if m.code in _FIELD_ERRORS for v in _violations(m)])
    if not messages:
        return CarrierUnavailable(carrier, "an empty answer", maybe_executed=True)
    return CarrierRefused(carrier, from_messages(messages))



_WHITESPACE = re.compile(rb"\s")


def compact_pdf(document: bytes) -> bytes:
    """The PDF with each image karrio stored as hex text (``ASCIIHexDecode``: how Pillow
    writes a palette image, which is what karrio makes of UPS's GIF labels) stored
    deflated instead: the same pixels, 4.3 MB becoming some 20 kB, so a label fits a gRPC
    message and a table row. Any other PDF, or one that cannot be read, is returned as it
    came."""
    try:
        reader = PyPDF2.PdfReader(io.BytesIO(document))
        writer = PyPDF2.PdfWriter()
        changed = False
        for page in reader.pages:
            images = page.get("/Resources", {}).get("/XObject")
            for ref in (images.get_object().values() if images else ()):
                image = ref.get_object()
                if image.get("/Filter") != "/ASCIIHexDecode":
                    continue
                # PyPDF2's own hex decoder fails on bytes; the format is hex digits, blanks
                # allowed, ending in ">" (an odd last digit is followed by a 0).
                digits = _WHITESPACE.sub(b"", bytes(image._data)).rstrip(b">")
                raw = binascii.unhexlify(digits + b"0" * (len(digits) % 2))
                image._data = zlib.compress(raw, 6)
                image[NameObject("/Filter")] = NameObject("/FlateDecode")
                changed = True
            writer.add_page(page)
        if not changed:
            return document
        out = io.BytesIO()
        writer.write(out)
        return out.getvalue()
    except Exception:  # a document we cannot improve is still the carrier's label
        return document
