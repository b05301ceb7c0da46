"""Tracking rules, pure: carrier codes normalised to one set of statuses, the journey a parcel's
status follows, duplicate events, and the no-scan rule.

**Normalisation.** An event's status is, in this order: the status its sender already gave;
else its carrier code looked up in that carrier's table (:data:`CARRIER_CODES`, keyed by the
carrier family of the carrier id, so ``ups``, ``ups_us`` and ``UPS`` share one table); else
the code as one of karrio's normalised tracking statuses (``delivered``, ``in_transit``, …:
what the karrio adapter hands over for any carrier); else keywords of the carrier's
description (:data:`KEYWORDS`); else ``UNSPECIFIED``, which is stored with the history and
counts as a sign of life (a scan) but moves nothing.

**The journey.** A parcel's status is the journey its events tell in event-time order, replayed
from ``PRE_TRANSIT`` with :func:`advance`:

- the journey goes forward: ``PRE_TRANSIT`` → ``IN_TRANSIT`` → ``OUT_FOR_DELIVERY`` →
  ``DELIVERY_FAILED`` / ``EXCEPTION`` → ``RETURNED_TO_SENDER`` → ``DELIVERED``; a later event
  of an earlier stage (an "in transit" scan after "out for delivery") is kept in the history
  and moves nothing;
- after a setback (``DELIVERY_FAILED`` or ``EXCEPTION``) the journey may go on: a later
  ``IN_TRANSIT`` or ``OUT_FOR_DELIVERY`` applies (back at the depot, out again);
- ``DELIVERED`` and ``RETURNED_TO_SENDER`` are final: nothing after them moves the parcel.
  Scans after a return are its way back, and the "delivered" a carrier reports for it is
  the delivery to the sender, not to the customer: no ``ShipmentDelivered`` for it.

Because the status is that replay over the set of events, the order they arrive in does not
matter and a duplicate changes nothing: an event older than the latest known one takes its
place in the journey and never counts as the latest (it cannot undo what a newer event did;
it can only fill in a step between, e.g. the failed attempt between "out for delivery" and the
next day's "in transit"). One rule is about arrival rather than event time: a stored final
status never changes, so a delivered parcel stays delivered whatever arrives later.

**Duplicates.** An event is known by (carrier, tracking number, event time, code), the code
being the carrier's code or, without one, the status name: the key of the stored events, so
that a second copy — in the same call, a retry, or a concurrent call — is a no-op.

**Exceptions.** Each exceptional event (``EXCEPTION``, ``DELIVERY_FAILED``,
``RETURNED_TO_SENDER``) is reported once: the same problem reported again (same status, code
and description: the daily "held at customs" scan) is not a new exception.

**No scan.** A parcel on its way (in transit, out for delivery, after a failed attempt) whose
last scan is more than N days old gets one ``EXCEPTION`` event "no scan for N days", dated
N days after that scan: the date makes it one event (a second sweep, on any replica, meets
its key), and the status it sets takes the parcel out of the sweep until a new scan puts it
back on its way.
"""

from __future__ import annotations

import enum
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from oms_platform.errors import Violations

MAX_EVENTS = 500
"""Events per RecordTrackingEvents call."""
MAX_HISTORY = 200
"""Events GetTracking returns (the latest ones, oldest first)."""
MAX_JOURNEY = 1000
"""Events of one parcel replayed when new ones arrive (its latest): a real parcel has tens."""
MAX_CARRIER_LENGTH = 63
MAX_TRACKING_NUMBER_LENGTH = 64
MAX_CODE_LENGTH = 64
MAX_LOCATION_LENGTH = 200
MAX_DESCRIPTION_LENGTH = 500
FUTURE_TOLERANCE = timedelta(hours=24)
"""How far ahead of our clock an event may be dated: carriers' clocks and time zones are not
ours, but a scan days ahead is a wrong date, not a scan."""


