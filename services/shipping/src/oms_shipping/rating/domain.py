"""Rating, pure: a parcel priced on a rate card (zone, billed weight, surcharges, duties),
the ship and delivery dates of a carrier service from an origin, shipping rules, and the rate
shop's choice by goal with the reason each other quote lost.

Every price is a :class:`~oms_platform.money.Money` in its card's currency, rounded to the
currency's minor units once per charge (so the charges always add up to the total)."""

from __future__ import annotations

import bisect
import enum
import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import NamedTuple, Protocol
from zoneinfo import ZoneInfo

import holidays
from oms_platform.errors import Violations
from oms_platform.money import Money, is_currency

from oms_shipping.carriers.domain import Carrier, CarrierService, Level, Origin, is_country

HUNDRED = Decimal(100)
MAX_PARCELS = 50
MAX_INELIGIBLE = 100
# A faster quote is worth its extra cost under BEST_VALUE when each day it saves costs at most
# this share of the cheapest on-time price (see `choose`).
DEFAULT_DAY_VALUE_PERCENT = Decimal(10)

# Subdivision whose holidays stand for the country when an address names none: the
# `holidays` package gives only the holidays common to all nations of GB without one, which
# would ship on England's bank holidays.
DEFAULT_SUBDIVISIONS: Mapping[str, str] = {"GB": "ENG"}


class Goal(enum.IntEnum):
    """What the rate shop optimises for (the numbers of ``oms.shipping.v1.RatingGoal``)."""

    CHEAPEST_ON_TIME = 1
    FASTEST = 2
    BEST_VALUE = 3


class Incoterm(enum.IntEnum):
    """Who pays duties (the numbers of ``oms.shipping.v1.Incoterm``)."""

    DDU = 1
    DDP = 2


# --- Rate cards ---


@dataclass(frozen=True)
class Zone:
    zone: str
    origin_country: str
    destination_country: str
    postcode_prefixes: tuple[str, ...] = ()


@dataclass(frozen=True)
class WeightBreak:
    zone: str
    max_weight_grams: int
    price: Decimal


@dataclass(frozen=True)
class RateCard:
    """A carrier service's price list; every amount is in ``currency_code``."""

    rate_card_id: str
    service_code: str
    currency_code: str
    zones: tuple[Zone, ...]
    breaks: tuple[WeightBreak, ...]
    dim_divisor: int = 0
    fuel_percent: Decimal = Decimal(0)
    residential_surcharge: Decimal = Decimal(0)
    remote_area_surcharge: Decimal = Decimal(0)
    remote_postcode_prefixes: tuple[str, ...] = ()  # "{country}:{prefix}"
    oversize_length_mm: int = 0
    oversize_girth_mm: int = 0
    oversize_surcharge: Decimal = Decimal(0)
    duties_paid_fee: Decimal = Decimal(0)
    duty_percent: Decimal = Decimal(0)

    def money(self, amount: Decimal) -> Money:
        """An amount in the card's currency, rounded to its minor units (as ``Money.of``,
        with the exponent looked up: the rate shop makes dozens a call)."""
        return Money(self.currency_code, amount.quantize(_exponent(self.currency_code)))

    @functools.cached_property
    def _bands_by_zone(self) -> dict[str, tuple[list[int], list[_Band]]]:
        """Each zone's breaks lightest first, beside the weight each takes (for a bisection):
        the rate shop looks one up on every card on every call."""
        by_zone: dict[str, list[_Band]] = {}
        for break_ in sorted(self.breaks, key=lambda b: b.max_weight_grams):
            by_zone.setdefault(break_.zone, []).append(_Band(break_))
        return {zone: ([band.weight_break.max_weight_grams for band in bands], bands)
                for zone, bands in by_zone.items()}

    @functools.cached_property
    def _routes(self) -> dict[tuple[str, str], _Route]:
        """Zones by (origin, destination country) as lookups: the rate shop asks every card
        for a zone on every call."""
        zones: dict[tuple[str, str], list[Zone]] = {}
        for zone in self.zones:
            zones.setdefault((zone.origin_country, zone.destination_country), []).append(zone)
        return {route: _Route.of(found) for route, found in zones.items()}

    @functools.cached_property
    def _remote_by_country(self) -> dict[str, tuple[str, ...]]:
        by_country: dict[str, list[str]] = {}
        for entry in self.remote_postcode_prefixes:
            country, _, prefix = entry.partition(":")
            by_country.setdefault(country, []).append(normalise_postcode(prefix))
        return {country: tuple(prefixes) for country, prefixes in by_country.items()}

    def zone_for(self, origin_country: str, country: str, postcode: str) -> Zone | None:
        """The zone of a destination: of those from the origin country to the destination
        country, the one with the longest postcode prefix the postcode starts with; a zone
        without prefixes covers the whole country and loses to any prefix."""
        return self._zone(origin_country, country, normalise_postcode(postcode))

    def _zone(self, origin_country: str, country: str, code: str) -> Zone | None:
        route = self._routes.get((origin_country, country))
        return route.zone(code) if route else None

    def break_for(self, zone: str, grams: int) -> WeightBreak | None:
        """The lightest break that takes the billed weight, or None when it is too heavy."""
        band = self._band(zone, grams)
        return band.weight_break if band else None

    def _band(self, zone: str, grams: int) -> _Band | None:
        found = self._bands_by_zone.get(zone)
        if found is None:
            return None
        weights, bands = found
        index = bisect.bisect_left(weights, grams)
        return bands[index] if index < len(bands) else None

    def is_remote(self, country: str, postcode: str) -> bool:
        return self._is_remote(country, normalise_postcode(postcode))

    def _is_remote(self, country: str, code: str) -> bool:
        prefixes = self._remote_by_country.get(country)
        return bool(prefixes) and code.startswith(prefixes)


