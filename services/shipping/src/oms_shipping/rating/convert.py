"""Rate cards, shipping rules, shipments and quotes between their messages, their rows, the
rate-card CSV format (see the service README) and the domain's view."""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from google.type import date_pb2
from oms.common.v1 import common_pb2
from oms.shipping.v1 import shipping_pb2
from oms_platform.errors import Violations
from oms_platform.money import Money, check_money
from oms_platform.values import timestamp
from sqlalchemy import Row

from oms_shipping.carriers.convert import level
from oms_shipping.carriers.domain import Level, check_country
from oms_shipping.rating.cards import (
    Destination,
    Incoterm,
    Parcel,
    Price,
    RateCard,
    WeightBreak,
    Zone,
    check_card,
)
from oms_shipping.rating.domain import MAX_PARCELS, Goal, Quote, RateResult, Shipment
from oms_shipping.rating.rules import ShippingRule

MAX_CSV_BYTES = 1 << 20
_DECIMAL = re.compile(r"\d{1,6}(\.\d{1,6})?")
_INTEGER = re.compile(r"\d{1,12}")

# The card's own fields, as a CSV `setting` row names them, in export order.
MONEY_SETTINGS = ("residential_surcharge", "remote_area_surcharge", "oversize_surcharge",
                  "duties_paid_fee")
INT_SETTINGS = ("dim_divisor", "oversize_length_mm", "oversize_girth_mm")
PERCENT_SETTINGS = ("fuel_percent", "duty_percent")
SETTINGS = ("service_code", "currency_code", *INT_SETTINGS, *PERCENT_SETTINGS,
            *MONEY_SETTINGS, "remote_postcode_prefixes")
CSV_COLUMNS = ("record", "name", "value", "zone", "origin_country", "destination_country",
               "postcode_prefixes", "max_weight_grams", "price")
RECORD_COLUMNS = {
    "setting": ("name", "value"),
    "zone": ("zone", "origin_country", "destination_country", "postcode_prefixes"),
    "break": ("zone", "max_weight_grams", "price"),
}


# --- Rate cards: messages ---


@dataclass
class _MessagePaths:
    prefix: str

    def field(self, name: str) -> str:
        return f"{self.prefix}.{name}"

    def zone(self, index: int, name: str) -> str:
        return f"{self.prefix}.zones[{index}].{name}"

    def weight_break(self, index: int, name: str) -> str:
        return f"{self.prefix}.breaks[{index}].{name}"


def card_of(violations: Violations, rate_card_id: str, message: shipping_pb2.RateCard,
            prefix: str = "rate_card") -> RateCard:
    """The card of a request, each value's form checked (``prefix`` names the fields) and
    then the card's rules (``domain.check_card``)."""
    paths = _MessagePaths(prefix)
    currency = message.currency_code
    currency_ok = violations.require(bool(currency), paths.field("currency_code"), "required")

    def amount(money: common_pb2.Money, path: str) -> Decimal:
        if not money.amount and not money.currency_code:
            return Decimal(0)
        if currency_ok and money.currency_code != currency:
            violations.add(f"{path}.currency_code", f"must be the card's currency {currency}")
            return Decimal(0)
        checked = check_money(violations, path, money.currency_code, money.amount)
        return checked.amount if checked else Decimal(0)

    breaks = tuple(
        WeightBreak(b.zone, b.max_weight_grams,
                    amount(b.price, paths.weight_break(i, "price")))
        for i, b in enumerate(message.breaks))
    for index, break_ in enumerate(message.breaks):
        if not break_.HasField("price"):
            violations.add(paths.weight_break(index, "price"), "required")
    card = RateCard(
        rate_card_id=rate_card_id,
        service_code=message.service_code,
        currency_code=currency,
        zones=tuple(Zone(z.zone, z.origin_country, z.destination_country,
                         tuple(z.postcode_prefixes)) for z in message.zones),
        breaks=breaks,
        dim_divisor=message.dim_divisor,
        fuel_percent=_percent(violations, paths.field("fuel_percent"), message.fuel_percent),
        residential_surcharge=amount(message.residential_surcharge,
                                     paths.field("residential_surcharge")),
        remote_area_surcharge=amount(message.remote_area_surcharge,
                                     paths.field("remote_area_surcharge")),
        remote_postcode_prefixes=tuple(message.remote_postcode_prefixes),
        oversize_length_mm=message.oversize_length_mm,
        oversize_girth_mm=message.oversize_girth_mm,
        oversize_surcharge=amount(message.oversize_surcharge,
                                  paths.field("oversize_surcharge")),
        duties_paid_fee=amount(message.duties_paid_fee, paths.field("duties_paid_fee")),
        duty_percent=_percent(violations, paths.field("duty_percent"), message.duty_percent),
    )
    check_card(violations, card, paths)
    return card


