"""The order aggregate and its rules: the value types every capability shares, payments,
holds, allocation accounting per line, release, cancellation, shipments, returns and merges.

No I/O here: the aggregate changes itself and records what happened as domain events; the
store turns those into timeline rows and outbox messages. What a new order must be to be
accepted is the capture capability's (:mod:`oms_orders.capture.domain`).

The status is derived from facts that only accumulate (units allocated, shipped, returned,
the payment, the holds) and every derived move is checked against ``TRANSITIONS``, so a
duplicate event changes nothing and a late one cannot move an order backwards except by the
few moves the README documents (a hold and its release, a lapsed authorisation, an expired
reservation of a paid order).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from oms_platform.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Violations,
)
from oms_platform.money import Money, check_money, is_currency
from oms_platform.values import LatLng


class OrderStatus(StrEnum):
    PAYMENT_PENDING = "PAYMENT_PENDING"
    PENDING_ALLOCATION = "PENDING_ALLOCATION"
    AWAITING_STOCK = "AWAITING_STOCK"
    ALLOCATED = "ALLOCATED"
    RELEASED = "RELEASED"
    PARTIALLY_SHIPPED = "PARTIALLY_SHIPPED"
    SHIPPED = "SHIPPED"
    DELIVERED = "DELIVERED"
    PARTIALLY_RETURNED = "PARTIALLY_RETURNED"
    RETURNED = "RETURNED"
    ON_HOLD = "ON_HOLD"
    CANCELLED = "CANCELLED"


class ServiceLevel(StrEnum):
    UNSPECIFIED = "UNSPECIFIED"
    STANDARD = "STANDARD"
    EXPEDITED = "EXPEDITED"
    EXPRESS = "EXPRESS"
    NEXT_DAY = "NEXT_DAY"


class PaymentStatus(StrEnum):
    UNSPECIFIED = "UNSPECIFIED"
    PENDING = "PENDING"
    AUTHORIZED = "AUTHORIZED"
    PAID = "PAID"
    FAILED = "FAILED"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"
    REFUNDED = "REFUNDED"


class PaymentKind(StrEnum):
    AUTHORIZATION = "AUTHORIZATION"
    CAPTURE = "CAPTURE"
    FAILURE = "FAILURE"
    REFUND = "REFUND"


class HoldKind(StrEnum):
    MANUAL = "MANUAL"
    SYSTEM = "SYSTEM"


S = OrderStatus
_BEFORE_RELEASE = (S.PAYMENT_PENDING, S.PENDING_ALLOCATION, S.AWAITING_STOCK, S.ALLOCATED)

TRANSITIONS: Mapping[OrderStatus, frozenset[OrderStatus]] = {
    S.PAYMENT_PENDING: frozenset({S.PENDING_ALLOCATION, S.AWAITING_STOCK, S.ALLOCATED,
                                  S.ON_HOLD, S.CANCELLED}),
    # Back to PAYMENT_PENDING: an authorisation lapsed before release.
    S.PENDING_ALLOCATION: frozenset({S.PAYMENT_PENDING, S.AWAITING_STOCK, S.ALLOCATED,
                                     S.ON_HOLD, S.CANCELLED}),
    S.AWAITING_STOCK: frozenset({S.PAYMENT_PENDING, S.ALLOCATED, S.ON_HOLD, S.CANCELLED}),
    # Back to AWAITING_STOCK: the reservation of a paid order expired (inventory re-allocates).
    S.ALLOCATED: frozenset({S.PAYMENT_PENDING, S.AWAITING_STOCK, S.RELEASED, S.ON_HOLD,
                            S.CANCELLED}),
    S.ON_HOLD: frozenset({*_BEFORE_RELEASE, S.CANCELLED}),
    # Straight to DELIVERED when the carrier's delivery was reported before the shipment.
    S.RELEASED: frozenset({S.PARTIALLY_SHIPPED, S.SHIPPED, S.DELIVERED, S.CANCELLED}),
    S.PARTIALLY_SHIPPED: frozenset({S.SHIPPED, S.DELIVERED, S.PARTIALLY_RETURNED, S.RETURNED}),
    S.SHIPPED: frozenset({S.DELIVERED, S.PARTIALLY_RETURNED, S.RETURNED}),
    S.DELIVERED: frozenset({S.PARTIALLY_RETURNED, S.RETURNED}),
    S.PARTIALLY_RETURNED: frozenset({S.RETURNED}),
    S.RETURNED: frozenset(),
    S.CANCELLED: frozenset(),
}

PROGRESS: Mapping[OrderStatus, int] = {
    S.PAYMENT_PENDING: 0, S.PENDING_ALLOCATION: 1, S.AWAITING_STOCK: 1, S.ALLOCATED: 2,
    S.RELEASED: 3, S.PARTIALLY_SHIPPED: 4, S.SHIPPED: 5, S.DELIVERED: 6,
    S.PARTIALLY_RETURNED: 7, S.RETURNED: 8, S.CANCELLED: 9,
}
"""How far an order has come; ON_HOLD is beside the line, not on it."""

PAID = frozenset({PaymentStatus.AUTHORIZED, PaymentStatus.PAID,
                  PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED})
UNPAID = frozenset({PaymentStatus.UNSPECIFIED, PaymentStatus.PENDING, PaymentStatus.FAILED})
PRIORITY_SERVICE_LEVELS = frozenset({ServiceLevel.EXPRESS, ServiceLevel.NEXT_DAY})

MAX_REQUEST_ID_LENGTH = 100
MAX_CHANNEL_LENGTH = 100
MAX_EXTERNAL_ID_LENGTH = 200
MAX_LINES = 500
"""Lines of one order, of one merged shipment, of one CancelOrder request."""
MAX_MERGE_ORDERS = 20
"""Orders named by one MergeOrders, and orders in one merged shipment."""
MAX_TAGS = 20
MAX_TAG_LENGTH = 50
MAX_GIFT_NOTE_LENGTH = 500
MAX_REASON_LENGTH = 500
PAYMENT_TIMEOUT_REASON = "payment not received in time"
SYSTEM = "system"


class InvalidAllocation(FailedPrecondition):
    """Inventory reported stock that does not match the order's lines."""

    reason = "INVALID_ALLOCATION"


class IllegalTransition(FailedPrecondition):
    reason = "ILLEGAL_STATUS_TRANSITION"