@dataclass(frozen=True)
class _Route:
    """The zones of one route of a card as a lookup: the zone of each postcode prefix (the
    first zone to name it), the prefixes' lengths longest first, and the zone of the rest of
    the country (the first without prefixes). The longest prefix a postcode starts with
    wins, as `RateCard.zone_for` says, in one dictionary look-up per distinct length."""

    by_prefix: Mapping[str, Zone]
    lengths: tuple[int, ...]
    rest: Zone | None

    @classmethod
    def of(cls, zones: Sequence[Zone]) -> _Route:
        by_prefix: dict[str, Zone] = {}
        rest = None
        for zone in zones:
            prefixes = [normalise_postcode(p) for p in zone.postcode_prefixes]
            if not prefixes or "" in prefixes:
                rest = rest or zone
            for prefix in filter(None, prefixes):
                by_prefix.setdefault(prefix, zone)
        lengths = tuple(sorted({len(p) for p in by_prefix}, reverse=True))
        return cls(by_prefix, lengths, rest)

    def zone(self, code: str) -> Zone | None:
        for length in self.lengths:
            zone = self.by_prefix.get(code[:length])
            if zone is not None:
                return zone
        return self.rest


class _Band:
    """A weight break of a card, with what one parcel billed on it comes to under each
    combination of the surcharges that may apply to it (at most eight), worked out on the
    first rate shop that needs it and kept as long as the card: a card's prices are the
    same on every call, and most shipments are one parcel."""

    __slots__ = ("_priced", "weight_break")

    def __init__(self, weight_break: WeightBreak) -> None:
        self.weight_break = weight_break
        self._priced: dict[tuple[bool, bool, bool], tuple[tuple[Charge, ...], Money]] = {}

    def one_parcel(self, card: RateCard, residential: bool, remote: bool,
                   oversize: bool) -> tuple[tuple[Charge, ...], Money]:
        key = (residential, remote, oversize)
        priced = self._priced.get(key)
        if priced is None:
            zero = Decimal(0)
            priced = self._priced[key] = _charges(
                card, self.weight_break.price,
                card.residential_surcharge if residential else zero,
                card.remote_area_surcharge if remote else zero,
                card.oversize_surcharge if oversize else zero)
        return priced


def normalise_postcode(postcode: str) -> str:
    """Postcodes compare without spaces or case: "sw1a 1aa" starts with "SW1A"."""
    return "".join(postcode.split()).upper()


# --- Parcels and shipments ---


@dataclass(frozen=True)
class Parcel:
    weight_grams: int
    length_mm: int = 0
    width_mm: int = 0
    height_mm: int = 0
    declared_value: Money | None = None

    # Cached: the rate shop asks each card in turn about the same parcel.

    @functools.cached_property
    def has_dimensions(self) -> bool:
        return self.length_mm > 0 and self.width_mm > 0 and self.height_mm > 0

    @functools.cached_property
    def sides_mm(self) -> tuple[int, int, int]:
        """Longest first: length is the longest side whatever the caller called it."""
        a, b, c = sorted((self.length_mm, self.width_mm, self.height_mm), reverse=True)
        return a, b, c

    @functools.cached_property
    def length_and_girth_mm(self) -> int:
        """The longest side plus twice the sum of the other two."""
        length, width, height = self.sides_mm
        return length + 2 * (width + height)


