"""The label rules without a server: tracking numbers against published and hand-worked
examples, the label's state machine and the day-close rule."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from oms_platform.errors import InvalidArgument, NotFound, Violations
from oms_platform.money import Money
from oms_shipping.carriers.domain import Carrier, CarrierService, Level, Mode, Origin
from oms_shipping.labels import domain
from oms_shipping.labels.domain import (
    Address,
    LabelRequest,
    LabelState,
    TrackingFormat,
    TrackingScheme,
    is_valid,
    tracking_number,
)
from oms_shipping.rating.cards import Incoterm, Parcel, RateCard, WeightBreak, Zone
from oms_shipping.rating.domain import Goal


@pytest.mark.parametrize("number", [
    # UPS's own documentation sample; worked by hand: odd places 9+9+2+0+2+4+6+8 = 40, even
    # places doubled 18+4+2+2+6+10+14 = 56, 96 → check 4.
    "1Z999AA10123456784",
    # A widely used UPS test number: 22 + 64 = 86 → check 4 (E counts as 6).
    "1Z12345E6605272234",
])
def test_published_ups_numbers_are_valid(number: str) -> None:
    assert is_valid(TrackingScheme.UPS_1Z, number)


def test_ups_check_digit_catches_a_changed_character() -> None:
    assert not is_valid(TrackingScheme.UPS_1Z, "1Z999AA10123456785")
    assert not is_valid(TrackingScheme.UPS_1Z, "1Z999AA10123456794")
    assert not is_valid(TrackingScheme.UPS_1Z, "1Z999AA1012345678")


@pytest.mark.parametrize("number", [
    # UPU S10's own example: 1*8 + 2*6 + 3*4 + 4*2 + 5*3 + 6*5 + 7*9 + 8*7 = 204,
    # 204 mod 11 = 6, 11 - 6 = 5.
    "RR123456785GB",
    # 8*8 + 7*6 + 6*4 + 5*2 + 4*3 + 3*5 + 2*9 + 1*7 = 192, mod 11 = 5, 11 - 5 = 6.
    "EE876543216CA",
])
def test_published_s10_numbers_are_valid(number: str) -> None:
    assert is_valid(TrackingScheme.S10, number)


def test_s10_special_remainders() -> None:
    # 00000000: sum 0, 11 - 0 = 11 → 5.  00000001 *7 = 7, 11 - 7 = 4.
    # 00000010: *9 = 9, 11 - 9 = 2.  00000003: *7 = 21, mod 11 = 10, 11 - 10 = 1.
    # 00000008: *7 = 56, mod 11 = 1, 11 - 1 = 10 → 0.
    assert [domain.s10_check_digit(s) for s in
            ("00000000", "00000001", "00000010", "00000003", "00000008")] == [5, 4, 2, 1, 0]
    assert not is_valid(TrackingScheme.S10, "RR123456784GB")
    assert not is_valid(TrackingScheme.S10, "R1123456785GB")


def test_mod10_is_the_gs1_check_digit() -> None:
    # The EAN-13 example of GS1's check digit (weights 3 and 1 from the right).
    assert is_valid(TrackingScheme.MOD10, "4006381333931")
    assert not is_valid(TrackingScheme.MOD10, "4006381333932")


@given(st.integers(min_value=1, max_value=10**19 - 1), st.integers(min_value=0, max_value=20),
       st.integers(min_value=1, max_value=9))
def test_mod10_catches_every_single_digit_error(serial: int, place: int, shift: int) -> None:
    number = tracking_number(TrackingFormat(TrackingScheme.MOD10), serial)
    digits = list(number)
    digits[place] = str((int(digits[place]) + shift) % 10)
    assert is_valid(TrackingScheme.MOD10, number)
    assert not is_valid(TrackingScheme.MOD10, "".join(digits))


def test_mod7_dhl_waybill() -> None:
    # 123456789 = 7 * 17636684 + 1.
    assert domain.mod7_check_digit("123456789") == 1
    assert is_valid(TrackingScheme.MOD7, "1234567891")
    assert not is_valid(TrackingScheme.MOD7, "1234567892")


@pytest.mark.parametrize("scheme", list(TrackingScheme))
def test_numbers_from_a_sequence_are_valid_and_distinct(scheme: TrackingScheme) -> None:
    fmt = TrackingFormat(scheme, account="A1B2C3", country="DE")
    serials = [*range(1, 500), 9_999_999]
    numbers = [tracking_number(fmt, serial, "NEXT_DAY") for serial in serials]
    assert len(set(numbers)) == len(numbers)
    assert all(is_valid(scheme, n) for n in numbers)


def test_number_shapes() -> None:
    assert tracking_number(TrackingFormat(TrackingScheme.UPS_1Z, account="999AA1"), 1234567,
                           "NEXT_DAY") == "1Z999AA10112345674"
    assert tracking_number(TrackingFormat(TrackingScheme.S10, service="RR", country="GB"),
                           12345678) == "RR123456785GB"
    assert tracking_number(TrackingFormat(TrackingScheme.MOD7), 123456789) == "1234567891"
    assert len(tracking_number(TrackingFormat(TrackingScheme.MOD10), 1)) == 22


def test_ups_hand_worked_generated_number() -> None:
    # 999AA1 01 1234567: odd places 9+9+2+0+1+3+5+7 = 36, even doubled
    # 18+4+2+2+4+8+12 = 50, 86 → check 4.  (Differs from the sample in service 01 vs 10.)
    assert domain.ups_check_digit("999AA1011234567") == 4


def test_a_serial_past_the_scheme_is_refused_not_wrapped() -> None:
    with pytest.raises(domain.TrackingSpaceExhausted):
        tracking_number(TrackingFormat(TrackingScheme.UPS_1Z), 10**7)
    with pytest.raises(domain.TrackingSpaceExhausted):
        tracking_number(TrackingFormat(TrackingScheme.S10), 0)


def test_void_and_manifest() -> None:
    assert domain.void(LabelState.PURCHASED) is LabelState.VOIDED
    assert domain.void(LabelState.VOIDED) is LabelState.VOIDED
    assert domain.manifest(LabelState.PURCHASED) is LabelState.MANIFESTED
    with pytest.raises(domain.LabelManifested):
        domain.void(LabelState.MANIFESTED, "labels/x")
    with pytest.raises(domain.LabelVoided):
        domain.manifest(LabelState.VOIDED, "labels/x")


def test_a_closed_day_moves_a_new_label_to_the_next_collection_day() -> None:
    friday = date(2026, 12, 4)

    def next_weekday(day: date) -> date:
        day += timedelta(days=1)
        while day.weekday() >= 5:
            day += timedelta(days=1)
        return day

    assert domain.ship_date_after_closes(friday, set(), next_weekday) == friday
    assert domain.ship_date_after_closes(friday, {friday}, next_weekday) == date(2026, 12, 7)
    assert domain.ship_date_after_closes(
        friday, {friday, date(2026, 12, 7)}, next_weekday) == date(2026, 12, 8)


def test_what_goes_on_the_manifest() -> None:
    today = date(2026, 12, 4)
    assert domain.goes_on_manifest(LabelState.PURCHASED, today, today)
    assert domain.goes_on_manifest(LabelState.PURCHASED, today - timedelta(days=3), today)
    assert not domain.goes_on_manifest(LabelState.PURCHASED, today + timedelta(days=1), today)
    assert not domain.goes_on_manifest(LabelState.VOIDED, today, today)


def _request(**changes: object) -> LabelRequest:
    fields: dict[str, object] = dict(
        request_id="r1", package="fulfilmentOrders/f1/packages/p1", orders=("orders/o1",),
        node_id="uk-1", destination=Address("GB", "SW1A 1AA"), residential=False,
        parcel=Parcel(1200), service_code="", service_level=Level.STANDARD, promise_time=None,
        goal=Goal.CHEAPEST_ON_TIME, incoterm=Incoterm.DDU)
    fields.update(changes)
    return LabelRequest(**fields)  # type: ignore[arg-type]


def test_a_label_request_reports_every_fault_at_once() -> None:
    violations = Violations()
    domain.check_label_request(violations, "requests[2].", _request(
        request_id="", package="p1", orders=("o1",), node_id="",
        destination=Address("gb", ""), parcel=Parcel(0, length_mm=-1)))
    assert sorted(v.field for v in violations.items) == [
        "requests[2].destination.postal_code", "requests[2].destination.region_code",
        "requests[2].node_id", "requests[2].orders[0]", "requests[2].package",
        "requests[2].parcel.dimensions.length_mm", "requests[2].parcel.weight.grams",
        "requests[2].request_id"]
    good = Violations()
    domain.check_label_request(good, "", _request())
    assert good.items == []


def test_a_batch_is_bounded_and_its_request_ids_distinct() -> None:
    with pytest.raises(InvalidArgument) as empty:
        domain.check_batch([])
    assert [v.field for v in empty.value.violations] == ["requests"]
    with pytest.raises(InvalidArgument) as repeated:
        domain.check_batch([_request(), _request(package="fulfilmentOrders/f/packages/2")])
    assert [v.field for v in repeated.value.violations] == ["requests[1].request_id"]
    with pytest.raises(InvalidArgument):
        domain.check_batch([_request(request_id=str(i)) for i in range(101)])
    domain.check_batch([_request(request_id=str(i)) for i in range(100)])


LONDON = Origin("uk-1", "GB", "SN2 8AA", "Europe/London", time(17, 0))
TRACKED_24 = CarrierService("rm_tracked_24", Level.NEXT_DAY, 1)


def test_a_label_for_a_closed_christmas_eve_ships_after_the_bank_holidays() -> None:
    # Thu 24 Dec 2026 is closed; Fri 25 is Christmas, Sat and Sun are no pickup days, Mon 28
    # is Boxing Day's substitute (the 26th is a Saturday): the label ships Tue 29, one
    # business day in transit, arrives Wed 30.
    choice = domain.Choice(Carrier("royal_mail", (TRACKED_24,)), TRACKED_24,
                           Money.of("GBP", "3.50"), date(2026, 12, 24))
    bought = domain.purchase(choice, LONDON, "GB", {date(2026, 12, 24)})
    assert (bought.ship_date, bought.delivery_date) == (date(2026, 12, 29), date(2026, 12, 30))
    assert bought.cost == Money.of("GBP", "3.50")
    open_day = domain.purchase(choice, LONDON, "GB", {date(2026, 12, 23)})
    assert (open_day.ship_date, open_day.delivery_date) == (date(2026, 12, 24),
                                                            date(2026, 12, 29))


def test_repeated_request_ids_are_reported_within_a_bound() -> None:
    with pytest.raises(InvalidArgument) as repeated:
        domain.check_batch([_request()] * 100)
    assert len(repeated.value.violations) == domain.MAX_REPEATS_REPORTED


TRACKED_48 = CarrierService("rm_tracked_48", Level.STANDARD, 2)
UPS_STANDARD = CarrierService("ups_standard", Level.STANDARD, 1)
ROYAL_MAIL = Carrier("royal_mail", (TRACKED_24, TRACKED_48))
UPS_API = Carrier("ups", (UPS_STANDARD,), mode=Mode.KARRIO)


def _card(code: str, price: str) -> RateCard:
    return RateCard(f"card-{code}", code, "GBP", (Zone("1", "GB", "GB"),),
                    (WeightBreak("1", 2000, Decimal(price)),))


CARDS = {"rm_tracked_24": [_card("rm_tracked_24", "4.10")],
         "rm_tracked_48": [_card("rm_tracked_48", "3.20")],
         "ups_standard": [_card("ups_standard", "1.00")]}
# Monday 7 December 2026, 10:00 in London: before the cut-off, so it ships today.
MONDAY_MORNING = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


def _uk_request(**changes: object) -> LabelRequest:
    return _request(destination=Address("GB", "SW1A 2AA"), **changes)


def test_a_named_service_is_priced_on_its_card() -> None:
    choice = domain.choose_service(_uk_request(service_code="rm_tracked_24"), LONDON,
                                   [ROYAL_MAIL, UPS_API], CARDS, MONDAY_MORNING)
    assert (choice.service.code, choice.cost, choice.ship_date) == (
        "rm_tracked_24", Money.of("GBP", "4.10"), date(2026, 12, 7))


def test_without_a_service_the_rate_shop_picks_among_table_rate_carriers() -> None:
    # UPS is cheaper on paper but bought through its API: not a label made here.
    choice = domain.choose_service(_uk_request(), LONDON, [ROYAL_MAIL, UPS_API], CARDS,
                                   MONDAY_MORNING)
    assert (choice.carrier.carrier_id, choice.service.code) == ("royal_mail", "rm_tracked_48")


def test_services_that_cannot_be_bought_here() -> None:
    with pytest.raises(domain.NotTableRate):
        domain.choose_service(_uk_request(service_code="ups_standard"), LONDON,
                              [ROYAL_MAIL, UPS_API], CARDS, MONDAY_MORNING)
    with pytest.raises(NotFound):
        domain.choose_service(_uk_request(service_code="nope"), LONDON, [ROYAL_MAIL], CARDS,
                              MONDAY_MORNING)
    with pytest.raises(domain.NoEligibleService) as heavy:
        domain.choose_service(_uk_request(parcel=Parcel(5000)), LONDON, [ROYAL_MAIL], CARDS,
                              MONDAY_MORNING)
    assert "rm_tracked_48" in heavy.value.message