class TrackingStatus(enum.StrEnum):
    """``oms.shipping.v1.TrackingStatus`` without its prefix; the labels table stores it so."""

    UNSPECIFIED = "UNSPECIFIED"
    PRE_TRANSIT = "PRE_TRANSIT"
    IN_TRANSIT = "IN_TRANSIT"
    OUT_FOR_DELIVERY = "OUT_FOR_DELIVERY"
    DELIVERY_FAILED = "DELIVERY_FAILED"
    EXCEPTION = "EXCEPTION"
    RETURNED_TO_SENDER = "RETURNED_TO_SENDER"
    DELIVERED = "DELIVERED"


S = TrackingStatus

STAGE: Mapping[TrackingStatus, int] = {
    S.UNSPECIFIED: 0,
    S.PRE_TRANSIT: 1,
    S.IN_TRANSIT: 2,
    S.OUT_FOR_DELIVERY: 3,
    S.DELIVERY_FAILED: 4,
    S.EXCEPTION: 4,
    S.RETURNED_TO_SENDER: 5,
    S.DELIVERED: 6,
}
"""The journey's order. A failed attempt and an exception are one stage: either may follow
the other."""
FINAL = frozenset({S.DELIVERED, S.RETURNED_TO_SENDER})
SETBACKS = frozenset({S.DELIVERY_FAILED, S.EXCEPTION})
GOING_ON = frozenset({S.IN_TRANSIT, S.OUT_FOR_DELIVERY})
EXCEPTIONAL = frozenset({S.DELIVERY_FAILED, S.EXCEPTION, S.RETURNED_TO_SENDER})
"""Statuses reported as ``DeliveryException``."""
ON_THE_WAY = (S.IN_TRANSIT, S.OUT_FOR_DELIVERY, S.DELIVERY_FAILED)
"""Statuses the no-scan sweep watches."""

NO_SCAN_CODE = "OMS_NO_SCAN"
"""The code of the exception the no-scan sweep records (ours, not a carrier's)."""


def advance(current: TrackingStatus, incoming: TrackingStatus) -> TrackingStatus:
    """The status after an event of status ``incoming``, replayed in event-time order."""
    if current in FINAL or incoming is S.UNSPECIFIED:
        return current
    if STAGE[incoming] >= STAGE[current]:
        return incoming
    if current in SETBACKS and incoming in GOING_ON:
        return incoming
    return current


# --- normalisation -------------------------------------------------------------------------


def _table(**codes: Sequence[str]) -> dict[str, TrackingStatus]:
    table: dict[str, TrackingStatus] = {}
    for status, values in codes.items():
        for code in values:
            assert code.upper() not in table, f"{code} twice"
            table[code.upper()] = S[status]
    return table


# UPS: the activity's status type (D, I, M, MV, O, P, RS, X, W) and its two-letter status
# codes as karrio's UPS plugin groups them; UU (unable to deliver) is a failed attempt here,
# and karrio's "ready for pickup" is the last leg (out for delivery).
UPS = _table(
    PRE_TRANSIT=["M", "MV", "MP", "XD", "OA", "DD"],
    IN_TRANSIT=["I", "P", "W", "OR", "PU", "OC", "OG", "DP", "AA", "AR", "AF", "AL", "DS",
                "IH", "AP"],
    OUT_FOR_DELIVERY=["O", "OT", "OD", "OF", "DL", "RP", "AC", "WC"],
    DELIVERY_FAILED=["RF", "UR", "UF", "CC", "UU"],
    EXCEPTION=["X", "EX", "HX", "HD", "HI", "HS", "HU", "NH", "VD", "CA", "CN", "CV", "DY",
               "DE", "SD"],
    RETURNED_TO_SENDER=["RS", "RT", "RH", "RU"],
    DELIVERED=["D", "FS", "KB", "F4"],
)

# DHL Express checkpoint codes, after karrio's DHL Express plugin; with DHL's own meanings
# where karrio's grouping hides them: RT is "returned to shipper", CD a clearance delay and
# DM (damaged), DS (destroyed), SS (shipment stopped) exceptions rather than failed attempts.
DHL_EXPRESS = _table(
    IN_TRANSIT=["PU", "PL", "OR", "DF", "AF", "AR", "IT", "TR", "CR", "RR", "SA"],
    OUT_FOR_DELIVERY=["WC", "CC"],
    DELIVERY_FAILED=["CM", "DP", "NH", "RD", "ST", "CA"],
    EXCEPTION=["BA", "HP", "OH", "CD", "DM", "DS", "SS", "MS", "IR", "MD", "TD", "UD"],
    RETURNED_TO_SENDER=["RT"],
    DELIVERED=["OK"],
)