def _percent(violations: Violations, path: str, text: str) -> Decimal:
    if not text:
        return Decimal(0)
    if not _DECIMAL.fullmatch(text):
        violations.add(path, 'must be a decimal percentage such as "12.5"')
        return Decimal(0)
    return Decimal(text)


def card_message(card: RateCard, create_time: datetime | None = None) -> shipping_pb2.RateCard:
    def money(amount: Decimal) -> common_pb2.Money | None:
        if not amount:
            return None
        return common_pb2.Money(currency_code=card.currency_code,
                                amount=f"{card.money(amount).amount:f}")

    return shipping_pb2.RateCard(
        name=f"rateCards/{card.rate_card_id}",
        service_code=card.service_code,
        currency_code=card.currency_code,
        dim_divisor=card.dim_divisor,
        zones=[shipping_pb2.Zone(zone=z.zone, origin_country=z.origin_country,
                                 destination_country=z.destination_country,
                                 postcode_prefixes=z.postcode_prefixes) for z in card.zones],
        breaks=[shipping_pb2.WeightBreak(zone=b.zone, max_weight_grams=b.max_weight_grams,
                                         price=money(b.price) or common_pb2.Money(
                                             currency_code=card.currency_code,
                                             amount=f"{card.money(0).amount:f}"))
                for b in card.breaks],
        fuel_percent=_text(card.fuel_percent),
        residential_surcharge=money(card.residential_surcharge),
        remote_area_surcharge=money(card.remote_area_surcharge),
        remote_postcode_prefixes=card.remote_postcode_prefixes,
        oversize_length_mm=card.oversize_length_mm,
        oversize_girth_mm=card.oversize_girth_mm,
        oversize_surcharge=money(card.oversize_surcharge),
        duties_paid_fee=money(card.duties_paid_fee),
        duty_percent=_text(card.duty_percent),
        create_time=timestamp(create_time) if create_time else None,
    )


def _text(value: Decimal) -> str:
    return "" if not value else f"{value.normalize():f}"


# --- Rate cards: rows ---


def card_values(card: RateCard, carrier_id: str) -> dict[str, Any]:
    return {
        "rate_card_id": card.rate_card_id,
        "service_code": card.service_code,
        "carrier_id": carrier_id,
        "currency_code": card.currency_code,
        "body": {
            "zones": [[z.zone, z.origin_country, z.destination_country,
                       list(z.postcode_prefixes)] for z in card.zones],
            "breaks": [[b.zone, b.max_weight_grams, str(b.price)] for b in card.breaks],
            **{name: getattr(card, name) for name in INT_SETTINGS},
            **{name: str(getattr(card, name)) for name in (*PERCENT_SETTINGS, *MONEY_SETTINGS)},
            "remote_postcode_prefixes": list(card.remote_postcode_prefixes),
        },
    }


def card_from_row(row: Row[Any]) -> RateCard:
    body = row.body
    return RateCard(
        rate_card_id=row.rate_card_id,
        service_code=row.service_code,
        currency_code=row.currency_code,
        zones=tuple(Zone(z[0], z[1], z[2], tuple(z[3])) for z in body["zones"]),
        breaks=tuple(WeightBreak(b[0], b[1], Decimal(b[2])) for b in body["breaks"]),
        remote_postcode_prefixes=tuple(body["remote_postcode_prefixes"]),
        **{name: body[name] for name in INT_SETTINGS},
        **{name: Decimal(body[name]) for name in (*PERCENT_SETTINGS, *MONEY_SETTINGS)},
    )


# --- Rate cards: CSV ---


