"""The order aggregate and its rules: validation, money, and the status state machine."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

import pycountry
from oms_platform.errors import FailedPrecondition, Violations


class OrderStatus(StrEnum):
    PENDING_ALLOCATION = "PENDING_ALLOCATION"
    AWAITING_STOCK = "AWAITING_STOCK"
    ALLOCATED = "ALLOCATED"


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


TRANSITIONS: Mapping[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.PENDING_ALLOCATION: frozenset(
        {OrderStatus.AWAITING_STOCK, OrderStatus.ALLOCATED}
    ),
    OrderStatus.AWAITING_STOCK: frozenset({OrderStatus.ALLOCATED}),
    OrderStatus.ALLOCATED: frozenset(),
}

# ISO 4217 minor units of the currencies that do not use two fraction digits.
MINOR_UNITS: Mapping[str, int] = {
    **dict.fromkeys(
        ["BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI",
         "VND", "VUV", "XAF", "XOF", "XPF"],
        0,
    ),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
    **dict.fromkeys(["CLF", "UYW"], 4),
}

MAX_REQUEST_ID_LENGTH = 100
MAX_CHANNEL_LENGTH = 100
MAX_EXTERNAL_ID_LENGTH = 200
MAX_SKU_LENGTH = 100

_CURRENCY_CODE = re.compile(r"[A-Z]{3}")
_REGION_CODE = re.compile(r"[A-Z]{2}")
_AMOUNT = re.compile(r"-?(?P<units>\d{1,18})(?:\.(?P<fraction>\d+))?")


class InvalidAllocation(FailedPrecondition):
    """Inventory reported stock that does not match the order's lines."""

    reason = "INVALID_ALLOCATION"


class IllegalTransition(FailedPrecondition):
    reason = "ILLEGAL_STATUS_TRANSITION"


def minor_units(currency_code: str) -> int:
    return MINOR_UNITS.get(currency_code, 2)


def is_currency(code: str) -> bool:
    return (
        _CURRENCY_CODE.fullmatch(code) is not None
        and pycountry.currencies.get(alpha_3=code) is not None
    )


def is_region(code: str) -> bool:
    return (
        _REGION_CODE.fullmatch(code) is not None
        and pycountry.countries.get(alpha_2=code) is not None
    )


@dataclass(frozen=True)
class Money:
    currency_code: str
    amount: Decimal

    @classmethod
    def of(cls, currency_code: str, amount: Decimal | str | int) -> Money:
        """Money in a currency's minor units: ``Money.of("EUR", "5")`` is 5.00 EUR."""
        exponent = Decimal(1).scaleb(-minor_units(currency_code))
        return cls(currency_code, Decimal(amount).quantize(exponent))

    def __add__(self, other: Money) -> Money:
        if other.currency_code != self.currency_code:
            raise ValueError(f"cannot add {other.currency_code} to {self.currency_code}")
        return Money.of(self.currency_code, self.amount + other.amount)

    def __mul__(self, quantity: int) -> Money:
        return Money.of(self.currency_code, self.amount * quantity)

    def __str__(self) -> str:
        return f"{self.amount:f} {self.currency_code}"


@dataclass(frozen=True)
class LatLng:
    latitude: float
    longitude: float


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


@dataclass(frozen=True)
class LineDraft:
    sku: str
    quantity: int
    unit_price: MoneyDraft | None
    external_line_id: str = ""


@dataclass(frozen=True)
class OrderDraft:
    """An order as a channel submits it, before validation."""

    channel: str
    external_order_id: str
    lines: Sequence[LineDraft]
    shipping_address: Address | None
    customer: Customer = Customer()
    service_level: str = ServiceLevel.UNSPECIFIED
    payment_status: str = PaymentStatus.UNSPECIFIED


@dataclass(frozen=True)
class OrderLine:
    line_id: str
    sku: str
    quantity: int
    unit_price: Money
    external_line_id: str = ""


@dataclass(frozen=True)
class AllocatedLine:
    line_id: str
    sku: str
    quantity: int


@dataclass(frozen=True)
class Allocation:
    node_id: str
    lines: tuple[AllocatedLine, ...]


@dataclass(frozen=True)
class BackorderedLine:
    line_id: str
    sku: str
    quantity: int


@dataclass(frozen=True)
class OrderPlaced:
    at: datetime


