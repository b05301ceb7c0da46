"""A return request's rules, worked out by hand: what was delivered of an order, what is left
to return, the request against both and against the policies, the parcel's weight and the
return's state machine."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from oms_platform.errors import FailedPrecondition, InvalidArgument, Violations
from oms_platform.money import Money
from oms_returns.policies.domain import Outcome, Payer, Policy, Reason
from oms_returns.return_requests.domain import (
    LineRequest,
    OrderedLine,
    OrderFacts,
    ReturnRequest,
    State,
    approve,
    assess,
    check_request,
    delivered_units,
    parcel_grams,
    reject,
)

MONDAY = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
THURSDAY = datetime(2026, 11, 5, 16, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 20, tzinfo=UTC)


def test_delivered_units_count_only_delivered_shipments_and_start_at_the_latest() -> None:
    found = delivered_units(
        [("1", 3), ("2", 1), ("3", 2)],
        [(MONDAY, [("1", 2)]), (THURSDAY, [("1", 1), ("2", 1)]), (None, [("3", 2)]),
         (MONDAY, [("9", 4)])])
    assert found == {"1": (3, THURSDAY), "2": (1, THURSDAY), "3": (0, None)}


def order(**lines: tuple[int, int, str, datetime | None]) -> OrderFacts:
    """Lines by id: (ordered, delivered, unit price in EUR, delivery time)."""
    return OrderFacts(
        name="orders/1", channel="shop-eu", currency_code="EUR",
        lines={line_id: OrderedLine(line_id, f"SKU-{line_id}", ordered, Money.of("EUR", price),
                                    delivered, when)
               for line_id, (ordered, delivered, price, when) in lines.items()},
        weight_grams=1200, item_count=4)


def request(*lines: tuple[str, int, Reason], outcome: int = 0) -> ReturnRequest:
    return ReturnRequest("r-1", "orders/1", tuple(LineRequest(line_id, quantity, reason, "")
                                                  for line_id, quantity, reason in lines),
                         "", outcome)


FREE = Policy("free", window_days=30, auto_approve=True)
PAYING = Policy("paying", channel="shop-eu", sku="SKU-2", window_days=30, auto_approve=True,
                customer_pays_return_shipping=True, return_shipping_fee=Money.of("EUR", "3.50"),
                restocking_fee_bps=500)


def test_a_request_within_what_is_left_is_assessed_line_by_line() -> None:
    facts = order(**{"1": (3, 3, "20.00", MONDAY), "2": (1, 1, "50.00", THURSDAY)})
    found = assess(request(("1", 1, Reason.DAMAGED), ("2", 1, Reason.SIZE_OR_FIT)), facts,
                   [FREE, PAYING], {"1": 2}, NOW)
    assert [(line.policy_id, line.terms.restocking_fee) for line in found.lines] == [
        ("free", Money.of("EUR", 0)), ("paying", Money.of("EUR", "2.50"))]  # 5 % of 50.00
    # The damaged line makes the one parcel the merchant's to pay.
    assert found.approved and found.shipping.payer is Payer.MERCHANT
    assert found.units_back == 2 and found.outcome is Outcome.REFUND


def test_what_was_not_delivered_or_is_already_returned_is_a_field_violation() -> None:
    facts = order(**{"1": (3, 2, "20.00", MONDAY), "2": (1, 0, "5.00", None)})
    with pytest.raises(InvalidArgument) as raised:
        assess(request(("1", 2, Reason.OTHER), ("2", 1, Reason.OTHER), ("7", 1, Reason.OTHER),
                       outcome=Outcome.EXCHANGE), facts, [FREE], {"1": 1}, NOW)
    assert [(v.field, v.description) for v in raised.value.violations] == [
        ("lines[0].quantity",
         "at most 1 units of line 1 are returnable (2 delivered, 1 in other returns)"),
        ("lines[1].line_id", "line 2 is not delivered yet"),
        ("lines[2].line_id", "orders/1 has no line 7"),
    ]


def test_an_outcome_the_policy_does_not_allow_is_refused() -> None:
    facts = order(**{"1": (1, 1, "20.00", MONDAY)})
    with pytest.raises(InvalidArgument) as raised:
        assess(request(("1", 1, Reason.OTHER), outcome=Outcome.EXCHANGE), facts, [FREE], {},
               NOW)
    assert [(v.field, v.description) for v in raised.value.violations] == [
        ("outcome", "lines[0]: policy free allows REFUND")]


def test_the_request_is_checked_before_the_order_is_read() -> None:
    violations = Violations()
    check_request(violations, ReturnRequest(
        "", "order-1", (LineRequest("1", 0, 0, ""), LineRequest("1", 1, 9, "x" * 1001)), "",
        7))
    assert [v.field for v in violations.items] == [
        "request_id", "order", "outcome", "lines[0].quantity", "lines[0].reason",
        "lines[1].line_id", "lines[1].reason", "lines[1].note"]


def test_the_parcel_weighs_the_orders_share_of_its_units() -> None:
    facts = order(**{"1": (4, 4, "1.00", MONDAY)})
    # 1200 g for 4 units: 3 units weigh 900 g; 1 unit of 1201 g for 4 rounds up.
    assert parcel_grams(facts, 3, default=1000) == 900
    assert parcel_grams(OrderFacts("o", "c", "EUR", {}, 1201, 4), 1, default=1000) == 301
    assert parcel_grams(OrderFacts("o", "c", "EUR", {}, 0, 4), 1, default=1000) == 1000


def test_approval_and_rejection_move_a_requested_return_once() -> None:
    assert approve(State.REQUESTED) and not approve(State.APPROVED)
    assert reject(State.REQUESTED) and not reject(State.REJECTED)
    with pytest.raises(FailedPrecondition):
        approve(State.REJECTED)
    with pytest.raises(FailedPrecondition):
        reject(State.APPROVED)