class OutOfOrder(FailedPrecondition):
    """An event arrived before the one it depends on (a package of an order not yet
    released, a return of units not yet shipped). The consumer retries it later."""

    reason = "EVENT_OUT_OF_ORDER"


@dataclass(frozen=True)
class Address:
    recipient: str = ""
    organization: str = ""
    address_lines: tuple[str, ...] = ()
    locality: str = ""
    administrative_area: str = ""
    postal_code: str = ""
    region_code: str = ""
    phone: str = ""
    email: str = ""
    location: LatLng | None = None


@dataclass(frozen=True)
class Customer:
    external_customer_id: str = ""
    display_name: str = ""
    email: str = ""
    phone: str = ""


@dataclass(frozen=True)
class MoneyDraft:
    """Money as the caller wrote it, before validation."""

    currency_code: str
    amount: str


@dataclass
class OrderLine:
    line_id: str
    sku: str
    quantity: int
    unit_price: Money
    external_line_id: str = ""
    allocated: dict[str, int] = field(default_factory=dict)
    """Units reserved per fulfilment node."""
    backordered: int = 0
    failed: int = 0
    cancelled: int = 0
    shipped: int = 0
    returned: int = 0

    @property
    def open(self) -> int:
        """Units still meant to ship (or shipped): not cancelled."""
        return self.quantity - self.cancelled

    @property
    def allocated_quantity(self) -> int:
        return sum(self.allocated.values())

    @property
    def unallocated(self) -> int:
        return max(self.open - self.allocated_quantity, 0)

    @property
    def to_ship(self) -> int:
        return self.open - self.shipped


@dataclass(frozen=True)
class LineQuantity:
    """Units of one line, as events and requests name them."""

    line_id: str
    sku: str
    quantity: int


@dataclass(frozen=True)
class Allocation:
    node_id: str
    lines: tuple[LineQuantity, ...]


@dataclass(frozen=True)
class FailedLine:
    line_id: str
    sku: str
    quantity: int
    reason: str


@dataclass(frozen=True)
class NodeLine:
    line_id: str
    sku: str
    node_id: str
    quantity: int


@dataclass
class Hold:
    hold_id: str
    kind: HoldKind
    reason: str
    placed_by: str
    place_time: datetime
    released_by: str = ""
    release_time: datetime | None = None

    @property
    def active(self) -> bool:
        return self.release_time is None


@dataclass(frozen=True)
class Payment:
    transaction_id: str
    kind: PaymentKind
    amount: Money
    provider: str = ""
    message: str = ""
    at: datetime | None = None


@dataclass(frozen=True)
class PaymentDraft:
    """A payment as the provider reported it, before validation; a failure may come
    without an amount."""

    transaction_id: str
    kind: str
    amount: MoneyDraft | None
    provider: str = ""
    message: str = ""
    at: datetime | None = None


@dataclass
class Shipment:
    package: str
    node_id: str
    carrier: str
    carrier_service: str
    tracking_number: str
    tracking_url: str
    ship_time: datetime
    lines: tuple[LineQuantity, ...]
    deliver_time: datetime | None = None


@dataclass(frozen=True)
class PackageInfo:
    """A shipped package as fulfilment reports it; ``lines`` are this order's only."""

    package: str
    node_id: str
    carrier: str
    carrier_service: str
    tracking_number: str
    tracking_url: str
    ship_time: datetime
    lines: tuple[LineQuantity, ...]


@dataclass(frozen=True)
class ReturnedLine:
    line_id: str
    sku: str
    quantity: int
    reason: str


# --- domain events: what happened, turned into timeline rows and outbox messages -----------


@dataclass(frozen=True)
class OrderPlaced:
    at: datetime


@dataclass(frozen=True)
class StatusChanged:
    previous: OrderStatus
    status: OrderStatus
    at: datetime
    reason: str = ""
    actor: str = SYSTEM


@dataclass(frozen=True)
class Noted:
    """Something worth a timeline entry that publishes nothing."""

    kind: str
    at: datetime
    actor: str
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PaymentSettled:
    """The payment became AUTHORIZED or PAID: inventory stops the reservations expiring."""

    status: PaymentStatus
    at: datetime


@dataclass(frozen=True)
class LinesCancelled:
    lines: tuple[LineQuantity, ...]
    whole_order: bool
    reason: str
    at: datetime
    actor: str


@dataclass(frozen=True)
class PromiseChanged:
    """The delivery promised changed (None: cleared); the KPIs measure on time in full by it."""

    promise_time: datetime | None
    at: datetime


@dataclass(frozen=True)
class PaymentRefunded:
    """Money was given back, as recorded on the order: the KPIs' refunds and net sales."""

    transaction_id: str
    amount: Money
    at: datetime


DomainEvent = (OrderPlaced | StatusChanged | Noted | PaymentSettled | LinesCancelled
               | PromiseChanged | PaymentRefunded)


@dataclass(frozen=True)
class ReleasedLine:
    order: str
    line_id: str
    sku: str
    quantity: int
    external_line_id: str


@dataclass(frozen=True)
class Release:
    """What one node is to pick and ship: the lines of one order, or of a merged group."""

    order: Order
    orders: tuple[str, ...]
    node_id: str
    lines: tuple[ReleasedLine, ...]
    service_level: ServiceLevel
    priority: bool
    promise_time: datetime | None
    tags: tuple[str, ...]
    gift_note: str
    high_value: bool
    at: datetime


def validate_tags(violations: Violations, path: str, tags: Sequence[str]) -> None:
    if not violations.require(len(tags) <= MAX_TAGS, path, f"at most {MAX_TAGS} tags"):
        return
    for index, tag in enumerate(tags):
        if violations.require(
            0 < len(tag.strip()) <= MAX_TAG_LENGTH and tag == tag.strip(),
            f"{path}[{index}]",
            f"1 to {MAX_TAG_LENGTH} characters without surrounding spaces",
        ):
            validate_text(violations, f"{path}[{index}]", tag, MAX_TAG_LENGTH)


def validate_text(violations: Violations, path: str, value: str, max_length: int) -> bool:
    """At most ``max_length`` characters and no NUL, which PostgreSQL cannot store in text
    or JSON: refused here rather than failing the insert."""
    return violations.require(
        len(value) <= max_length, path, f"at most {max_length} characters"
    ) and violations.require("\x00" not in value, path, "must not contain NUL characters")


