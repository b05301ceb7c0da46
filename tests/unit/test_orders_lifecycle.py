"""The order state machine without a server: every transition and guard, and a property
test that events delivered twice and in any order never move an order backwards."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oms_orders.capture.domain import (
    LineDraft,
    OrderDraft,
    place_order,
)
from oms_orders.lifecycle.domain import (
    MAX_LINES,
    MAX_MERGE_ORDERS,
    PAID,
    PROGRESS,
    TRANSITIONS,
    Address,
    Allocation,
    Customer,
    FailedLine,
    HoldKind,
    IllegalTransition,
    InvalidAllocation,
    LineQuantity,
    LinesCancelled,
    Money,
    MoneyDraft,
    NodeLine,
    Noted,
    Order,
    OrderStatus,
    OutOfOrder,
    PackageInfo,
    Payment,
    PaymentKind,
    PaymentRefunded,
    PaymentSettled,
    PaymentStatus,
    PromiseChanged,
    ReturnedLine,
    StatusChanged,
    merge,
    merge_ids,
    release_ready,
    split,
)
from oms_platform.errors import FailedPrecondition, InvalidArgument, NotFound

S = OrderStatus
PRE_RELEASE = (S.PAYMENT_PENDING, S.PENDING_ALLOCATION, S.AWAITING_STOCK, S.ALLOCATED)
NOW = datetime(2025, 11, 23, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)
ADDRESS = Address(recipient="Ada Lovelace", address_lines=("12 Marylebone Road",),
                  locality="London", postal_code="NW1 5LR", region_code="GB")


def new_order(payment: str = "PAID", **changes: Any) -> Order:
    """Line 1: 3 x SKU-1, line 2: 1 x SKU-2; 60.07 EUR."""
    draft = OrderDraft(
        channel="shopify-main",
        external_order_id=f"#{uuid.uuid4().hex[:8]}",
        lines=[LineDraft("SKU-1", 3, MoneyDraft("EUR", "19.99")),
               LineDraft("SKU-2", 1, MoneyDraft("EUR", "0.10"))],
        shipping_address=ADDRESS,
        customer=Customer(display_name="Ada", email="ada@example.com"),
        payment_status=payment,
    )
    order = place_order(replace(draft, **changes), order_id=uuid.uuid4(), now=NOW)
    order.events.clear()
    return order


def units(one: int, two: int) -> tuple[LineQuantity, ...]:
    return tuple(LineQuantity(line_id, sku, n)
                 for line_id, sku, n in [("1", "SKU-1", one), ("2", "SKU-2", two)] if n)


def allocation(node: str = "node-1", one: int = 3, two: int = 1) -> list[Allocation]:
    lines = units(one, two)
    return [Allocation(node, tuple(lines))]


def released(order: Order) -> Order:
    order.allocate(allocation(), at=NOW)
    assert release_ready([order], at=NOW)
    order.events.clear()
    return order


def package(name: str = "p1", one: int = 3, two: int = 1) -> PackageInfo:
    lines = units(one, two)
    return PackageInfo(name, "node-1", "ups", "ups_ground", "1Z", "https://t/1Z", LATER,
                       tuple(lines))


def pay(kind: PaymentKind, amount: str = "60.07", transaction: str = "t1") -> Payment:
    return Payment(transaction, kind, Money.of("EUR", amount), "stripe", at=NOW)


def changes(order: Order) -> list[tuple[OrderStatus, OrderStatus]]:
    return [(e.previous, e.status) for e in order.events if isinstance(e, StatusChanged)]


# --- the table -------------------------------------------------------------------------------

DOCUMENTED_BACKWARD = {
    (S.ALLOCATED, S.AWAITING_STOCK),  # a paid order's reservation expired
    (S.PENDING_ALLOCATION, S.PAYMENT_PENDING),  # an authorisation lapsed
    (S.AWAITING_STOCK, S.PAYMENT_PENDING),
    (S.ALLOCATED, S.PAYMENT_PENDING),
}


def test_the_table_only_moves_forward_except_for_holds_and_documented_moves() -> None:
    for source, targets in TRANSITIONS.items():
        for target in targets:
            if S.ON_HOLD in (source, target):
                continue
            assert PROGRESS[target] >= PROGRESS[source] or (source, target) in (
                DOCUMENTED_BACKWARD), (source, target)
    assert TRANSITIONS[S.CANCELLED] == TRANSITIONS[S.RETURNED] == frozenset()
    after_release = {S.RELEASED, S.PARTIALLY_SHIPPED, S.SHIPPED, S.DELIVERED,
                     S.PARTIALLY_RETURNED, S.RETURNED}
    for source in after_release:
        assert not TRANSITIONS[source] & {S.ON_HOLD, S.ALLOCATED, S.PAYMENT_PENDING}


def test_a_move_the_table_does_not_allow_is_refused() -> None:
    order = new_order()
    order.status = S.RETURNED  # as if stored so; the facts say otherwise

    with pytest.raises(IllegalTransition):
        order.allocate(allocation(), at=LATER)


# --- allocation ------------------------------------------------------------------------------


def test_a_paid_order_is_allocated_then_released_per_node() -> None:
    order = new_order(service_level="EXPRESS", gift_note="Happy birthday", tags=["vip"],
                      promise_time=NOW + timedelta(days=1))
    assert order.status is S.PENDING_ALLOCATION

    assert order.allocate(allocation("node-1", 2, 1) + allocation("node-2", 1, 0), at=LATER)
    assert order.status is S.ALLOCATED
    releases = release_ready([order], at=LATER)

    assert order.status is S.RELEASED and order.release_time == LATER
    assert [(r.node_id, [(x.line_id, x.quantity) for x in r.lines]) for r in releases] == [
        ("node-1", [("1", 2), ("2", 1)]), ("node-2", [("1", 1)])]
    first = releases[0]
    assert (first.priority, first.gift_note, first.tags, first.orders) == (
        True, "Happy birthday", ("vip",), (order.name,))
    assert first.promise_time == NOW + timedelta(days=1)
    assert changes(order) == [(S.PENDING_ALLOCATION, S.ALLOCATED), (S.ALLOCATED, S.RELEASED)]
    assert release_ready([order], at=LATER) == []  # never released twice


def test_allocations_add_up_across_events_and_never_beyond_the_open_units() -> None:
    order = new_order()
    assert order.allocate(allocation("node-1", 1, 0), at=NOW)
    assert order.status is S.AWAITING_STOCK
    assert order.allocate(allocation("node-2", 5, 1), at=LATER)  # 5 reported, 2 counted
    assert order.lines[0].allocated == {"node-1": 1, "node-2": 2}
    assert order.status is S.ALLOCATED
    order.events.clear()

    assert order.allocate(allocation("node-3"), at=LATER) is False
    assert order.events == []


@pytest.mark.parametrize("lines", [
    [LineQuantity("9", "SKU-9", 1)], [LineQuantity("1", "OTHER", 1)],
    [LineQuantity("1", "SKU-1", 0)],
], ids=["unknown-line", "wrong-sku", "zero"])
def test_an_allocation_that_does_not_match_the_order_is_refused(
    lines: list[LineQuantity],
) -> None:
    order = new_order()
    with pytest.raises(InvalidAllocation):
        order.allocate([Allocation("node-1", (LineQuantity("2", "SKU-2", 1), *lines))], at=NOW)
    assert order.lines[1].allocated == {}
    assert order.events == []


def test_a_backorder_waits_for_stock_and_a_late_one_changes_nothing() -> None:
    order = new_order()
    assert order.backorder([LineQuantity("1", "SKU-1", 3)], at=NOW)
    assert order.status is S.AWAITING_STOCK
    assert order.backorder([LineQuantity("1", "SKU-1", 3)], at=NOW) is False
    order.allocate(allocation(), at=LATER)
    assert (order.status, order.lines[0].backordered) == (S.ALLOCATED, 0)
    assert order.backorder([LineQuantity("1", "SKU-1", 3)], at=LATER) is False
    with pytest.raises(InvalidAllocation):
        order.backorder([LineQuantity("7", "SKU-1", 1)], at=LATER)


def test_a_failed_allocation_holds_the_order_until_the_line_is_cancelled() -> None:
    order = new_order()
    order.allocate(allocation(two=0), at=NOW)
    failed = [FailedLine("2", "SKU-2", 1, "no node")]

    assert order.allocation_failed(failed, at=NOW)
    assert order.status is S.ON_HOLD
    [hold] = order.active_holds
    assert hold.kind is HoldKind.SYSTEM and "SKU-2" in hold.reason
    assert order.allocation_failed(failed, at=LATER) is False  # redelivered: one hold

    order.cancel([("2", 0)], reason="not sold any more", actor="bob", at=LATER)
    assert order.status is S.ON_HOLD
    order.release_hold("", actor="bob", at=LATER)
    assert order.status is S.ALLOCATED


def test_an_expired_reservation_cancels_an_unpaid_order() -> None:
    order = new_order(payment="PENDING")
    order.allocate(allocation(), at=NOW)

    assert order.stock_released([NodeLine("1", "SKU-1", "node-1", 3)], expired=True, at=LATER)

    assert order.status is S.CANCELLED
    [cancelled] = [e for e in order.events if isinstance(e, LinesCancelled)]
    assert cancelled.whole_order and cancelled.reason == "payment not received in time"
    assert [(x.line_id, x.quantity) for x in cancelled.lines] == [("1", 3), ("2", 1)]
    assert order.lines[0].allocated == {}
    assert order.stock_released([], expired=True, at=LATER) is False


def test_an_expired_reservation_of_a_paid_order_waits_for_stock_again() -> None:
    order = new_order(payment="PENDING")
    order.allocate(allocation(), at=NOW)
    order.record_payment(pay(PaymentKind.CAPTURE), at=NOW, actor="stripe")
    order.status = S.ALLOCATED  # paid just as the reservation expired

    order.stock_released([NodeLine("1", "SKU-1", "node-1", 3)], expired=True, at=LATER)

    assert order.status is S.AWAITING_STOCK
    assert (order.lines[0].allocated, order.lines[0].backordered) == ({}, 3)


def test_stock_released_for_a_cancellation_is_only_recorded() -> None:
    order = released(new_order())
    assert order.stock_released([NodeLine("1", "SKU-1", "node-1", 3)], expired=False, at=NOW)
    assert order.status is S.RELEASED
    assert [type(e) for e in order.events] == [Noted]


# --- payment ---------------------------------------------------------------------------------


def test_an_unpaid_order_is_released_once_captured() -> None:
    order = new_order(payment="PENDING")
    order.allocate(allocation(), at=NOW)
    assert order.status is S.PAYMENT_PENDING
    assert release_ready([order], at=NOW) == []

    assert order.record_payment(pay(PaymentKind.CAPTURE), at=LATER, actor="stripe")
    assert order.status is S.ALLOCATED
    assert PaymentSettled(PaymentStatus.PAID, LATER) in order.events
    assert release_ready([order], at=LATER)
    assert order.record_payment(pay(PaymentKind.CAPTURE), at=LATER, actor="stripe") is False


def test_an_authorisation_releases_and_a_capture_follows() -> None:
    order = new_order(payment="PENDING")
    order.record_payment(pay(PaymentKind.AUTHORIZATION, transaction="a"), at=NOW, actor="x")
    assert order.payment_status is PaymentStatus.AUTHORIZED
    order.record_payment(pay(PaymentKind.CAPTURE, transaction="c"), at=NOW, actor="x")
    assert order.payment_status is PaymentStatus.PAID
    assert [e.status for e in order.events if isinstance(e, PaymentSettled)] == [
        PaymentStatus.AUTHORIZED, PaymentStatus.PAID]


def test_a_failed_payment_waits_for_a_retry_until_it_is_due() -> None:
    order = new_order(payment="PENDING")
    order.record_payment(pay(PaymentKind.FAILURE, "0"), at=NOW, actor="stripe")
    assert (order.status, order.payment_status) == (S.PAYMENT_PENDING, PaymentStatus.FAILED)
    assert order.payment_due_time is not None

    assert order.expire_payment(order.payment_due_time - timedelta(seconds=1)) is False
    assert order.expire_payment(order.payment_due_time)
    assert order.status is S.CANCELLED
    assert order.expire_payment(order.payment_due_time) is False


def test_a_paid_order_never_expires() -> None:
    order = new_order(payment="PENDING")
    order.record_payment(pay(PaymentKind.CAPTURE), at=NOW, actor="stripe")
    assert order.payment_due_time is not None
    assert order.expire_payment(order.payment_due_time + timedelta(days=1)) is False


def test_a_lapsed_authorisation_sends_an_unreleased_order_back_to_payment_pending() -> None:
    order = new_order(payment="AUTHORIZED")
    order.allocate(allocation(), at=NOW)
    order.record_payment(pay(PaymentKind.FAILURE, "0", "f"), at=LATER, actor="stripe")
    assert (order.status, order.payment_status) == (S.PAYMENT_PENDING, PaymentStatus.FAILED)


def test_refunds_are_recorded_with_their_amounts() -> None:
    order = released(new_order())
    order.record_payment(pay(PaymentKind.REFUND, "10.00", "r1"), at=NOW, actor="returns")
    assert order.payment_status is PaymentStatus.PARTIALLY_REFUNDED
    order.record_payment(pay(PaymentKind.REFUND, "50.07", "r2"), at=NOW, actor="returns")
    assert order.payment_status is PaymentStatus.REFUNDED
    with pytest.raises(FailedPrecondition):
        new_order(payment="PENDING").record_payment(pay(PaymentKind.REFUND), at=NOW, actor="x")
    with pytest.raises(InvalidArgument):
        order.record_payment(Payment("u", PaymentKind.REFUND, Money.of("USD", 1)), at=NOW,
                             actor="x")


def test_each_refund_the_order_accepts_is_an_event_for_the_kpis_and_a_repeat_is_not() -> None:
    order = released(new_order())
    order.record_payment(pay(PaymentKind.REFUND, "10.00", "r1"), at=LATER, actor="returns")
    order.record_payment(pay(PaymentKind.REFUND, "10.00", "r1"), at=LATER, actor="returns")
    order.record_payment(pay(PaymentKind.CAPTURE, "1.00", "c9"), at=LATER, actor="x")
    # The refund's own time (the provider's), not when it was recorded.
    assert [e for e in order.events if isinstance(e, PaymentRefunded)] == [
        PaymentRefunded("r1", Money.of("EUR", "10.00"), NOW)]
    with pytest.raises(FailedPrecondition):
        order.record_payment(pay(PaymentKind.REFUND, "60.00", "r2"), at=LATER, actor="x")
    assert len([e for e in order.events if isinstance(e, PaymentRefunded)]) == 1


def test_a_changed_promise_is_an_event_and_an_unchanged_one_is_not() -> None:
    order = new_order()
    promise = NOW + timedelta(days=3)
    assert order.update(actor="x", at=LATER, promise_time=promise)
    assert not order.update(actor="x", at=LATER, promise_time=promise)
    assert order.update(actor="x", at=LATER, promise_time=None)
    assert [e for e in order.events if isinstance(e, PromiseChanged)] == [
        PromiseChanged(promise, LATER), PromiseChanged(None, LATER)]


def test_a_partial_capture_keeps_the_order_awaiting_payment_until_the_captures_cover_it(
) -> None:
    order = new_order(payment="PENDING")
    order.allocate(allocation(), at=NOW)

    assert order.record_payment(pay(PaymentKind.CAPTURE, "30.00", "c1"), at=NOW, actor="x")
    assert (order.status, order.payment_status) == (S.PAYMENT_PENDING, PaymentStatus.PENDING)
    assert release_ready([order], at=NOW) == []
    assert not any(isinstance(e, PaymentSettled) for e in order.events)

    order.record_payment(pay(PaymentKind.CAPTURE, "30.07", "c2"), at=LATER, actor="x")
    assert (order.status, order.payment_status) == (S.ALLOCATED, PaymentStatus.PAID)
    assert PaymentSettled(PaymentStatus.PAID, LATER) in order.events


def test_a_partial_authorisation_does_not_release_the_order() -> None:
    order = new_order(payment="PENDING")
    order.allocate(allocation(), at=NOW)
    order.record_payment(pay(PaymentKind.AUTHORIZATION, "60.06", "a1"), at=NOW, actor="x")
    assert (order.status, order.payment_status) == (S.PAYMENT_PENDING, PaymentStatus.PENDING)


def test_a_lapsed_authorisation_no_longer_counts_towards_the_total() -> None:
    order = new_order(payment="AUTHORIZED")
    order.record_payment(pay(PaymentKind.FAILURE, "0", "lapsed"), at=NOW, actor="x")
    order.record_payment(pay(PaymentKind.AUTHORIZATION, "1.00", "a2"), at=NOW, actor="x")
    assert order.payment_status is PaymentStatus.FAILED
    order.record_payment(pay(PaymentKind.AUTHORIZATION, "59.07", "a3"), at=NOW, actor="x")
    assert order.payment_status is PaymentStatus.AUTHORIZED


@pytest.mark.parametrize("kind", [PaymentKind.CAPTURE, PaymentKind.AUTHORIZATION,
                                  PaymentKind.REFUND])
@pytest.mark.parametrize("amount", ["0", "-5.00"])
def test_a_payment_of_nothing_or_less_is_refused_and_changes_nothing(
    kind: PaymentKind, amount: str,
) -> None:
    order = released(new_order())
    with pytest.raises(InvalidArgument) as refused:
        order.record_payment(pay(kind, amount, "nothing"), at=NOW, actor="x")
    assert [v.field for v in refused.value.violations] == ["payment.amount.amount"]
    assert [p.transaction_id for p in order.payments] == [f"{order.channel}:"
                                                          f"{order.external_order_id}"]
    assert order.events == []


def test_a_capture_in_another_currency_is_refused() -> None:
    order = new_order(payment="PENDING")
    with pytest.raises(InvalidArgument) as refused:
        order.record_payment(Payment("usd", PaymentKind.CAPTURE, Money.of("USD", "60.07")),
                             at=NOW, actor="x")
    assert [v.field for v in refused.value.violations] == ["payment.amount.currency_code"]
    assert order.payment_status is PaymentStatus.PENDING and order.payments == []


def test_refunds_never_exceed_what_was_captured_in_total() -> None:
    order = released(new_order())
    order.record_payment(pay(PaymentKind.REFUND, "60.00", "r1"), at=NOW, actor="returns")
    with pytest.raises(FailedPrecondition) as refused:
        order.record_payment(pay(PaymentKind.REFUND, "0.08", "r2"), at=NOW, actor="returns")
    assert refused.value.reason == "REFUND_EXCEEDS_CAPTURE"
    assert order.payment_status is PaymentStatus.PARTIALLY_REFUNDED
    order.record_payment(pay(PaymentKind.REFUND, "0.07", "r3"), at=NOW, actor="returns")
    assert order.payment_status is PaymentStatus.REFUNDED


def test_an_authorisation_alone_is_not_refundable_and_a_partial_capture_is() -> None:
    authorised = new_order(payment="AUTHORIZED")
    with pytest.raises(FailedPrecondition):
        authorised.record_payment(pay(PaymentKind.REFUND, "1.00", "r"), at=NOW, actor="x")

    pending = new_order(payment="PENDING")
    pending.record_payment(pay(PaymentKind.CAPTURE, "10.00", "c1"), at=NOW, actor="x")
    pending.record_payment(pay(PaymentKind.REFUND, "10.00", "r1"), at=NOW, actor="x")
    assert pending.payment_status is PaymentStatus.PENDING
    # What was given back no longer counts: the captures must cover the total again.
    pending.record_payment(pay(PaymentKind.CAPTURE, "50.07", "c2"), at=NOW, actor="x")
    assert pending.payment_status is PaymentStatus.PENDING
    pending.record_payment(pay(PaymentKind.CAPTURE, "10.00", "c3"), at=NOW, actor="x")
    assert pending.payment_status is PaymentStatus.PAID


def test_a_refund_before_release_keeps_the_order_back_until_cancelled_units_match_it(
) -> None:
    order = new_order()
    order.allocate(allocation(two=0), at=NOW)
    order.record_payment(pay(PaymentKind.REFUND, "0.10", "r1"), at=NOW, actor="stripe")
    assert order.payment_status is PaymentStatus.PARTIALLY_REFUNDED
    assert order.status is S.PAYMENT_PENDING  # 59.97 left for 60.07 of goods
    order.cancel([("2", 0)], reason="refunded", actor="alice", at=LATER)
    assert order.status is S.ALLOCATED and release_ready([order], at=LATER)


def test_the_captures_need_to_cover_only_the_units_not_cancelled() -> None:
    capture_first = new_order(payment="PENDING")
    capture_first.record_payment(pay(PaymentKind.CAPTURE, "59.97", "c"), at=NOW, actor="x")
    assert capture_first.payment_status is PaymentStatus.PENDING
    capture_first.cancel([("2", 0)], reason="", actor="alice", at=LATER)
    assert capture_first.payment_status is PaymentStatus.PAID
    assert PaymentSettled(PaymentStatus.PAID, LATER) in capture_first.events

    cancel_first = new_order(payment="PENDING")
    cancel_first.cancel([("2", 0)], reason="", actor="alice", at=NOW)
    cancel_first.record_payment(pay(PaymentKind.CAPTURE, "59.97", "c"), at=LATER, actor="x")
    assert cancel_first.payment_status is PaymentStatus.PAID

    nothing_left = new_order(payment="PENDING")
    nothing_left.cancel(None, reason="", actor="alice", at=NOW)
    assert nothing_left.payment_status is PaymentStatus.PENDING


# --- holds -----------------------------------------------------------------------------------


def test_a_manual_hold_stops_release_until_it_is_lifted() -> None:
    order = new_order()
    hold = order.place_hold("address check", actor="alice", at=NOW)
    order.allocate(allocation(), at=NOW)
    assert order.status is S.ON_HOLD
    assert release_ready([order], at=NOW) == []

    assert order.release_hold(hold.hold_id, actor="bob", at=LATER)
    assert (hold.released_by, hold.release_time) == ("bob", LATER)
    assert order.status is S.ALLOCATED
    assert order.release_hold(hold.hold_id, actor="bob", at=LATER) is False
    with pytest.raises(NotFound):
        order.release_hold("9", actor="bob", at=LATER)


def test_a_hold_needs_a_reason_and_an_unreleased_order() -> None:
    with pytest.raises(InvalidArgument):
        new_order().place_hold("  ", actor="alice", at=NOW)
    with pytest.raises(FailedPrecondition):
        released(new_order()).place_hold("too late", actor="alice", at=NOW)


# --- cancellation ----------------------------------------------------------------------------


def test_a_whole_order_is_cancelled_before_shipment_and_its_stock_released() -> None:
    order = new_order()
    order.allocate(allocation(), at=NOW)

    assert order.cancel(None, reason="customer request", actor="alice", at=LATER)

    assert order.status is S.CANCELLED
    assert all(line.allocated == {} for line in order.lines)
    [event] = [e for e in order.events if isinstance(e, LinesCancelled)]
    assert event.whole_order and [(x.line_id, x.quantity) for x in event.lines] == [
        ("1", 3), ("2", 1)]
    assert order.cancel(None, reason="again", actor="alice", at=LATER) is False


def test_units_of_a_released_order_may_be_cancelled_until_they_ship() -> None:
    order = released(new_order())
    assert order.cancel([("1", 1)], reason="changed mind", actor="alice", at=NOW)
    assert (order.status, order.lines[0].open, order.lines[0].allocated) == (
        S.RELEASED, 2, {"node-1": 2})

    order.ship(package(one=2, two=0), at=LATER)
    assert order.status is S.PARTIALLY_SHIPPED
    with pytest.raises(FailedPrecondition):
        order.cancel([("1", 1)], reason="", actor="alice", at=LATER)
    with pytest.raises(FailedPrecondition):
        order.cancel(None, reason="", actor="alice", at=LATER)
    assert order.cancel([("2", 0)], reason="", actor="alice", at=LATER)
    assert order.status is S.SHIPPED


@pytest.mark.parametrize(("lines", "field"), [
    ([("9", 1)], "lines[0].line_id"), ([("1", 4)], "lines[0].quantity"),
    ([("1", -1)], "lines[0].quantity"), ([("1", 1), ("1", 1)], "lines[1].line_id"),
])
def test_a_malformed_cancellation_is_refused_and_changes_nothing(
    lines: list[tuple[str, int]], field: str,
) -> None:
    order = new_order()
    with pytest.raises(InvalidArgument) as refused:
        order.cancel(lines, reason="", actor="alice", at=NOW)
    assert [v.field for v in refused.value.violations] == [field]
    assert order.events == [] and all(line.cancelled == 0 for line in order.lines)


# --- shipping, delivery, returns -------------------------------------------------------------


def test_packages_ship_deliver_and_come_back() -> None:
    order = released(new_order())
    assert order.ship(package("p1", 1, 0), at=NOW)
    assert order.status is S.PARTIALLY_SHIPPED
    assert order.ship(package("p1", 1, 0), at=NOW) is False  # the same package again
    order.ship(package("p2", 2, 1), at=NOW)
    assert order.status is S.SHIPPED
    order.deliver("p1", deliver_time=NOW, at=NOW)
    assert order.status is S.SHIPPED
    order.deliver("p2", deliver_time=LATER, at=LATER)
    assert (order.status, order.deliver_time) == (S.DELIVERED, LATER)

    returned = [ReturnedLine("1", "SKU-1", 1, "DAMAGED")]
    assert order.receive_return("returns/1", returned, node_id="node-1", at=LATER)
    assert order.status is S.PARTIALLY_RETURNED
    assert order.receive_return("returns/1", returned, node_id="node-1", at=LATER) is False
    order.receive_return("returns/2", [ReturnedLine("1", "SKU-1", 2, "OTHER"),
                                       ReturnedLine("2", "SKU-2", 1, "OTHER")],
                         node_id="node-1", at=LATER)
    assert order.status is S.RETURNED


def test_events_ahead_of_their_cause_are_retried_not_lost() -> None:
    order = new_order()
    with pytest.raises(OutOfOrder):
        order.ship(package(), at=NOW)
    released(order)
    with pytest.raises(OutOfOrder):
        order.receive_return("returns/1", [ReturnedLine("1", "SKU-1", 1, "")], node_id="n",
                             at=NOW)
    order.deliver("p1", deliver_time=NOW, at=NOW)  # the carrier was quicker than fulfilment
    order.ship(package("p1"), at=LATER)
    assert order.status is S.DELIVERED


def test_units_shipped_after_their_cancellation_are_noted_not_counted() -> None:
    order = released(new_order())
    order.cancel([("1", 1)], reason="", actor="alice", at=NOW)
    order.ship(package("p1", 3, 1), at=LATER)
    assert order.lines[0].shipped == 2 and order.status is S.SHIPPED
    [shipped] = [e for e in order.events if isinstance(e, Noted) and e.kind == "package_shipped"]
    assert shipped.detail["shipped_after_cancellation"] == [{"line_id": "1", "quantity": 1}]


# --- special orders --------------------------------------------------------------------------


def test_tags_change_any_time_warehouse_fields_only_before_release() -> None:
    order = new_order()
    assert order.update(actor="alice", at=NOW, tags=["vip"], gift_note="For you",
                        priority=True)
    assert (order.tags, order.gift_note, order.priority) == (("vip",), "For you", True)
    assert order.update(actor="alice", at=NOW, tags=["vip"]) is False
    released(order)
    assert order.update(actor="alice", at=NOW, tags=["vip", "late"])
    with pytest.raises(FailedPrecondition):
        order.update(actor="alice", at=NOW, gift_note="too late")


# --- merge and split -------------------------------------------------------------------------


def test_merged_orders_release_together_in_one_release_per_node() -> None:
    first = new_order(payment="PENDING")
    second = new_order(payment="PENDING", channel="amazon-de")
    merge([first, second], actor="alice", at=NOW)
    assert first.merge_group == second.merge_group == first.id
    for order in (first, second):
        order.allocate(allocation(), at=NOW)
    first.record_payment(pay(PaymentKind.CAPTURE), at=NOW, actor="x")
    assert release_ready([first, second], at=NOW) == []

    second.record_payment(pay(PaymentKind.CAPTURE), at=NOW, actor="x")
    [release] = release_ready([first, second], at=LATER)

    assert release.order is first and release.orders == (first.name, second.name)
    assert {x.order for x in release.lines} == {first.name, second.name}
    assert first.status is second.status is S.RELEASED


def test_a_merge_names_a_bounded_number_of_orders() -> None:
    names = [f"orders/{uuid.uuid4()}" for _ in range(MAX_MERGE_ORDERS + 1)]
    for refused, fields in [(names, ["names"]), (names[:1], ["names"]),
                            ([names[0], "orders/42"], ["names[1]"])]:
        with pytest.raises(InvalidArgument) as error:
            merge_ids(refused)
        assert [v.field for v in error.value.violations] == fields
    assert merge_ids(names[:-1]) == [uuid.UUID(n.removeprefix("orders/")) for n in names[:-1]]


def test_a_merged_shipment_holds_a_bounded_number_of_orders_and_lines() -> None:
    group = [new_order() for _ in range(MAX_MERGE_ORDERS)]
    merge(group, actor="alice", at=NOW)
    with pytest.raises(FailedPrecondition) as full:
        merge([group[0], new_order()], actor="alice", at=NOW, loaded=group)
    assert full.value.reason == "MERGE_TOO_LARGE"

    many_lines = [LineDraft(f"SKU-{n}", 1, MoneyDraft("EUR", "1")) for n in range(MAX_LINES)]
    big = new_order(lines=many_lines)
    with pytest.raises(FailedPrecondition):
        merge([big, new_order()], actor="alice", at=NOW)
    assert big.merge_group is None


def test_a_cancellation_names_a_bounded_number_of_lines() -> None:
    order = new_order()
    with pytest.raises(InvalidArgument) as refused:
        order.cancel([("1", 1)] * (MAX_LINES + 1), reason="", actor="alice", at=NOW)
    assert [v.field for v in refused.value.violations] == ["lines"]
    with pytest.raises(InvalidArgument):
        order.place_hold("why\x00", actor="alice", at=NOW)
    assert order.events == []


def test_orders_of_other_customers_or_addresses_or_released_ones_do_not_merge() -> None:
    ada = new_order()
    other_customer = new_order(customer=Customer(email="bob@example.com"))
    other_address = new_order(shipping_address=replace(ADDRESS, postal_code="E1 6AN"))
    for other in (other_customer, other_address, released(new_order())):
        with pytest.raises(FailedPrecondition):
            merge([ada, other], actor="alice", at=NOW)
    with pytest.raises(InvalidArgument):
        merge([ada], actor="alice", at=NOW)


def test_a_split_order_ships_on_its_own_again() -> None:
    first, second, third = (new_order(payment="PENDING") for _ in range(3))
    merge([first, second, third], actor="alice", at=NOW)

    changed = split(first, [first, second, third], actor="alice", at=NOW)

    assert first.merge_group is None and changed[0] is first
    assert second.merge_group == third.merge_group == second.id
    split(second, [second, third], actor="alice", at=NOW)
    assert third.merge_group is None
    with pytest.raises(FailedPrecondition):
        split(third, [third], actor="alice", at=NOW)


# --- the property: no sequence of events moves an order backwards ---------------------------

DUE = NOW + timedelta(hours=1)  # past every order's payment due time
EVENTS: dict[str, Callable[[Order], object]] = {
    "allocate-1": lambda o: o.allocate(allocation("node-1", 2, 0), at=LATER),
    "allocate-2": lambda o: o.allocate(allocation("node-2", 1, 1), at=LATER),
    "backorder": lambda o: o.backorder([LineQuantity("1", "SKU-1", 3)], at=LATER),
    "fail": lambda o: o.allocation_failed([FailedLine("2", "SKU-2", 1, "no node")], at=LATER),
    "authorize": lambda o: o.record_payment(pay(PaymentKind.AUTHORIZATION, transaction="au"),
                                            at=LATER, actor="x"),
    "lapse": lambda o: o.record_payment(pay(PaymentKind.FAILURE, "0", "lapse"), at=LATER,
                                        actor="x"),
    "pay-part": lambda o: o.record_payment(pay(PaymentKind.CAPTURE, "30.00", "part"),
                                           at=LATER, actor="x"),
    "pay": lambda o: o.record_payment(pay(PaymentKind.CAPTURE), at=LATER, actor="x"),
    "expire": lambda o: o.stock_released([NodeLine("1", "SKU-1", "node-1", 2)], expired=True,
                                         at=LATER),
    "overdue": lambda o: o.expire_payment(DUE),
    "hold": lambda o: o.place_hold("address check", actor="alice", at=LATER),
    "lift-holds": lambda o: o.release_hold("", actor="alice", at=LATER),
    "cancel-line": lambda o: o.cancel([("2", 0)], reason="", actor="alice", at=LATER),
    "cancel-all": lambda o: o.cancel(None, reason="", actor="alice", at=LATER),
    "ship-1": lambda o: o.ship(package("p1", 2, 0), at=LATER),
    "ship-2": lambda o: o.ship(package("p2", 1, 1), at=LATER),
    "deliver-1": lambda o: o.deliver("p1", deliver_time=LATER, at=LATER),
    "deliver-2": lambda o: o.deliver("p2", deliver_time=LATER, at=LATER),
    "return": lambda o: o.receive_return("r1", [ReturnedLine("1", "SKU-1", 1, "")],
                                         node_id="n", at=LATER),
    "refund": lambda o: o.record_payment(pay(PaymentKind.REFUND, "19.99", "rf"), at=LATER,
                                         actor="x"),
}
# Made once-only outside the aggregate: inventory's events by its inbox and ours (they are
# incremental by nature), commands by their request ids or hold ids (lifting "every hold"
# again would lift one placed since).
ONCE_ONLY = {"allocate-1", "allocate-2", "backorder", "expire", "fail", "hold", "lift-holds"}


def paid_for(order: Order) -> bool:
    """Captures less refunds, or the authorisations since the last failure, cover the value
    of the units not cancelled."""
    def total(kind: PaymentKind, payments: list[Payment]) -> Decimal:
        return sum((p.amount.amount for p in payments if p.kind is kind), Decimal(0))

    failures = [n for n, p in enumerate(order.payments) if p.kind is PaymentKind.FAILURE]
    live = order.payments[failures[-1] + 1:] if failures else order.payments
    due = sum((line.unit_price.amount * line.open for line in order.lines), Decimal(0))
    return max(total(PaymentKind.CAPTURE, order.payments)
               - total(PaymentKind.REFUND, order.payments),
               total(PaymentKind.AUTHORIZATION, live)) >= due


def state(order: Order) -> tuple[Any, ...]:
    return (order.status, order.payment_status, order.release_time,
            [replace(line, allocated=dict(line.allocated)) for line in order.lines],
            [replace(hold) for hold in order.holds], list(order.payments),
            len(order.shipments), dict(order.deliveries), list(order.returns))


# Half the draws from the moves forward, so that sequences still reach shipment, delivery
# and return as often as they meet a cancellation, a hold or a lapse.
FORWARD = ["allocate-1", "allocate-2", "pay", "ship-1", "ship-2", "deliver-1", "deliver-2",
           "return", "refund"]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(["PENDING", "AUTHORIZED", "PAID"]),
       st.lists(st.one_of(st.sampled_from(FORWARD), st.sampled_from(sorted(EVENTS))),
                max_size=30))
def test_no_sequence_of_duplicated_or_reordered_events_moves_an_order_backwards(
    payment: str, kinds: list[str],
) -> None:
    order = new_order(payment=payment)
    accepted: list[str] = []
    on_the_line = order.status  # the last status that was not ON_HOLD
    cancelled_unreleased = False
    for kind in kinds:
        before = state(order)
        try:
            if EVENTS[kind](order):
                accepted.append(kind)
        except IllegalTransition:
            raise
        except FailedPrecondition:
            # Refused (out of order, released, shipped, nothing to refund): retried later
            # or answered to the caller, and nothing changed.
            assert state(order) == before, kind
        released = order.release_time is not None
        release_ready([order], at=LATER)
        if order.release_time is not None and not released:
            assert order.payment_status in PAID and not order.active_holds, kind
            assert paid_for(order), kind

        if order.status is not S.ON_HOLD:
            assert PROGRESS[order.status] >= PROGRESS[on_the_line] or (
                on_the_line, order.status) in DOCUMENTED_BACKWARD, (kind, on_the_line)
            on_the_line = order.status
        if cancelled_unreleased:
            assert order.status is S.CANCELLED and order.release_time is None, kind
        cancelled_unreleased = order.status is S.CANCELLED and order.release_time is None
        if order.release_time is not None:
            assert order.status not in (S.ON_HOLD, *PRE_RELEASE), kind
        for line in order.lines:
            assert 0 <= line.allocated_quantity <= line.open, kind
            assert 0 <= line.returned <= line.shipped <= line.open <= line.quantity, kind
            assert 0 <= line.cancelled <= line.quantity, kind
            assert line.backordered <= line.unallocated and line.failed <= line.unallocated
    for previous, status in changes(order):
        assert status in TRANSITIONS[previous]

    # Every event that took effect, delivered once more, changes nothing.
    snapshot = state(order)
    order.events.clear()
    for kind in dict.fromkeys(accepted):
        if kind in ONCE_ONLY:
            continue
        assert not EVENTS[kind](order), kind
        release_ready([order], at=LATER)
    assert state(order) == snapshot
    assert not any(isinstance(e, StatusChanged) for e in order.events)
