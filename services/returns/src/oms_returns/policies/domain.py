"""Return policies as data, and the pure decisions they make for one returned line: which
policy applies (the most specific), whether the line is inside its window and returnable,
its restocking fee, keep-it (return prevention), and who pays the return shipping."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import Enum, IntEnum
from typing import NamedTuple

from oms_platform.errors import Violations
from oms_platform.money import Money, minor_units

MAX_POLICIES = 1000
MAX_WINDOW_DAYS = 3650
MAX_PREFIXES = 50
MAX_PAGE_SIZE = 200
_ID = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


class Reason(IntEnum):
    """returns.v1.ReturnReason, the fixed list."""

    WRONG_ITEM = 1
    DAMAGED = 2
    DEFECTIVE = 3
    NOT_AS_DESCRIBED = 4
    SIZE_OR_FIT = 5
    ARRIVED_LATE = 6
    NO_LONGER_NEEDED = 7
    OTHER = 8


# The merchant is at fault: return shipping is free and no restocking fee is charged.
MERCHANT_AT_FAULT = frozenset({Reason.WRONG_ITEM, Reason.DAMAGED, Reason.DEFECTIVE,
                               Reason.NOT_AS_DESCRIBED, Reason.ARRIVED_LATE})


class Outcome(IntEnum):
    """returns.v1.ReturnOutcome."""

    REFUND = 1
    STORE_CREDIT = 2
    EXCHANGE = 3
    KEEP_IT = 4


class Condition(IntEnum):
    """returns.v1.ItemCondition."""

    UNUSED = 1
    ORIGINAL_PACKAGING = 2


class Payer(Enum):
    MERCHANT = "MERCHANT"
    CUSTOMER = "CUSTOMER"


@dataclass(frozen=True)
class Policy:
    """One policy: its scope (channel, and a SKU or a category of SKU prefixes, each empty
    for "any") and its terms."""

    policy_id: str
    channel: str = ""
    sku: str = ""
    category: str = ""
    category_sku_prefixes: tuple[str, ...] = ()
    window_days: int = 30
    conditions: tuple[Condition, ...] = ()
    non_returnable: bool = False
    customer_pays_return_shipping: bool = False
    return_shipping_fee: Money | None = None
    restocking_fee_bps: int = 0
    restocking_fee: Money | None = None
    outcomes: tuple[Outcome, ...] = ()
    keep_it_below: Money | None = None
    auto_approve: bool = False

    @property
    def allowed_outcomes(self) -> frozenset[Outcome]:
        """Empty means a refund only."""
        return frozenset(self.outcomes) or frozenset({Outcome.REFUND})


def check_policy(violations: Violations, policy: Policy) -> None:
    """Every fault of a new policy, named by its field under ``return_policy``."""
    path = "return_policy."
    violations.require(_ID.fullmatch(policy.policy_id) is not None, "return_policy_id",
                       "required: 1 to 63 lower-case letters, digits and hyphens")
    violations.require(len(policy.channel) <= 200, f"{path}channel", "at most 200 characters")
    violations.require(len(policy.sku) <= 200, f"{path}sku", "at most 200 characters")
    violations.require(not (policy.sku and policy.category), f"{path}category",
                       "a policy names a SKU or a category, not both")
    if policy.category:
        violations.require(len(policy.category) <= 100, f"{path}category",
                           "at most 100 characters")
        violations.require(0 < len(policy.category_sku_prefixes) <= MAX_PREFIXES
                           and all(0 < len(p) <= 200 for p in policy.category_sku_prefixes),
                           f"{path}category_sku_prefixes",
                           f"1 to {MAX_PREFIXES} prefixes of 1 to 200 characters")
    else:
        violations.require(not policy.category_sku_prefixes, f"{path}category_sku_prefixes",
                           "only with a category")
    violations.require(0 <= policy.window_days <= MAX_WINDOW_DAYS, f"{path}window_days",
                       f"between 0 and {MAX_WINDOW_DAYS}")
    violations.require(0 <= policy.restocking_fee_bps <= 10_000, f"{path}restocking_fee_bps",
                       "between 0 and 10000 (100 %)")
    violations.require(policy.return_shipping_fee is None
                       or policy.customer_pays_return_shipping, f"{path}return_shipping_fee",
                       "only when the customer pays return shipping")
    violations.require(policy.keep_it_below is None or Outcome.KEEP_IT in policy.outcomes,
                       f"{path}keep_it_below", "only when KEEP_IT is an allowed outcome")


def specificity(policy: Policy) -> tuple[int, int]:
    """(level, channel): a SKU's policy (2) over a category's (1) over a scope-less one (0);
    within a level a channel's own over one for every channel."""
    return 2 if policy.sku else 1 if policy.category else 0, 1 if policy.channel else 0


def matching_prefix(policy: Policy, sku: str) -> int:
    """The length of the longest of the category's prefixes ``sku`` starts with; -1 when
    none."""
    return max((len(p) for p in policy.category_sku_prefixes if sku.startswith(p)), default=-1)


