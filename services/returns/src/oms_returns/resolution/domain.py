"""Resolution rules, pure: the refund of a return and its caps, store credit, exchanges and
advance exchanges, and the keys that make each of them happen once. The package docstring
says the rules and why."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from enum import StrEnum

from oms_platform.errors import FailedPrecondition, Violations
from oms_platform.money import Money, minor_units

MAX_BASIS_POINTS = 10_000
MAX_ADVANCE_DAYS = 365
MAX_EXCHANGE_LINES = 500
"""Lines of one exchange: the order's own bound on lines."""
MAX_EXTERNAL_ID_LENGTH = 200
"""Orders' bound on a channel order number."""

KEYS = uuid.UUID("6f1d7c0e-2b8a-5f43-9a41-0d3c6e0b5a17")
"""The namespace of every id derived here; fixed forever, or replays would pay again."""


# --- keys -------------------------------------------------------------------------------------


def derived_id(kind: str, *parts: str) -> uuid.UUID:
    """The same id for the same parts, on every replica and every replay."""
    for part in parts:
        if not part or "\n" in part:
            raise ValueError(f"a key part must be a non-empty line, not {part!r}")
    return uuid.uuid5(KEYS, "\n".join((kind, *parts)))


def refund_name(return_name: str, resolution: str) -> str:
    """``returns/{return}/refunds/{refund}`` of a return's resolution: the refund's name in
    ``RefundIssued``, orders' transaction id of it, and the key the store makes unique."""
    return f"{return_name}/refunds/{derived_id('refund', return_name, resolution)}"


def exchange_request_id(return_name: str, resolution: str) -> str:
    """The ``request_id`` of the replacement order an exchange places."""
    return str(derived_id("exchange", return_name, resolution))


def advance_charge_id(return_name: str, resolution: str) -> str:
    """The payment transaction id of an advance exchange's charge."""
    return str(derived_id("advance-charge", return_name, resolution))


# --- money ------------------------------------------------------------------------------------


def _minor(money: Money) -> int:
    return int(money.amount.scaleb(minor_units(money.currency_code)))


def _money(currency_code: str, minor: int) -> Money:
    return Money.of(currency_code, Decimal(minor).scaleb(-minor_units(currency_code)))


def zero(currency_code: str) -> Money:
    return Money.of(currency_code, 0)


