"""Delivery exception rules, pure: what kind of problem a carrier reported, what the rules do
about it (reship, refund, or wait with a deadline and a fallback), and the case that makes it
happen once per (order, package). The package docstring says the rules and why."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from oms_platform.errors import FailedPrecondition
from oms_platform.money import Money

from oms_returns.resolution.domain import (
    ExchangeLine,
    ReplacementOrder,
    derived_id,
    replacement_order,
)

MAX_CASE_LINES = 500
"""Lines of one order in one package: the order's own bound on lines."""


class ExceptionKind(StrEnum):
    LOST = "LOST"
    DAMAGED = "DAMAGED"
    RETURNED_TO_SENDER = "RETURNED_TO_SENDER"
    ADDRESS_PROBLEM = "ADDRESS_PROBLEM"
    REFUSED = "REFUSED"
    """Refused by the customer at the door."""
    DELIVERY_FAILED = "DELIVERY_FAILED"
    """Nobody home, no access: the carrier tries again or holds it for collection."""
    CUSTOMS = "CUSTOMS"
    DELAYED = "DELAYED"
    """Held, misrouted, or no scan for days: it may still arrive."""
    OTHER = "OTHER"


KEYWORDS: Sequence[tuple[re.Pattern[str], ExceptionKind]] = [
    (re.compile(pattern, re.IGNORECASE), kind) for pattern, kind in [
        # Phrases that contain a later rule's words first ("damaged, returned to sender",
        # "address not found"): the first match wins.
        (r"\breturn(ed|ing)? to (the )?(sender|shipper|origin)\b|\bbeing returned\b|"
         r"\breturn to sender\b|\brts\b", ExceptionKind.RETURNED_TO_SENDER),
        (r"\brefused\b|\brejected by\b|\bdeclined by (the )?(recipient|consignee|customer)\b"
         r"|\brecipient (refused|declined)\b", ExceptionKind.REFUSED),
        (r"\b(address|addressee|recipient|consignee) (not found|unknown|incorrect|incomplete|"
         r"invalid|insufficient)\b|\b(incorrect|incomplete|insufficient|invalid|wrong|bad) "
         r"address\b|\bno such (address|street|number)\b|\b(moved|gone) away\b|"
         r"\bmoved, left no address\b", ExceptionKind.ADDRESS_PROBLEM),
        (r"\bdamaged?\b|\bdestroyed\b|\bbroken\b|\bcrushed\b|\bwet\b",
         ExceptionKind.DAMAGED),
        (r"\blost\b|\bmissing\b|\bcannot be (located|found)\b|\bnot (be )?(located|found)\b"
         r"|\bunable to locate\b|\bstolen\b", ExceptionKind.LOST),
        (r"\bcustoms\b|\bduties\b|\bimport (tax|vat|clearance)\b|\bclearance\b",
         ExceptionKind.CUSTOMS),
        (r"\battempt(ed)?\b|\bnot delivered\b|\bundeliverable\b|\bunable to deliver\b|"
         r"\bno answer\b|\bnot (at )?home\b|\bmissed you\b|\b(card|notice) left\b|"
         r"\bdelivery failed\b|\bfailed delivery\b|\bno access\b|\bbusiness closed\b|"
         r"\bnot collected\b|\buncollected\b", ExceptionKind.DELIVERY_FAILED),
        (r"\bno scan\b|\bdelay(ed)?\b|\bheld\b|\bon hold\b|\bmisrouted\b|\bmissorted\b|"
         r"\bweather\b|\blate\b", ExceptionKind.DELAYED),
    ]
]
"""The carrier's description read by keywords, in order: ``DeliveryException`` carries the
description and no reason of its own."""


def classify(description: str) -> ExceptionKind:
    for pattern, kind in KEYWORDS:
        if pattern.search(description):
            return kind
    return ExceptionKind.OTHER


class Action(StrEnum):
    RESHIP = "RESHIP"
    REFUND = "REFUND"
    WAIT = "WAIT"


class Step(StrEnum):
    """One step of a plan."""

    RESHIP = "RESHIP"
    REFUND = "REFUND"
    BY_VALUE = "BY_VALUE"
    """Reship when the lines are worth at most the currency's reship limit; above it, ask the
    customer (first step) or refund (fallback)."""
    ASK_CUSTOMER = "ASK_CUSTOMER"
    WAIT_FOR_CARRIER = "WAIT_FOR_CARRIER"


class WaitingFor(StrEnum):
    CUSTOMER = "CUSTOMER"
    CARRIER = "CARRIER"


@dataclass(frozen=True)
class Plan:
    first: Step
    fallback: Step = Step.REFUND
    """What a wait turns into at its deadline: reship, refund, or by value."""
    retried: Plan | None = None
    """The plan instead, once the carrier has tried again."""

    def __post_init__(self) -> None:
        if self.fallback not in (Step.RESHIP, Step.REFUND, Step.BY_VALUE):
            raise ValueError(f"a fallback acts (reship, refund, by value), not {self.fallback}")


