"""The rules of labels, pure: tracking numbers in each carrier's scheme with its check digit,
the label's state machine, the day-close rule, and what a label request must hold."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from oms_platform import filtering as filters
from oms_platform.errors import (
    Aborted,
    FailedPrecondition,
    NotFound,
    Violations,
)
from oms_platform.money import Money

from oms_shipping.carriers.domain import Carrier, CarrierService, Level, Mode, Origin
from oms_shipping.rating import cards as rate_cards
from oms_shipping.rating import domain as rating
from oms_shipping.rating import promise
from oms_shipping.rating.cards import Incoterm, Parcel
from oms_shipping.rating.domain import Goal

LABEL_NAME = re.compile(r"labels/(?P<id>[0-9a-f]{32}|[0-9a-f-]{36})")
MAX_REQUEST_ID_LENGTH = 128
MAX_PACKAGE_LENGTH = 300
MAX_ORDERS = 100
MAX_ORDER_LENGTH = 200
MAX_NODE_ID_LENGTH = 63
MAX_SERVICE_CODE_LENGTH = 100
MAX_BATCH = 100
MAX_REPEATS_REPORTED = 20
MAX_PAGE_SIZE = 500
LABEL_FILTER_FIELDS = {
    "carrier": filters.text("=", "!="),
    "node_id": filters.text("=", "!="),
    "state": filters.enum({s: s for s in ("PURCHASED", "VOIDED", "MANIFESTED")}, "=", "!=",
                          prefix="LABEL_STATE_"),
    "package": filters.text("=", "!="),
    "tracking_number": filters.text("=", "!="),
}
# A parcel's bounds: what the heaviest freight service takes, and 3 m a side.
MAX_WEIGHT_GRAMS = 1_000_000
MAX_SIDE_MM = 3_000
_PACKAGE = re.compile(r"fulfilmentOrders/[^/\s]+/packages/[^/\s]+")
# What a return label is for: the return (RMA) the customer sends back.
_RETURN = re.compile(r"returns/[^/\s]+")


class TrackingScheme(StrEnum):
    """How a carrier's tracking numbers are formed and checked (``TrackingScheme`` in the
    contract, without its prefix)."""

    UNSPECIFIED = "UNSPECIFIED"
    UPS_1Z = "UPS_1Z"
    S10 = "S10"
    MOD10 = "MOD10"
    MOD7 = "MOD7"


class TrackingSpaceExhausted(FailedPrecondition):
    reason = "TRACKING_NUMBERS_EXHAUSTED"


# --- Check digits ---

def ups_check_digit(body: str) -> int:
    """The check digit of the 15 characters after "1Z": letters count as
    ``(ord(letter) - 63) % 10`` (A=2 … H=9, I=0, J=1 …), digits in odd places (from 1) once
    and in even places twice; the check brings the sum to a multiple of 10."""
    total = 0
    for place, char in enumerate(body, start=1):
        value = int(char) if char.isdigit() else (ord(char) - 63) % 10
        total += value * (2 if place % 2 == 0 else 1)
    return (10 - total % 10) % 10


S10_WEIGHTS = (8, 6, 4, 2, 3, 5, 9, 7)


def s10_check_digit(serial: str) -> int:
    """UPU S10: the 8 serial digits weighted 8,6,4,2,3,5,9,7; 11 minus the sum mod 11, where
    10 becomes 0 and 11 becomes 5."""
    remainder = 11 - sum(int(d) * w for d, w in zip(serial, S10_WEIGHTS, strict=True)) % 11
    return {10: 0, 11: 5}.get(remainder, remainder)


def mod10_check_digit(digits: str) -> int:
    """Weights 3 and 1 from the rightmost digit (GS1, USPS and the like): the check brings the
    weighted sum to a multiple of 10."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits)))
    return (10 - total % 10) % 10


def mod7_check_digit(digits: str) -> int:
    """DHL Express waybills: the number before the check digit, mod 7."""
    return int(digits) % 7


# --- Tracking numbers ---

@dataclass(frozen=True)
class TrackingFormat:
    """What besides the serial goes into a carrier's numbers. ``account`` is the UPS shipper
    number (6 letters or digits); ``service`` the UPS service indicator (2 digits) or the S10
    service indicator (2 letters); ``country`` the S10 country of origin."""

    scheme: TrackingScheme
    account: str = "OMS001"
    service: str = ""
    country: str = "GB"