def require_text(violations: Violations, path: str, value: str, max_length: int) -> None:
    if violations.require(bool(value.strip()), path, "required"):
        validate_text(violations, path, value, max_length)


def validate_money(violations: Violations, path: str, currency_code: str,
                   amount: str, *, positive: bool = False) -> str | None:
    """Checks an amount of money as written (``positive``: more than zero); returns its
    currency when that is valid, so that lines can be checked for one currency."""
    check_money(violations, path, currency_code, amount, positive=positive)
    return currency_code if is_currency(currency_code) else None


def validate_payment(draft: PaymentDraft) -> Violations:
    """Every violation of a reported payment at once (field paths of RecordPaymentRequest);
    what depends on the order (its currency, what was captured) is checked when it is
    recorded."""
    violations = Violations()
    require_text(violations, "payment.transaction_id", draft.transaction_id,
                  MAX_EXTERNAL_ID_LENGTH)
    violations.require(draft.kind in PaymentKind.__members__, "payment.kind",
                       "required: AUTHORIZATION, CAPTURE, FAILURE or REFUND")
    if draft.amount is not None:
        validate_money(violations, "payment.amount", draft.amount.currency_code,
                       draft.amount.amount, positive=draft.kind != PaymentKind.FAILURE)
    else:
        violations.require(draft.kind == PaymentKind.FAILURE, "payment.amount", "required")
    validate_text(violations, "payment.provider", draft.provider, MAX_CHANNEL_LENGTH)
    validate_text(violations, "payment.message", draft.message, MAX_REASON_LENGTH)
    return violations


def payment_of(draft: PaymentDraft, currency_code: str, at: datetime) -> Payment:
    """The validated payment for an order in ``currency_code`` (a failure reported without
    an amount is of nothing, in the order's currency)."""
    amount = draft.amount or MoneyDraft(currency_code, "0")
    return Payment(draft.transaction_id, PaymentKind(draft.kind),
                   Money.of(amount.currency_code, amount.amount), draft.provider,
                   draft.message, draft.at or at)


@dataclass(frozen=True)
class Takings:
    """What a payment history holds, in the order's currency."""

    captured: Decimal
    refunded: Decimal
    authorized: Decimal
    """Authorised since the last failure: a failure ends (lapses) the authorisations."""

    @classmethod
    def of(cls, payments: Sequence[Payment]) -> Takings:
        def sum_of(kind: PaymentKind, among: Sequence[Payment]) -> Decimal:
            return sum((p.amount.amount for p in among if p.kind is kind), Decimal(0))

        failures = [n for n, p in enumerate(payments) if p.kind is PaymentKind.FAILURE]
        live = payments[failures[-1] + 1:] if failures else payments
        return cls(sum_of(PaymentKind.CAPTURE, payments), sum_of(PaymentKind.REFUND, payments),
                   sum_of(PaymentKind.AUTHORIZATION, live))

    def cover(self, due: Money) -> bool:
        """The captures less the refunds, or the live authorisations, cover ``due``."""
        return max(self.captured - self.refunded, self.authorized) >= due.amount


def payment_status_after(
    before: PaymentStatus, history: Sequence[Payment], payment: Payment, due: Money, *,
    released: bool, order: str = "",
) -> PaymentStatus:
    """The payment status once ``payment`` is added to ``history``, by amounts in the
    order's currency; ``due`` is the order's amount due (its units not cancelled).

    An order is AUTHORIZED when the authorisations since the last failure cover what is due,
    and PAID when its captures, less what was refunded, do; a smaller amount is recorded and
    the order keeps waiting. A refund may give back at most what was captured, in total.
    Raises InvalidArgument for an amount of nothing or less, or in another currency, and
    FailedPrecondition for a refund beyond the captures.
    """
    amount = payment.amount
    violations = Violations()
    if violations.require(amount.currency_code == due.currency_code,
                          "payment.amount.currency_code",
                          f"the order is in {due.currency_code}"):
        violations.require(payment.kind is PaymentKind.FAILURE or amount.amount > 0,
                           "payment.amount.amount", "must be more than zero")
    violations.raise_if_any()
    takings = Takings.of([*history, payment])
    captured, refunded = takings.captured, takings.refunded
    match payment.kind:
        case PaymentKind.AUTHORIZATION if before in UNPAID:
            if takings.authorized >= due.amount:
                return PaymentStatus.AUTHORIZED
        case PaymentKind.CAPTURE if before in UNPAID or before is PaymentStatus.AUTHORIZED:
            if captured - refunded >= due.amount:
                return PaymentStatus.PAID
        case PaymentKind.FAILURE if before in UNPAID:
            return PaymentStatus.FAILED
        case PaymentKind.FAILURE if before is PaymentStatus.AUTHORIZED and not released:
            return PaymentStatus.FAILED  # the authorisation lapsed before release
        case PaymentKind.REFUND:
            if not captured:
                raise FailedPrecondition(f"{order} has no captured payment to refund",
                                         reason="NOT_PAID", metadata={"order": order})
            if refunded > captured:
                raise FailedPrecondition(
                    f"a refund of {amount} would give back more than the "
                    f"{captured:f} {due.currency_code} captured for {order}",
                    reason="REFUND_EXCEEDS_CAPTURE", metadata={"order": order})
            if before in UNPAID or before is PaymentStatus.AUTHORIZED:
                return before  # part of a partial capture given back: still not paid
            return (PaymentStatus.REFUNDED if refunded >= captured
                    else PaymentStatus.PARTIALLY_REFUNDED)
    return before


def customer_key(channel: str, customer: Customer) -> str:
    """Who the customer is across channels: the email, else the channel's customer id."""
    if customer.email.strip():
        return f"email:{customer.email.strip().lower()}"
    if customer.external_customer_id:
        return f"{channel}:{customer.external_customer_id}"
    return ""


def address_key(address: Address) -> str:
    """Equal for two spellings of one address that differ only in case and spacing."""
    parts = [address.recipient, *address.address_lines, address.locality,
             address.postal_code, address.region_code]
    text = "|".join(" ".join(p.lower().split()) for p in parts)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class _Keep:
    """``promise_time=_Keep``: leave the promise time as it is (None clears it)."""


