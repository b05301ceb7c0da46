"""Rate shopping, pure: every eligible quote for a shipment from an origin (priced on the
services' rate cards, ``cards``, or given by a carrier's own API), its ship and delivery
dates (``promise``), the choice by goal with the reason each other quote lost, and what the
customer pays by the merchant's shipping rules (``rules``)."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import NamedTuple
from zoneinfo import ZoneInfo

from oms_platform.money import Money

from oms_shipping.carriers.domain import Carrier, CarrierService, Level, Origin
from oms_shipping.rating.cards import (
    HUNDRED,
    Charge,
    Destination,
    Incoterm,
    NotRated,
    Parcel,
    Price,
    RateCard,
    currency_exponent,
    price_shipment,
)
from oms_shipping.rating.promise import delivery_date, ship_date
from oms_shipping.rating.rules import ShippingRule, first_rule

MAX_PARCELS = 50
MAX_INELIGIBLE = 100
# A faster quote is worth its extra cost under BEST_VALUE when each day it saves costs at most
# this share of the cheapest on-time price (see `choose`).
DEFAULT_DAY_VALUE_PERCENT = Decimal(10)


class Goal(enum.IntEnum):
    """What the rate shop optimises for (the numbers of ``oms.shipping.v1.RatingGoal``)."""

    CHEAPEST_ON_TIME = 1
    FASTEST = 2
    BEST_VALUE = 3


@dataclass(frozen=True)
class Shipment:
    destination: Destination
    parcels: tuple[Parcel, ...]
    ready_time: datetime  # aware
    service_level: Level | None = None
    promise_time: datetime | None = None  # aware
    basket_value: Money | None = None
    incoterm: Incoterm = Incoterm.DDU


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
    exponent = currency_exponent(a.currency_code)
    return Money(a.currency_code, (a.amount - b.amount).quantize(exponent))


def _days(count: int) -> str:
    return "1 day" if count == 1 else f"{count} days"
