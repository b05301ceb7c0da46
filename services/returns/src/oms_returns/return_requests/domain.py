"""The rules of a return request (RMA), pure: what was delivered of an order, what of it may
still be returned, the request checked against both and against the policies, and the
return's state machine.

"Delivered" is read from the order's shipments: a line's delivered units are its units in the
shipments that have a delivery time, and its delivery time (where the policy's window starts)
is the latest of those shipments'. Units shipped and not yet delivered cannot be returned."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from oms_platform import filtering
from oms_platform.errors import FailedPrecondition, Violations
from oms_platform.money import Money

from oms_returns.policies.domain import (
    LineTerms,
    Outcome,
    Policy,
    Reason,
    ShippingTerms,
    line_terms,
    policy_for,
    shipping_terms,
)

MAX_LINES = 100
MAX_NOTE = 2000
MAX_LINE_NOTE = 1000
MAX_REQUEST_ID = 200
MAX_REJECT_REASON = 1000
MAX_PAGE_SIZE = 500
_ORDER = re.compile(r"orders/[^/\s]{1,190}")


class State(Enum):
    REQUESTED = "REQUESTED"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"


FIELDS = {
    "state": filtering.enum({s.name: s for s in State}, prefix="RETURN_STATE_"),
    "order": filtering.text("=", "!="),
    "channel": filtering.text("=", "!="),
}


@dataclass(frozen=True)
class OrderedLine:
    line_id: str
    sku: str
    quantity: int
    unit_price: Money
    delivered: int
    deliver_time: datetime | None


@dataclass(frozen=True)
class OrderFacts:
    """What returns needs of an order, as read from the orders service."""

    name: str
    channel: str
    currency_code: str
    lines: Mapping[str, OrderedLine]
    weight_grams: int
    item_count: int


def delivered_units(lines: Iterable[tuple[str, int]],
                    shipments: Iterable[tuple[datetime | None, Iterable[tuple[str, int]]]]
                    ) -> dict[str, tuple[int, datetime | None]]:
    """Per line id: (units delivered, the latest delivery of a shipment carrying it), never
    more than the units ordered."""
    ordered = dict(lines)
    found: dict[str, tuple[int, datetime | None]] = {line: (0, None) for line in ordered}
    for deliver_time, carried in shipments:
        if deliver_time is None:
            continue
        for line_id, quantity in carried:
            if line_id not in found:
                continue
            units, latest = found[line_id]
            found[line_id] = (min(ordered[line_id], units + quantity),
                              deliver_time if latest is None else max(latest, deliver_time))
    return found


@dataclass(frozen=True)
class LineRequest:
    line_id: str
    quantity: int
    reason: int
    note: str


@dataclass(frozen=True)
class ReturnRequest:
    request_id: str
    order: str
    lines: tuple[LineRequest, ...]
    note: str
    outcome: int


def check_request(violations: Violations, request: ReturnRequest) -> None:
    """Every fault the request has on its own, before the order is read."""
    violations.require(0 < len(request.request_id) <= MAX_REQUEST_ID, "request_id",
                       f"required, at most {MAX_REQUEST_ID} characters")
    violations.require(_ORDER.fullmatch(request.order) is not None, "order",
                       'required, "orders/{order}"')
    violations.require(len(request.note) <= MAX_NOTE, "note",
                       f"at most {MAX_NOTE} characters")
    violations.require(request.outcome == 0 or request.outcome in set(Outcome), "outcome",
                       "must be a ReturnOutcome")
    if not violations.require(0 < len(request.lines) <= MAX_LINES, "lines",
                              f"1 to {MAX_LINES} lines"):
        return
    seen: set[str] = set()
    for index, line in enumerate(request.lines):
        path = f"lines[{index}]"
        violations.require(0 < len(line.line_id) <= 100 and line.line_id not in seen,
                           f"{path}.line_id", "required, each order line at most once")
        seen.add(line.line_id)
        violations.require(line.quantity > 0, f"{path}.quantity", "at least 1")
        violations.require(line.reason in set(Reason), f"{path}.reason",
                           "required, one of the ReturnReason list")
        violations.require(len(line.note) <= MAX_LINE_NOTE, f"{path}.note",
                           f"at most {MAX_LINE_NOTE} characters")


@dataclass(frozen=True)
class AssessedLine:
    request: LineRequest
    sku: str
    unit_price: Money
    delivered: int
    deliver_time: datetime
    policy: Policy | None
    terms: LineTerms

    @property
    def policy_id(self) -> str:
        return self.policy.policy_id if self.policy is not None else ""


@dataclass(frozen=True)
class Assessment:
    lines: tuple[AssessedLine, ...]
    review_reasons: tuple[str, ...]
    shipping: ShippingTerms
    outcome: Outcome

    @property
    def approved(self) -> bool:
        return not self.review_reasons

    @property
    def units_back(self) -> int:
        return sum(line.request.quantity for line in self.lines if not line.terms.keep_it)


def assess(request: ReturnRequest, order: OrderFacts, policies: Sequence[Policy],
           in_returns: Mapping[str, int], now: datetime) -> Assessment:
    """The request against what was delivered and not already in a return (``in_returns``:
    units per line in returns not rejected) and against each line's policy. A line that is
    not the order's, not delivered, or more units than are left is a field violation, as
    is an outcome a line's policy does not allow; a policy's objection (window,
    non-returnable, approval by a person) is a review reason instead."""
    violations = Violations()
    outcome = Outcome(request.outcome) if request.outcome else Outcome.REFUND
    assessed: list[AssessedLine] = []
    for index, wanted in enumerate(request.lines):
        path = f"lines[{index}]"
        line = order.lines.get(wanted.line_id)
        if line is None:
            violations.add(f"{path}.line_id", f"{order.name} has no line {wanted.line_id}")
            continue
        if line.delivered == 0 or line.deliver_time is None:
            violations.add(f"{path}.line_id", f"line {wanted.line_id} is not delivered yet")
            continue
        left = line.delivered - in_returns.get(wanted.line_id, 0)
        if wanted.quantity > left:
            violations.add(f"{path}.quantity", f"at most {max(left, 0)} units of line "
                           f"{wanted.line_id} are returnable ({line.delivered} delivered, "
                           f"{line.delivered - left} in other returns)")
            continue
        policy = policy_for(policies, order.channel, line.sku)
        if policy is not None and outcome not in policy.allowed_outcomes:
            allowed = ", ".join(sorted(o.name for o in policy.allowed_outcomes))
            violations.add("outcome", f"{path}: policy {policy.policy_id} allows {allowed}")
        terms = line_terms(policy, reason=Reason(wanted.reason), unit_price=line.unit_price,
                           quantity=wanted.quantity, delivered=line.deliver_time, now=now,
                           label=f"line {wanted.line_id}")
        assessed.append(AssessedLine(wanted, line.sku, line.unit_price, line.delivered,
                                     line.deliver_time, policy, terms))
    violations.raise_if_any()
    back = [(line.policy, Reason(line.request.reason)) for line in assessed
            if not line.terms.keep_it]
    return Assessment(
        lines=tuple(assessed),
        review_reasons=tuple(r for line in assessed for r in line.terms.review_reasons),
        shipping=shipping_terms(back, order.currency_code), outcome=outcome)


def parcel_grams(order: OrderFacts, units_back: int, default: int) -> int:
    """The return parcel's weight: the order's weight shared by unit, rounded up; the
    default when the order's SKUs weigh nothing known."""
    if order.weight_grams <= 0 or order.item_count <= 0:
        return default
    return max(1, math.ceil(order.weight_grams * units_back / order.item_count))


def approve(state: State) -> bool:
    """Whether approving moves the return; approving an approved return again is a no-op
    (its label may still be bought), a rejected one cannot be approved."""
    if state is State.REJECTED:
        raise FailedPrecondition("the return was rejected", reason="RETURN_REJECTED")
    return state is State.REQUESTED


def reject(state: State) -> bool:
    """Whether rejecting moves the return; rejecting a rejected return again is a no-op, an
    approved one cannot be rejected (its label is bought)."""
    if state is State.APPROVED:
        raise FailedPrecondition("the return is approved", reason="RETURN_APPROVED")
    return state is State.REQUESTED