@dataclass
class _CsvPaths:
    settings: dict[str, int] = field(default_factory=dict)
    zones: list[int] = field(default_factory=list)
    breaks: list[int] = field(default_factory=list)

    def field(self, name: str) -> str:
        line = self.settings.get(name)
        return f"csv[{line}].value" if line else "csv"

    def zone(self, index: int, name: str) -> str:
        return f"csv[{self.zones[index]}].{name}"

    def weight_break(self, index: int, name: str) -> str:
        return f"csv[{self.breaks[index]}].{name}"


class _CsvViolations(Violations):
    """Field violations named `csv[line].column`, the description saying the same in words
    for whoever reads it in a log; one per cell (a value that cannot be read is not checked
    again as the card's rules would see its stand-in)."""

    def add(self, path: str, description: str) -> None:
        if path != "csv" and any(item.field == path for item in self.items):
            return
        match = re.fullmatch(r"csv\[(\d+)\]\.(\w+)", path)
        if match:
            description = f"line {match[1]}, column {match[2]}: {description}"
        super().add(path, description)


def card_from_csv(violations: Violations, rate_card_id: str, data: bytes) -> RateCard:
    """Reads the CSV format of the README; every fault of every row is added to
    ``violations`` under ``csv[line].column``."""
    found = _CsvViolations()
    card = _read_csv(found, rate_card_id, data)
    violations.items.extend(found.items)
    return card


def _read_csv(violations: Violations, rate_card_id: str, data: bytes) -> RateCard:
    empty = RateCard(rate_card_id, "", "", (), ())
    if len(data) > MAX_CSV_BYTES:
        violations.add("csv", f"at most {MAX_CSV_BYTES} bytes")
        return empty
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        violations.add("csv", f"must be UTF-8 (byte {error.start} is not)")
        return empty
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            violations.add("csv", "is empty; the first line names the columns")
            return empty
        header = [name.strip() for name in header]
        if sorted(header) != sorted(CSV_COLUMNS):
            violations.add("csv[1]", "the columns must be " + ",".join(CSV_COLUMNS))
            return empty
        rows = []
        for values in reader:
            if not any(value.strip() for value in values):
                continue
            if len(values) != len(header):
                violations.add(f"csv[{reader.line_num}]",
                               f"line {reader.line_num}: has {len(values)} columns, not "
                               f"{len(header)}")
                continue
            rows.append((reader.line_num,
                         dict(zip(header, (v.strip() for v in values), strict=True))))
    except csv.Error as error:
        violations.add(f"csv[{reader.line_num}]", f"line {reader.line_num}: {error}")
        return empty
    paths = _CsvPaths()
    settings: dict[str, str] = {}
    zones: list[Zone] = []
    breaks: list[tuple[int, dict[str, str]]] = []
    for line, row in rows:
        record = row["record"]
        if record not in RECORD_COLUMNS:
            violations.add(f"csv[{line}].record", "must be setting, zone or break")
            continue
        for column in CSV_COLUMNS[1:]:
            if row[column] and column not in RECORD_COLUMNS[record]:
                violations.add(f"csv[{line}].{column}", f"must be empty in a {record} row")
        if record == "setting":
            name = row["name"]
            if name not in SETTINGS:
                violations.add(f"csv[{line}].name", "must be one of " + ", ".join(SETTINGS))
            elif name in settings:
                violations.add(f"csv[{line}].name", f"repeats line {paths.settings[name]}")
            else:
                settings[name] = row["value"]
                paths.settings[name] = line
        elif record == "zone":
            zones.append(Zone(row["zone"], row["origin_country"], row["destination_country"],
                              tuple(row["postcode_prefixes"].split())))
            paths.zones.append(line)
        else:
            breaks.append((line, row))
    currency = settings.get("currency_code", "")
    for name in ("service_code", "currency_code"):
        if not settings.get(name):
            violations.add(paths.field(name), f"a setting row with name {name} is required")

    weight_breaks = []
    for line, row in breaks:
        paths.breaks.append(line)
        grams = 0
        if not _INTEGER.fullmatch(row["max_weight_grams"]):
            violations.add(f"csv[{line}].max_weight_grams", "must be a whole number of grams")
        else:
            grams = int(row["max_weight_grams"])
        if not row["price"]:
            violations.add(f"csv[{line}].price", "required")
        weight_breaks.append(WeightBreak(row["zone"], grams,
                                         _csv_money(violations, f"csv[{line}].price",
                                                    currency, row["price"])))
    numbers: dict[str, Any] = {}
    for name in INT_SETTINGS:
        text = settings.get(name, "")
        if text and not _INTEGER.fullmatch(text):
            violations.add(paths.field(name), "must be a whole number")
            text = ""
        numbers[name] = int(text or 0)
    for name in PERCENT_SETTINGS:
        numbers[name] = _percent(violations, paths.field(name), settings.get(name, ""))
    for name in MONEY_SETTINGS:
        numbers[name] = _csv_money(violations, paths.field(name), currency,
                                   settings.get(name, ""))
    card = RateCard(
        rate_card_id=rate_card_id,
        service_code=settings.get("service_code", ""),
        currency_code=currency,
        zones=tuple(zones),
        breaks=tuple(weight_breaks),
        remote_postcode_prefixes=tuple(settings.get("remote_postcode_prefixes", "").split()),
        **numbers,
    )
    check_card(violations, card, paths)
    return card


