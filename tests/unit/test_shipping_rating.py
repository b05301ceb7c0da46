"""Rating on rate cards, without a server; every expected figure is worked out by hand in the
comment next to it."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from oms_platform.money import Money
from oms_shipping.carriers.domain import Carrier, CarrierService, Level, Origin
from oms_shipping.rating.cards import (
    Destination,
    Incoterm,
    Parcel,
    RateCard,
    WeightBreak,
    Zone,
    billed_weight_grams,
    dimensional_weight_grams,
    price_shipment,
)
from oms_shipping.rating.domain import Goal, Shipment, rate_shipment
from oms_shipping.rating.promise import delivery_date, ship_date
from oms_shipping.rating.rules import ShippingRule, first_rule

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
UK_ORIGIN = Origin("uk-manchester", "GB", "M1 1AA", "Europe/London", time(15, 0))
US_ORIGIN = Origin("us-east", "US", "10001", "America/New_York", time(17, 0))
HOME = Destination("GB", "SW1A 1AA", residential=False)


def gbp(amount: str) -> Money:
    return Money.of("GBP", amount)


def card(**overrides: object) -> RateCard:
    fields: dict[str, object] = {
        "rate_card_id": "rm-48",
        "service_code": "royal_mail_tracked_48",
        "currency_code": "GBP",
        "zones": (Zone("1", "GB", "GB"),),
        "breaks": (WeightBreak("1", 1000, Decimal("3.00")),
                   WeightBreak("1", 5000, Decimal("6.50")),
                   WeightBreak("1", 10000, Decimal("9.00"))),
    }
    fields.update(overrides)
    return RateCard(**fields)  # type: ignore[arg-type]


def charges(price: object) -> dict[str, Money]:
    return {c.kind: c.amount for c in price.charges}  # type: ignore[attr-defined]


# --- Weight ---


def test_dimensional_weight_wins_over_a_light_bulky_parcel() -> None:
    # 40 x 30 x 20 cm = 24,000 cm³ ÷ 5,000 cm³/kg = 4.8 kg > 1 kg actual: billed 4,800 g,
    # which falls in the ≤ 5 kg break (6.50); fuel 10 % of 6.50 = 0.65; total 7.15.
    parcel = Parcel(1000, 400, 300, 200)
    rated = card(dim_divisor=5000, fuel_percent=Decimal("10"))
    assert dimensional_weight_grams(parcel, 5000) == 4800
    price = price_shipment(rated, "GB", HOME, [parcel])
    assert price.billed_weight_grams == 4800
    assert charges(price) == {"base": gbp("6.50"), "fuel": gbp("0.65")}
    assert price.total == gbp("7.15")


def test_actual_weight_wins_over_a_small_heavy_parcel_and_without_a_divisor() -> None:
    # 20 x 10 x 10 cm = 2,000 cm³ ÷ 5,000 = 0.4 kg < 6 kg actual: billed 6,000 g → 9.00.
    heavy = Parcel(6000, 200, 100, 100)
    assert billed_weight_grams(heavy, 5000) == 6000
    assert price_shipment(card(dim_divisor=5000), "GB", HOME, [heavy]).total == gbp("9.00")
    # Divisor 0: actual weight only, the bulky parcel of the test above bills 1,000 g → 3.00.
    assert price_shipment(card(), "GB", HOME, [Parcel(1000, 400, 300, 200)]).total == gbp("3.00")


def test_dimensional_weight_rounds_up_to_the_gram_and_bills_per_parcel() -> None:
    # 333 x 333 x 333 mm = 36,926,037 mm³ ÷ 6,000 = 6,154.34 → 6,155 g.
    assert dimensional_weight_grams(Parcel(100, 333, 333, 333), 6000) == 6155
    # Two parcels each billed on their own: 4,800 g (6.50) + 900 g actual (3.00) = 9.50;
    # summed first (5,700 g) they would have cost 9.00.
    price = price_shipment(card(dim_divisor=5000), "GB", HOME,
                           [Parcel(1000, 400, 300, 200), Parcel(900, 100, 100, 100)])
    assert price.billed_weight_grams == 5700
    assert price.total == gbp("9.50")


# --- Surcharges ---


def test_residential_remote_and_oversize_surcharges_apply_per_parcel() -> None:
    rated = card(residential_surcharge=Decimal("1.20"), remote_area_surcharge=Decimal("4.00"),
                 remote_postcode_prefixes=("GB:HS", "GB:ZE"), oversize_length_mm=1000,
                 oversize_girth_mm=3000, oversize_surcharge=Decimal("12.00"),
                 fuel_percent=Decimal("12.5"))
    long_parcel = Parcel(2000, 1100, 100, 100)  # 1,100 mm > 1,000 mm: oversize
    isle_of_lewis = Destination("GB", "hs1 2ab", residential=True)
    price = price_shipment(rated, "GB", isle_of_lewis, [long_parcel])
    # base 6.50 (2 kg); fuel 12.5 % of 6.50 = 0.8125 → 0.81; + 1.20 + 4.00 + 12.00 = 24.51.
    assert charges(price) == {"base": gbp("6.50"), "fuel": gbp("0.81"),
                              "residential": gbp("1.20"), "remote_area": gbp("4.00"),
                              "oversize": gbp("12.00")}
    assert price.total == gbp("24.51")
    # A business in London: none of them.
    assert charges(price_shipment(rated, "GB", HOME, [Parcel(2000, 300, 200, 100)])) == {
        "base": gbp("6.50"), "fuel": gbp("0.81")}


def test_oversize_by_length_plus_girth() -> None:
    rated = card(oversize_girth_mm=3000, oversize_surcharge=Decimal("12.00"))
    # 900 + 2 x (500 + 400) = 2,700 mm: within; 900 + 2 x (600 + 500) = 3,100 mm: oversize.
    within = price_shipment(rated, "GB", HOME, [Parcel(4000, 500, 900, 400)])
    over = price_shipment(rated, "GB", HOME, [Parcel(4000, 600, 500, 900)])
    assert "oversize" not in charges(within)
    assert charges(over)["oversize"] == gbp("12.00")
    assert over.total == gbp("18.50")


def test_each_set_of_surcharges_on_a_break_is_priced_apart_and_kept() -> None:
    # A card works out what one parcel on a break comes to once per set of surcharges and
    # keeps it; asked again, in another order, each set keeps its own figures.
    rated = card(residential_surcharge=Decimal("1.20"), remote_area_surcharge=Decimal("4.00"),
                 remote_postcode_prefixes=("GB:HS",), oversize_length_mm=1000,
                 oversize_surcharge=Decimal("12.00"), fuel_percent=Decimal("10"))
    lewis_home = Destination("GB", "HS1 2AB", residential=True)
    small, long_parcel = Parcel(2000, 300, 200, 100), Parcel(2000, 1100, 100, 100)
    for _ in range(2):
        # base 6.50 (2 kg), fuel 10 % = 0.65: 7.15
        assert price_shipment(rated, "GB", HOME, [small]).total == gbp("7.15")
        # + residential 1.20 + remote area 4.00 = 12.35
        assert price_shipment(rated, "GB", lewis_home, [small]).total == gbp("12.35")
        # + oversize 12.00 = 24.35
        assert price_shipment(rated, "GB", lewis_home, [long_parcel]).total == gbp("24.35")
        # 7.15 + oversize 12.00 = 19.15
        assert price_shipment(rated, "GB", HOME, [long_parcel]).total == gbp("19.15")
    # Both at once, summed over the parcels: base 13.00, fuel 1.30, residential 2.40, remote
    # area 8.00, oversize 12.00 (the long one only): 36.70.
    both = price_shipment(rated, "GB", lewis_home, [small, long_parcel])
    assert charges(both) == {"base": gbp("13.00"), "fuel": gbp("1.30"),
                             "residential": gbp("2.40"), "remote_area": gbp("8.00"),
                             "oversize": gbp("12.00")}
    assert both.total == gbp("36.70")


# --- Zones ---


def test_zone_by_postcode_prefix_the_longest_winning() -> None:
    rated = card(
        zones=(Zone("mainland", "GB", "GB"), Zone("ni", "GB", "GB", ("BT",)),
               Zone("islands", "GB", "GB", ("HS", "ZE")), Zone("stornoway", "GB", "GB", ("HS1",)),
               Zone("ireland", "GB", "IE")),
        breaks=(WeightBreak("mainland", 2000, Decimal("3.00")),
                WeightBreak("ni", 2000, Decimal("5.00")),
                WeightBreak("islands", 2000, Decimal("8.00")),
                WeightBreak("stornoway", 2000, Decimal("7.00"))),
    )
    assert rated.zone_for("GB", "GB", "SW1A 1AA").zone == "mainland"  # type: ignore[union-attr]
    assert rated.zone_for("GB", "GB", "bt1 5gs").zone == "ni"  # type: ignore[union-attr]
    assert rated.zone_for("GB", "GB", "HS2 9AA").zone == "islands"  # type: ignore[union-attr]
    assert rated.zone_for("GB", "GB", "HS1 2AB").zone == "stornoway"  # type: ignore[union-attr]
    assert rated.zone_for("GB", "FR", "75001") is None
    assert rated.zone_for("GB", "IE", "D02 X285").zone == "ireland"  # type: ignore[union-attr]
    assert rated.zone_for("DE", "GB", "SW1A 1AA") is None  # another origin country
    parcel = [Parcel(1500)]
    assert price_shipment(rated, "GB", Destination("GB", "ZE1 0AA"), parcel).total == gbp("8.00")
    assert price_shipment(rated, "GB", Destination("GB", "HS1 2AB"), parcel).total == gbp("7.00")


def test_of_zones_naming_the_same_prefix_the_first_wins_and_a_whole_country_zone_loses() -> None:
    rated = card(zones=(Zone("isles-a", "GB", "GB", ("HS",)), Zone("rest", "GB", "GB"),
                        Zone("isles-b", "GB", "GB", ("hs", "ZE")), Zone("rest-2", "GB", "GB")),
                 breaks=(WeightBreak("isles-a", 2000, Decimal("8.00")),))
    assert rated.zone_for("GB", "GB", "HS1 2AB").zone == "isles-a"  # type: ignore[union-attr]
    assert rated.zone_for("GB", "GB", "ZE1 0AA").zone == "isles-b"  # type: ignore[union-attr]
    assert rated.zone_for("GB", "GB", "M1 1AA").zone == "rest"  # type: ignore[union-attr]


# --- International ---


def international_card() -> RateCard:
    return card(rate_card_id="dhl-eu", service_code="dhl_express_worldwide",
                zones=(Zone("eu", "GB", "DE"),),
                breaks=(WeightBreak("eu", 2000, Decimal("18.00")),),
                duties_paid_fee=Decimal("5.00"), duty_percent=Decimal("20"))


def test_international_duties_paid_by_the_sender_with_ddp() -> None:
    # Two parcels, each in the ≤ 2 kg break: base 2 x 18.00 = 36.00. Declared 80.00 + 45.50 =
    # 125.50 GBP; duty 20 % = 25.10, paid by the sender with the 5.00 DDP fee:
    # 36.00 + 5.00 + 25.10 = 66.10.
    berlin = Destination("DE", "10115")
    parcels = [Parcel(800, declared_value=gbp("80.00")), Parcel(700, declared_value=gbp("45.50"))]
    price = price_shipment(international_card(), "GB", berlin, parcels,
                           international=True, incoterm=Incoterm.DDP)
    assert charges(price) == {"base": gbp("36.00"), "duties_fee": gbp("5.00"),
                              "duties": gbp("25.10")}
    assert price.total == gbp("66.10")
    assert price.receiver_duties is None


def test_international_duties_quoted_as_the_receivers_with_ddu() -> None:
    berlin = Destination("DE", "10115")
    price = price_shipment(international_card(), "GB", berlin,
                           [Parcel(800, declared_value=gbp("80.00"))],
                           international=True, incoterm=Incoterm.DDU)
    # The sender pays the carriage only (18.00); the receiver 20 % of 80.00 = 16.00.
    assert charges(price) == {"base": gbp("18.00")}
    assert price.total == gbp("18.00")
    assert price.receiver_duties == gbp("16.00")


# --- Dates ---


def standard(**overrides: object) -> CarrierService:
    fields: dict[str, object] = {"code": "royal_mail_tracked_48",
                                 "service_level": Level.STANDARD, "transit_days": 2}
    fields.update(overrides)
    return CarrierService(**fields)  # type: ignore[arg-type]


def test_a_cut_off_just_missed_moves_the_ship_date_to_the_next_pickup_day() -> None:
    tuesday = date(2026, 3, 10)
    # London is on GMT until 29 March: 14:59 local is in time for the 15:00 cut-off.
    assert ship_date(datetime(2026, 3, 10, 14, 59, tzinfo=LONDON), UK_ORIGIN,
                     standard()) == tuesday
    assert ship_date(datetime(2026, 3, 10, 15, 0, tzinfo=LONDON), UK_ORIGIN,
                     standard()) == tuesday
    assert ship_date(datetime(2026, 3, 10, 15, 1, tzinfo=LONDON), UK_ORIGIN,
                     standard()) == date(2026, 3, 11)
    # The service's own cut-off wins over the origin's: 13:30 is past 13:00.
    assert ship_date(datetime(2026, 3, 10, 13, 30, tzinfo=LONDON), UK_ORIGIN,
                     standard(cutoff_time=time(13, 0))) == date(2026, 3, 11)
    # New York is on EDT (UTC-4) from 8 March: 21:30 UTC is 17:30 there, past its 17:00.
    assert ship_date(datetime(2026, 3, 10, 21, 30, tzinfo=UTC), US_ORIGIN,
                     standard()) == date(2026, 3, 11)
    assert ship_date(datetime(2026, 3, 10, 20, 30, tzinfo=UTC), US_ORIGIN,
                     standard()) == tuesday


def test_friday_after_the_cut_off_ships_monday_or_saturday_where_the_carrier_collects() -> None:
    friday_late = datetime(2026, 3, 13, 16, 0, tzinfo=LONDON)
    assert ship_date(friday_late, UK_ORIGIN, standard()) == date(2026, 3, 16)
    saturdays = standard(pickup_days=frozenset({0, 1, 2, 3, 4, 5}))
    assert ship_date(friday_late, UK_ORIGIN, saturdays) == date(2026, 3, 14)


def test_over_a_uk_bank_holiday() -> None:
    # Friday 28 August 2026, 16:00, past the 15:00 cut-off; Saturday and Sunday no pickup;
    # Monday 31 August is England's Summer bank holiday: it ships Tuesday 1 September.
    shipped = ship_date(datetime(2026, 8, 28, 16, 0, tzinfo=LONDON), UK_ORIGIN, standard())
    assert shipped == date(2026, 9, 1)
    # Two business days in transit: Wednesday 2, Thursday 3 September.
    assert delivery_date(shipped, 2, "GB") == date(2026, 9, 3)
    # Transit over Christmas: Thursday 24 December + 2 business days skips Friday 25
    # (Christmas), the weekend and Monday 28 (Boxing Day observed): Tuesday 29, Wednesday 30.
    assert delivery_date(date(2026, 12, 24), 2, "GB") == date(2026, 12, 30)


def test_over_us_thanksgiving() -> None:
    # Wednesday 25 November 2026, 18:00 in New York, past the 17:00 cut-off; Thursday 26 is
    # Thanksgiving: it ships Friday 27; one business day in transit: Monday 30 November.
    shipped = ship_date(datetime(2026, 11, 25, 18, 0, tzinfo=NEW_YORK), US_ORIGIN,
                        standard(code="ups_ground", transit_days=1))
    assert shipped == date(2026, 11, 27)
    assert delivery_date(shipped, 1, "US") == date(2026, 11, 30)
    assert delivery_date(shipped, 0, "US") == shipped


# --- Shipping rules ---


RULES = (
    ShippingRule("free-uk", 1, "Free UK shipping over £50", destination_countries=frozenset({"GB"}),
                 min_basket_value=gbp("50.00"), free=True),
    ShippingRule("flat-standard", 2, "Standard £3.95", service_levels=frozenset({Level.STANDARD}),
                 flat_price=gbp("3.95")),
)


def test_free_shipping_from_the_threshold_and_a_flat_rate_below_it() -> None:
    assert first_rule(RULES, Level.STANDARD, "GB", gbp("49.99")) is RULES[1]
    assert first_rule(RULES, Level.STANDARD, "GB", gbp("50.00")) is RULES[0]
    assert first_rule(RULES, Level.STANDARD, "IE", gbp("80.00")) is RULES[1]  # not GB
    assert first_rule(RULES, Level.EXPRESS, "GB", gbp("10.00")) is None
    assert first_rule(RULES, Level.EXPRESS, "GB", Money.of("EUR", "80.00")) is None


# --- Rate shopping ---


def shop_carriers() -> list[Carrier]:
    return [
        Carrier("royal_mail", (standard(code="rm_48", transit_days=2),
                               standard(code="rm_24", service_level=Level.NEXT_DAY,
                                        transit_days=1))),
        Carrier("evri", (standard(code="evri_standard", transit_days=3),)),
        Carrier("dpd", (standard(code="dpd_next_day", service_level=Level.NEXT_DAY,
                                 transit_days=1),)),
        Carrier("yodel", (standard(code="yodel_48", transit_days=2),), disabled=True),
    ]


def simple_card(code: str, price: str) -> RateCard:
    return card(rate_card_id=code, service_code=code,
                breaks=(WeightBreak("1", 5000, Decimal(price)),))


CARDS = {code: [simple_card(code, price)] for code, price in (
    ("rm_48", "3.50"), ("rm_24", "5.00"), ("evri_standard", "3.00"), ("dpd_next_day", "5.40"),
    ("yodel_48", "2.00"))}
# Ready Monday 9 March 2026 at 10:00 London: ships that day.
READY = datetime(2026, 3, 9, 10, 0, tzinfo=LONDON)


def shipment(**overrides: object) -> Shipment:
    fields: dict[str, object] = {"destination": HOME, "parcels": (Parcel(1200),),
                                 "ready_time": READY}
    fields.update(overrides)
    return Shipment(**fields)  # type: ignore[arg-type]


def test_cheapest_on_time_with_the_reason_each_other_quote_lost() -> None:
    # Promise: Wednesday 11 March. Evri (3.00) arrives Thursday 12: late. Royal Mail 48 (3.50)
    # arrives Wednesday 11: the cheapest on time. RM 24 (5.00) and DPD (5.40) Tuesday 10.
    promise = datetime(2026, 3, 11, 18, 0, tzinfo=LONDON)
    result = rate_shipment(shipment(promise_time=promise), UK_ORIGIN, shop_carriers(), CARDS)
    assert [q.service_code for q in result.quotes] == ["rm_48", "rm_24", "dpd_next_day",
                                                       "evri_standard"]
    chosen, *others = result.quotes
    assert (chosen.total, chosen.ship_date, chosen.delivery_date, chosen.lost_reason) == (
        gbp("3.50"), date(2026, 3, 9), date(2026, 3, 11), "")
    assert [q.lost_reason for q in others] == [
        "costs 1.50 GBP more", "costs 1.90 GBP more", "misses the promise (arrives 2026-03-12)"]
    assert [q.meets_promise for q in others] == [True, True, False]
    assert result.ineligible == ("yodel_48: carrier yodel is disabled",)
    assert result.customer_price == result.merchant_cost == gbp("3.50")
    assert result.applied_rule is None


def test_fastest_and_best_value() -> None:
    fastest = rate_shipment(shipment(), UK_ORIGIN, shop_carriers(), CARDS, goal=Goal.FASTEST)
    assert [q.service_code for q in fastest.quotes] == ["rm_24", "dpd_next_day", "rm_48",
                                                        "evri_standard"]
    assert [q.lost_reason for q in fastest.quotes[1:]] == [
        "arrives the same day and costs 0.40 GBP more", "arrives 1 day later",
        "arrives 2 days later"]
    # Best value from the cheapest (Evri 3.00, Thursday): RM 48 saves 1 day for 0.50, RM 24
    # 2 days for 2.00 (1.00 a day). At 10 % of 3.00 (0.30 a day) none is worth it; at 20 %
    # (0.60 a day) RM 48 is.
    thrifty = rate_shipment(shipment(), UK_ORIGIN, shop_carriers(), CARDS, goal=Goal.BEST_VALUE)
    assert thrifty.chosen.service_code == "evri_standard"  # type: ignore[union-attr]
    generous = rate_shipment(shipment(), UK_ORIGIN, shop_carriers(), CARDS,
                             goal=Goal.BEST_VALUE, day_value_percent=Decimal(20))
    assert generous.chosen.service_code == "rm_48"  # type: ignore[union-attr]
    reasons = {q.service_code: q.lost_reason for q in generous.quotes[1:]}
    assert reasons["evri_standard"] == ("saves 0.50 GBP but arrives 1 day later; a day sooner "
                                        "is worth more than that")
    assert reasons["rm_24"] == ("arrives 1 day sooner but costs 1.50 GBP more, too much per "
                                "day saved")


def test_service_level_and_rules_set_the_customer_price_and_the_merchant_cost() -> None:
    rated = rate_shipment(shipment(service_level=Level.STANDARD, basket_value=gbp("20.00")),
                          UK_ORIGIN, shop_carriers(), CARDS, RULES)
    # Next-day services keep a standard promise too; Evri (3.00) is the cheapest.
    assert {q.service_code for q in rated.quotes} == {"rm_48", "evri_standard", "rm_24",
                                                      "dpd_next_day"}
    next_day = rate_shipment(shipment(service_level=Level.NEXT_DAY), UK_ORIGIN,
                             shop_carriers(), CARDS)
    assert {q.service_code for q in next_day.quotes} == {"rm_24", "dpd_next_day"}
    assert "rm_48: is standard, slower than next_day" in next_day.ineligible
    assert rated.applied_rule is RULES[1]
    assert (rated.customer_price, rated.merchant_cost) == (gbp("3.95"), gbp("3.00"))
    free = rate_shipment(shipment(service_level=Level.STANDARD, basket_value=gbp("50.00")),
                         UK_ORIGIN, shop_carriers(), CARDS, RULES)
    assert free.applied_rule is RULES[0]
    assert (free.customer_price, free.merchant_cost) == (gbp("0.00"), gbp("3.00"))


def test_ineligible_services_say_why() -> None:
    carriers = [
        Carrier("dhl", (standard(code="dhl_domestic", destination_countries=frozenset({"DE"})),
                        standard(code="dhl_light", max_weight_grams=1000))),
    ]
    cards = {"dhl_light": [simple_card("dhl_light", "2.00")]}
    result = rate_shipment(shipment(), UK_ORIGIN, carriers, cards)
    assert result.quotes == ()
    assert result.ineligible == ("dhl_domestic: does not deliver to GB",
                                 "dhl_light: parcel 1 weighs 1200 g, over the limit of 1000 g")
    heavy = rate_shipment(shipment(parcels=(Parcel(6000),)), UK_ORIGIN,
                          [Carrier("rm", (standard(code="rm_48"),))], CARDS)
    assert heavy.ineligible == (
        "rm_48: parcel 1 bills 6000 g, over the heaviest break of zone 1 on rate card rm_48",)
    abroad = rate_shipment(shipment(destination=Destination("FR", "75001")), UK_ORIGIN,
                           [Carrier("rm", (standard(code="rm_48"),))], CARDS)
    assert abroad.ineligible == ("rm_48: does not cross borders (GB to FR)",)


def test_an_international_service_quotes_with_its_duties() -> None:
    carriers = [Carrier("dhl", (standard(code="dhl_express_worldwide",
                                         service_level=Level.INTERNATIONAL, transit_days=2,
                                         international=True),))]
    result = rate_shipment(
        shipment(destination=Destination("DE", "10115"), service_level=Level.STANDARD,
                 parcels=(Parcel(800, declared_value=gbp("80.00")),), incoterm=Incoterm.DDP),
        UK_ORIGIN, carriers, {"dhl_express_worldwide": [international_card()]})
    (quote,) = result.quotes
    assert quote.total == gbp("39.00")  # 18.00 + 5.00 + 16.00
    assert quote.delivery_date == date(2026, 3, 11)
    assert READY.date() + timedelta(days=2) == quote.delivery_date


# --- The rate-card CSV format (the README's example) ---

README_CSV = (b"record,name,value,zone,origin_country,destination_country,postcode_prefixes,"
              b"max_weight_grams,price\n") + b"""setting,service_code,royal_mail_tracked_48,,,,,,