@dataclass(frozen=True)
class StatusChanged:
    previous: OrderStatus
    status: OrderStatus
    at: datetime
    detail: Mapping[str, Any] = field(default_factory=dict)


DomainEvent = OrderPlaced | StatusChanged


def validate_new_order(draft: OrderDraft, *, request_id: str = "") -> Violations:
    """Every violation of a new order at once; field paths are those of CreateOrderRequest."""
    violations = Violations()
    _require_text(violations, "order.channel", draft.channel, MAX_CHANNEL_LENGTH)
    _require_text(
        violations, "order.external_order_id", draft.external_order_id, MAX_EXTERNAL_ID_LENGTH
    )
    violations.require(bool(draft.lines), "order.lines", "at least one line is required")
    order_currency: str | None = None
    for index, line in enumerate(draft.lines):
        path = f"order.lines[{index}]"
        currency = _validate_line(violations, path, line)
        order_currency = order_currency or currency
        if currency and currency != order_currency:
            violations.add(
                f"{path}.unit_price.currency_code",
                f"every line must be in the order's currency, {order_currency}",
            )
    if draft.shipping_address is None:
        violations.add("order.shipping_address", "required")
    else:
        _validate_address(violations, "order.shipping_address", draft.shipping_address)
    violations.require(
        draft.service_level in ServiceLevel.__members__, "order.service_level", "unknown value"
    )
    violations.require(
        draft.payment_status in PaymentStatus.__members__, "order.payment_status", "unknown value"
    )
    violations.require(
        len(request_id) <= MAX_REQUEST_ID_LENGTH,
        "request_id",
        f"at most {MAX_REQUEST_ID_LENGTH} characters",
    )
    return violations


def _require_text(violations: Violations, path: str, value: str, max_length: int) -> None:
    if violations.require(bool(value.strip()), path, "required"):
        violations.require(len(value) <= max_length, path, f"at most {max_length} characters")


def _validate_line(violations: Violations, path: str, line: LineDraft) -> str | None:
    """Checks one line; returns its currency when that is valid."""
    _require_text(violations, f"{path}.sku", line.sku, MAX_SKU_LENGTH)
    violations.require(
        len(line.external_line_id) <= MAX_EXTERNAL_ID_LENGTH,
        f"{path}.external_line_id",
        f"at most {MAX_EXTERNAL_ID_LENGTH} characters",
    )
    violations.require(line.quantity > 0, f"{path}.quantity", "must be at least 1")
    price = line.unit_price
    if price is None:
        violations.add(f"{path}.unit_price", "required")
        return None
    currency_ok = violations.require(
        is_currency(price.currency_code),
        f"{path}.unit_price.currency_code",
        "must be an ISO 4217 currency code such as EUR",
    )
    match = _AMOUNT.fullmatch(price.amount)
    if not match:
        violations.add(f"{path}.unit_price.amount", 'must be a decimal number such as "19.99"')
    elif price.amount.startswith("-"):
        violations.add(f"{path}.unit_price.amount", "must not be negative")
    elif currency_ok and len(match["fraction"] or "") > minor_units(price.currency_code):
        violations.add(
            f"{path}.unit_price.amount",
            f"{price.currency_code} allows at most {minor_units(price.currency_code)}"
            " fraction digits",
        )
    return price.currency_code if currency_ok else None


def _validate_address(violations: Violations, path: str, address: Address) -> None:
    violations.require(bool(address.recipient.strip()), f"{path}.recipient", "required")
    violations.require(
        bool(address.address_lines and address.address_lines[0].strip()),
        f"{path}.address_lines[0]",
        "required",
    )
    violations.require(bool(address.locality.strip()), f"{path}.locality", "required")
    violations.require(bool(address.postal_code.strip()), f"{path}.postal_code", "required")
    if violations.require(bool(address.region_code), f"{path}.region_code", "required"):
        violations.require(
            is_region(address.region_code),
            f"{path}.region_code",
            "must be an ISO 3166-1 alpha-2 country code such as DE",
        )