def _csv_money(violations: Violations, path: str, currency: str, text: str) -> Decimal:
    """An amount in the card's currency, its faults named by the cell (a bad currency is the
    currency setting's own violation)."""
    if not text:
        return Decimal(0)
    scratch = Violations()
    checked = check_money(scratch, "cell", currency or "EUR", text)
    for violation in scratch.items:
        if violation.field == "cell.amount":
            violations.add(path, violation.description)
    return checked.amount if checked else Decimal(0)


def card_csv(card: RateCard) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)

    def row(record: str, **values: object) -> None:
        writer.writerow([record, *(values.get(column, "") for column in CSV_COLUMNS[1:])])

    row("setting", name="service_code", value=card.service_code)
    row("setting", name="currency_code", value=card.currency_code)
    for name in INT_SETTINGS:
        row("setting", name=name, value=getattr(card, name))
    for name in PERCENT_SETTINGS:
        row("setting", name=name, value=_text(getattr(card, name)) or "0")
    for name in MONEY_SETTINGS:
        row("setting", name=name, value=f"{card.money(getattr(card, name)).amount:f}")
    row("setting", name="remote_postcode_prefixes", value=" ".join(card.remote_postcode_prefixes))
    for zone in card.zones:
        row("zone", zone=zone.zone, origin_country=zone.origin_country,
            destination_country=zone.destination_country,
            postcode_prefixes=" ".join(zone.postcode_prefixes))
    for break_ in card.breaks:
        row("break", zone=break_.zone, max_weight_grams=break_.max_weight_grams,
            price=f"{card.money(break_.price).amount:f}")
    return out.getvalue().encode()


# --- Shipping rules ---


def rule_of(violations: Violations, message: shipping_pb2.ShippingRule) -> ShippingRule:
    levels = set()
    for index, value in enumerate(message.service_levels):
        found = level(value)
        if not isinstance(found, Level):
            violations.add(f"rule.service_levels[{index}]", "must be a ServiceLevel")
        else:
            levels.add(found)
    for index, country in enumerate(message.destination_countries):
        check_country(violations, f"rule.destination_countries[{index}]", country)
    if len(message.destination_countries) > 300:
        violations.add("rule.destination_countries", "at most 300 countries")
    if len(message.display_name) > 200:
        violations.add("rule.display_name", "must be at most 200 characters")
    minimum = None
    if message.HasField("min_basket_value"):
        minimum = check_money(violations, "rule.min_basket_value",
                              message.min_basket_value.currency_code,
                              message.min_basket_value.amount)
    flat = None
    which = message.WhichOneof("price")
    if which is None or (which == "free" and not message.free):
        violations.add("rule.price", "required: free or flat_price")
    elif which == "flat_price":
        flat = check_money(violations, "rule.flat_price", message.flat_price.currency_code,
                           message.flat_price.amount)
    return ShippingRule(
        rule_id="", priority=message.priority, display_name=message.display_name,
        service_levels=frozenset(levels),
        destination_countries=frozenset(message.destination_countries),
        min_basket_value=minimum, free=which == "free", flat_price=flat)