# Serials each scheme holds: 1Z's reference has 7 digits, S10's serial 8, a DHL waybill's 9.
CAPACITY = {
    TrackingScheme.UPS_1Z: 10**7,
    TrackingScheme.S10: 10**8,
    TrackingScheme.MOD10: 10**19,
    TrackingScheme.MOD7: 10**9,
    TrackingScheme.UNSPECIFIED: 10**12,
}
# UPS's own service indicators for the levels that have one; ground otherwise.
UPS_SERVICES = {"NEXT_DAY": "01", "SAME_DAY": "01", "EXPRESS": "01", "EXPEDITED": "02",
                "INTERNATIONAL": "07"}
# Postal carriers' parcels: the UPU service indicator "CP" (parcel post).
S10_DEFAULT_SERVICE = "CP"
MOD10_PREFIX = "92"


def tracking_number(fmt: TrackingFormat, serial: int, service_level: str = "") -> str:
    """The tracking number for a serial drawn from one sequence: unique as long as the serial
    is, and valid in the scheme. A serial past the scheme's capacity is refused rather than
    wrapped, since a wrapped number could name a parcel still in flight."""
    if not 0 < serial < CAPACITY[fmt.scheme]:
        raise TrackingSpaceExhausted(
            f"the {fmt.scheme} tracking numbers of this carrier are used up",
            metadata={"scheme": fmt.scheme})
    match fmt.scheme:
        case TrackingScheme.UPS_1Z:
            service = fmt.service or UPS_SERVICES.get(service_level, "03")
            body = f"{fmt.account.upper()}{service}{serial:07d}"
            return f"1Z{body}{ups_check_digit(body)}"
        case TrackingScheme.S10:
            digits = f"{serial:08d}"
            service = (fmt.service or S10_DEFAULT_SERVICE).upper()
            return f"{service}{digits}{s10_check_digit(digits)}{fmt.country.upper()}"
        case TrackingScheme.MOD10:
            digits = f"{MOD10_PREFIX}{serial:019d}"
            return f"{digits}{mod10_check_digit(digits)}"
        case TrackingScheme.MOD7:
            digits = f"{serial:09d}"
            return f"{digits}{mod7_check_digit(digits)}"
        case _:
            return f"{serial:012d}"


_UPS = re.compile(r"1Z(?P<body>[0-9A-Z]{15})(?P<check>\d)")
_S10 = re.compile(r"(?P<service>[A-Z]{2})(?P<serial>\d{8})(?P<check>\d)(?P<country>[A-Z]{2})")
_DIGITS = re.compile(r"\d+")


def is_valid(scheme: TrackingScheme, number: str) -> bool:
    """Whether a tracking number is well formed in its scheme and its check digit holds."""
    match scheme:
        case TrackingScheme.UPS_1Z:
            m = _UPS.fullmatch(number)
            return m is not None and ups_check_digit(m["body"]) == int(m["check"])
        case TrackingScheme.S10:
            m = _S10.fullmatch(number)
            return m is not None and s10_check_digit(m["serial"]) == int(m["check"])
        case TrackingScheme.MOD10:
            return (_DIGITS.fullmatch(number) is not None and len(number) >= 2
                    and mod10_check_digit(number[:-1]) == int(number[-1]))
        case TrackingScheme.MOD7:
            return (_DIGITS.fullmatch(number) is not None and len(number) >= 2
                    and mod7_check_digit(number[:-1]) == int(number[-1]))
        case _:
            return _DIGITS.fullmatch(number) is not None


def tracking_url(template: str, number: str) -> str:
    return template.replace("{tracking_number}", number) if template else ""


# --- The label's state machine ---

class LabelState(StrEnum):
    PURCHASED = "PURCHASED"
    VOIDED = "VOIDED"
    MANIFESTED = "MANIFESTED"


# Both ends are final: a voided label was never handed over, a manifested one was.
TRANSITIONS: dict[LabelState, frozenset[LabelState]] = {
    LabelState.PURCHASED: frozenset({LabelState.VOIDED, LabelState.MANIFESTED}),
    LabelState.VOIDED: frozenset(),
    LabelState.MANIFESTED: frozenset(),
}


class LabelManifested(FailedPrecondition):
    reason = "LABEL_MANIFESTED"


class LabelVoided(FailedPrecondition):
    reason = "LABEL_VOIDED"