def place_order(
    draft: OrderDraft, *, order_id: uuid.UUID, now: datetime, request_id: str = ""
) -> Order:
    """A new order awaiting allocation, or InvalidArgument listing every violation."""
    validate_new_order(draft, request_id=request_id).raise_if_any()
    assert draft.shipping_address is not None
    order = Order(
        id=order_id,
        channel=draft.channel,
        external_order_id=draft.external_order_id,
        customer=draft.customer,
        shipping_address=draft.shipping_address,
        lines=tuple(_order_line(n, line) for n, line in enumerate(draft.lines, start=1)),
        service_level=ServiceLevel(draft.service_level),
        payment_status=PaymentStatus(draft.payment_status),
        status=OrderStatus.PENDING_ALLOCATION,
        create_time=now,
        update_time=now,
    )
    order.events.append(OrderPlaced(now))
    return order


def _order_line(number: int, line: LineDraft) -> OrderLine:
    assert line.unit_price is not None
    return OrderLine(
        line_id=str(number),
        sku=line.sku,
        quantity=line.quantity,
        unit_price=Money.of(line.unit_price.currency_code, line.unit_price.amount),
        external_line_id=line.external_line_id,
    )


@dataclass
class Order:
    id: uuid.UUID
    channel: str
    external_order_id: str
    customer: Customer
    shipping_address: Address
    lines: tuple[OrderLine, ...]
    service_level: ServiceLevel
    payment_status: PaymentStatus
    status: OrderStatus
    create_time: datetime
    update_time: datetime
    allocations: tuple[Allocation, ...] = ()
    events: list[DomainEvent] = field(default_factory=list, compare=False, repr=False)

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

    def allocate(self, allocations: Sequence[Allocation], *, at: datetime) -> bool:
        """Every unit is reserved. Returns whether the order changed.

        A repeated allocation is a no-op: the first one reported stays.
        """
        if self.status is OrderStatus.ALLOCATED:
            return False
        self._check_allocations(allocations)
        self.allocations = tuple(allocations)
        self._move_to(
            OrderStatus.ALLOCATED,
            at,
            {"allocations": [_allocation_detail(a) for a in allocations]},
        )
        return True

    def backorder(self, lines: Sequence[BackorderedLine], *, at: datetime) -> bool:
        """Some units could not be reserved. Returns whether the order changed.

        Once allocated an order never waits for stock again, so a backorder reported
        late (or redelivered after the allocation) changes nothing.
        """
        if self.status in (OrderStatus.AWAITING_STOCK, OrderStatus.ALLOCATED):
            return False
        ordered = {line.line_id: line for line in self.lines}
        for line in lines:
            known = ordered.get(line.line_id)
            if known is None or not 0 < line.quantity <= known.quantity:
                raise InvalidAllocation(
                    f"backordered line {line.line_id!r} x{line.quantity} does not match"
                    f" {self.name}",
                    metadata={"order": self.name, "line_id": line.line_id},
                )
        self._move_to(
            OrderStatus.AWAITING_STOCK,
            at,
            {"backordered": [
                {"line_id": b.line_id, "sku": b.sku, "quantity": b.quantity} for b in lines
            ]},
        )
        return True

    def _check_allocations(self, allocations: Sequence[Allocation]) -> None:
        reserved = {line.line_id: 0 for line in self.lines}
        skus = {line.line_id: line.sku for line in self.lines}
        for allocation in allocations:
            for line in allocation.lines:
                if line.line_id not in reserved or line.sku != skus[line.line_id]:
                    raise InvalidAllocation(
                        f"allocated line {line.line_id!r} ({line.sku}) is not in {self.name}",
                        metadata={"order": self.name, "line_id": line.line_id},
                    )
                reserved[line.line_id] += line.quantity
        for ordered in self.lines:
            if reserved[ordered.line_id] != ordered.quantity:
                raise InvalidAllocation(
                    f"line {ordered.line_id!r} of {self.name} has {reserved[ordered.line_id]}"
                    f" of {ordered.quantity} units allocated",
                    metadata={"order": self.name, "line_id": ordered.line_id},
                )

    def _move_to(self, status: OrderStatus, at: datetime, detail: Mapping[str, Any]) -> None:
        if status not in TRANSITIONS[self.status]:
            raise IllegalTransition(
                f"{self.name} cannot go from {self.status} to {status}",
                metadata={"order": self.name, "from": self.status, "to": status},
            )
        self.events.append(StatusChanged(self.status, status, at, detail))
        self.status = status
        self.update_time = at


def _allocation_detail(allocation: Allocation) -> dict[str, Any]:
    return {
        "node_id": allocation.node_id,
        "lines": [
            {"line_id": line.line_id, "sku": line.sku, "quantity": line.quantity}
            for line in allocation.lines
        ],
    }


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