def rule_values(rule: ShippingRule) -> dict[str, Any]:
    def money(value: Money | None) -> list[str] | None:
        return [value.currency_code, str(value.amount)] if value else None

    return {
        "display_name": rule.display_name,
        "priority": rule.priority,
        "body": {
            "service_levels": sorted(int(v) for v in rule.service_levels),
            "destination_countries": sorted(rule.destination_countries),
            "min_basket_value": money(rule.min_basket_value),
            "free": rule.free,
            "flat_price": money(rule.flat_price),
        },
    }


def rule_from_row(row: Row[Any]) -> ShippingRule:
    body = row.body

    def money(value: list[str] | None) -> Money | None:
        return Money.of(value[0], value[1]) if value else None

    return ShippingRule(
        rule_id=row.rule_id, priority=row.priority, display_name=row.display_name,
        service_levels=frozenset(Level(v) for v in body["service_levels"]),
        destination_countries=frozenset(body["destination_countries"]),
        min_basket_value=money(body["min_basket_value"]), free=body["free"],
        flat_price=money(body["flat_price"]))


def rule_message(row: Row[Any]) -> shipping_pb2.ShippingRule:
    rule = rule_from_row(row)
    message = shipping_pb2.ShippingRule(
        name=f"shippingRules/{rule.rule_id}", display_name=rule.display_name,
        priority=rule.priority, service_levels=[int(v) for v in sorted(rule.service_levels)],
        destination_countries=sorted(rule.destination_countries),
        min_basket_value=money_message(rule.min_basket_value),
        create_time=timestamp(row.create_time))
    if rule.free:
        message.free = True
    else:
        message.flat_price.CopyFrom(money_message(rule.flat_price))
    return message


def new_rule_id() -> str:
    return str(uuid.uuid4())


# --- Shipments and quotes ---


def shipment_of(violations: Violations, message: shipping_pb2.Shipment,
                now: datetime) -> Shipment:
    """The shipment of a request, every fault of its fields added to ``violations``."""
    destination = message.destination
    if violations.require(message.HasField("destination"), "shipment.destination", "required"):
        check_country(violations, "shipment.destination.region_code", destination.region_code)
        violations.require(bool(destination.postal_code.strip()),
                           "shipment.destination.postal_code", "required")
    if not message.node_id:
        violations.add("shipment.node_id", "required")
    count = len(message.parcels)
    violations.require(0 < count <= MAX_PARCELS, "shipment.parcels",
                       f"between 1 and {MAX_PARCELS} parcels")
    parcels = []
    for index, parcel in enumerate(message.parcels[:MAX_PARCELS]):
        path = f"shipment.parcels[{index}]"
        violations.require(parcel.weight.grams > 0, f"{path}.weight.grams", "must be more than 0")
        dims = parcel.dimensions
        for name in ("length_mm", "width_mm", "height_mm"):
            if getattr(dims, name) < 0:
                violations.add(f"{path}.dimensions.{name}", "must not be negative")
        declared = None
        if parcel.HasField("declared_value"):
            declared = check_money(violations, f"{path}.declared_value",
                                   parcel.declared_value.currency_code,
                                   parcel.declared_value.amount)
        parcels.append(Parcel(parcel.weight.grams, dims.length_mm, dims.width_mm,
                              dims.height_mm, declared))
    wanted = None
    if message.service_level:
        wanted = level(message.service_level)
        if not isinstance(wanted, Level):
            violations.add("shipment.service_level", "must be a ServiceLevel")
            wanted = None
    basket = None
    if message.HasField("basket_value"):
        basket = check_money(violations, "shipment.basket_value",
                             message.basket_value.currency_code, message.basket_value.amount)
    if message.incoterm not in (0, 1, 2):
        violations.add("shipment.incoterm", "must be an Incoterm")
    ready = message.ready_time.ToDatetime(UTC) if message.HasField("ready_time") else now
    promise = message.promise_time.ToDatetime(UTC) if message.HasField("promise_time") else None
    return Shipment(
        destination=Destination(destination.region_code, destination.postal_code,
                                message.residential),
        parcels=tuple(parcels), ready_time=ready, service_level=wanted, promise_time=promise,
        basket_value=basket,
        incoterm=Incoterm.DDP if message.incoterm == Incoterm.DDP else Incoterm.DDU)