# Royal Mail's tracking event codes (Parcelforce items are tracked on the same platform);
# karrio's Royal Mail plugin names the hold and customs codes (EVNHE, EVNCU).
ROYAL_MAIL = _table(
    PRE_TRANSIT=["EVAIE", "EVAIP"],
    IN_TRANSIT=["EVPPA", "EVOCO", "EVDAV", "EVIMC", "EVDAC", "EVBAV", "EVIAV", "EVGMI", "EVORI",
                "EVOAC", "EVODO", "EVNMI", "RSRXS", "RORXS"],
    OUT_FOR_DELIVERY=["EVGPD", "EVKLS", "EVPLA"],
    DELIVERY_FAILED=["EVKNA", "EVKNR", "EVNDA", "EVNSR", "EVNPS"],
    EXCEPTION=["EVNHE", "EVNCU", "EVNRT"],
    DELIVERED=["EVKSP", "EVKSF", "EVKOP", "EVPLC"],
)

# USPS standard tracking event codes.
USPS = _table(
    PRE_TRANSIT=["GX", "MA"],
    IN_TRANSIT=["03", "TM", "PA", "06", "07", "10", "14", "19", "41", "42", "71", "80", "81",
                "82", "EF", "SF", "PC"],
    OUT_FOR_DELIVERY=["OF", "16"],
    DELIVERY_FAILED=["02", "04", "30", "51", "52", "53", "54", "55", "56"],
    EXCEPTION=["05", "08", "11", "15", "DX"],
    RETURNED_TO_SENDER=["09", "21", "22", "23", "24", "25", "26", "27", "28", "29", "31", "44"],
    DELIVERED=["01", "17", "43"],
)

# FedEx status codes as karrio's FedEx plugin groups them (OF there is "at origin facility").
FEDEX = _table(
    PRE_TRANSIT=["OC", "OX", "EP", "MD"],
    IN_TRANSIT=["PU", "PX", "OF", "AP", "IT", "IX", "AA", "AC", "AF", "AR", "AX", "DP", "EA",
                "EO", "FD", "LO", "OW", "PF", "PL", "PM", "SF", "TR"],
    OUT_FOR_DELIVERY=["AD", "ED", "OD", "HL", "HP"],
    DELIVERY_FAILED=["DE"],
    EXCEPTION=["CD", "SE", "HA", "CA", "RD", "DY", "DD", "PY"],
    RETURNED_TO_SENDER=["RS", "RT"],
    DELIVERED=["DL"],
)

# DPD's parcel life cycle states and karrio's DPD status names; "returning from delivery"
# is the van bringing it back: a failed attempt.
DPD = _table(
    IN_TRANSIT=["ACCEPTED", "AT_SENDING_DEPOT", "ATSENDINGDEPOT", "ON_THE_ROAD", "ONTHEROAD",
                "AT_DELIVERY_DEPOT", "ATDELIVERYDEPOT"],
    OUT_FOR_DELIVERY=["COURIER", "PARCELSHOP"],
    DELIVERY_FAILED=["DELIVERYFAILURE", "RETURNINGFROMDELIVERY"],
    DELIVERED=["DELIVERED"],
)

# Evri (formerly Hermes UK): the Hermes event groups as karrio's Hermes plugin maps them.
EVRI = _table(
    PRE_TRANSIT=["0000"],
    IN_TRANSIT=["1000", "2000"],
    OUT_FOR_DELIVERY=["3000", "5000"],
    DELIVERED=["3500"],
    DELIVERY_FAILED=["4000", "4500"],
    EXCEPTION=["6000", "7000"],
)

CARRIER_CODES: Mapping[str, Mapping[str, TrackingStatus]] = {
    "ups": UPS,
    "dhl_express": DHL_EXPRESS,
    "royal_mail": ROYAL_MAIL,
    "parcelforce": ROYAL_MAIL,
    "usps": USPS,
    "fedex": FEDEX,
    "dpd": DPD,
    "evri": EVRI,
    # Yodel publishes no code list: its descriptions are read by keywords.
    "yodel": {},
}
"""Each carrier family's codes (upper case) and their statuses."""

