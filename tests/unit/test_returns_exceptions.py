"""Delivery exceptions without a server: the kind read from the carrier's words, the outcome
each kind leads to, and the one case per (order, package) that acts once. Every figure is
worked out by hand in the comment beside it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from oms_platform.errors import FailedPrecondition
from oms_platform.money import Money
from oms_returns.exceptions.domain import (
    Action,
    Case,
    CaseLine,
    CaseState,
    ExceptionKind,
    ExceptionRules,
    Plan,
    Report,
    Step,
    WaitingFor,
    case_id,
    classify,
    customer_chose,
    decide,
    delivered,
    due,
    expire,
    open_case,
    reported_again,
)

T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)
RULES = ExceptionRules()
# 2 x 30.00 + 1 x 40.00 = 100.00 EUR: within the 150 EUR reship limit.
CHEAP = (CaseLine("1", "MUG", 2, Money.of("EUR", "30.00")),
         CaseLine("2", "LAMP", 1, Money.of("EUR", "40.00")))
# 1 x 899.00 EUR: above it.
DEAR = (CaseLine("1", "TV", 1, Money.of("EUR", "899.00")),)


def case(description: str, lines: tuple[CaseLine, ...] = CHEAP, **kwargs: object) -> Case:
    return open_case("orders/o1", "packages/p1", lines, Report(description, T0, **kwargs),
                     RULES)


@pytest.mark.parametrize(("description", "kind"), [
    ("Returned to sender", ExceptionKind.RETURNED_TO_SENDER),
    ("Damaged - being returned to shipper", ExceptionKind.RETURNED_TO_SENDER),
    ("Delivery refused by recipient", ExceptionKind.REFUSED),
    ("Address not found", ExceptionKind.ADDRESS_PROBLEM),
    ("Incorrect address, unable to deliver", ExceptionKind.ADDRESS_PROBLEM),
    ("Parcel damaged in transit", ExceptionKind.DAMAGED),
    ("Shipment lost", ExceptionKind.LOST),
    ("Package cannot be located", ExceptionKind.LOST),
    ("Held at customs, duties unpaid", ExceptionKind.CUSTOMS),
    ("Delivery attempt failed", ExceptionKind.DELIVERY_FAILED),
    ("Nobody home, card left", ExceptionKind.DELIVERY_FAILED),
    ("no scan for 5 days", ExceptionKind.DELAYED),
    ("Misrouted", ExceptionKind.DELAYED),
    ("Delivery exception", ExceptionKind.OTHER),
])
def test_the_kind_is_read_from_the_carriers_words(description: str,
                                                  kind: ExceptionKind) -> None:
    assert classify(description) is kind


def test_a_cheap_lost_parcel_is_reshipped_at_once_as_the_same_lines() -> None:
    lost = case("Shipment lost")
    # 100.00 EUR <= 150 EUR: reshipped, by the rule, no wait.
    assert (lost.state, lost.closed_by) == (CaseState.RESHIP, "rule")
    order = lost.reship(channel="shop", external_order_id="1001")
    assert [(ln.sku, ln.quantity, ln.replaces_line_id) for ln in order.lines] == [
        ("MUG", 2, "1"), ("LAMP", 1, "2")]
    # A replay opens the same case and places the same order (orders refuses a second).
    again = case("Shipment lost")
    assert again.id == lost.id == case_id("orders/o1", "packages/p1")
    assert again.reship(channel="shop", external_order_id="1001") == order


def test_a_dear_lost_parcel_asks_the_customer_and_refunds_by_the_deadline() -> None:
    lost = case("Shipment lost", DEAR)
    # 899.00 EUR > 150 EUR: the customer chooses within 7 days (1 Dec 09:00 → 8 Dec 09:00).
    assert lost.state is CaseState.WAITING
    assert lost.decision.waiting_for is WaitingFor.CUSTOMER
    assert lost.decision.deadline == datetime(2026, 12, 8, 9, tzinfo=UTC)
    assert lost.decision.fallback is Action.REFUND
    assert not due(lost, lost.decision.deadline)
    refunded = expire(lost, lost.decision.deadline + timedelta(seconds=1))
    assert (refunded.state, refunded.closed_by) == (CaseState.REFUND, "deadline")
    # Expiring again, or later, changes nothing.
    assert expire(refunded, T0 + timedelta(days=30)) == refunded


def test_a_currency_without_a_limit_always_asks() -> None:
    lines = (CaseLine("1", "MUG", 1, Money.of("JPY", 500)),)
    assert case("Shipment lost", lines).state is CaseState.WAITING


def test_a_refused_parcel_is_refunded_and_never_reshipped() -> None:
    refused = case("Refused by customer")
    assert (refused.state, refused.decision.action) == (CaseState.REFUND, Action.REFUND)
    with pytest.raises(FailedPrecondition):
        refused.reship(channel="shop", external_order_id="1001")


def test_a_return_to_sender_waits_for_the_customer_who_may_choose_a_reship() -> None:
    back = case("Returned to sender")
    assert (back.state, back.decision.waiting_for) == (CaseState.WAITING, WaitingFor.CUSTOMER)
    chosen = customer_chose(back, Action.RESHIP, T0 + timedelta(days=2))
    assert (chosen.state, chosen.closed_by) == (CaseState.RESHIP, "customer")
    # The same answer again is a retry; another answer after the case acted is refused.
    assert customer_chose(chosen, Action.RESHIP, T0 + timedelta(days=3)) == chosen
    with pytest.raises(FailedPrecondition):
        customer_chose(chosen, Action.REFUND, T0 + timedelta(days=3))


def test_the_customer_answers_up_to_the_deadline_and_not_after() -> None:
    back = case("Address not found")
    deadline = back.decision.deadline
    assert deadline is not None
    assert customer_chose(back, Action.REFUND, deadline).state is CaseState.REFUND
    with pytest.raises(FailedPrecondition):
        customer_chose(back, Action.REFUND, deadline + timedelta(seconds=1))


def test_a_failed_attempt_waits_for_the_carrier_then_asks_once_it_retried() -> None:
    failed = case("Delivery attempt failed")
    # The carrier has 5 days: 1 Dec 09:00 → 6 Dec 09:00; then as lost: 100.00 → reship.
    assert failed.decision.waiting_for is WaitingFor.CARRIER
    assert failed.decision.deadline == datetime(2026, 12, 6, 9, tzinfo=UTC)
    assert failed.decision.fallback is Action.RESHIP
    # A second failed attempt a day later is the carrier's retry: the customer is asked,
    # 7 days from that report (2 Dec 09:00 → 9 Dec 09:00), else refunded.
    retried = reported_again(failed, Report("Delivery attempt failed", T0 + timedelta(days=1)),
                             RULES)
    assert retried.retried
    assert retried.decision.waiting_for is WaitingFor.CUSTOMER
    assert retried.decision.deadline == datetime(2026, 12, 9, 9, tzinfo=UTC)
    assert retried.decision.fallback is Action.REFUND
    # The carrier said it retried in the first report: asked at once.
    assert case("Delivery attempt failed",
                carrier_retried=True).decision.waiting_for is WaitingFor.CUSTOMER


def test_a_delay_that_turns_into_a_loss_is_decided_afresh() -> None:
    delayed = case("no scan for 5 days")
    assert delayed.decision.waiting_for is WaitingFor.CARRIER
    lost = reported_again(delayed, Report("Shipment lost", T0 + timedelta(days=2)), RULES)
    assert (lost.kind, lost.state) == (ExceptionKind.LOST, CaseState.RESHIP)


def test_a_redelivered_older_or_repeated_report_changes_nothing() -> None:
    delayed = case("Held at depot")
    # The same report again, an older one, the same kind later: no deadline moves.
    assert reported_again(delayed, Report("Held at depot", T0), RULES) == delayed
    assert reported_again(delayed, Report("Shipment lost", T0 - timedelta(hours=1)),
                          RULES) == delayed
    assert reported_again(delayed, Report("Delayed by weather", T0 + timedelta(days=1)),
                          RULES) == delayed


def test_a_case_that_acted_never_acts_again() -> None:
    lost = case("Shipment lost")
    assert reported_again(lost, Report("Returned to sender", T0 + timedelta(days=1)),
                          RULES) == lost
    assert delivered(lost) == lost
    assert expire(lost, T0 + timedelta(days=30)) == lost


def test_a_delivery_while_the_case_waits_closes_it_with_nothing_done() -> None:
    closed = delivered(case("Delivery attempt failed"))
    assert (closed.state, closed.closed_by) == (CaseState.DELIVERED, "delivered")
    assert expire(closed, T0 + timedelta(days=30)) == closed


def test_plans_are_configurable_per_kind() -> None:
    rules = ExceptionRules(reship_limits={"EUR": Decimal(1000)},
                           plans={**RULES.plans,
                                  ExceptionKind.CUSTOMS: Plan(Step.REFUND),
                                  ExceptionKind.LOST: Plan(Step.ASK_CUSTOMER, Step.BY_VALUE)})
    report = Report("lost", T0)
    customs = decide(ExceptionKind.CUSTOMS, DEAR, report, rules)
    assert customs.action is Action.REFUND
    # 899.00 <= 1000 EUR: the fallback by value is a reship.
    lost = decide(ExceptionKind.LOST, DEAR, report, rules)
    assert (lost.action, lost.fallback) == (Action.WAIT, Action.RESHIP)
    with pytest.raises(ValueError):
        Plan(Step.ASK_CUSTOMER, fallback=Step.WAIT_FOR_CARRIER)


def test_each_case_has_one_refund_name() -> None:
    refused = case("Refused by customer")
    assert refused.refund_name == case("Refused by customer").refund_name
    assert refused.refund_name.startswith(f"cases/{refused.id}/refunds/")
    other = open_case("orders/o2", "packages/p1", CHEAP, Report("Refused", T0), RULES)
    assert other.id != refused.id and other.refund_name != refused.refund_name
