"""Rate cards, pure: zones by origin and destination country and postcode prefix, weight
breaks, billed weight (actual or dimensional), surcharges and duties, a shipment's parcels
priced on one card, and the checks of a card.

Every price is a :class:`~oms_platform.money.Money` in its card's currency, rounded to the
currency's minor units once per charge (so the charges always add up to the total)."""

from __future__ import annotations

import bisect
import enum
import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple, Protocol

from oms_platform.errors import Violations
from oms_platform.money import Money, is_currency

from oms_shipping.carriers.domain import is_country

HUNDRED = Decimal(100)


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
        return Money(self.currency_code, amount.quantize(currency_exponent(self.currency_code)))

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


@functools.lru_cache(maxsize=64)
def currency_exponent(currency_code: str) -> Decimal:
    """The exponent an amount in the currency is rounded to (``Decimal("0.01")`` for GBP)."""
    return Money.of(currency_code, 0).amount



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