@dataclass
class Order:
    id: uuid.UUID
    channel: str
    external_order_id: str
    customer: Customer
    shipping_address: Address
    lines: list[OrderLine]
    service_level: ServiceLevel
    payment_status: PaymentStatus
    status: OrderStatus
    create_time: datetime
    update_time: datetime
    priority_flag: bool = False
    tags: tuple[str, ...] = ()
    gift_note: str = ""
    high_value: bool = False
    order_time: datetime | None = None
    promise_time: datetime | None = None
    payment_due_time: datetime | None = None
    weight_grams: int = 0
    holds: list[Hold] = field(default_factory=list)
    payments: list[Payment] = field(default_factory=list)
    shipments: list[Shipment] = field(default_factory=list)
    deliveries: dict[str, datetime] = field(default_factory=dict)
    """Delivery time per package; may name a package before its shipment is reported."""
    returns: list[str] = field(default_factory=list)
    release_time: datetime | None = None
    ship_time: datetime | None = None
    deliver_time: datetime | None = None
    merge_group: uuid.UUID | None = None
    merged_with: tuple[str, ...] = field(default=(), compare=False)
    events: list[DomainEvent] = field(default_factory=list, compare=False, repr=False)
    changed_lines: set[str] = field(default_factory=set, compare=False, repr=False)

    # --- what the order is -------------------------------------------------------------------

    @property
    def name(self) -> str:
        return order_name(self.id)

    @property
    def currency_code(self) -> str:
        return self.lines[0].unit_price.currency_code

    @property
    def total(self) -> Money:
        total = Money.of(self.currency_code, 0)
        for line in self.lines:
            total += line.unit_price * line.quantity
        return total

    @property
    def amount_due(self) -> Money:
        """The value of the units not cancelled: what the payments must cover."""
        due = Money.of(self.currency_code, 0)
        for line in self.lines:
            due += line.unit_price * line.open
        return due

    @property
    def paid_up(self) -> bool:
        """Paid, and the money still covers what is due: a refund before release that is
        not matched by cancelled units keeps the order from the warehouse."""
        return self.payment_status in PAID and Takings.of(self.payments).cover(self.amount_due)

    @property
    def priority(self) -> bool:
        return self.priority_flag or self.service_level in PRIORITY_SERVICE_LEVELS

    @property
    def item_count(self) -> int:
        return sum(line.quantity for line in self.lines)

    @property
    def customer_key(self) -> str:
        return customer_key(self.channel, self.customer)

    @property
    def address_key(self) -> str:
        return address_key(self.shipping_address)

    @property
    def active_holds(self) -> list[Hold]:
        return [hold for hold in self.holds if hold.active]

    @property
    def shipped_any(self) -> bool:
        return any(line.shipped for line in self.lines)

    @property
    def releasable(self) -> bool:
        """Paid, every open unit allocated, no hold, not yet released (ship complete)."""
        return self.status is S.ALLOCATED

    def line(self, line_id: str) -> OrderLine | None:
        return next((line for line in self.lines if line.line_id == line_id), None)

    # --- inventory ---------------------------------------------------------------------------

    def allocate(self, allocations: Sequence[Allocation], *, at: datetime,
                 actor: str = "inventory") -> bool:
        """Units reserved at nodes, adding to earlier allocations. Returns whether the order
        changed. Units beyond what is still open (a duplicate under a new id, a late event
        after a cancellation) are not counted."""
        for allocation in allocations:
            self._check_lines(allocation.lines, "allocated")
        counted: list[dict[str, Any]] = []
        for allocation in allocations:
            for reported in allocation.lines:
                line = self._line(reported.line_id)
                take = min(reported.quantity, line.unallocated)
                if take <= 0:
                    continue
                node = allocation.node_id
                line.allocated[node] = line.allocated.get(node, 0) + take
                line.backordered = min(line.backordered, line.unallocated)
                line.failed = min(line.failed, line.unallocated)
                self.changed_lines.add(line.line_id)
                counted.append({"node_id": allocation.node_id, "line_id": line.line_id,
                                "sku": line.sku, "quantity": take})
        if not counted:
            return False
        self._note("stock_allocated", at, actor, {"allocations": counted})
        self._settle(at, actor=actor)
        return True

    def backorder(self, lines: Sequence[LineQuantity], *, at: datetime,
                  actor: str = "inventory") -> bool:
        """Units wait for stock. A backorder reported after the stock arrived (or for a
        cancelled line) counts only what is still unallocated, so it changes nothing."""
        self._check_lines(lines, "backordered")
        waiting: list[dict[str, Any]] = []
        for reported in lines:
            line = self._line(reported.line_id)
            units = min(reported.quantity, line.unallocated)
            if units > 0 and units != line.backordered:
                line.backordered = units
                self.changed_lines.add(line.line_id)
                waiting.append({"line_id": line.line_id, "sku": line.sku, "quantity": units})
        if not waiting:
            return False
        self._note("stock_backordered", at, actor, {"lines": waiting})
        self._settle(at, actor=actor)
        return True

    def allocation_failed(self, lines: Sequence[FailedLine], *, at: datetime,
                          actor: str = "inventory") -> bool:
        """Inventory can neither reserve nor backorder these units: the order goes on a
        system hold until the back office cancels the lines or fixes the product."""
        self._check_lines(lines, "failed")
        failed: list[dict[str, Any]] = []
        counted = False
        for reported in lines:
            line = self._line(reported.line_id)
            units = min(reported.quantity, line.unallocated)
            if units > 0:
                if units != line.failed:
                    line.failed = units
                    self.changed_lines.add(line.line_id)
                    counted = True
                failed.append({"line_id": line.line_id, "sku": line.sku, "quantity": units,
                               "reason": reported.reason})
        if not failed:
            return False
        reason = "allocation failed: " + "; ".join(
            f"line {f['line_id']} ({f['sku']}) {f['reason']}" for f in failed)
        if any(h.kind is HoldKind.SYSTEM and h.reason == reason for h in self.active_holds):
            return counted
        if self.status not in (*_BEFORE_RELEASE, S.ON_HOLD):
            return counted
        self._add_hold(reason, HoldKind.SYSTEM, actor, at)
        return True

    def stock_released(self, lines: Sequence[NodeLine], *, expired: bool, at: datetime,
                       actor: str = "inventory") -> bool:
        """Inventory gave reserved units back. After a cancellation that is only recorded.
        An expired reservation cancels an unpaid order; a paid one (paid too late for the
        reservation) drops those units and waits for stock again."""
        detail = {"expired": expired, "lines": [
            {"line_id": x.line_id, "sku": x.sku, "node_id": x.node_id, "quantity": x.quantity}
            for x in lines]}
        if not expired:
            self._note("stock_released", at, actor, detail)
            return True
        if self.status is S.CANCELLED:
            return False
        if self.payment_status in UNPAID:
            if self.release_time is not None or self.shipped_any:
                self._note("reservation_expired", at, actor, detail)
                return True
            self._cancel_units([(line, line.open) for line in self.lines if line.open],
                               reason=PAYMENT_TIMEOUT_REASON, actor=actor, at=at)
            return True
        if self.release_time is not None:
            # The warehouse has the order; what inventory does with its books is its own.
            self._note("reservation_expired", at, actor, detail)
            return True
        for released in lines:
            line = self.line(released.line_id)
            if line is None:
                continue
            units = min(released.quantity, line.allocated.get(released.node_id, 0))
            if units > 0:
                line.allocated[released.node_id] -= units
                if not line.allocated[released.node_id]:
                    del line.allocated[released.node_id]
                line.backordered = min(line.backordered + units, line.unallocated)
                self.changed_lines.add(line.line_id)
        self._note("reservation_expired", at, actor, detail)
        self._settle(at, reason="reservation expired; waiting for stock again", actor=actor)
        return True

    # --- payment -----------------------------------------------------------------------------

    def record_payment(self, payment: Payment, *, at: datetime, actor: str) -> bool:
        """Records what the provider reported; a transaction id seen before changes nothing.

        The payment status follows the amounts (``payment_status_after``). A failure does
        not cancel the order: the customer may retry until the payment is due, and only then
        is an unpaid order cancelled (``expire_payment``)."""
        if any(p.transaction_id == payment.transaction_id for p in self.payments):
            return False
        before = self.payment_status
        after = payment_status_after(before, self.payments, payment, self.amount_due,
                                     released=self.release_time is not None, order=self.name)
        self.payments.append(payment)
        self.payment_status = after
        self._note(f"payment_{payment.kind.value.lower()}", at, actor, {
            "transaction_id": payment.transaction_id,
            "amount": f"{payment.amount.amount:f}",
            "currency_code": payment.amount.currency_code,
            "provider": payment.provider,
            "message": payment.message,
            "payment_status": after.value,
        })
        if (after is not before and after in (PaymentStatus.AUTHORIZED, PaymentStatus.PAID)
                and self.status is not S.CANCELLED):
            self.events.append(PaymentSettled(after, at))
        if payment.kind is PaymentKind.REFUND:
            self.events.append(PaymentRefunded(payment.transaction_id, payment.amount,
                                               payment.at or at))
        self._settle(at, actor=actor)
        return True

    def expire_payment(self, now: datetime) -> bool:
        """Cancels the order when it is still unpaid at its payment due time."""
        if (self.payment_status not in UNPAID or self.payment_due_time is None
                or self.payment_due_time > now or self.status is S.CANCELLED
                or self.release_time is not None or self.shipped_any):
            return False
        self._cancel_units([(line, line.open) for line in self.lines if line.open],
                           reason=PAYMENT_TIMEOUT_REASON, actor=SYSTEM, at=now)
        return True

    # --- holds -------------------------------------------------------------------------------

    def place_hold(self, reason: str, *, actor: str, at: datetime) -> Hold:
        """A manual hold; only before release (the warehouse may already be picking)."""
        reason = reason.strip()
        violations = Violations()
        if violations.require(bool(reason), "reason", "required"):
            validate_text(violations, "reason", reason, MAX_REASON_LENGTH)
        violations.raise_if_any()
        if self.status not in (*_BEFORE_RELEASE, S.ON_HOLD):
            raise FailedPrecondition(
                f"{self.name} is {self.status} and can no longer be held",
                reason="ORDER_NOT_HOLDABLE", metadata={"order": self.name,
                                                       "status": self.status.value})
        return self._add_hold(reason, HoldKind.MANUAL, actor, at)

    def _add_hold(self, reason: str, kind: HoldKind, actor: str, at: datetime) -> Hold:
        hold = Hold(str(len(self.holds) + 1), kind, reason, actor, at)
        self.holds.append(hold)
        self._note("hold_placed", at, actor, {"hold_id": hold.hold_id, "kind": kind.value,
                                              "reason": reason})
        self._settle(at, reason=reason, actor=actor)
        return hold

    def release_hold(self, hold_id: str, *, actor: str, at: datetime) -> bool:
        """Lifts one hold (or all with an empty id); lifting a lifted hold changes nothing."""
        if hold_id and not any(h.hold_id == hold_id for h in self.holds):
            raise NotFound(f"{self.name} has no hold {hold_id!r}", reason="HOLD_NOT_FOUND",
                           metadata={"order": self.name, "hold_id": hold_id})
        lifted = [h for h in self.active_holds if not hold_id or h.hold_id == hold_id]
        for hold in lifted:
            hold.released_by = actor
            hold.release_time = at
            self._note("hold_released", at, actor, {"hold_id": hold.hold_id,
                                                    "reason": hold.reason})
        if not lifted:
            return False
        self._settle(at, reason="hold released", actor=actor)
        return True

    # --- cancellation ------------------------------------------------------------------------

    def cancel(self, lines: Sequence[tuple[str, int]] | None, *, reason: str, actor: str,
               at: datetime) -> bool:
        """Cancels the whole order (``lines`` None) or units of lines, before they ship.

        Units already shipped cannot be cancelled (FAILED_PRECONDITION), nor can a whole
        order of which anything shipped. Returns False when nothing is left to cancel."""
        violations = Violations()
        validate_text(violations, "reason", reason, MAX_REASON_LENGTH)
        if lines is not None:
            violations.require(len(lines) <= MAX_LINES, "lines", f"at most {MAX_LINES} lines")
        violations.raise_if_any()
        if lines is None:
            if self.shipped_any:
                raise FailedPrecondition(
                    f"{self.name} has shipped units; cancel lines instead",
                    reason="ORDER_SHIPPED", metadata={"order": self.name})
            targets = [(line, line.open) for line in self.lines if line.open]
        else:
            targets = self._cancellable(lines)
        if not targets:
            return False
        self._cancel_units(targets, reason=reason or "cancelled", actor=actor, at=at)
        return True

    def _cancellable(self, lines: Sequence[tuple[str, int]]) -> list[tuple[OrderLine, int]]:
        violations = Violations()
        targets: list[tuple[OrderLine, int]] = []
        seen: set[str] = set()
        shipped: list[str] = []
        for index, (line_id, quantity) in enumerate(lines):
            path = f"lines[{index}]"
            line = self.line(line_id)
            if not violations.require(line is not None, f"{path}.line_id", "no such line"):
                continue
            assert line is not None
            if not violations.require(line_id not in seen, f"{path}.line_id", "named twice"):
                continue
            seen.add(line_id)
            if not violations.require(quantity >= 0, f"{path}.quantity", "must not be negative"):
                continue
            units = quantity or line.to_ship
            if units > line.to_ship:
                if units <= line.open:
                    shipped.append(line_id)
                else:
                    violations.add(f"{path}.quantity",
                                   f"line {line_id} has {line.open} units not cancelled")
                continue
            if units:
                targets.append((line, units))
            elif line.shipped:
                shipped.append(line_id)
        violations.raise_if_any()
        if shipped:
            raise FailedPrecondition(
                f"units of line(s) {', '.join(shipped)} of {self.name} have shipped",
                reason="LINE_SHIPPED", metadata={"order": self.name,
                                                 "line_ids": ",".join(shipped)})
        return targets

    def _cancel_units(self, targets: Sequence[tuple[OrderLine, int]], *, reason: str,
                      actor: str, at: datetime) -> None:
        for line, units in targets:
            line.cancelled += units
            excess = line.allocated_quantity - line.open
            for node in sorted(line.allocated, reverse=True):
                if excess <= 0:
                    break
                dropped = min(excess, line.allocated[node])
                line.allocated[node] -= dropped
                excess -= dropped
                if not line.allocated[node]:
                    del line.allocated[node]
            line.backordered = min(line.backordered, line.unallocated)
            line.failed = min(line.failed, line.unallocated)
            self.changed_lines.add(line.line_id)
        cancelled = tuple(LineQuantity(line.line_id, line.sku, units) for line, units in targets)
        whole = all(line.to_ship == 0 for line in self.lines)
        self.events.append(LinesCancelled(cancelled, whole, reason, at, actor))
        self._covered_by_what_was_taken(at, actor)
        self._settle(at, reason=reason, actor=actor)

    def _covered_by_what_was_taken(self, at: datetime, actor: str) -> None:
        """An unpaid order whose cancelled units leave its payments covering the rest (a
        partial capture, then the missing line cancelled) is paid."""
        due, takings = self.amount_due, Takings.of(self.payments)
        if self.payment_status not in UNPAID or not due.amount or not takings.cover(due):
            return
        after = (PaymentStatus.PAID if takings.captured - takings.refunded >= due.amount
                 else PaymentStatus.AUTHORIZED)
        self.payment_status = after
        self._note("payment_covered", at, actor, {"payment_status": after.value,
                                                  "amount_due": f"{due.amount:f}"})
        self.events.append(PaymentSettled(after, at))

    # --- shipping and returns ----------------------------------------------------------------

    def ship(self, package: PackageInfo, *, at: datetime, actor: str = "fulfilment") -> bool:
        """A package with units of this order left a node; a package seen before changes
        nothing. Units beyond what is left to ship (a cancellation the warehouse did not
        see in time) are recorded in the timeline, not counted."""
        if any(s.package == package.package for s in self.shipments):
            return False
        if self.release_time is None:
            raise OutOfOrder(f"package {package.package} of {self.name} before its release",
                             metadata={"order": self.name, "package": package.package})
        self._check_lines(package.lines, "shipped")
        overshipped: list[dict[str, Any]] = []
        for shipped in package.lines:
            line = self._line(shipped.line_id)
            units = min(shipped.quantity, line.to_ship)
            line.shipped += units
            self.changed_lines.add(line.line_id)
            if units < shipped.quantity:
                overshipped.append({"line_id": line.line_id,
                                    "quantity": shipped.quantity - units})
        self.shipments.append(Shipment(
            package.package, package.node_id, package.carrier, package.carrier_service,
            package.tracking_number, package.tracking_url, package.ship_time, package.lines))
        self.ship_time = max(filter(None, [self.ship_time, package.ship_time]))
        self._note("package_shipped", at, actor, {
            "package": package.package, "node_id": package.node_id,
            "carrier": package.carrier, "carrier_service": package.carrier_service,
            "tracking_number": package.tracking_number, "tracking_url": package.tracking_url,
            "lines": [{"line_id": x.line_id, "sku": x.sku, "quantity": x.quantity}
                      for x in package.lines],
            **({"shipped_after_cancellation": overshipped} if overshipped else {}),
        })
        self._settle(at, actor=actor)
        return True

    def deliver(self, package: str, *, deliver_time: datetime, at: datetime,
                carrier: str = "", tracking_number: str = "", actor: str = "shipping") -> bool:
        """The carrier delivered a package (possibly reported before its shipment)."""
        if package in self.deliveries:
            return False
        self.deliveries[package] = deliver_time
        self._note("package_delivered", at, actor, {
            "package": package, "carrier": carrier, "tracking_number": tracking_number})
        self._settle(at, actor=actor)
        return True

    def delivery_exception(self, package: str, description: str, *, at: datetime,
                           carrier: str = "", tracking_number: str = "",
                           actor: str = "shipping") -> bool:
        self._note("delivery_exception", at, actor, {
            "package": package, "carrier": carrier, "tracking_number": tracking_number,
            "description": description})
        return True

    def receive_return(self, return_id: str, lines: Sequence[ReturnedLine], *, node_id: str,
                       at: datetime, actor: str = "returns") -> bool:
        """Units came back; a return seen before changes nothing. Units not (yet) shipped
        cannot come back: a return that counts nothing is retried until they have."""
        if return_id in self.returns:
            return False
        self._check_lines(lines, "returned")
        counted: list[tuple[OrderLine, int, ReturnedLine]] = []
        for returned in lines:
            line = self._line(returned.line_id)
            units = min(returned.quantity, line.shipped - line.returned)
            if units > 0:
                counted.append((line, units, returned))
        if not counted:
            raise OutOfOrder(f"return {return_id} of {self.name} before its shipment",
                             metadata={"order": self.name, "return": return_id})
        for line, units, _ in counted:
            line.returned += units
            self.changed_lines.add(line.line_id)
        self.returns.append(return_id)
        self._note("return_received", at, actor, {
            "return": return_id, "node_id": node_id,
            "lines": [{"line_id": line.line_id, "sku": line.sku, "quantity": units,
                       "reason": returned.reason} for line, units, returned in counted]})
        self._settle(at, actor=actor)
        return True

    # --- special orders ----------------------------------------------------------------------

    def update(self, *, actor: str, at: datetime, tags: Sequence[str] | None = None,
               gift_note: str | None = None, priority: bool | None = None,
               promise_time: datetime | type[_Keep] | None = _Keep) -> bool:
        """Changes the special-order fields; all but the tags only before release."""
        violations = Violations()
        if tags is not None:
            validate_tags(violations, "order.tags", tags)
        if gift_note is not None:
            validate_text(violations, "order.gift_note", gift_note, MAX_GIFT_NOTE_LENGTH)
        violations.raise_if_any()
        warehouse_fields = gift_note is not None or priority is not None or (
            promise_time is not _Keep)
        if warehouse_fields and self.status not in (*_BEFORE_RELEASE, S.ON_HOLD):
            raise FailedPrecondition(
                f"{self.name} is {self.status}: only its tags may change",
                reason="ORDER_RELEASED", metadata={"order": self.name})
        changed: dict[str, Any] = {}
        if tags is not None and tuple(dict.fromkeys(tags)) != self.tags:
            self.tags = tuple(dict.fromkeys(tags))
            changed["tags"] = list(self.tags)
        if gift_note is not None and gift_note != self.gift_note:
            self.gift_note = gift_note
            changed["gift_note"] = gift_note
        if priority is not None and priority != self.priority_flag:
            self.priority_flag = priority
            changed["priority"] = priority
        if promise_time is not _Keep and promise_time != self.promise_time:
            assert not isinstance(promise_time, type)
            self.promise_time = promise_time
            changed["promise_time"] = promise_time.isoformat() if promise_time else None
            self.events.append(PromiseChanged(promise_time, at))
        if not changed:
            return False
        self.update_time = at
        self._note("updated", at, actor, changed)
        return True

    # --- the state machine -------------------------------------------------------------------

    def derived_status(self) -> OrderStatus:
        """The status the facts give; ``_settle`` moves the order there."""
        if not any(line.open for line in self.lines):
            return S.CANCELLED
        shipped = sum(line.shipped for line in self.lines)
        returned = sum(line.returned for line in self.lines)
        to_ship = sum(line.to_ship for line in self.lines)
        if returned:
            return S.RETURNED if returned >= shipped and not to_ship else S.PARTIALLY_RETURNED
        if shipped:
            if to_ship:
                return S.PARTIALLY_SHIPPED
            delivered = all(s.package in self.deliveries for s in self.shipments)
            return S.DELIVERED if delivered else S.SHIPPED
        if self.release_time is not None:
            return S.RELEASED
        if self.active_holds:
            return S.ON_HOLD
        if not self.paid_up:
            return S.PAYMENT_PENDING
        if all(line.unallocated == 0 for line in self.lines):
            return S.ALLOCATED
        if any(line.allocated or line.backordered for line in self.lines):
            return S.AWAITING_STOCK
        return S.PENDING_ALLOCATION

    def _settle(self, at: datetime, *, reason: str = "", actor: str = SYSTEM) -> None:
        self.update_time = at
        target = self.derived_status()
        if target is self.status:
            return
        if target not in TRANSITIONS[self.status]:
            raise IllegalTransition(
                f"{self.name} cannot go from {self.status} to {target}",
                metadata={"order": self.name, "from": self.status.value, "to": target.value},
            )
        if target is S.DELIVERED:
            self.deliver_time = max(self.deliveries.values())
        self.events.append(StatusChanged(self.status, target, at, reason, actor))
        self.status = target

    def _note(self, kind: str, at: datetime, actor: str, detail: Mapping[str, Any]) -> None:
        self.events.append(Noted(kind, at, actor, detail))
        self.update_time = at

    def _line(self, line_id: str) -> OrderLine:
        line = self.line(line_id)
        assert line is not None
        return line

    def _check_lines(self, lines: Iterable[LineQuantity | FailedLine | ReturnedLine],
                     what: str) -> None:
        for reported in lines:
            line = self.line(reported.line_id)
            if line is None or line.sku != reported.sku or reported.quantity <= 0:
                raise InvalidAllocation(
                    f"{what} line {reported.line_id!r} ({reported.sku} x{reported.quantity})"
                    f" does not match {self.name}",
                    metadata={"order": self.name, "line_id": reported.line_id},
                )