def allocate(total: Money, weights: Sequence[Money]) -> list[Money]:
    """``total`` shared in proportion to ``weights`` (largest remainder, to the minor unit;
    ties to the first): the captures of an order per line, as orders records captures by
    order only. Each share is at most its weight; what exceeds their sum is no line's."""
    currency = total.currency_code
    units, parts = min(_minor(total), sum(map(_minor, weights))), list(map(_minor, weights))
    whole = sum(parts)
    if whole == 0:
        return [zero(currency) for _ in weights]
    shares = [units * part // whole for part in parts]
    order = sorted(range(len(parts)), key=lambda i: (-(units * parts[i] % whole), i))
    for index in order[: units - sum(shares)]:
        shares[index] += 1
    return [_money(currency, share) for share in shares]


# --- refunds ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefundLine:
    """Units of one order line to pay back, and what the order still holds for it."""

    line_id: str
    unit_price: Money
    """What the customer paid per unit: the order line's ``unit_price`` (the orders contract
    carries no order discounts to share out)."""
    quantity: int
    captured: Money
    """Captured for the line (see :func:`allocate`)."""
    refunded: Money
    """Already paid back for the line, by every refund of the order."""


@dataclass(frozen=True)
class RestockingFee:
    basis_points: int = 0
    """Of the paid price of the returned units, per line, rounded down to the minor unit."""
    fixed: Money | None = None
    """Once per refund."""


class Capped(StrEnum):
    LINE_CAPTURE = "LINE_CAPTURE"
    """The line has less left of what was captured for it than its units are worth."""
    ORDER_CAPTURE = "ORDER_CAPTURE"
    """The order has less left of its captures than the lines ask (refunds recorded on the
    order outside returns count here)."""


@dataclass(frozen=True)
class Refusal:
    """Money the refund does not pay, and why."""

    reason: Capped
    amount: Money
    line_id: str


@dataclass(frozen=True)
class LineRefund:
    line_id: str
    gross: Money
    """Paid price of the units."""
    payable: Money
    """The gross after the capture caps."""
    deducted: Money
    """Restocking fee and return shipping borne by this line."""
    amount: Money
    """Paid back for the line: what the store adds to its refunded amount."""


@dataclass(frozen=True)
class RefundDecision:
    amount: Money
    lines: tuple[LineRefund, ...]
    restocking_fee: Money
    return_shipping: Money
    waived: Money
    """Deductions beyond what was payable: a refund is never below zero."""
    refusals: tuple[Refusal, ...]


def check_fee(violations: Violations, path: str, fee: RestockingFee) -> None:
    violations.require(0 <= fee.basis_points <= MAX_BASIS_POINTS, f"{path}.basis_points",
                       f"between 0 and {MAX_BASIS_POINTS}")
    if fee.fixed is not None:
        violations.require(fee.fixed.amount >= 0, f"{path}.fixed", "must not be negative")


def _capped(lines: Sequence[RefundLine], order_left: int,
            currency: str) -> tuple[list[int], list[Refusal]]:
    """Each line's gross, in minor units, after the line's and then the order's cap; the
    order's cap trims the last lines first."""
    payable, refusals = [], []
    for line in lines:
        gross = _minor(line.unit_price * line.quantity)
        left = max(0, _minor(line.captured) - _minor(line.refunded))
        payable.append(min(gross, left))
        if gross > left:
            refusals.append(Refusal(Capped.LINE_CAPTURE, _money(currency, gross - left),
                                    line.line_id))
    excess = sum(payable) - max(0, order_left)
    for index in reversed(range(len(lines))):
        if excess <= 0:
            break
        cut = min(excess, payable[index])
        if cut:
            payable[index] -= cut
            excess -= cut
            refusals.append(Refusal(Capped.ORDER_CAPTURE, _money(currency, cut),
                                    lines[index].line_id))
    return payable, refusals


def refund(lines: Sequence[RefundLine], *, order_captured: Money, order_refunded: Money,
           fee: RestockingFee = RestockingFee(),
           return_shipping: Money | None = None) -> RefundDecision:
    """What a return pays back: per line the paid price of its units, capped at what is left
    of the line's capture and then of the order's, less its restocking fee in basis points;
    then the fixed fee and the return shipping the customer pays, from the first line on;
    never below zero."""
    currency = order_captured.currency_code
    amounts = [order_refunded, *(m for m in (fee.fixed, return_shipping) if m is not None),
               *(m for line in lines for m in (line.unit_price, line.captured, line.refunded))]
    if any(m.currency_code != currency for m in amounts):
        raise ValueError("a refund is in the order's one currency")
    if any(line.quantity < 0 for line in lines):
        raise ValueError("a refund counts units, never fewer than none")
    if len({line.line_id for line in lines}) != len(lines):
        raise ValueError("each line once per refund, or its cap would count twice")
    payable, refusals = _capped(lines, _minor(order_captured) - _minor(order_refunded),
                                currency)
    fees = [_minor(_bps(line.unit_price * line.quantity, fee.basis_points)) for line in lines]
    shipping = _minor(return_shipping) if return_shipping else 0
    shared = (_minor(fee.fixed) if fee.fixed else 0) + shipping
    results, charged = [], 0
    for line, pay, own in zip(lines, payable, fees, strict=True):
        deducted = min(pay, own)
        take = min(pay - deducted, shared)
        shared -= take
        deducted += take
        charged += deducted
        results.append(LineRefund(line.line_id, line.unit_price * line.quantity,
                                  _money(currency, pay), _money(currency, deducted),
                                  _money(currency, pay - deducted)))
    asked = sum(fees) + (_minor(fee.fixed) if fee.fixed else 0) + shipping
    return RefundDecision(
        amount=_money(currency, sum(payable) - charged),
        lines=tuple(results),
        restocking_fee=_money(currency, asked - shipping),
        return_shipping=_money(currency, shipping),
        waived=_money(currency, asked - charged),
        refusals=tuple(refusals),
    )


def _bps(money: Money, basis_points: int) -> Money:
    exponent = Decimal(1).scaleb(-minor_units(money.currency_code))
    share = (money.amount * basis_points / MAX_BASIS_POINTS).quantize(exponent, ROUND_DOWN)
    return Money(money.currency_code, share)


# --- store credit -----------------------------------------------------------------------------


class CreditKind(StrEnum):
    ISSUE = "ISSUE"
    SPEND = "SPEND"


class InsufficientCredit(FailedPrecondition):
    reason = "INSUFFICIENT_CREDIT"


@dataclass(frozen=True)
class CreditEntry:
    """One movement of a customer's store credit; ``key`` is unique in the ledger."""

    customer: str
    key: str
    kind: CreditKind
    amount: Money
    reference: str
    """The return (issue) or the order (spend)."""


def issue_credit(customer: str, return_name: str, resolution: str,
                 amount: Money) -> CreditEntry:
    """Store credit for a return's resolution, once."""
    if amount.amount <= 0:
        raise ValueError("store credit issued is more than zero")
    key = str(derived_id("credit-issue", return_name, resolution))
    return CreditEntry(customer, key, CreditKind.ISSUE, amount, return_name)


def spend_credit(customer: str, order: str, amount: Money) -> CreditEntry:
    """Store credit paying a later order, once per order."""
    if amount.amount <= 0:
        raise ValueError("store credit spent is more than zero")
    key = str(derived_id("credit-spend", customer, order))
    return CreditEntry(customer, key, CreditKind.SPEND, amount, order)


def post(balance: Money, entry: CreditEntry) -> Money:
    """The balance of the entry's currency after it; a spend beyond it is refused."""
    if entry.amount.currency_code != balance.currency_code:
        raise ValueError("a balance moves in its own currency")
    if entry.kind is CreditKind.ISSUE:
        return balance + entry.amount
    if entry.amount.amount > balance.amount:
        raise InsufficientCredit(
            f"{entry.customer} has {balance} of store credit, not {entry.amount}",
            metadata={"customer": entry.customer, "balance": str(balance.amount),
                      "currency_code": balance.currency_code})
    return balance - entry.amount


def balances(entries: Sequence[CreditEntry]) -> dict[str, Money]:
    """A customer's balance per currency, replaying the ledger in its order; an entry key
    seen before changes nothing (a replay)."""
    seen: set[str] = set()
    result: dict[str, Money] = {}
    for entry in entries:
        if entry.key in seen:
            continue
        seen.add(entry.key)
        currency = entry.amount.currency_code
        result[currency] = post(result.get(currency, zero(currency)), entry)
    return result


# --- exchanges --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExchangeLine:
    """Returned units of an order line and what the customer wants instead."""

    line_id: str
    sku: str
    quantity: int
    unit_price: Money
    replacement_sku: str = ""
    """The same SKU when empty; otherwise one of its variants."""


@dataclass(frozen=True)
class ReplacementLine:
    sku: str
    quantity: int
    unit_price: Money
    replaces_line_id: str


@dataclass(frozen=True)
class ReplacementOrder:
    """A CreateOrder for the orders service: the same channel and customer as the original,
    its own channel order number derived from the key so that orders refuses a second."""

    request_id: str
    original_order: str
    channel: str
    external_order_id: str
    lines: tuple[ReplacementLine, ...]


def check_exchange(violations: Violations, path: str, lines: Sequence[ExchangeLine],
                   variants: Mapping[str, Collection[str]]) -> None:
    """Every violation of an exchange: each replacement is the same SKU or a variant of it
    (``variants``: the SKUs each SKU may be swapped for, from the catalogue)."""
    violations.require(0 < len(lines) <= MAX_EXCHANGE_LINES, path,
                       f"between 1 and {MAX_EXCHANGE_LINES} lines")
    for index, line in enumerate(lines[:MAX_EXCHANGE_LINES]):
        violations.require(line.quantity > 0, f"{path}[{index}].quantity", "must be at least 1")
        wanted = line.replacement_sku or line.sku
        violations.require(wanted == line.sku or wanted in variants.get(line.sku, ()),
                           f"{path}[{index}].replacement_sku",
                           f"{wanted} is neither {line.sku} nor one of its variants")


def replacement_order(request_id: str, *, original_order: str, channel: str,
                      external_order_id: str, lines: Sequence[ExchangeLine]) -> ReplacementOrder:
    """The order that ships the replacements, at the paid price of what they replace (an
    exchange moves no money); ``request_id`` from :func:`exchange_request_id` (or a delivery
    exception's reship key)."""
    suffix = f"-R{request_id.replace('-', '')[:10]}"
    return ReplacementOrder(
        request_id=request_id,
        original_order=original_order,
        channel=channel,
        external_order_id=external_order_id[:MAX_EXTERNAL_ID_LENGTH - len(suffix)] + suffix,
        lines=tuple(ReplacementLine(line.replacement_sku or line.sku, line.quantity,
                                    line.unit_price, line.line_id) for line in lines),
    )


class AdvanceState(StrEnum):
    AWAITING = "AWAITING"
    """The replacement is out; the returned item may still come."""
    RETURNED = "RETURNED"
    """The item came back before any charge: nothing is charged."""
    CHARGE = "CHARGE"
    """N days after the replacement shipped and nothing came back: charge it."""


@dataclass(frozen=True)
class AdvanceExchange:
    """A replacement shipped before the return arrived."""

    shipped_at: datetime
    days: int
    returned_at: datetime | None = None
    """When the returned parcel was first scanned by the carrier, or received without a scan:
    the customer has done their part once it is on its way."""

    @property
    def deadline(self) -> datetime:
        return self.shipped_at + timedelta(days=self.days)

    def state(self, now: datetime) -> AdvanceState:
        """Charged only when nothing came back within the days and nothing has come since;
        at the deadline itself it is still in time."""
        if self.returned_at is not None:
            return AdvanceState.RETURNED
        return AdvanceState.CHARGE if now > self.deadline else AdvanceState.AWAITING


def check_advance_days(violations: Violations, path: str, days: int) -> None:
    violations.require(0 < days <= MAX_ADVANCE_DAYS, path,
                       f"between 1 and {MAX_ADVANCE_DAYS} days")


def advance_charge(order: ReplacementOrder) -> Money:
    """What an advance exchange charges when the item never comes back: the replacement's
    price."""
    currency = order.lines[0].unit_price.currency_code
    total = zero(currency)
    for line in order.lines:
        total += line.unit_price * line.quantity
    return total