def goal_of(violations: Violations, value: int) -> Goal:
    if value == 0:
        return Goal.CHEAPEST_ON_TIME
    if value not in Goal._value2member_map_:
        violations.add("goal", "must be a RatingGoal")
        return Goal.CHEAPEST_ON_TIME
    return Goal(value)


def money_message(value: Money | None) -> common_pb2.Money | None:
    if value is None:
        return None
    return common_pb2.Money(currency_code=value.currency_code, amount=f"{value.amount:f}")


def date_message(value: date) -> date_pb2.Date:
    return date_pb2.Date(year=value.year, month=value.month, day=value.day)


# Wire bytes of what quotes repeat from call to call, by value: a quote's total and charges
# (one parcel on the same band of a card always comes to the same) and its two dates.
# Merging serialised bytes into a message is protobuf's rule for concatenated messages, and
# costs a fraction of building each nested message field by field: the rate shop answers
# twenty quotes a call, each with five nested messages or more. Bounded: emptied when full.
MAX_FRAGMENTS = 4096
_fragments: dict[tuple[Any, ...], bytes] = {}


def _fragment(key: tuple[Any, ...], build: Callable[[], shipping_pb2.Quote]) -> bytes:
    found = _fragments.get(key)
    if found is None:
        if len(_fragments) >= MAX_FRAGMENTS:
            _fragments.clear()
        found = _fragments[key] = build().SerializeToString()
    return found


def _price_fragment(price: Price) -> bytes:
    """The total and the charges, every amount in the total's currency (the key holds the
    amounts as written, so equal amounts written apart stay apart)."""
    currency = price.total.currency_code
    key = ("price", currency, f"{price.total.amount:f}",
           *[(c.kind, f"{c.amount.amount:f}") for c in price.charges])

    def build() -> shipping_pb2.Quote:
        return shipping_pb2.Quote(
            total=common_pb2.Money(currency_code=currency, amount=key[2]),
            charges=[shipping_pb2.Charge(kind=kind, amount=common_pb2.Money(
                currency_code=currency, amount=amount)) for kind, amount in key[3:]])

    return _fragment(key, build)


def _dates_fragment(shipped: date, arrives: date) -> bytes:
    return _fragment(("dates", shipped, arrives), lambda: shipping_pb2.Quote(
        ship_date=date_message(shipped), estimated_delivery_date=date_message(arrives)))


def quote_message(quote: Quote, message: shipping_pb2.Quote | None = None
                  ) -> shipping_pb2.Quote:
    """The quote's message, filled in place (in ``message`` when given, which must be
    empty)."""
    message = shipping_pb2.Quote() if message is None else message
    message.carrier = quote.carrier_id
    message.service_code = quote.service_code
    message.service_level = int(quote.service_level)  # type: ignore[assignment]
    message.billed_weight_grams = quote.price.billed_weight_grams
    message.transit_days = quote.transit_days
    message.meets_promise = quote.meets_promise
    message.lost_reason = quote.lost_reason
    message.MergeFromString(_price_fragment(quote.price))
    message.MergeFromString(_dates_fragment(quote.ship_date, quote.delivery_date))
    if quote.price.receiver_duties is not None:
        message.receiver_duties.CopyFrom(money_message(quote.price.receiver_duties))
    return message


def rate_response(result: RateResult) -> shipping_pb2.RateShipmentResponse:
    response = shipping_pb2.RateShipmentResponse(
        customer_price=money_message(result.customer_price),
        merchant_cost=money_message(result.merchant_cost),
        applied_rule=f"shippingRules/{result.applied_rule.rule_id}" if result.applied_rule
        else "",
        ineligible=result.ineligible,
    )
    for quote in result.quotes:
        quote_message(quote, response.quotes.add())
    return response


def cards_by_service(cards: Sequence[RateCard]) -> Mapping[str, list[RateCard]]:
    by_service: dict[str, list[RateCard]] = {}
    for card in cards:
        by_service.setdefault(card.service_code, []).append(card)
    return by_service