# --- several orders: release, merge, split ---------------------------------------------------

_SPEED = [ServiceLevel.UNSPECIFIED, ServiceLevel.STANDARD, ServiceLevel.EXPEDITED,
          ServiceLevel.EXPRESS, ServiceLevel.NEXT_DAY]


def release_ready(group: Sequence[Order], *, at: datetime) -> list[Release]:
    """Releases an order, or a merged group once every member is releasable: one Release
    per node holding its units. An order already released is never released again."""
    members = [order for order in group if order.status is not S.CANCELLED]
    if not members or not all(order.releasable for order in members):
        return []
    primary = next((o for o in members if o.id == o.merge_group), members[0])
    by_node: dict[str, list[ReleasedLine]] = {}
    for order in members:
        for line in order.lines:
            for node, units in sorted(line.allocated.items()):
                if units > 0:
                    by_node.setdefault(node, []).append(ReleasedLine(
                        order.name, line.line_id, line.sku, units, line.external_line_id))
    for order in members:
        order.release_time = at
        order._settle(at, reason="released to " + ", ".join(sorted(by_node)))
    promises = [o.promise_time for o in members if o.promise_time]
    names = tuple(o.name for o in members)
    return [
        Release(
            order=primary,
            orders=names,
            node_id=node,
            lines=tuple(lines),
            service_level=max((o.service_level for o in members), key=_SPEED.index),
            priority=any(o.priority for o in members),
            promise_time=min(promises) if promises else None,
            tags=tuple(sorted({tag for o in members for tag in o.tags})),
            gift_note="\n".join(o.gift_note for o in members if o.gift_note),
            high_value=any(o.high_value for o in members),
            at=at,
        )
        for node, lines in sorted(by_node.items())
    ]