def void(state: LabelState, name: str = "") -> LabelState:
    """The state after voiding. Voiding a voided label changes nothing (a retried void); a
    label on a closed manifest was handed to the carrier and cannot be voided."""
    if state is LabelState.VOIDED:
        return state
    if LabelState.VOIDED not in TRANSITIONS[state]:
        raise LabelManifested(f"{name or 'the label'} is on a closed manifest and cannot be "
                              "voided", metadata={"name": name} if name else None)
    return LabelState.VOIDED


def manifest(state: LabelState, name: str = "") -> LabelState:
    """The state after going on a manifest; a voided label never does."""
    if state is LabelState.MANIFESTED:
        return state
    if LabelState.MANIFESTED not in TRANSITIONS[state]:
        raise LabelVoided(f"{name or 'the label'} is voided and cannot be manifested",
                          metadata={"name": name} if name else None)
    return LabelState.MANIFESTED


# --- Closing the day ---

def ship_date_after_closes(ship_date: date, closed: Collection[date],
                           next_collection_day: Callable[[date], date]) -> date:
    """The day a new label ships: its rated ship date, unless the carrier's day at the node
    is already closed, then the next collection day that is not. ``next_collection_day``
    gives the collection day after a day (the carrier's pickup days, the origin's holidays)."""
    while ship_date in closed:
        following = next_collection_day(ship_date)
        if following <= ship_date:
            raise ValueError("next_collection_day must move forward")
        ship_date = following
    return ship_date


def goes_on_manifest(state: LabelState, ship_date: date, today: date) -> bool:
    """A label goes on the day's manifest when it is open and due today or overdue (a label
    whose day passed unclosed goes on the next close rather than being stranded)."""
    return state is LabelState.PURCHASED and ship_date <= today


# --- Buying: which carrier service, at what cost, shipping which day ---

class NoEligibleService(FailedPrecondition):
    reason = "NO_ELIGIBLE_SERVICE"


class NotTableRate(FailedPrecondition):
    reason = "CARRIER_NOT_TABLE_RATE"


@dataclass(frozen=True)
class Purchase:
    """What a label request buys: the service, its cost on the rate card, the day it ships
    (past any closed day) and the day it should arrive."""

    carrier: Carrier
    service: CarrierService
    cost: Money
    ship_date: date
    delivery_date: date


@dataclass(frozen=True)
class Choice:
    """The rate shop's pick for a label, before the closed days are known."""

    carrier: Carrier
    service: CarrierService
    cost: Money
    ship_date: date


def choose_service(request: LabelRequest, origin: Origin, carriers: Sequence[Carrier],
                   cards: Mapping[str, Sequence[rate_cards.RateCard]], now: datetime) -> Choice:
    """The named service priced on its rate card, or with no ``service_code`` the rate
    shop's choice by the request's level, promise and goal. Only table-rate carriers are
    bought here: their labels and numbers are made by this service."""
    table_rate = [c for c in carriers if c.mode is Mode.TABLE_RATE]
    level = request.service_level
    if request.service_code:
        owner = next((c for c in carriers if c.service(request.service_code)), None)
        if owner is None:
            raise NotFound(f"no carrier sells the service {request.service_code}",
                           metadata={"service_code": request.service_code})
        if owner.mode is not Mode.TABLE_RATE:
            raise NotTableRate(f"{owner.carrier_id} labels are bought from the carrier, not "
                               "made here", metadata={"carrier": owner.carrier_id})
        service = owner.service(request.service_code)
        assert service is not None
        table_rate = [replace(owner, services=(service,))]
        level = None
    shipment = rating.Shipment(
        rate_cards.Destination(request.destination.region_code,
                               request.destination.postal_code, request.residential),
        (request.parcel,), ready_time=now, service_level=level,
        promise_time=request.promise_time, incoterm=request.incoterm)
    result = rating.rate_shipment(shipment, origin, table_rate, cards, goal=request.goal)
    chosen = result.chosen
    if chosen is None:
        reasons = "; ".join(result.ineligible[:5]) or "no carrier collects there"
        raise NoEligibleService(f"no carrier service can take this parcel: {reasons}",
                                metadata={"node_id": origin.node_id})
    carrier = next(c for c in table_rate if c.carrier_id == chosen.carrier_id)
    service = carrier.service(chosen.service_code)
    assert service is not None
    return Choice(carrier, service, chosen.total, chosen.ship_date)


# --- Buying from a karrio carrier ---

class PurchaseInProgress(Aborted):
    reason = "LABEL_PURCHASE_IN_PROGRESS"


