"""KPI rules: who a customer is, UTC periods, rates, request checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from oms_orders.insights.domain import (
    MAX_CHANNELS,
    MAX_FIGURES,
    MAX_PERIODS,
    CancelledUnits,
    CurrencyFigures,
    Granularity,
    PeriodKpis,
    average_order_value,
    cancelled_amount,
    check_channels,
    check_figures,
    check_range,
    contact,
    percent,
    period_count,
    period_end,
    period_start,
    ratio,
    top_reasons,
)
from oms_platform.errors import Violations

ORDER = "orders/6f1c1b1e-8a44-4c4e-9d1e-2f4b9f3e7a10"


def person(**fields: str) -> tuple[str, str, str]:
    values = {"order_name": ORDER, "channel": "shop", "customer_name": "",
              "customer_email": "", "external_customer_id": "", "recipient": "",
              "address_email": "", **fields}
    found = contact(**values)
    return found.name, found.email, found.customer_key


def test_a_customer_is_known_by_email_regardless_of_case() -> None:
    assert person(customer_name="Ada", customer_email=" Ada@Example.TEST ") == (
        "Ada", "Ada@Example.TEST", "ada@example.test"
    )


def test_the_shipping_address_stands_in_for_missing_customer_details() -> None:
    assert person(recipient="Ada L", address_email="ada@example.test") == (
        "Ada L", "ada@example.test", "ada@example.test"
    )


def test_without_email_the_channels_customer_id_or_the_order_identifies_the_buyer() -> None:
    assert person(external_customer_id="C-7")[2] == "channel:shop/C-7"
    assert person()[2] == f"order:{ORDER}"


@pytest.mark.parametrize(("granularity", "start", "end"), [
    (Granularity.DAY, datetime(2026, 3, 4, tzinfo=UTC), datetime(2026, 3, 5, tzinfo=UTC)),
    # 2026-03-04 is a Wednesday; ISO weeks start on Monday.
    (Granularity.WEEK, datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 9, tzinfo=UTC)),
    (Granularity.MONTH, datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)),
])
def test_periods_are_calendar_periods_in_utc(
    granularity: Granularity, start: datetime, end: datetime
) -> None:
    # 01:30 on the 5th in UTC+2 is still the 4th in UTC.
    moment = datetime(2026, 3, 5, 1, 30, tzinfo=timezone(timedelta(hours=2)))
    assert period_start(moment, granularity) == start
    assert period_end(start, granularity) == end


def test_december_ends_in_january() -> None:
    start = datetime(2026, 12, 1, tzinfo=UTC)
    assert period_end(start, Granularity.MONTH) == datetime(2027, 1, 1, tzinfo=UTC)


def test_rates_with_nothing_to_divide_by_are_unset() -> None:
    assert percent(4, 7) == pytest.approx(57.142857142857)
    assert percent(0, 7) == 0.0
    assert percent(1, 0) is None
    assert ratio(3, 2) == 1.5 and ratio(3, 0) is None


def test_cancelled_units_are_valued_exactly_at_their_unit_prices() -> None:
    prices = {"1": Decimal("2.25"), "2": Decimal("0.10")}
    assert cancelled_amount(prices, {"1": 1, "2": 3}) == Decimal("2.55")
    assert cancelled_amount(prices, {"9": 1}) == Decimal(0)


def test_a_kpi_range_needs_both_ends_in_order_and_a_granularity() -> None:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    violations = Violations()
    check_range(violations, None, None, None)
    assert {v.field for v in violations.items} == {"start_time", "end_time", "granularity"}
    violations = Violations()
    check_range(violations, start, start, Granularity.DAY)
    assert [v.field for v in violations.items] == ["end_time"]
    violations = Violations()
    check_range(violations, start, start + timedelta(days=20 * 366), Granularity.MONTH)
    assert [v.field for v in violations.items] == ["end_time"]
    violations = Violations()
    check_range(violations, start, start + timedelta(days=1), Granularity.DAY)
    assert violations.items == []


def test_a_kpi_request_spans_a_bounded_number_of_periods() -> None:
    start = datetime(2026, 3, 1, 12, tzinfo=UTC)
    assert period_count(start, start + timedelta(days=1), Granularity.DAY) == 2  # two days
    monday = datetime(2026, 3, 2, tzinfo=UTC)
    assert period_count(monday, monday + timedelta(weeks=52), Granularity.WEEK) == 52
    assert period_count(start, start + timedelta(weeks=52), Granularity.WEEK) == 53  # a Sunday
    assert period_count(start, start + timedelta(days=3660), Granularity.MONTH) == 121
    for granularity, days, allowed in [(Granularity.DAY, MAX_PERIODS - 1, True),
                                       (Granularity.DAY, MAX_PERIODS, False),
                                       (Granularity.WEEK, 7 * MAX_PERIODS, False),
                                       (Granularity.WEEK, 7 * 300, True),
                                       (Granularity.MONTH, 3660, True)]:
        violations = Violations()
        check_range(violations, start, start + timedelta(days=days), granularity)
        assert [v.field for v in violations.items] == ([] if allowed else ["end_time"]), (
            granularity, days)


def test_a_kpi_response_holds_a_bounded_number_of_figures() -> None:
    violations = Violations()
    check_figures(violations, MAX_FIGURES)
    assert violations.items == []
    check_figures(violations, MAX_FIGURES + 1)
    assert [v.field for v in violations.items] == ["channel"]


def test_the_average_order_value_is_in_the_currencys_minor_units_rounded_half_even() -> None:
    # 44.50 / 3 = 14.8333… → 14.83; 0.25 / 2 = 0.125 → 0.12 (half to even); 10 / 4 JPY = 2.5
    # → 2 (no minor units).
    assert average_order_value("EUR", CurrencyFigures(3, Decimal("44.50"))).amount == (
        Decimal("14.83"))
    assert average_order_value("EUR", CurrencyFigures(2, Decimal("0.25"))).amount == (
        Decimal("0.12"))
    assert average_order_value("JPY", CurrencyFigures(4, Decimal("10"))).amount == Decimal("2")
    assert average_order_value("EUR", CurrencyFigures(0, Decimal("0"))) is None


def test_cancellation_reasons_beyond_the_bound_are_summed_under_an_empty_reason() -> None:
    rows = [CancelledUnits(f"reason {n:02}", 1, n) for n in range(1, 25)]
    kept = top_reasons(rows, limit=20)
    # The 20 with most units (24 down to 5), then 1 + 2 + 3 + 4 = 10 units of 4 orders.
    assert [x.units for x in kept[:20]] == list(range(24, 4, -1))
    assert kept[20] == CancelledUnits("", 4, 10)
    # Ties go by reason, and nothing is summed when all fit.
    assert top_reasons([CancelledUnits("b", 1, 2), CancelledUnits("a", 1, 2)]) == [
        CancelledUnits("a", 1, 2), CancelledUnits("b", 1, 2)]


def test_channel_filters_are_bounded_and_exclusive() -> None:
    violations = Violations()
    check_channels(violations, "web", ["market", "", "x" * 101])
    assert sorted(v.field for v in violations.items) == [
        "channels", "channels[1]", "channels[2]"]
    too_many = Violations()
    check_channels(too_many, "", [f"c{n}" for n in range(MAX_CHANNELS + 1)])
    assert [v.field for v in too_many.items] == ["channels"]
    fine = Violations()
    check_channels(fine, "", ["web", "market"])
    assert not fine.items


def test_every_rate_is_unset_without_its_denominator() -> None:
    empty = PeriodKpis(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC), "")
    assert all(value is None for value in empty.rates.values())
    # A split rate is over shipped orders, scanned accuracy over scans (verified + refused).
    some = PeriodKpis(empty.period_start, empty.period_end, "", orders_shipped=4,
                      orders_split=1, units_pack_verified=9, units_pack_refused=1)
    assert some.rates["split_rate"] == 25.0
    assert some.rates["scanned_picking_accuracy"] == 90.0
    assert some.rates["on_time_in_full"] is None