def release_units(changed: Sequence[Order], group: Sequence[Order]) -> list[list[Order]]:
    """The release units among the changed orders: each merged group (in id order), or a
    lone order."""
    units: dict[uuid.UUID, list[Order]] = {}
    for order in changed:
        key = order.merge_group or order.id
        if key not in units:
            units[key] = sorted((o for o in group if (o.merge_group or o.id) == key),
                                key=lambda o: o.id) or [order]
    return list(units.values())


def merge_ids(names: Sequence[str]) -> list[uuid.UUID]:
    """The order ids a MergeOrders names, checked before any order is read."""
    violations = Violations()
    if not violations.require(2 <= len(names) <= MAX_MERGE_ORDERS, "names",
                              f"2 to {MAX_MERGE_ORDERS} orders"):
        violations.raise_if_any()
    ids = [parse_order_name(name) for name in names]
    for index, order_id in enumerate(ids):
        violations.require(order_id is not None, f"names[{index}]", 'must be "orders/{uuid}"')
    violations.raise_if_any()
    return [order_id for order_id in ids if order_id is not None]


def merge(orders: Sequence[Order], *, actor: str, at: datetime,
          loaded: Sequence[Order] = ()) -> None:
    """Joins open orders of one customer to one address (from any channel) into one
    shipment; the first order is the one the others join. ``loaded`` holds the members
    the first order's group has already: a shipment holds at most ``MAX_MERGE_ORDERS``
    orders and ``MAX_LINES`` lines, so that its release stays as small as one order's."""
    if len(orders) < 2 or len({o.id for o in orders}) != len(orders):
        raise InvalidArgument([FieldViolation("names", "at least two different orders")])
    first = orders[0]
    group = first.merge_group or first.id
    members = {o.id: o for o in loaded if o.merge_group is not None and o.merge_group == group}
    members.update({o.id: o for o in orders})
    if (len(members) > MAX_MERGE_ORDERS
            or sum(len(o.lines) for o in members.values()) > MAX_LINES):
        raise FailedPrecondition(
            f"a merged shipment holds at most {MAX_MERGE_ORDERS} orders and {MAX_LINES} "
            f"lines; {first.name}'s would hold {len(members)} orders",
            reason="MERGE_TOO_LARGE", metadata={"order": first.name})
    for order in orders:
        if order.status not in (*_BEFORE_RELEASE, S.ON_HOLD):
            raise FailedPrecondition(f"{order.name} is {order.status}: it cannot be merged",
                                     reason="ORDER_NOT_OPEN", metadata={"order": order.name})
        if not order.customer_key or order.customer_key != first.customer_key:
            raise FailedPrecondition(f"{order.name} is not of {first.name}'s customer",
                                     reason="DIFFERENT_CUSTOMER", metadata={"order": order.name})
        if order.address_key != first.address_key:
            raise FailedPrecondition(f"{order.name} ships to another address than {first.name}",
                                     reason="DIFFERENT_ADDRESS", metadata={"order": order.name})
        if order.merge_group not in (None, group):
            raise FailedPrecondition(f"{order.name} is merged with other orders; split it first",
                                     reason="ALREADY_MERGED", metadata={"order": order.name})
    names = [o.name for o in orders]
    for order in orders:
        if order.merge_group != group:
            order.merge_group = group
            order._note("merged", at, actor, {"orders": names, "into": order_name(group)})