CARRIER_ALIASES: Mapping[str, str] = {
    "royalmail": "royal_mail",
    "rm": "royal_mail",
    "parcel_force": "parcelforce",
    "dhl": "dhl_express",
    "dhlexpress": "dhl_express",
    "hermes": "evri",
    "hermes_uk": "evri",
}

# karrio's normalised TrackingStatus names, whichever carrier they come from.
KARRIO_STATUSES = _table(
    PRE_TRANSIT=["pending"],
    IN_TRANSIT=["picked_up", "in_transit"],
    OUT_FOR_DELIVERY=["out_for_delivery", "ready_for_pickup"],
    DELIVERY_FAILED=["delivery_failed"],
    EXCEPTION=["on_hold", "delivery_delayed", "cancelled"],
    RETURNED_TO_SENDER=["return_to_sender"],
    DELIVERED=["delivered"],
)

KEYWORDS: Sequence[tuple[re.Pattern[str], TrackingStatus]] = [
    (re.compile(p, re.IGNORECASE), status) for p, status in [
        # First the phrases that contain a later rule's word ("not delivered", "to be
        # delivered today", "returned to sender" …): the first match wins.
        (r"\breturn(ed|ing)? to (the )?(sender|shipper)|\bbeing returned\b", S.RETURNED_TO_SENDER),
        (r"\bout for delivery\b|\bwith (the )?(delivery )?(courier|driver)\b|"
         r"\bon (the )?(delivery )?(vehicle|van)\b|\bdue to be delivered today\b|"
         r"\bready for (collection|pick ?up)\b|\bavailable for (collection|pick ?up)\b",
         S.OUT_FOR_DELIVERY),
        (r"\battempt(ed)?\b|\bnot delivered\b|\bundelivered\b|\bunable to deliver\b|"
         r"\bno answer\b|\bmissed you\b|\b(card|notice) left\b|\bdelivery failed\b|"
         r"\bfailed delivery\b|\brefused\b|\bnot (at )?home\b", S.DELIVERY_FAILED),
        (r"\bexception\b|\bdamaged\b|\blost\b|\bheld\b|\bon hold\b|\bcustoms\b|\bdelay(ed)?\b|"
         r"\b(address|addressee) (not found|unknown|incorrect|incomplete)\b|"
         r"\b(incorrect|incomplete|insufficient) address\b|\bmisrouted\b|\bmissorted\b",
         S.EXCEPTION),
        (r"\b(will|to) be delivered\b|\bbeing delivered\b", S.IN_TRANSIT),
        (r"\bdelivered\b|\bsigned for\b", S.DELIVERED),
        (r"\blabel (created|printed)\b|\bshipping label\b|\bpre-?shipment\b|\bawaiting item\b|"
         r"\bmanifest\b|\bpreparing\b|\b(shipment|order) information received\b|"
         r"\bpre-?advice\b", S.PRE_TRANSIT),
        (r"\bin transit\b|\barrived\b|\barrival\b|\bdeparted\b|\bdeparture\b|\bprocessed\b|"
         r"\bprocessing\b|\breceived\b|\bpicked up\b|\baccepted\b|\bscan(ned)?\b|\bhub\b|"
         r"\bsort(ed|ing)?\b|\bfacility\b|\bdepot\b|\bon (its|the) way\b|\bdespatched\b|"
         r"\bdispatched\b|\bmoving\b", S.IN_TRANSIT),
    ]
]
"""Descriptions read when no code is known, in order; the first match wins."""


def carrier_family(carrier: str) -> str:
    """The table a carrier id uses: ``UPS`` and ``ups_us`` are ``ups``; an id of no known
    family is itself (and has no table)."""
    key = re.sub(r"[\s\-]+", "_", carrier.strip().lower())
    key = CARRIER_ALIASES.get(key, key)
    if key in CARRIER_CODES:
        return key
    for family in sorted(CARRIER_CODES, key=len, reverse=True):
        if key.startswith(family + "_"):
            return family
    return key