DEFAULT_PLANS: Mapping[ExceptionKind, Plan] = {
    ExceptionKind.LOST: Plan(Step.BY_VALUE),
    ExceptionKind.DAMAGED: Plan(Step.BY_VALUE),
    ExceptionKind.REFUSED: Plan(Step.REFUND),
    ExceptionKind.RETURNED_TO_SENDER: Plan(Step.ASK_CUSTOMER),
    ExceptionKind.ADDRESS_PROBLEM: Plan(Step.ASK_CUSTOMER),
    ExceptionKind.CUSTOMS: Plan(Step.ASK_CUSTOMER),
    ExceptionKind.DELIVERY_FAILED: Plan(Step.WAIT_FOR_CARRIER, Step.BY_VALUE,
                                        retried=Plan(Step.ASK_CUSTOMER)),
    ExceptionKind.DELAYED: Plan(Step.WAIT_FOR_CARRIER, Step.BY_VALUE),
    ExceptionKind.OTHER: Plan(Step.WAIT_FOR_CARRIER, Step.BY_VALUE),
}


@dataclass(frozen=True)
class ExceptionRules:
    reship_limits: Mapping[str, Decimal] = field(default_factory=lambda: {
        "EUR": Decimal(150), "USD": Decimal(150), "GBP": Decimal(130)})
    """Per currency, the value up to which lost or damaged lines are reshipped without asking;
    a currency not listed always asks."""
    customer_days: int = 7
    carrier_days: int = 5
    plans: Mapping[ExceptionKind, Plan] = field(default_factory=lambda: DEFAULT_PLANS)

    def within_limit(self, value: Money) -> bool:
        limit = self.reship_limits.get(value.currency_code)
        return limit is not None and value.amount <= limit


@dataclass(frozen=True)
class CaseLine:
    """Units of the order in the package: what a reship sends again, what a refund pays."""

    line_id: str
    sku: str
    quantity: int
    unit_price: Money


@dataclass(frozen=True)
class Report:
    """A ``DeliveryException`` as one order's case sees it."""

    description: str
    reported_at: datetime
    carrier_retried: bool = False
    """Known from tracking (a second failed attempt); a case also learns it by itself."""

    @property
    def kind(self) -> ExceptionKind:
        return classify(self.description)


@dataclass(frozen=True)
class Decision:
    action: Action
    rule: str
    """Why, in words for the timeline and the back office."""
    waiting_for: WaitingFor | None = None
    deadline: datetime | None = None
    fallback: Action | None = None
    """RESHIP or REFUND, applied at the deadline."""


def _value(lines: Sequence[CaseLine]) -> Money:
    total = Money.of(lines[0].unit_price.currency_code, 0)
    for line in lines:
        total += line.unit_price * line.quantity
    return total


def decide(kind: ExceptionKind, lines: Sequence[CaseLine], report: Report,
           rules: ExceptionRules) -> Decision:
    """What the rules do about a problem of ``kind`` with these lines."""
    plan = rules.plans[kind]
    if report.carrier_retried and plan.retried is not None:
        plan = plan.retried
    value = _value(lines)
    within = rules.within_limit(value)
    fallback = plan.fallback
    if fallback is Step.BY_VALUE:
        fallback = Step.RESHIP if within else Step.REFUND
    say = f"{kind.value.lower().replace('_', ' ')}, {value}"
    match plan.first:
        case Step.RESHIP:
            return Decision(Action.RESHIP, f"{say}: reshipped")
        case Step.REFUND:
            return Decision(Action.REFUND, f"{say}: refunded")
        case Step.BY_VALUE if within:
            return Decision(Action.RESHIP, f"{say}: within the reship limit, reshipped")
        case Step.BY_VALUE | Step.ASK_CUSTOMER:
            days = rules.customer_days
            return Decision(Action.WAIT, f"{say}: the customer chooses within {days} days",
                            WaitingFor.CUSTOMER, report.reported_at + timedelta(days=days),
                            Action(fallback.value))
        case Step.WAIT_FOR_CARRIER:
            days = rules.carrier_days
            return Decision(Action.WAIT, f"{say}: the carrier has {days} days to deliver",
                            WaitingFor.CARRIER, report.reported_at + timedelta(days=days),
                            Action(fallback.value))
    raise ValueError(f"no rule for {plan.first}")


# --- the case --------------------------------------------------------------------------------


class CaseState(StrEnum):
    WAITING = "WAITING"
    RESHIP = "RESHIP"
    REFUND = "REFUND"
    DELIVERED = "DELIVERED"
    """Closed without action: the parcel arrived while the case waited."""


_ACTED = {Action.RESHIP: CaseState.RESHIP, Action.REFUND: CaseState.REFUND}


def case_id(order: str, package: str) -> uuid.UUID:
    """One case per (order, package): the store's unique key."""
    return derived_id("delivery-exception", order, package)