def applies(policy: Policy, channel: str, sku: str) -> bool:
    if policy.channel and policy.channel != channel:
        return False
    if policy.sku:
        return policy.sku == sku
    if policy.category:
        return matching_prefix(policy, sku) >= 0
    return True


def policy_for(policies: Iterable[Policy], channel: str, sku: str) -> Policy | None:
    """The most specific policy for a SKU sold on a channel: a SKU's policy, else its
    category's, else the channel's, else the default (a policy with no scope); at each level
    the channel's own before one for every channel, and between categories the longest
    matching prefix. The policy id breaks what is left (the smallest wins), so the choice
    never depends on the order policies were read in."""
    candidates = [p for p in policies if applies(p, channel, sku)]
    if not candidates:
        return None
    def rank(policy: Policy) -> tuple[int, int, int, str]:
        level, own_channel = specificity(policy)
        return -level, -own_channel, -matching_prefix(policy, sku), policy.policy_id

    return min(candidates, key=rank)


@dataclass(frozen=True)
class LineTerms:
    """What a policy decides for one returned line."""

    keep_it: bool
    restocking_fee: Money
    review_reasons: tuple[str, ...] = ()
    conditions: tuple[Condition, ...] = ()


def within_window(policy: Policy, delivered: datetime, now: datetime) -> bool:
    """A return may be asked for until ``window_days`` full days after delivery."""
    return now <= delivered + timedelta(days=policy.window_days)


def restocking_fee(policy: Policy, reason: Reason, unit_price: Money, quantity: int) -> Money:
    """``restocking_fee_bps`` of the units' value, rounded half up to the currency's minor
    units, plus the fixed fee (when in the order's currency; there are no exchange rates),
    at most the units' value; nothing when the merchant is at fault."""
    currency = unit_price.currency_code
    if reason in MERCHANT_AT_FAULT:
        return Money.of(currency, 0)
    value = unit_price * quantity
    exponent = Decimal(1).scaleb(-minor_units(currency))
    share = (value.amount * policy.restocking_fee_bps / Decimal(10_000)).quantize(
        exponent, rounding=ROUND_HALF_UP)
    fixed = policy.restocking_fee
    fee = Money.of(currency, share) + (
        fixed if fixed is not None and fixed.currency_code == currency else Money.of(currency, 0))
    return fee if fee.amount <= value.amount else value


def keeps_it(policy: Policy, unit_price: Money) -> bool:
    """Return prevention: below the threshold (in the same currency) shipping the item back
    costs more than it is worth, so the customer keeps it."""
    threshold = policy.keep_it_below
    return (Outcome.KEEP_IT in policy.outcomes and threshold is not None
            and threshold.currency_code == unit_price.currency_code
            and unit_price.amount < threshold.amount)


def line_terms(policy: Policy | None, *, reason: Reason, unit_price: Money, quantity: int,
               delivered: datetime, now: datetime, label: str) -> LineTerms:
    """The terms of ``quantity`` units returned for ``reason``; each rule that keeps the line
    from an automatic approval is a review reason, prefixed with ``label`` (the line)."""
    if policy is None:
        return LineTerms(False, Money.of(unit_price.currency_code, 0),
                         (f"{label}: no return policy applies",))
    reasons = []
    name = f"policy {policy.policy_id}"
    if policy.non_returnable:
        reasons.append(f"{label}: not returnable ({name})")
    elif not within_window(policy, delivered, now):  # no window for what is not returnable
        reasons.append(f"{label}: delivered {delivered.date().isoformat()}, outside the "
                       f"{policy.window_days}-day window ({name})")
    if not policy.auto_approve:
        reasons.append(f"{label}: {name} asks for a person's approval")
    keep = keeps_it(policy, unit_price)
    fee = (Money.of(unit_price.currency_code, 0) if keep
           else restocking_fee(policy, reason, unit_price, quantity))
    return LineTerms(keep, fee, tuple(reasons), policy.conditions)


class ShippingTerms(NamedTuple):
    payer: Payer
    fee: Money | None


def shipping_terms(lines: Sequence[tuple[Policy | None, Reason]], currency: str
                   ) -> ShippingTerms:
    """Who pays the one parcel of the lines that come back: the merchant when any of them is
    the merchant's fault or its policy does not charge the customer; otherwise the
    customer, charged the highest return shipping fee of those policies in the order's
    currency (nothing when none is in it)."""
    if not lines or any(policy is None or reason in MERCHANT_AT_FAULT
                        or not policy.customer_pays_return_shipping
                        for policy, reason in lines):
        return ShippingTerms(Payer.MERCHANT, None)
    fees = [policy.return_shipping_fee for policy, _ in lines
            if policy is not None and policy.return_shipping_fee is not None
            and policy.return_shipping_fee.currency_code == currency]
    return ShippingTerms(Payer.CUSTOMER, max(fees, key=lambda m: m.amount, default=None))