setting,currency_code,GBP,,,,,,
setting,dim_divisor,5000,,,,,,
setting,fuel_percent,4.5,,,,,,
setting,remote_area_surcharge,3.50,,,,,,
setting,remote_postcode_prefixes,GB:HS GB:ZE,,,,,,
zone,,,mainland,GB,GB,,,
zone,,,islands,GB,GB,HS ZE KW15,,
break,,,mainland,,,,2000,3.35
break,,,mainland,,,,10000,6.10
break,,,islands,,,,10000,12.00
"""


def test_the_readme_csv_reads_and_writes_back_the_same_card() -> None:
    from oms_platform.errors import Violations
    from oms_shipping.rating.convert import card_csv, card_from_csv

    violations = Violations()
    read = card_from_csv(violations, "rm-48", README_CSV)
    assert violations.items == []
    assert (read.service_code, read.currency_code, read.dim_divisor, read.fuel_percent) == (
        "royal_mail_tracked_48", "GBP", 5000, Decimal("4.5"))
    assert read.zone_for("GB", "GB", "ZE1 0AA").zone == "islands"  # type: ignore[union-attr]
    # 2.5 kg to Lerwick: 12.00, fuel 4.5 % = 0.54, remote area 3.50: 16.04.
    assert price_shipment(read, "GB", Destination("GB", "ZE1 0AA"),
                          [Parcel(2500)]).total == gbp("16.04")
    again = card_from_csv(violations, "rm-48", card_csv(read))
    assert violations.items == [] and again == read


def test_a_bad_csv_names_every_bad_cell_by_line_and_column() -> None:
    from oms_platform.errors import Violations
    from oms_shipping.rating.convert import card_from_csv

    bad = (README_CSV.replace(b"setting,currency_code,GBP", b"setting,currency_code,GBX")
           .replace(b",2000,3.35", b",2kg,3.355")
           + b"break,,,nowhere,GB,,,500,1.00\n")
    violations = Violations()
    card_from_csv(violations, "rm-48", bad)
    assert [(v.field, v.description) for v in violations.items] == [
        ("csv[13].origin_country", "line 13, column origin_country: must be empty in a break "
                                   "row"),
        ("csv[10].max_weight_grams", "line 10, column max_weight_grams: must be a whole number "
                                     "of grams"),
        ("csv[3].value", "line 3, column value: must be an ISO 4217 currency code such as "
                         "GBP"),
        ("csv[13].zone", "line 13, column zone: no zone 'nowhere'"),
    ]
