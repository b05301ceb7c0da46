"""The return policies' decisions, worked out by hand: which policy applies, the window, what
is not returnable, restocking fees, who pays return shipping by reason, keep-it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from oms_platform.errors import InvalidArgument, Violations
from oms_platform.money import Money
from oms_returns.policies.domain import (
    Outcome,
    Payer,
    Policy,
    Reason,
    check_policy,
    line_terms,
    policy_for,
    restocking_fee,
    shipping_terms,
    within_window,
)

DELIVERED = datetime(2026, 11, 1, 15, 0, tzinfo=UTC)


def eur(amount: str) -> Money:
    return Money.of("EUR", amount)


DEFAULT = Policy("default", window_days=30, auto_approve=True)
SHOP = Policy("shop", channel="shop-eu", window_days=60, auto_approve=True)
HYGIENE = Policy("hygiene", category="hygiene", category_sku_prefixes=("HYG-",),
                 non_returnable=True)
HYGIENE_TRAVEL = Policy("hygiene-travel", category="travel",
                        category_sku_prefixes=("HYG-TRAVEL-",), window_days=14)
MUG = Policy("mug", sku="HYG-MUG", window_days=10)
SHOP_MUG = Policy("shop-mug", channel="shop-eu", sku="HYG-MUG", window_days=5)
ALL = [SHOP_MUG, HYGIENE_TRAVEL, DEFAULT, MUG, HYGIENE, SHOP]


@pytest.mark.parametrize(("channel", "sku", "expected"), [
    ("amazon-de", "PEN-1", "default"),           # nothing more specific
    ("shop-eu", "PEN-1", "shop"),                # the channel over the default
    ("shop-eu", "HYG-SOAP", "hygiene"),          # a category over the channel
    ("shop-eu", "HYG-TRAVEL-KIT", "hygiene-travel"),  # the longer prefix of two categories
    ("amazon-de", "HYG-MUG", "mug"),             # a SKU over its category
    ("shop-eu", "HYG-MUG", "shop-mug"),          # the SKU's policy on its own channel
])
def test_the_most_specific_policy_applies(channel: str, sku: str, expected: str) -> None:
    found = policy_for(ALL, channel, sku)
    assert found is not None and found.policy_id == expected
    assert policy_for(list(reversed(ALL)), channel, sku) == found


def test_without_a_default_a_sku_outside_every_scope_has_no_policy() -> None:
    assert policy_for([SHOP, HYGIENE], "amazon-de", "PEN-1") is None


def test_the_window_counts_full_days_from_delivery() -> None:
    # Delivered 1 November 15:00; 30 days reach 1 December 15:00 exactly.
    assert within_window(DEFAULT, DELIVERED, datetime(2026, 12, 1, 15, 0, tzinfo=UTC))
    assert not within_window(DEFAULT, DELIVERED, datetime(2026, 12, 1, 15, 1, tzinfo=UTC))


def terms(policy: Policy | None, *, reason: Reason = Reason.NO_LONGER_NEEDED,
          price: str = "40.00", quantity: int = 2,
          now: datetime = datetime(2026, 11, 10, tzinfo=UTC)):  # type: ignore[no-untyped-def]
    return line_terms(policy, reason=reason, unit_price=eur(price), quantity=quantity,
                      delivered=DELIVERED, now=now, label="lines[0]")


def test_inside_the_window_a_policy_that_approves_leaves_nothing_to_review() -> None:
    assert terms(DEFAULT).review_reasons == ()


def test_outside_the_window_and_non_returnable_items_wait_for_a_person() -> None:
    late = terms(DEFAULT, now=datetime(2026, 12, 5, tzinfo=UTC))
    assert late.review_reasons == (
        "lines[0]: delivered 2026-11-01, outside the 30-day window (policy default)",)
    hygiene = terms(HYGIENE)
    assert hygiene.review_reasons == (
        "lines[0]: not returnable (policy hygiene)",
        "lines[0]: policy hygiene asks for a person's approval")
    assert terms(None).review_reasons == ("lines[0]: no return policy applies",)


def test_a_restocking_fee_is_a_share_of_the_value_plus_a_fixed_fee() -> None:
    policy = Policy("fee", restocking_fee_bps=1250, restocking_fee=eur("1.50"))
    # 3 x 19.99 = 59.97; 12.5 % = 7.49625 → 7.50 (half up); + 1.50 = 9.00.
    assert restocking_fee(policy, Reason.SIZE_OR_FIT, eur("19.99"), 3) == eur("9.00")
    # 1 x 0.10: 12.5 % = 0.0125 → 0.01; + 1.50 = 1.51, more than the 0.10 paid: 0.10.
    assert restocking_fee(policy, Reason.SIZE_OR_FIT, eur("0.10"), 1) == eur("0.10")
    # A fixed fee in another currency is not applied (no exchange rates): 15 % of 10 = 1.50.
    other = Policy("usd", restocking_fee_bps=1500, restocking_fee=Money.of("USD", "2"))
    assert restocking_fee(other, Reason.OTHER, eur("10.00"), 1) == eur("1.50")


@pytest.mark.parametrize("reason", [Reason.DAMAGED, Reason.DEFECTIVE, Reason.WRONG_ITEM,
                                    Reason.NOT_AS_DESCRIBED, Reason.ARRIVED_LATE])
def test_the_merchants_fault_costs_the_customer_nothing(reason: Reason) -> None:
    policy = Policy("strict", restocking_fee_bps=2000, customer_pays_return_shipping=True,
                    return_shipping_fee=eur("4.95"))
    assert restocking_fee(policy, reason, eur("40.00"), 2) == eur("0")
    assert shipping_terms([(policy, reason)], "EUR") == (Payer.MERCHANT, None)


def test_who_pays_return_shipping_by_reason() -> None:
    paying = Policy("paying", customer_pays_return_shipping=True,
                    return_shipping_fee=eur("4.95"))
    dearer = Policy("dearer", customer_pays_return_shipping=True,
                    return_shipping_fee=eur("6.50"))
    free = Policy("free")
    assert shipping_terms([(paying, Reason.SIZE_OR_FIT)], "EUR") == (
        Payer.CUSTOMER, eur("4.95"))
    # One parcel: the highest fee of the lines' policies.
    assert shipping_terms([(paying, Reason.SIZE_OR_FIT), (dearer, Reason.OTHER)], "EUR") == (
        Payer.CUSTOMER, eur("6.50"))
    # One line the merchant's fault makes the whole parcel free.
    assert shipping_terms([(paying, Reason.SIZE_OR_FIT), (dearer, Reason.DAMAGED)],
                          "EUR") == (Payer.MERCHANT, None)
    # A policy that does not charge makes it free too.
    assert shipping_terms([(paying, Reason.SIZE_OR_FIT), (free, Reason.OTHER)], "EUR") == (
        Payer.MERCHANT, None)
    # The customer pays, but no fee in the order's currency: nothing withheld.
    assert shipping_terms([(paying, Reason.OTHER)], "USD") == (Payer.CUSTOMER, None)


def test_below_the_keep_it_threshold_the_customer_keeps_the_item() -> None:
    policy = Policy("cheap", auto_approve=True, restocking_fee_bps=1000,
                    outcomes=(Outcome.REFUND, Outcome.KEEP_IT), keep_it_below=eur("5.00"))
    kept = terms(policy, price="4.99")
    assert (kept.keep_it, kept.restocking_fee) == (True, eur("0"))
    # At the threshold it comes back: 10 % of 2 x 5.00 = 1.00.
    back = terms(policy, price="5.00")
    assert (back.keep_it, back.restocking_fee) == (False, eur("1.00"))
    # Not offered when keep-it is not an allowed outcome, or in another currency.
    assert not terms(Policy("refund", keep_it_below=eur("5.00")), price="1.00").keep_it
    usd = Policy("usd", outcomes=(Outcome.KEEP_IT,), keep_it_below=Money.of("USD", "5"))
    assert not terms(usd, price="1.00").keep_it


def test_a_policy_is_checked_field_by_field() -> None:
    violations = Violations()
    check_policy(violations, Policy(
        "Bad_Id", sku="SKU-1", category="mugs", window_days=-1, restocking_fee_bps=10_001,
        return_shipping_fee=eur("3"), keep_it_below=eur("2")))
    with pytest.raises(InvalidArgument) as raised:
        violations.raise_if_any()
    assert [v.field for v in raised.value.violations] == [
        "return_policy_id", "return_policy.category", "return_policy.category_sku_prefixes",
        "return_policy.window_days", "return_policy.restocking_fee_bps",
        "return_policy.return_shipping_fee", "return_policy.keep_it_below"]