class PurchaseUncertain(FailedPrecondition):
    reason = "LABEL_PURCHASE_UNCERTAIN"


class LabelFormatUnavailable(FailedPrecondition):
    reason = "LABEL_FORMAT_UNAVAILABLE"


# How long past the carrier's timeout a BUYING claim may stand before the call that made it
# is taken for dead (its process stopped mid-call): room for the commit after the answer.
CLAIM_GRACE = timedelta(seconds=60)


def karrio_service(request: LabelRequest,
                   carriers: Sequence[Carrier]) -> tuple[Carrier, CarrierService] | None:
    """The karrio carrier and service the request names, if it names one (a label of a
    karrio carrier is bought from the carrier by its named service; the rate shop's choice
    without a service code stays among table-rate carriers)."""
    if not request.service_code:
        return None
    for carrier in carriers:
        service = carrier.service(request.service_code)
        if service is not None:
            return (carrier, service) if carrier.mode is Mode.KARRIO else None
    return None


def check_claim(state: str, age: timedelta, stale_after: timedelta, *, request_id: str,
                carrier: str, detail: str) -> None:
    """Refuses a request whose purchase is claimed: ABORTED (retry shortly) while its call is
    out, FAILED_PRECONDITION once it may have bought a label that was not recorded (an
    operator reconciles with the carrier first; see the README)."""
    metadata = {"request_id": request_id, "carrier": carrier}
    if state == "BUYING" and age <= stale_after:
        raise PurchaseInProgress(f"the label of request {request_id} is being bought from "
                                 f"{carrier}; retry shortly", metadata=metadata)
    said = f" ({detail})" if detail else ""
    raise PurchaseUncertain(
        f"the purchase of request {request_id} from {carrier} may have bought a label that "
        f"was not recorded{said}; it is not bought again until an operator settles it with "
        "the carrier", metadata=metadata)


def stored_document(stored_format: str, wanted: str) -> str:
    """The carrier's own document is served as it was given: the format asked must be its
    format (or none asked)."""
    if wanted and wanted != stored_format:
        raise LabelFormatUnavailable(
            f"the carrier gave this label as {stored_format} only; ask for {stored_format}",
            metadata={"available_format": stored_format})
    return stored_format


def next_collection_day(origin: Origin, service: CarrierService) -> Callable[[date], date]:
    """The service's collection day after a day at the origin: its next pickup day that is
    not a public holiday there."""
    zone = ZoneInfo(origin.time_zone)

    def after(day: date) -> date:
        return promise.ship_date(datetime.combine(day + timedelta(days=1), time.min, zone),
                                origin, service)

    return after


def purchase(choice: Choice, origin: Origin, destination_country: str,
             closed: Collection[date]) -> Purchase:
    """The choice shipping on its first day not yet closed, and its delivery date from
    that day."""
    shipped = ship_date_after_closes(choice.ship_date, closed,
                                     next_collection_day(origin, choice.service))
    arrives = promise.delivery_date(shipped, choice.service.transit_days, destination_country)
    return Purchase(choice.carrier, choice.service, choice.cost, shipped, arrives)


SCHEMES = {0: TrackingScheme.UNSPECIFIED, 1: TrackingScheme.UPS_1Z, 2: TrackingScheme.S10,
           3: TrackingScheme.MOD10, 4: TrackingScheme.MOD7}


def tracking_format(carrier: Carrier, origin: Origin, account: str) -> TrackingFormat:
    """A carrier's numbers: its scheme, our shipper account (UPS), the origin's country
    (S10)."""
    return TrackingFormat(SCHEMES.get(carrier.tracking_scheme, TrackingScheme.UNSPECIFIED),
                          account=account, country=origin.country)


# --- Requests ---

@dataclass(frozen=True)
class Address:
    """The parts of an address a label prints and a rate needs (oms.common.v1.Address)."""

    region_code: str
    postal_code: str
    locality: str = ""
    administrative_area: str = ""
    address_lines: tuple[str, ...] = ()
    recipients: tuple[str, ...] = ()
    organization: str = ""


@dataclass(frozen=True)
class LabelRequest:
    request_id: str
    package: str
    orders: tuple[str, ...]
    node_id: str
    destination: Address
    residential: bool
    parcel: Parcel
    service_code: str
    service_level: Level | None
    promise_time: datetime | None
    goal: Goal
    incoterm: Incoterm
    # The parcel travels from `destination` back to the node (see `label_addresses`).
    return_label: bool = False