def dimensional_weight_grams(parcel: Parcel, divisor: int) -> int:
    """LxWxH in cm³ ÷ divisor (cm³ per kg), in grams rounded up. With millimetres that is
    LxWxH (mm³) ÷ divisor exactly: mm³/1000 = cm³, and kg x 1000 = g."""
    if divisor <= 0 or not parcel.has_dimensions:
        return 0
    volume = parcel.length_mm * parcel.width_mm * parcel.height_mm
    return -(-volume // divisor)


def billed_weight_grams(parcel: Parcel, divisor: int) -> int:
    """The greater of the actual and the dimensional weight."""
    return max(parcel.weight_grams, dimensional_weight_grams(parcel, divisor))


def is_oversize(parcel: Parcel, card: RateCard) -> bool:
    """Longer than the card's length limit, or length + girth (2 x (width + height)) over its
    girth limit."""
    if not parcel.has_dimensions:
        return False
    if card.oversize_length_mm and parcel.sides_mm[0] > card.oversize_length_mm:
        return True
    return bool(card.oversize_girth_mm) and parcel.length_and_girth_mm > card.oversize_girth_mm


@dataclass(frozen=True)
class Destination:
    country: str
    postal_code: str
    residential: bool = False

    @functools.cached_property
    def postcode_key(self) -> str:
        """The postcode as zones and remote areas compare it, worked out once a shipment
        rather than once a card."""
        return normalise_postcode(self.postal_code)


@dataclass(frozen=True)
class Shipment:
    destination: Destination
    parcels: tuple[Parcel, ...]
    ready_time: datetime  # aware
    service_level: Level | None = None
    promise_time: datetime | None = None  # aware
    basket_value: Money | None = None
    incoterm: Incoterm = Incoterm.DDU


# --- Pricing ---


# Charge, Price and Quote are named tuples rather than frozen dataclasses: the rate shop makes
# a price and two quotes (the second with the reason it lost) for every service on every
# call, and a frozen dataclass's __init__ costs several times a tuple's.


class Charge(NamedTuple):
    kind: str  # base, fuel, residential, remote_area, oversize, duties_fee, duties
    amount: Money


class Price(NamedTuple):
    """A shipment priced on one card."""

    rate_card_id: str
    total: Money
    charges: tuple[Charge, ...]
    billed_weight_grams: int
    receiver_duties: Money | None = None


class NotRated(Exception):
    """Why a card cannot price a shipment, in words for the `ineligible` list."""


def price_shipment(card: RateCard, origin_country: str, destination: Destination,
                   parcels: Sequence[Parcel], *, international: bool = False,
                   incoterm: Incoterm = Incoterm.DDU) -> Price:
    """Prices the parcels on the card: per parcel a base price from its zone and billed
    weight plus its residential, remote-area and oversize surcharges; fuel as a percentage
    of the base; across a border (``international``) duties on the declared value, paid by
    the sender (with the card's DDP fee) under DDP and quoted as the receiver's under DDU.
    Raises :class:`NotRated` when the card has no zone or break for it."""
    code = destination.postcode_key
    zone = card._zone(origin_country, destination.country, code)
    if zone is None:
        raise NotRated(f"no zone on rate card {card.rate_card_id} for "
                       f"{origin_country} to {destination.country} {destination.postal_code}")
    remote_area = card._is_remote(destination.country, code)
    if len(parcels) == 1:  # most shipments: its price is worked out once per card
        parcel = parcels[0]
        billed_total = billed_weight_grams(parcel, card.dim_divisor)
        charges, total = _band(card, zone, 0, billed_total).one_parcel(
            card, destination.residential, remote_area, is_oversize(parcel, card))
    else:
        base = residential = remote = oversize = Decimal(0)
        billed_total = 0
        for index, parcel in enumerate(parcels):
            billed = billed_weight_grams(parcel, card.dim_divisor)
            base += _band(card, zone, index, billed).weight_break.price
            billed_total += billed
            if destination.residential:
                residential += card.residential_surcharge
            if remote_area:
                remote += card.remote_area_surcharge
            if is_oversize(parcel, card):
                oversize += card.oversize_surcharge
        charges, total = _charges(card, base, residential, remote, oversize)
    receiver_duties = None
    if international:
        duties = _duties(card, parcels)
        if incoterm is Incoterm.DDP:
            paid = []
            if card.duties_paid_fee:
                paid.append(Charge("duties_fee", card.money(card.duties_paid_fee)))
            if duties.amount:
                paid.append(Charge("duties", duties))
            charges = (*charges, *paid)
            total = card.money(sum((c.amount.amount for c in paid), total.amount))
        elif duties.amount:
            receiver_duties = duties
    return Price(card.rate_card_id, total, charges, billed_total, receiver_duties)


def _band(card: RateCard, zone: Zone, index: int, billed: int) -> _Band:
    band = card._band(zone.zone, billed)
    if band is None:
        raise NotRated(f"parcel {index + 1} bills {billed} g, over the heaviest break of "
                       f"zone {zone.zone} on rate card {card.rate_card_id}")
    return band


def _charges(card: RateCard, base: Decimal, residential: Decimal, remote: Decimal,
             oversize: Decimal) -> tuple[tuple[Charge, ...], Money]:
    """The charges of a base price and its surcharges (each already summed over the
    parcels), each rounded to the card's minor units once, and their total."""
    charges = [Charge("base", card.money(base))]
    if card.fuel_percent:
        charges.append(Charge("fuel", card.money(base * card.fuel_percent / HUNDRED)))
    for kind, amount in (("residential", residential), ("remote_area", remote),
                         ("oversize", oversize)):
        if amount:
            charges.append(Charge(kind, card.money(amount)))
    return tuple(charges), card.money(sum((c.amount.amount for c in charges), Decimal(0)))


def _duties(card: RateCard, parcels: Sequence[Parcel]) -> Money:
    declared = Decimal(0)
    for index, parcel in enumerate(parcels):
        if parcel.declared_value is None:
            continue
        if parcel.declared_value.currency_code != card.currency_code:
            raise NotRated(f"parcel {index + 1} is declared in "
                           f"{parcel.declared_value.currency_code}, rate card "
                           f"{card.rate_card_id} prices duties in {card.currency_code}")
        declared += parcel.declared_value.amount
    return card.money(declared * card.duty_percent / HUNDRED)


# --- Dates ---


@functools.lru_cache(maxsize=256)
def public_holidays(country: str, subdivision: str = "") -> holidays.HolidayBase | frozenset[date]:
    """A country's public holidays (years filled in as they are asked for); none for a
    country the `holidays` package does not know."""
    subdiv = subdivision or DEFAULT_SUBDIVISIONS.get(country)
    try:
        return holidays.country_holidays(country, subdiv=subdiv)
    except NotImplementedError:
        if subdivision:
            return public_holidays(country)
        return frozenset()


def ship_date(ready_time: datetime, origin: Origin, service: CarrierService) -> date:
    """The day a parcel ready at ``ready_time`` is collected: that day at the origin (in its
    time zone) when ready by the cut-off (the service's, else the origin's), else the next;
    then the first of the service's pickup days that is not a public holiday of the origin's
    country."""
    local = ready_time.astimezone(ZoneInfo(origin.time_zone))
    cutoff = service.cutoff_time or origin.cutoff_time
    day = local.date()
    if cutoff is not None and local.time() > cutoff:
        day += timedelta(days=1)
    days_off = public_holidays(origin.country, origin.subdivision)
    pickup = service.pickup_weekdays
    for _ in range(366):
        if day.weekday() in pickup and day not in days_off:
            return day
        day += timedelta(days=1)
    raise NotRated(f"service {service.code} has no pickup day at {origin.node_id}")


@functools.lru_cache(maxsize=4096)
def delivery_date(shipped: date, transit_days: int, country: str) -> date:
    """``transit_days`` business days after ``shipped``: weekends and the destination
    country's public holidays do not count."""
    days_off = public_holidays(country)
    day = shipped
    left = transit_days
    while left > 0:
        day += timedelta(days=1)
        if day.weekday() < 5 and day not in days_off:
            left -= 1
    return day


# --- Shipping rules ---


@dataclass(frozen=True)
class ShippingRule:
    rule_id: str
    priority: int
    display_name: str = ""
    service_levels: frozenset[Level] = frozenset()
    destination_countries: frozenset[str] = frozenset()
    min_basket_value: Money | None = None
    free: bool = False
    flat_price: Money | None = None

    def applies(self, level: Level, country: str, basket_value: Money | None) -> bool:
        if self.service_levels and level not in self.service_levels:
            return False
        if self.destination_countries and country not in self.destination_countries:
            return False
        if self.min_basket_value is not None:
            if basket_value is None \
                    or basket_value.currency_code != self.min_basket_value.currency_code:
                return False
            if basket_value.amount < self.min_basket_value.amount:
                return False
        return True

    def customer_price(self, currency_code: str) -> Money:
        if self.free or self.flat_price is None:
            return Money.of(currency_code, 0)
        return self.flat_price


def first_rule(rules: Iterable[ShippingRule], level: Level, country: str,
               basket_value: Money | None) -> ShippingRule | None:
    """The first rule by priority (then id) whose conditions hold."""
    for rule in sorted(rules, key=lambda r: (r.priority, r.rule_id)):
        if rule.applies(level, country, basket_value):
            return rule
    return None


# --- Rate shopping ---


class Quote(NamedTuple):
    carrier_id: str
    service_code: str
    service_level: Level
    price: Price
    transit_days: int
    ship_date: date
    delivery_date: date
    meets_promise: bool
    lost_reason: str = ""

    @property
    def total(self) -> Money:
        return self.price.total

    def lost_to(self, reason: str) -> Quote:
        # Spelt out rather than _replace, which goes through every field by name: the rate
        # shop does this for every losing quote.
        return Quote(self.carrier_id, self.service_code, self.service_level, self.price,
                     self.transit_days, self.ship_date, self.delivery_date, self.meets_promise,
                     reason)


@dataclass(frozen=True)
class RateResult:
    quotes: tuple[Quote, ...]  # the chosen first, then in the goal's order
    ineligible: tuple[str, ...]
    customer_price: Money | None = None
    merchant_cost: Money | None = None
    applied_rule: ShippingRule | None = None

    @property
    def chosen(self) -> Quote | None:
        return self.quotes[0] if self.quotes else None


@dataclass
class _Ineligible:
    items: list[str] = field(default_factory=list)

    def add(self, service: CarrierService, reason: str) -> None:
        if len(self.items) < MAX_INELIGIBLE:
            self.items.append(f"{service.code}: {reason}")


def rate_shipment(shipment: Shipment, origin: Origin, carriers: Sequence[Carrier],
                  cards: Mapping[str, Sequence[RateCard]],
                  rules: Sequence[ShippingRule] = (), *, goal: Goal = Goal.CHEAPEST_ON_TIME,
                  day_value_percent: Decimal = DEFAULT_DAY_VALUE_PERCENT) -> RateResult:
    """Every eligible quote for the shipment from the origin, on the carriers' services and
    their rate cards (``cards`` by service code), the choice by ``goal`` and what the
    customer pays by the first shipping rule that applies (else the chosen quote's total)."""
    quotes, ineligible = table_rate_quotes(shipment, origin, carriers, cards)
    return decide(shipment, quotes, ineligible, rules, goal=goal,
                  day_value_percent=day_value_percent)


def table_rate_quotes(shipment: Shipment, origin: Origin, carriers: Sequence[Carrier],
                      cards: Mapping[str, Sequence[RateCard]]) -> tuple[list[Quote], list[str]]:
    """The quotes of the carriers' services on their rate cards, and why each other service
    is ineligible (at most ``MAX_INELIGIBLE``)."""
    ineligible = _Ineligible()
    quotes: list[Quote] = []
    call = _RateCall(shipment, origin)
    for carrier in carriers:
        for service in carrier.services:
            quote = _quote(call, carrier, service, cards.get(service.code, ()), ineligible)
            if quote is not None:
                quotes.append(quote)
    return quotes, ineligible.items


class _RateCall:
    """What the services of one rate shop share, worked out once a call: whether it crosses
    a border, the promise as a day at the origin, and the ship date of each cut-off and set
    of pickup days (services alike in those ship the same day)."""

    def __init__(self, shipment: Shipment, origin: Origin) -> None:
        self.shipment = shipment
        self.origin = origin
        self.cross_border = shipment.destination.country != origin.country
        self.promise = None if shipment.promise_time is None \
            else _promise_date(shipment, origin)
        self._ship_dates: dict[tuple[time | None, frozenset[int]], date] = {}

    def ship_date(self, service: CarrierService) -> date:
        """Raises NotRated when the service has no pickup day."""
        key = (service.cutoff_time, service.pickup_weekdays)
        shipped = self._ship_dates.get(key)
        if shipped is None:
            shipped = self._ship_dates[key] = ship_date(self.shipment.ready_time, self.origin,
                                                        service)
        return shipped

    def meets_promise(self, arrives: date) -> bool:
        return self.promise is None or arrives <= self.promise


def decide(shipment: Shipment, quotes: list[Quote], ineligible: Sequence[str],
           rules: Sequence[ShippingRule] = (), *, goal: Goal = Goal.CHEAPEST_ON_TIME,
           day_value_percent: Decimal = DEFAULT_DAY_VALUE_PERCENT) -> RateResult:
    """The choice among quotes, whether rated on our cards or by a carrier's own API
    (``carrier_quote``): one currency, the goal's order, the shipping rule."""
    reasons = _Ineligible(list(ineligible[:MAX_INELIGIBLE]))
    quotes = _one_currency(quotes, shipment, reasons)
    ordered = choose(quotes, goal, day_value_percent=day_value_percent)
    if not ordered:
        return RateResult((), tuple(reasons.items))
    chosen = ordered[0]
    # A rule prices the level the customer paid for, whatever faster service carries it.
    rule = first_rule(rules, shipment.service_level or chosen.service_level,
                      shipment.destination.country, shipment.basket_value)
    customer = rule.customer_price(chosen.total.currency_code) if rule else chosen.total
    return RateResult(tuple(ordered), tuple(reasons.items), customer, chosen.total, rule)


def _quote(call: _RateCall, carrier: Carrier, service: CarrierService,
           cards: Sequence[RateCard], ineligible: _Ineligible) -> Quote | None:
    shipment, origin = call.shipment, call.origin
    reason = _ineligible_reason(shipment, origin, carrier, service, call.cross_border)
    if reason:
        ineligible.add(service, reason)
        return None
    if not cards:
        ineligible.add(service, "no rate card")
        return None
    price: Price | None = None
    failure = ""
    for card in sorted(cards, key=lambda c: c.rate_card_id) if len(cards) > 1 else cards:
        try:
            price = price_shipment(card, origin.country, shipment.destination, shipment.parcels,
                                   international=call.cross_border, incoterm=shipment.incoterm)
            break
        except NotRated as error:
            failure = failure or str(error)
    if price is None:
        ineligible.add(service, failure)
        return None
    try:
        shipped = call.ship_date(service)
    except NotRated as error:
        ineligible.add(service, str(error))
        return None
    arrives = delivery_date(shipped, service.transit_days, shipment.destination.country)
    return Quote(carrier.carrier_id, service.code, service.service_level, price,
                 service.transit_days, shipped, arrives, call.meets_promise(arrives))


def service_ineligible(shipment: Shipment, origin: Origin, carrier: Carrier,
                       service: CarrierService) -> str:
    """Why the service cannot carry the shipment from the origin, from our carrier data
    alone (no price); empty when it can."""
    return _ineligible_reason(shipment, origin, carrier, service,
                              shipment.destination.country != origin.country)


def carrier_quote(shipment: Shipment, origin: Origin, carrier: Carrier,
                  service: CarrierService, total: Money,
                  charges: Sequence[tuple[str, Money]] = (), *,
                  transit_days: int | None = None,
                  estimated_delivery: date | None = None) -> Quote:
    """A quote a carrier gave through its own API. It ships on our ship date (the origin's
    cut-off, the service's pickup days and holidays: the carrier does not know them) and
    arrives on the carrier's own estimate when it gave one, else after its transit days,
    else after the service's transit days from our carrier data. The billed weight is the
    actual weight: the carrier bills by its own rules and does not say. Charges in another
    currency than the total are left out rather than summed wrongly. Raises NotRated when
    the service has no pickup day."""
    shipped = ship_date(shipment.ready_time, origin, service)
    days = transit_days if transit_days is not None and transit_days >= 0 \
        else service.transit_days
    arrives = estimated_delivery if estimated_delivery is not None and \
        estimated_delivery >= shipped else delivery_date(shipped, days,
                                                         shipment.destination.country)
    if estimated_delivery is not None and transit_days is None:
        days = max(0, _business_days(shipped, arrives))
    meets = shipment.promise_time is None or arrives <= _promise_date(shipment, origin)
    price = Price("", total, tuple(Charge(kind, amount) for kind, amount in charges
                                   if amount.currency_code == total.currency_code),
                  sum(p.weight_grams for p in shipment.parcels))
    return Quote(carrier.carrier_id, service.code, service.service_level, price, days,
                 shipped, arrives, meets)


def _business_days(start: date, end: date) -> int:
    return sum(1 for n in range(1, (end - start).days + 1)
               if (start + timedelta(days=n)).weekday() < 5)


def _ineligible_reason(shipment: Shipment, origin: Origin, carrier: Carrier,
                       service: CarrierService, cross_border: bool) -> str:
    country = shipment.destination.country
    if carrier.disabled:
        return f"carrier {carrier.carrier_id} is disabled"
    if origin.carriers and carrier.carrier_id not in origin.carriers:
        return f"carrier {carrier.carrier_id} does not collect at {origin.node_id}"
    if service.origin_countries and origin.country not in service.origin_countries:
        return f"does not ship from {origin.country}"
    if service.destination_countries and country not in service.destination_countries:
        return f"does not deliver to {country}"
    if cross_border and not service.international:
        return f"does not cross borders ({origin.country} to {country})"
    wanted = shipment.service_level
    if wanted is not None and not meets_level(service.service_level, wanted, cross_border):
        return f"is {service.service_level.name.lower()}, slower than {wanted.name.lower()}"
    if service.max_weight_grams:
        for index, parcel in enumerate(shipment.parcels):
            if parcel.weight_grams > service.max_weight_grams:
                return (f"parcel {index + 1} weighs {parcel.weight_grams} g, over the limit "
                        f"of {service.max_weight_grams} g")
    return ""


def meets_level(offered: Level, wanted: Level, cross_border: bool) -> bool:
    """Whether a service keeps the level the customer paid for: the same or a faster one
    (a next-day service keeps a standard promise; the goal and the price then decide), and
    across a border an international service whatever level was paid for."""
    if cross_border and offered is Level.INTERNATIONAL:
        return True
    if Level.INTERNATIONAL in (offered, wanted):
        return offered is wanted
    return offered >= wanted


def _promise_date(shipment: Shipment, origin: Origin) -> date:
    # The promise is a moment; the carrier's day is the origin's calendar day (the
    # destination's time zone is not known here, and our markets share one with their origin).
    assert shipment.promise_time is not None
    return shipment.promise_time.astimezone(ZoneInfo(origin.time_zone)).date()


def _one_currency(quotes: list[Quote], shipment: Shipment,
                  ineligible: _Ineligible) -> list[Quote]:
    """Quotes compare in one currency: the basket's when given, else the one most quotes
    are priced in (there are no exchange rates here). The others are set aside."""
    if len({quote.price.total.currency_code for quote in quotes}) <= 1:
        return quotes  # one currency, or none: nothing to set aside
    counts: dict[str, int] = {}
    for quote in quotes:
        counts[quote.total.currency_code] = counts.get(quote.total.currency_code, 0) + 1
    if shipment.basket_value is not None and shipment.basket_value.currency_code in counts:
        currency = shipment.basket_value.currency_code
    else:
        currency = max(sorted(counts), key=lambda code: counts[code])
    kept = []
    for quote in quotes:
        if quote.total.currency_code == currency:
            kept.append(quote)
        elif len(ineligible.items) < MAX_INELIGIBLE:
            ineligible.items.append(f"{quote.service_code}: priced in "
                                    f"{quote.total.currency_code}, quotes compare in {currency}")
    return kept


def choose(quotes: Sequence[Quote], goal: Goal, *,
           day_value_percent: Decimal = DEFAULT_DAY_VALUE_PERCENT) -> list[Quote]:
    """The quotes in the goal's order, the chosen first, each other one with its
    ``lost_reason`` against the chosen.

    - CHEAPEST_ON_TIME: the cheapest that meets the promise (of all when none does); the
      earlier of equal prices.
    - FASTEST: the earliest delivery; the cheaper of equal dates.
    - BEST_VALUE: from the cheapest on-time quote, a faster on-time one when each calendar
      day it saves costs at most ``day_value_percent`` % of the cheapest price; of those the
      lowest cost per day saved (then the earliest)."""
    if not quotes:
        return []
    on_time = [q for q in quotes if q.meets_promise] or list(quotes)
    cheapest_key = lambda q: (q.total.amount, q.delivery_date, q.carrier_id,  # noqa: E731
                              q.service_code)
    fastest_key = lambda q: (q.delivery_date, q.total.amount, q.carrier_id,  # noqa: E731
                             q.service_code)
    if goal is Goal.FASTEST:
        chosen = min(quotes, key=fastest_key)
        rest = sorted((q for q in quotes if q is not chosen), key=fastest_key)
    else:
        chosen = min(on_time, key=cheapest_key)
        if goal is Goal.BEST_VALUE:
            chosen = _best_value(chosen, on_time, day_value_percent)
        rest = sorted((q for q in quotes if q is not chosen),
                      key=lambda q: (not q.meets_promise, *cheapest_key(q)))
    return [chosen, *(q.lost_to(lost_reason(q, chosen, goal)) for q in rest)]


def _best_value(cheapest: Quote, on_time: Sequence[Quote], day_value_percent: Decimal) -> Quote:
    limit = cheapest.total.amount * day_value_percent / HUNDRED
    best: tuple[Decimal, date, Quote] | None = None
    for quote in on_time:
        saved = (cheapest.delivery_date - quote.delivery_date).days
        if saved <= 0:
            continue
        per_day = (quote.total.amount - cheapest.total.amount) / saved
        if per_day <= limit and (best is None or (per_day, quote.delivery_date) < best[:2]):
            best = (per_day, quote.delivery_date, quote)
    return best[2] if best else cheapest


def lost_reason(quote: Quote, chosen: Quote, goal: Goal) -> str:
    """Why ``quote`` lost to ``chosen``, in words."""
    late = (quote.delivery_date - chosen.delivery_date).days
    extra = _difference(quote.total, chosen.total)
    if chosen.meets_promise and not quote.meets_promise and goal is not Goal.FASTEST:
        return f"misses the promise (arrives {quote.delivery_date.isoformat()})"
    if goal is Goal.FASTEST:
        if late > 0:
            return f"arrives {_days(late)} later"
        return f"arrives the same day and costs {extra} more" if extra.amount > 0 \
            else "arrives the same day at the same price; chosen by carrier and service order"
    if goal is Goal.BEST_VALUE and late > 0 and extra.amount <= 0:
        return (f"saves {extra * -1} but arrives {_days(late)} later; a day sooner is worth "
                f"more than that")
    if goal is Goal.BEST_VALUE and late < 0:
        return f"arrives {_days(-late)} sooner but costs {extra} more, too much per day saved"
    if extra.amount > 0:
        return f"costs {extra} more"
    if late > 0:
        return f"costs the same and arrives {_days(late)} later"
    return "costs the same and arrives the same day; chosen by carrier and service order"


def _difference(a: Money, b: Money) -> Money:
    """``a - b`` as Money subtracts (one currency, rounded to its minor units), with the
    rounding's exponent looked up rather than worked out: the rate shop words a reason for
    every quote that lost."""
    if a.currency_code != b.currency_code:
        return a - b  # refused as Money refuses it
    return Money(a.currency_code, (a.amount - b.amount).quantize(_exponent(a.currency_code)))


@functools.lru_cache(maxsize=64)
def _exponent(currency_code: str) -> Decimal:
    return Money.of(currency_code, 0).amount


def _days(count: int) -> str:
    return "1 day" if count == 1 else f"{count} days"


# --- Checks of a rate card ---

MAX_ZONES = 500
MAX_BREAKS = 2000
MAX_PREFIXES = 1000  # postcode prefixes of one zone, and remote-area prefixes of a card
MAX_PREFIX_LENGTH = 10
MAX_DIMENSION_MM = 100_000
MAX_PERCENT = Decimal(1000)
ZONE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
RATE_CARD_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")


class CardPaths(Protocol):
    """Where each part of a card came from, for its field violations: a request's fields, or
    a CSV file's lines and columns."""

    def field(self, name: str) -> str: ...

    def zone(self, index: int, name: str) -> str: ...

    def weight_break(self, index: int, name: str) -> str: ...


def check_card(violations: Violations, card: RateCard, paths: CardPaths) -> None:
    """The rules of a card beyond the form of each value (the conversion checks those):
    bounds, zones and breaks that fit together, limits not negative."""
    if card.currency_code and not is_currency(card.currency_code):
        violations.add(paths.field("currency_code"),
                       "must be an ISO 4217 currency code such as GBP")
    if len(card.zones) > MAX_ZONES:
        violations.add(paths.field("zones"), f"at most {MAX_ZONES} zones")
    if len(card.breaks) > MAX_BREAKS:
        violations.add(paths.field("breaks"), f"at most {MAX_BREAKS} weight breaks")
    if not card.zones:
        violations.add(paths.field("zones"), "at least one zone")
    if not card.breaks:
        violations.add(paths.field("breaks"), "at least one weight break")
    for name in ("dim_divisor", "oversize_length_mm", "oversize_girth_mm"):
        value = getattr(card, name)
        if not 0 <= value <= (MAX_DIMENSION_MM if name != "dim_divisor" else 1_000_000):
            violations.add(paths.field(name), "must not be negative, nor absurdly large")
    for name in ("fuel_percent", "duty_percent"):
        if not 0 <= getattr(card, name) <= MAX_PERCENT:
            violations.add(paths.field(name), f"must be between 0 and {MAX_PERCENT}")
    _check_prefixes(violations, paths.field("remote_postcode_prefixes"),
                    card.remote_postcode_prefixes, qualified=True)
    zones: dict[tuple[str, str, str, tuple[str, ...]], int] = {}
    zone_ids = set()
    for index, zone in enumerate(card.zones[:MAX_ZONES]):
        if not ZONE_ID.fullmatch(zone.zone):
            violations.add(paths.zone(index, "zone"), f"must match {ZONE_ID.pattern}")
        for name, country in (("origin_country", zone.origin_country),
                              ("destination_country", zone.destination_country)):
            if not is_country(country):
                violations.add(paths.zone(index, name),
                               "must be an ISO 3166-1 alpha-2 country code such as GB")
        _check_prefixes(violations, paths.zone(index, "postcode_prefixes"),
                        zone.postcode_prefixes, qualified=False)
        key = (zone.zone, zone.origin_country, zone.destination_country,
               tuple(sorted(map(normalise_postcode, zone.postcode_prefixes))))
        if key in zones:
            violations.add(paths.zone(index, "zone"), "repeats an earlier zone")
        zones.setdefault(key, index)
        zone_ids.add(zone.zone)
    seen_breaks: set[tuple[str, int]] = set()
    for index, break_ in enumerate(card.breaks[:MAX_BREAKS]):
        if break_.zone not in zone_ids:
            violations.add(paths.weight_break(index, "zone"), f"no zone {break_.zone!r}")
        if break_.max_weight_grams <= 0:
            violations.add(paths.weight_break(index, "max_weight_grams"), "must be more than 0")
        if (break_.zone, break_.max_weight_grams) in seen_breaks:
            violations.add(paths.weight_break(index, "max_weight_grams"),
                           f"repeats a break of zone {break_.zone!r}")
        seen_breaks.add((break_.zone, break_.max_weight_grams))


def _check_prefixes(violations: Violations, path: str, prefixes: Sequence[str], *,
                    qualified: bool) -> None:
    if len(prefixes) > MAX_PREFIXES:
        violations.add(path, f"at most {MAX_PREFIXES} prefixes")
        return
    for prefix in prefixes:
        country, colon, code = prefix.partition(":") if qualified else ("GB", ":", prefix)
        if not colon or not is_country(country):
            violations.add(path, f"{prefix!r} must be written country:prefix, e.g. GB:HS")
        elif not code or len(code) > MAX_PREFIX_LENGTH or not normalise_postcode(code).isalnum():
            violations.add(path, f"{prefix!r}: a prefix is 1 to {MAX_PREFIX_LENGTH} letters "
                           "and digits")