def normalise(carrier: str, code: str, description: str,
              given: TrackingStatus = S.UNSPECIFIED) -> TrackingStatus:
    """An event's status: as given, else by the carrier's code, karrio's names, the
    description's keywords; ``UNSPECIFIED`` when nothing tells."""
    if given is not S.UNSPECIFIED:
        return given
    key = code.strip().upper()
    if key:
        table = CARRIER_CODES.get(carrier_family(carrier), {})
        if key in table:
            return table[key]
        if key in KARRIO_STATUSES:
            return KARRIO_STATUSES[key]
    for pattern, status in KEYWORDS:
        if pattern.search(description):
            return status
    return S.UNSPECIFIED


# --- events --------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventDraft:
    """A tracking event as a caller sent it. ``status`` is None for a value outside the enum."""

    carrier: str
    tracking_number: str
    carrier_code: str
    status: TrackingStatus | None
    event_time: datetime | None
    location: str
    description: str


@dataclass(frozen=True)
class Scan:
    """A tracking event as recorded: normalised, with the key that makes it one."""

    carrier: str
    tracking_number: str
    event_time: datetime
    code: str
    carrier_code: str
    status: TrackingStatus
    location: str = ""
    description: str = ""
    swept: bool = False
    """Recorded by the no-scan sweep, not by a carrier: no sign of life."""

    @property
    def key(self) -> tuple[str, str, datetime, str]:
        return (self.carrier, self.tracking_number, self.event_time, self.code)

    @property
    def problem(self) -> tuple[TrackingStatus, str, str]:
        """What makes an exception the same one when reported again."""
        return (self.status, self.carrier_code.strip().upper(),
                " ".join(self.description.lower().split()))

    def order(self) -> tuple[datetime, int, str]:
        """The replay's order: event time, then the journey's stage (two events of one
        instant settle forward), then the code, so that every replay is the same."""
        return (self.event_time, STAGE[self.status], self.code)


def scan_of(draft: EventDraft) -> Scan:
    """The recorded form of a valid draft."""
    assert draft.event_time is not None
    status = normalise(draft.carrier, draft.carrier_code, draft.description,
                       draft.status or S.UNSPECIFIED)
    code = draft.carrier_code.strip() or (draft.status or S.UNSPECIFIED).value
    return Scan(carrier=draft.carrier, tracking_number=draft.tracking_number,
                event_time=draft.event_time, code=code,
                carrier_code=draft.carrier_code.strip(), status=status,
                location=draft.location.strip(), description=draft.description.strip())


def _check_text(violations: Violations, path: str, value: str, limit: int,
                required: bool = False) -> None:
    if required and not value.strip():
        violations.add(path, "required")
    elif len(value) > limit:
        violations.add(path, f"at most {limit} characters")


def check_events(violations: Violations, drafts: Sequence[EventDraft],
                 now: datetime) -> list[Scan]:
    """Every violation of a RecordTrackingEvents request, and its events as scans, duplicates
    within the request dropped (the first copy kept)."""
    if not 0 < len(drafts) <= MAX_EVENTS:
        violations.add("events", f"between 1 and {MAX_EVENTS} events")
    for index, draft in enumerate(drafts[:MAX_EVENTS]):
        prefix = f"events[{index}]"
        _check_text(violations, f"{prefix}.carrier", draft.carrier, MAX_CARRIER_LENGTH, True)
        _check_text(violations, f"{prefix}.tracking_number", draft.tracking_number,
                    MAX_TRACKING_NUMBER_LENGTH, True)
        _check_text(violations, f"{prefix}.carrier_code", draft.carrier_code, MAX_CODE_LENGTH)
        _check_text(violations, f"{prefix}.location", draft.location, MAX_LOCATION_LENGTH)
        _check_text(violations, f"{prefix}.description", draft.description,
                    MAX_DESCRIPTION_LENGTH)
        if draft.status is None:
            violations.add(f"{prefix}.status", "not a TrackingStatus")
        if draft.event_time is None:
            violations.add(f"{prefix}.event_time", "required")
        elif draft.event_time > now + FUTURE_TOLERANCE:
            violations.add(f"{prefix}.event_time",
                           f"more than {FUTURE_TOLERANCE.total_seconds() / 3600:g} hours "
                           "in the future")
    if violations.items:
        return []
    unique: dict[tuple[str, str, datetime, str], Scan] = {}
    for scan in map(scan_of, drafts):
        unique.setdefault(scan.key, scan)
    return list(unique.values())