def label_addresses(request: LabelRequest, origin: dict[str, Any], customer: dict[str, Any]
                    ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(ship from, ship to) as printed and stored: the node to the customer, or for a return
    label the customer back to the node. Rating is the same either way (one lane)."""
    return (customer, origin) if request.return_label else (origin, customer)


def check_label_request(violations: Violations, path: str, request: LabelRequest) -> None:
    """Adds every fault of a label request under ``path`` (``""`` or ``requests[3].``)."""
    violations.require(0 < len(request.request_id) <= MAX_REQUEST_ID_LENGTH,
                       f"{path}request_id", f"required, at most {MAX_REQUEST_ID_LENGTH} "
                       "characters")
    if request.return_label:
        violations.require(len(request.package) <= MAX_PACKAGE_LENGTH
                           and _RETURN.fullmatch(request.package) is not None,
                           f"{path}package", 'required, "returns/{id}" for a return label')
    else:
        violations.require(len(request.package) <= MAX_PACKAGE_LENGTH
                           and _PACKAGE.fullmatch(request.package) is not None,
                           f"{path}package", 'required, "fulfilmentOrders/{id}/packages/{id}"')
    if violations.require(len(request.orders) <= MAX_ORDERS, f"{path}orders",
                          f"at most {MAX_ORDERS}"):
        for index, order in enumerate(request.orders):
            violations.require(order.startswith("orders/") and 7 < len(order) <= MAX_ORDER_LENGTH,
                               f"{path}orders[{index}]", '"orders/{id}"')
    violations.require(0 < len(request.node_id) <= MAX_NODE_ID_LENGTH, f"{path}node_id",
                       f"required, at most {MAX_NODE_ID_LENGTH} characters")
    destination = request.destination
    violations.require(re.fullmatch(r"[A-Z]{2}", destination.region_code) is not None,
                       f"{path}destination.region_code",
                       "required, an ISO 3166-1 alpha-2 country such as GB")
    violations.require(0 < len(destination.postal_code.strip()) <= 16,
                       f"{path}destination.postal_code", "required, at most 16 characters")
    parcel = request.parcel
    violations.require(0 < parcel.weight_grams <= MAX_WEIGHT_GRAMS,
                       f"{path}parcel.weight.grams",
                       f"required, more than 0 and at most {MAX_WEIGHT_GRAMS}")
    for side in ("length_mm", "width_mm", "height_mm"):
        violations.require(0 <= getattr(parcel, side) <= MAX_SIDE_MM,
                           f"{path}parcel.dimensions.{side}", f"between 0 and {MAX_SIDE_MM}")
    violations.require(len(request.service_code) <= MAX_SERVICE_CODE_LENGTH,
                       f"{path}service_code",
                       f"at most {MAX_SERVICE_CODE_LENGTH} characters")


def check_batch(requests: Sequence[LabelRequest], total: int | None = None) -> None:
    """A batch holds 1 to 100 requests (``total``, of which ``requests`` may be the first
    100) with distinct request ids; each request's own faults are its own result, not the
    batch's."""
    violations = Violations()
    count = len(requests) if total is None else total
    if not violations.require(0 < count <= MAX_BATCH, "requests",
                              f"between 1 and {MAX_BATCH} requests"):
        violations.raise_if_any()
    seen: dict[str, int] = {}
    for index, request in enumerate(requests):
        if request.request_id and request.request_id in seen:
            # Bounded, so that the error's details fit in the response's trailers.
            if len(violations.items) < MAX_REPEATS_REPORTED:
                violations.add(f"requests[{index}].request_id",
                               f"repeats requests[{seen[request.request_id]}].request_id")
        seen.setdefault(request.request_id, index)
    violations.raise_if_any()


def parse_label_name(violations: Violations, path: str, name: str) -> UUID | None:
    match = LABEL_NAME.fullmatch(name)
    if not match:
        violations.add(path, 'must be "labels/{label_id}"')
        return None
    try:
        return UUID(match["id"])
    except ValueError:
        violations.add(path, 'must be "labels/{label_id}"')
        return None


def label_name(label_id: UUID) -> str:
    return f"labels/{label_id}"


def require_label_name(name: str, path: str = "name") -> UUID:
    violations = Violations()
    label_id = parse_label_name(violations, path, name)
    violations.raise_if_any()
    assert label_id is not None
    return label_id
