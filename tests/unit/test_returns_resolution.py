"""Resolution without a server: refunds and their caps, store credit, exchanges, advance
exchanges and the keys that make each happen once. Every figure is worked out by hand in the
comment beside it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oms_platform.errors import Violations
from oms_platform.money import Money
from oms_returns.resolution.domain import (
    AdvanceExchange,
    AdvanceState,
    Capped,
    CreditKind,
    ExchangeLine,
    InsufficientCredit,
    RefundLine,
    Refusal,
    RestockingFee,
    advance_charge,
    advance_charge_id,
    allocate,
    balances,
    check_advance_days,
    check_exchange,
    check_fee,
    exchange_request_id,
    issue_credit,
    post,
    refund,
    refund_name,
    replacement_order,
    spend_credit,
)


def eur(amount: str | int) -> Money:
    return Money.of("EUR", amount)


def line(line_id: str, price: str, quantity: int, captured: str,
         refunded: str = "0") -> RefundLine:
    return RefundLine(line_id, eur(price), quantity, eur(captured), eur(refunded))


# --- refunds ---------------------------------------------------------------------------------


def test_a_refund_is_the_paid_price_less_the_fees_and_the_shipping_the_customer_pays() -> None:
    decision = refund([line("1", "19.99", 2, "39.98")], order_captured=eur("39.98"),
                      order_refunded=eur(0), fee=RestockingFee(1500, eur("1.00")),
                      return_shipping=eur("4.95"))
    # 2 x 19.99 = 39.98; 15 % of it is 5.997, rounded down 5.99; fixed 1.00 → fee 6.99;
    # shipping 4.95; 39.98 - 6.99 - 4.95 = 28.04.
    assert decision.amount == eur("28.04")
    assert decision.restocking_fee == eur("6.99")
    assert decision.return_shipping == eur("4.95")
    assert decision.waived == eur(0)
    assert decision.refusals == ()
    assert decision.lines[0].deducted == eur("11.94")


def test_the_fixed_fee_and_the_shipping_are_taken_from_the_first_line_on() -> None:
    decision = refund([line("1", "3.00", 1, "3.00"), line("2", "10.00", 1, "10.00")],
                      order_captured=eur("13.00"), order_refunded=eur(0),
                      fee=RestockingFee(0, eur("2.00")), return_shipping=eur("4.00"))
    # Deductions 2.00 + 4.00 = 6.00: line 1 bears its whole 3.00, line 2 the other 3.00.
    assert [(ln.deducted, ln.amount) for ln in decision.lines] == [
        (eur("3.00"), eur(0)), (eur("3.00"), eur("7.00"))]
    # 13.00 - 6.00 = 7.00
    assert decision.amount == eur("7.00")


def test_a_refund_is_never_below_zero_and_the_rest_of_the_deductions_is_waived() -> None:
    decision = refund([line("1", "5.00", 1, "5.00")], order_captured=eur("5.00"),
                      order_refunded=eur(0), fee=RestockingFee(1000),
                      return_shipping=eur("6.95"))
    # 5.00: fee 10 % = 0.50, shipping 6.95, together 7.45; only 5.00 can be deducted,
    # 7.45 - 5.00 = 2.45 waived; nothing paid.
    assert decision.amount == eur(0)
    assert decision.waived == eur("2.45")


def test_the_line_cap_counts_every_earlier_refund_of_the_line() -> None:
    decision = refund([line("1", "50.00", 2, captured="100.00", refunded="70.00")],
                      order_captured=eur("100.00"), order_refunded=eur("70.00"),
                      fee=RestockingFee(1000))
    # 2 x 50.00 = 100.00 asked, 100.00 - 70.00 = 30.00 left of the line: 70.00 refused;
    # fee 10 % of 100.00 = 10.00 from the 30.00 → 20.00.
    assert decision.refusals == (Refusal(Capped.LINE_CAPTURE, eur("70.00"), "1"),)
    assert decision.lines[0].payable == eur("30.00")
    assert decision.amount == eur("20.00")


def test_the_order_cap_counts_refunds_made_outside_returns_and_trims_the_last_line() -> None:
    decision = refund([line("1", "20.00", 1, "20.00"), line("2", "30.00", 1, "30.00")],
                      order_captured=eur("50.00"), order_refunded=eur("15.00"))
    # Lines ask 20.00 + 30.00 = 50.00; the order has 50.00 - 15.00 = 35.00 left (a goodwill
    # refund of 15.00 recorded on the order): 15.00 refused, all from line 2 → 15.00.
    assert decision.refusals == (Refusal(Capped.ORDER_CAPTURE, eur("15.00"), "2"),)
    assert [ln.amount for ln in decision.lines] == [eur("20.00"), eur("15.00")]
    assert decision.amount == eur("35.00")


def test_a_fully_refunded_line_pays_nothing_more() -> None:
    decision = refund([line("1", "9.99", 1, "9.99", refunded="9.99")],
                      order_captured=eur("9.99"), order_refunded=eur("9.99"))
    assert decision.amount == eur(0)
    assert decision.refusals == (Refusal(Capped.LINE_CAPTURE, eur("9.99"), "1"),)


def test_a_refund_mixing_currencies_or_repeating_a_line_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        refund([RefundLine("1", Money.of("USD", 1), 1, eur(1), eur(0))],
               order_captured=eur(1), order_refunded=eur(0))
    with pytest.raises(ValueError):
        refund([line("1", "1", 1, "1")], order_captured=eur(1), order_refunded=eur(0),
               return_shipping=Money.of("GBP", 1))
    with pytest.raises(ValueError):
        refund([line("1", "1", 1, "2"), line("1", "1", 1, "2")],
               order_captured=eur(2), order_refunded=eur(0))


def test_fees_outside_their_range_are_field_violations() -> None:
    violations = Violations()
    check_fee(violations, "fee", RestockingFee(10_001, eur("-1")))
    assert [v.field for v in violations.items] == ["fee.basis_points", "fee.fixed"]


def test_a_capture_is_shared_over_the_lines_to_the_cent() -> None:
    # 10.00 over 1.00, 1.00, 1.00 (worth 3.00): capped at 3.00 → 1.00 each.
    assert allocate(eur("10.00"), [eur(1), eur(1), eur(1)]) == [eur(1), eur(1), eur(1)]
    # 1.00 over three equal lines: 0.33 each, the left-over cent to the first.
    assert allocate(eur("1.00"), [eur(5), eur(5), eur(5)]) == [
        eur("0.34"), eur("0.33"), eur("0.33")]
    # 6.00 over 10.00 and 5.00: 4.00 and 2.00.
    assert allocate(eur("6.00"), [eur(10), eur(5)]) == [eur(4), eur(2)]


def cents(amount: int) -> Money:
    return Money.of("EUR", Decimal(amount).scaleb(-2))


def total_refunded(by_line: dict[str, Money], outside: Money) -> Money:
    total = outside
    for amount in by_line.values():
        total += amount
    return total


@st.composite
def orders_and_refunds(draw: st.DrawFn) -> tuple[list[RefundLine], Money, list[tuple]]:
    """An order of 1-4 lines, captured in full or in part, and up to 8 refund attempts:
    some lines, some units (more than were bought, too), a fee, the shipping, and a refund
    recorded on the order by other means after each."""
    prices = draw(st.lists(st.integers(1, 50_000), min_size=1, max_size=4))
    quantities = draw(st.lists(st.integers(1, 5), min_size=len(prices), max_size=len(prices)))
    worth = [cents(p * q) for p, q in zip(prices, quantities, strict=True)]
    captured = cents(draw(st.integers(0, sum(p * q for p, q in zip(prices, quantities,
                                                                    strict=True)))))
    shares = allocate(captured, worth)
    lines = [RefundLine(str(i + 1), cents(p), q, shares[i], cents(0))
             for i, (p, q) in enumerate(zip(prices, quantities, strict=True))]
    steps = draw(st.lists(st.tuples(
        st.lists(st.integers(0, len(lines) - 1), min_size=1, max_size=len(lines), unique=True),
        st.integers(0, 6), st.integers(0, 3000), st.integers(0, 500), st.integers(0, 2000)),
        max_size=8))
    return lines, captured, steps


@settings(max_examples=300, deadline=None)
@given(orders_and_refunds())
def test_no_sequence_of_refunds_ever_pays_back_more_than_was_captured(case: tuple) -> None:
    lines, captured, steps = case
    assert sum(ln.captured.amount for ln in lines) == captured.amount
    refunded = {ln.line_id: cents(0) for ln in lines}
    outside = cents(0)
    for indexes, quantity, bps, shipping, goodwill in steps:
        asked = [RefundLine(lines[i].line_id, lines[i].unit_price, quantity, lines[i].captured,
                            refunded[lines[i].line_id]) for i in indexes]
        decision = refund(asked, order_captured=captured,
                          order_refunded=total_refunded(refunded, outside),
                          fee=RestockingFee(bps), return_shipping=cents(shipping))
        assert decision.amount.amount >= 0
        assert decision.amount.amount == sum(paid.amount.amount for paid in decision.lines)
        for paid in decision.lines:
            assert paid.amount.amount >= 0
            refunded[paid.line_id] += paid.amount
        left = captured - total_refunded(refunded, outside)
        outside += cents(min(goodwill, int(left.amount.scaleb(2))))
        for ln in lines:
            assert refunded[ln.line_id].amount <= ln.captured.amount
        assert total_refunded(refunded, outside).amount <= captured.amount


# --- keys ------------------------------------------------------------------------------------


def test_a_replayed_resolution_names_the_same_refund_and_another_one_does_not() -> None:
    first = refund_name("returns/r1", "resolutions/1")
    assert first == refund_name("returns/r1", "resolutions/1")
    assert first.startswith("returns/r1/refunds/")
    assert first != refund_name("returns/r1", "resolutions/2")
    assert first != refund_name("returns/r2", "resolutions/1")
    # Each kind has its own ids, so an exchange never collides with a refund or a charge.
    ids = {first.rsplit("/", 1)[1], exchange_request_id("returns/r1", "resolutions/1"),
           advance_charge_id("returns/r1", "resolutions/1")}
    assert len(ids) == 3
    with pytest.raises(ValueError):
        refund_name("returns/r1", "")


# --- store credit ----------------------------------------------------------------------------


def test_store_credit_is_issued_spent_and_never_negative_per_currency() -> None:
    issued = issue_credit("customers/c1", "returns/r1", "resolutions/1", eur("25.00"))
    usd = issue_credit("customers/c1", "returns/r2", "resolutions/1", Money.of("USD", 10))
    spent = spend_credit("customers/c1", "orders/o2", eur("20.00"))
    assert (issued.kind, spent.kind) == (CreditKind.ISSUE, CreditKind.SPEND)
    # EUR 25.00 - 20.00 = 5.00; USD 10.00 untouched.
    assert balances([issued, usd, spent]) == {"EUR": eur("5.00"), "USD": Money.of("USD", 10)}
    # A replay of the issue and of the spend changes nothing.
    assert balances([issued, usd, spent, issued, spent]) == {
        "EUR": eur("5.00"), "USD": Money.of("USD", 10)}
    # 5.00 left, 5.01 asked: refused; USD credit does not pay in EUR.
    with pytest.raises(InsufficientCredit):
        post(eur("5.00"), spend_credit("customers/c1", "orders/o3", eur("5.01")))
    with pytest.raises(InsufficientCredit):
        balances([usd, spend_credit("customers/c1", "orders/o3", eur("1.00"))])
    assert post(eur("5.00"), spend_credit("customers/c1", "orders/o3", eur("5.00"))) == eur(0)


def test_one_order_spends_credit_once() -> None:
    assert spend_credit("customers/c1", "orders/o2", eur(1)).key == spend_credit(
        "customers/c1", "orders/o2", eur(1)).key


# --- exchanges -------------------------------------------------------------------------------


def test_an_exchange_places_one_replacement_order_of_the_same_sku_or_a_variant() -> None:
    lines = [ExchangeLine("1", "SHIRT-M", 1, eur("25.00"), replacement_sku="SHIRT-L"),
             ExchangeLine("2", "MUG", 2, eur("8.00"))]
    violations = Violations()
    check_exchange(violations, "lines", lines, {"SHIRT-M": {"SHIRT-S", "SHIRT-L"}})
    assert violations.items == []
    request_id = exchange_request_id("returns/r1", "resolutions/1")
    order = replacement_order(request_id, original_order="orders/o1", channel="shop",
                              external_order_id="1001", lines=lines)
    assert order == replacement_order(request_id, original_order="orders/o1", channel="shop",
                                      external_order_id="1001", lines=lines)
    assert order.request_id == request_id
    assert order.external_order_id == "1001-R" + request_id.replace("-", "")[:10]
    assert [(ln.sku, ln.quantity, ln.unit_price, ln.replaces_line_id) for ln in order.lines] == [
        ("SHIRT-L", 1, eur("25.00"), "1"), ("MUG", 2, eur("8.00"), "2")]
    # Charged if it never comes back: 25.00 + 2 x 8.00 = 41.00.
    assert advance_charge(order) == eur("41.00")


def test_an_exchange_for_a_sku_that_is_no_variant_is_refused() -> None:
    violations = Violations()
    check_exchange(violations, "lines",
                   [ExchangeLine("1", "SHIRT-M", 1, eur(25), replacement_sku="MUG"),
                    ExchangeLine("2", "MUG", 0, eur(8))],
                   {"SHIRT-M": {"SHIRT-L"}})
    assert [v.field for v in violations.items] == ["lines[0].replacement_sku",
                                                   "lines[1].quantity"]
    violations = Violations()
    check_exchange(violations, "lines", [], {})
    assert [v.field for v in violations.items] == ["lines"]


def test_an_advance_exchange_is_charged_only_when_nothing_came_back_within_n_days() -> None:
    shipped = datetime(2026, 12, 1, 10, tzinfo=UTC)
    exchange = AdvanceExchange(shipped, days=14)
    # Deadline 1 Dec 10:00 + 14 days = 15 Dec 10:00; at it, still in time.
    assert exchange.deadline == datetime(2026, 12, 15, 10, tzinfo=UTC)
    assert exchange.state(exchange.deadline) is AdvanceState.AWAITING
    assert exchange.state(exchange.deadline + timedelta(seconds=1)) is AdvanceState.CHARGE
    # Handed to the carrier on day 13: no charge, whenever the sweep looks.
    back = AdvanceExchange(shipped, 14, returned_at=shipped + timedelta(days=13))
    assert back.state(shipped + timedelta(days=30)) is AdvanceState.RETURNED
    violations = Violations()
    check_advance_days(violations, "advance_days", 0)
    check_advance_days(violations, "advance_days", 366)
    assert len(violations.items) == 2


def test_a_replacement_of_a_long_channel_order_number_stays_within_orders_bound() -> None:
    request_id = exchange_request_id("returns/r1", "resolutions/1")
    order = replacement_order(request_id, original_order="orders/o1", channel="shop",
                              external_order_id="9" * 200,
                              lines=[ExchangeLine("1", "MUG", 1, eur(8))])
    # 200 allowed: 188 of the original + "-R" + 10 of the request id.
    assert len(order.external_order_id) == 200
    assert order.external_order_id.startswith("9" * 188 + "-R")