def split(order: Order, group: Sequence[Order], *, actor: str, at: datetime) -> list[Order]:
    """Takes ``order`` out of its merged shipment; returns the orders that changed."""
    if order.merge_group is None:
        raise FailedPrecondition(f"{order.name} is not merged", reason="NOT_MERGED",
                                 metadata={"order": order.name})
    if order.release_time is not None:
        raise FailedPrecondition(f"{order.name} is already released", reason="ORDER_RELEASED",
                                 metadata={"order": order.name})
    others = [o for o in group if o.id != order.id and o.merge_group == order.merge_group]
    order.merge_group = None
    order._note("split", at, actor, {"from": [o.name for o in others]})
    changed = [order]
    new_group = None if len(others) < 2 else (
        others[0].merge_group if any(o.id == others[0].merge_group for o in others)
        else others[0].id)
    for other in others:
        if other.merge_group != new_group:
            other.merge_group = new_group
            other._note("split", at, actor, {"from": [order.name]})
        changed.append(other)
    return changed


UPDATABLE = frozenset({"tags", "gift_note", "priority", "promise_time"})
"""The fields UpdateOrder may change."""


def validate_update_mask(paths: Sequence[str]) -> Violations:
    violations = Violations()
    if not violations.require(0 < len(paths) <= len(UPDATABLE), "update_mask",
                              f"name 1 to {len(UPDATABLE)} of {sorted(UPDATABLE)}"):
        return violations
    for path in paths:
        violations.require(path in UPDATABLE, "update_mask",
                           f"{path!r} cannot be updated; only {sorted(UPDATABLE)}")
    return violations


def order_name(order_id: uuid.UUID) -> str:
    return f"orders/{order_id}"


def parse_order_name(name: str) -> uuid.UUID | None:
    """The id in ``orders/{uuid}`` (canonical lowercase form only), or None."""
    prefix, _, raw = name.partition("/")
    if prefix != "orders":
        return None
    try:
        order_id = uuid.UUID(raw)
    except ValueError:
        return None
    return order_id if str(order_id) == raw else None


def require_order_id(name: str, field: str = "name") -> uuid.UUID:
    """The id in an order's resource name; INVALID_ARGUMENT on ``field`` otherwise."""
    order_id = parse_order_name(name)
    if order_id is None:
        raise InvalidArgument([FieldViolation(field, 'must be "orders/{uuid}"')])
    return order_id


def order_not_found(name: str) -> NotFound:
    return NotFound(f"{name} not found", reason="ORDER_NOT_FOUND", metadata={"name": name})