@dataclass(frozen=True)
class Case:
    order: str
    package: str
    lines: tuple[CaseLine, ...]
    kind: ExceptionKind
    reported_at: datetime
    """When the report that decided the case was made."""
    decision: Decision
    state: CaseState
    closed_by: str = ""
    """``rule``, ``customer``, ``deadline`` or ``delivered``; empty while it waits."""
    retried: bool = False

    @property
    def id(self) -> uuid.UUID:
        return case_id(self.order, self.package)

    @property
    def name(self) -> str:
        return f"cases/{self.id}"

    def reship(self, *, channel: str, external_order_id: str) -> ReplacementOrder:
        """The replacement order of the same lines; its request id is the case's, once."""
        if self.state is not CaseState.RESHIP:
            raise FailedPrecondition(f"{self.name} does not reship")
        return replacement_order(
            str(derived_id("reship", self.order, self.package)), original_order=self.order,
            channel=channel, external_order_id=external_order_id,
            lines=[ExchangeLine(ln.line_id, ln.sku, ln.quantity, ln.unit_price)
                   for ln in self.lines])

    @property
    def refund_name(self) -> str:
        """The name (and orders' transaction id) of the case's one refund."""
        return f"{self.name}/refunds/{derived_id('case-refund', self.order, self.package)}"


def _decided(case: Case, decision: Decision, by: str) -> Case:
    if decision.action is Action.WAIT:
        return replace(case, decision=decision, state=CaseState.WAITING, closed_by="")
    return replace(case, decision=decision, state=_ACTED[decision.action], closed_by=by)


def open_case(order: str, package: str, lines: Sequence[CaseLine], report: Report,
              rules: ExceptionRules) -> Case:
    """The case of an order's lines in a package a carrier reported a problem with."""
    if not 0 < len(lines) <= MAX_CASE_LINES:
        raise ValueError(f"a case has 1 to {MAX_CASE_LINES} lines")
    kind = report.kind
    decision = decide(kind, lines, report, rules)
    case = Case(order, package, tuple(lines), kind, report.reported_at, decision,
                CaseState.WAITING, retried=report.carrier_retried)
    return _decided(case, decision, "rule")


def reported_again(case: Case, report: Report, rules: ExceptionRules) -> Case:
    """A later report of the same package while the case waits: a new kind of problem is
    decided afresh (lost after a delay), a second failed attempt is the carrier's retry; the
    same problem again moves no deadline, and a case that acted never acts again."""
    if case.state is not CaseState.WAITING or report.reported_at <= case.reported_at:
        return case
    kind = report.kind
    retry = kind is ExceptionKind.DELIVERY_FAILED and case.kind is ExceptionKind.DELIVERY_FAILED
    retried = case.retried or report.carrier_retried or retry
    if kind is case.kind and retried == case.retried:
        return case
    decision = decide(kind, case.lines, replace(report, carrier_retried=retried), rules)
    return _decided(replace(case, kind=kind, reported_at=report.reported_at, retried=retried),
                    decision, "rule")


def delivered(case: Case) -> Case:
    """The parcel arrived after all: a waiting case closes with nothing done."""
    if case.state is not CaseState.WAITING:
        return case
    return replace(case, state=CaseState.DELIVERED, closed_by="delivered")


def customer_chose(case: Case, action: Action, at: datetime) -> Case:
    """The customer's answer while the case waits, up to its deadline; a refused parcel is
    only refunded (the customer did not want it)."""
    allowed = {Action.REFUND} if case.kind is ExceptionKind.REFUSED else {Action.RESHIP,
                                                                           Action.REFUND}
    if case.state is not CaseState.WAITING:
        if _ACTED.get(action) is case.state:
            return case
        raise FailedPrecondition(f"{case.name} is {case.state.value.lower()}",
                                 reason="CASE_CLOSED", metadata={"case": case.name})
    assert case.decision.deadline is not None
    if at > case.decision.deadline:
        raise FailedPrecondition(f"{case.name} passed its deadline", reason="CASE_EXPIRED",
                                 metadata={"case": case.name})
    if action not in allowed:
        raise FailedPrecondition(f"{case.name} cannot {action.value.lower()}",
                                 reason="ACTION_NOT_ALLOWED", metadata={"case": case.name})
    return _decided(case, replace(case.decision, action=action,
                                  rule=f"{case.decision.rule}; the customer chose "
                                       f"{action.value.lower()}"), "customer")


def due(case: Case, now: datetime) -> bool:
    deadline = case.decision.deadline
    return case.state is CaseState.WAITING and deadline is not None and now > deadline


def expire(case: Case, now: datetime) -> Case:
    """A waiting case past its deadline takes its fallback."""
    if not due(case, now):
        return case
    fallback = case.decision.fallback
    assert fallback is not None
    return _decided(case, replace(case.decision, action=fallback,
                                  rule=f"{case.decision.rule}; nothing by the deadline, "
                                       f"{fallback.value.lower()}"), "deadline")