# --- a parcel's journey --------------------------------------------------------------------


@dataclass(frozen=True)
class Parcel:
    """What tracking keeps on a label."""

    status: TrackingStatus
    last_event_time: datetime | None


@dataclass(frozen=True)
class Journey:
    status: TrackingStatus
    by: Scan | None
    """The event that set the status (None while nothing moved it)."""


def replay(scans: Iterable[Scan], start: TrackingStatus = S.PRE_TRANSIT) -> Journey:
    """The status the events tell, in event-time order."""
    status, by = start, None
    for scan in sorted(scans, key=Scan.order):
        after = advance(status, scan.status)
        if after is not status or (scan.status is status and by is None):
            by = scan
        status = after
    return Journey(status, by)


@dataclass(frozen=True)
class Progress:
    """What new events did to a parcel."""

    status: TrackingStatus
    last_event_time: datetime | None
    changed: bool
    delivered: Scan | None = None
    """The delivery, when this made the parcel delivered."""
    exceptions: list[Scan] = field(default_factory=list)
    """New exceptional events, each problem once."""
    progressed: Scan | None = None
    """The event that put the parcel (back) on its way or out for delivery."""


def track(parcel: Parcel, stored: Sequence[Scan], new: Sequence[Scan]) -> Progress:
    """The parcel after ``new`` events (none of them among ``stored``, every one of this
    parcel), given the events stored before."""
    carrier_times = [s.event_time for s in new if not s.swept]
    if parcel.last_event_time is not None:
        carrier_times.append(parcel.last_event_time)
    last_event_time = max(carrier_times, default=None)
    seen = {s.problem for s in stored if s.status in EXCEPTIONAL}
    exceptions = []
    for scan in sorted(new, key=Scan.order):
        if scan.status in EXCEPTIONAL and scan.problem not in seen:
            seen.add(scan.problem)
            exceptions.append(scan)
    if parcel.status in FINAL:
        return Progress(parcel.status, last_event_time,
                        last_event_time != parcel.last_event_time, exceptions=exceptions)
    journey = replay([*stored, *new])
    moved = journey.status is not parcel.status
    return Progress(
        status=journey.status,
        last_event_time=last_event_time,
        changed=moved or last_event_time != parcel.last_event_time,
        delivered=journey.by if moved and journey.status is S.DELIVERED else None,
        exceptions=exceptions,
        progressed=journey.by if moved and journey.status in GOING_ON else None,
    )


@dataclass(frozen=True)
class LabelRef:
    """A label as tracking sees it."""

    id: uuid.UUID
    carrier: str
    tracking_number: str
    package: str
    orders: tuple[str, ...]
    node_id: str
    estimated_delivery_date: date | None
    parcel: Parcel


@dataclass
class Recorded:
    recorded: int = 0
    duplicates: int = 0
    unknown: list[str] = field(default_factory=list)
    """Tracking numbers with no label here, in request order."""
    progress: list[tuple[LabelRef, Progress]] = field(default_factory=list)
    """The parcels that got new events, and what the events did to them."""


# --- no scan for too long ------------------------------------------------------------------


def stale_before(now: datetime, days: int) -> datetime:
    """Parcels on their way whose last scan is older than this get a no-scan exception."""
    return now - timedelta(days=days)


def no_scan(carrier: str, tracking_number: str, last_event_time: datetime,
            days: int) -> Scan:
    """The exception of a parcel not scanned for ``days`` days since ``last_event_time``."""
    return Scan(carrier=carrier, tracking_number=tracking_number,
                event_time=last_event_time + timedelta(days=days), code=NO_SCAN_CODE,
                carrier_code=NO_SCAN_CODE, status=S.EXCEPTION,
                description=f"no scan for {days} days", swept=True)
