"""Capture: what a new order must be to be accepted, and the order it becomes.

A channel's draft is validated as a whole (every violation at once, with the field paths of
CreateOrderRequest) against the limits below and the products the service knows; a valid
draft becomes an :class:`~oms_orders.lifecycle.domain.Order` with its first domain event.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

import pycountry
from oms_platform.errors import FieldViolation, InvalidArgument, Violations

from oms_orders.lifecycle.domain import (
    MAX_CHANNEL_LENGTH,
    MAX_EXTERNAL_ID_LENGTH,
    MAX_GIFT_NOTE_LENGTH,
    MAX_LINES,
    MAX_REQUEST_ID_LENGTH,
    PAID,
    UNPAID,
    Address,
    Customer,
    Money,
    MoneyDraft,
    Order,
    OrderLine,
    OrderPlaced,
    OrderStatus,
    Payment,
    PaymentKind,
    PaymentStatus,
    ServiceLevel,
    require_text,
    validate_money,
    validate_tags,
    validate_text,
)

CAPTURE_PAYMENT_STATUSES = frozenset({PaymentStatus.UNSPECIFIED, PaymentStatus.PENDING,
                                      PaymentStatus.AUTHORIZED, PaymentStatus.PAID})

MAX_SKU_LENGTH = 100
MAX_TEXT_LENGTH = 300
"""Each text of the customer and of the shipping address (names, lines, email, phone)."""
MAX_ADDRESS_LINES = 5
MAX_QUANTITY = 1_000_000
"""Units of one line: ``MAX_LINES * MAX_QUANTITY`` is below 2**31, so an order's item
count always fits the contract's int32."""
MAX_BATCH_ORDERS = 500
"""Orders per BatchCreateOrders (``OMS_ORDERS_MAX_BATCH_SIZE`` may lower it)."""

_REGION_CODE = re.compile(r"[A-Z]{2}")


def is_region(code: str) -> bool:
    return (
        _REGION_CODE.fullmatch(code) is not None
        and pycountry.countries.get(alpha_2=code) is not None
    )


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
    customer: Customer = field(default_factory=Customer)
    service_level: str = ServiceLevel.UNSPECIFIED
    payment_status: str = PaymentStatus.UNSPECIFIED
    priority: bool = False
    tags: Sequence[str] = ()
    gift_note: str = ""
    order_time: datetime | None = None
    promise_time: datetime | None = None


@dataclass(frozen=True)
class Product:
    """What the orders service keeps of the product master."""

    sku: str
    minimum_order_quantity: int = 0
    weight_grams: int = 0


@dataclass(frozen=True)
class CapturePolicy:
    """The configurable rules of capture."""

    payment_timeout: timedelta = timedelta(minutes=30)
    high_value_thresholds: Mapping[str, Decimal] = field(default_factory=dict)


def check_batch_size(count: int, limit: int) -> None:
    """INVALID_ARGUMENT on ``requests`` unless a batch holds 1 to ``limit`` orders."""
    if not 0 < count <= limit:
        raise InvalidArgument([FieldViolation("requests", f"1 to {limit} orders")])


def validate_new_order(
    draft: OrderDraft,
    *,
    request_id: str = "",
    products: Mapping[str, Product] | None = None,
    prefix: str = "order",
) -> Violations:
    """Every violation of a new order at once; field paths are those of CreateOrderRequest.

    ``products`` are the known products of the draft's SKUs: a line below its product's
    minimum order quantity is refused; a SKU not known here is accepted (inventory decides).
    """
    products = products or {}
    violations = Violations()
    require_text(violations, f"{prefix}.channel", draft.channel, MAX_CHANNEL_LENGTH)
    require_text(violations, f"{prefix}.external_order_id", draft.external_order_id,
                  MAX_EXTERNAL_ID_LENGTH)
    violations.require(bool(draft.lines), f"{prefix}.lines", "at least one line is required")
    # Beyond the bound the bound is the answer: a million lines are not checked one by one.
    lines = draft.lines if violations.require(
        len(draft.lines) <= MAX_LINES, f"{prefix}.lines", f"at most {MAX_LINES} lines") else ()
    order_currency: str | None = None
    for index, line in enumerate(lines):
        path = f"{prefix}.lines[{index}]"
        currency = _validate_line(violations, path, line)
        product = products.get(line.sku)
        if product and line.quantity > 0 and line.quantity < product.minimum_order_quantity:
            violations.add(
                f"{path}.quantity",
                f"{line.sku} is sold in at least {product.minimum_order_quantity} units",
            )
        order_currency = order_currency or currency
        if currency and currency != order_currency:
            violations.add(
                f"{path}.unit_price.currency_code",
                f"every line must be in the order's currency, {order_currency}",
            )
    if draft.shipping_address is None:
        violations.add(f"{prefix}.shipping_address", "required")
    else:
        _validate_address(violations, f"{prefix}.shipping_address", draft.shipping_address)
    _validate_customer(violations, f"{prefix}.customer", draft.customer)
    violations.require(
        draft.service_level in ServiceLevel.__members__, f"{prefix}.service_level",
        "unknown value",
    )
    violations.require(
        draft.payment_status in CAPTURE_PAYMENT_STATUSES, f"{prefix}.payment_status",
        "an order is captured PENDING, AUTHORIZED or PAID",
    )
    validate_tags(violations, f"{prefix}.tags", draft.tags)
    validate_text(violations, f"{prefix}.gift_note", draft.gift_note, MAX_GIFT_NOTE_LENGTH)
    validate_text(violations, prefix.removesuffix("order") + "request_id", request_id,
                  MAX_REQUEST_ID_LENGTH)
    return violations


def _validate_line(violations: Violations, path: str, line: LineDraft) -> str | None:
    """Checks one line; returns its currency when that is valid."""
    require_text(violations, f"{path}.sku", line.sku, MAX_SKU_LENGTH)
    validate_text(violations, f"{path}.external_line_id", line.external_line_id,
                  MAX_EXTERNAL_ID_LENGTH)
    if violations.require(line.quantity > 0, f"{path}.quantity", "must be at least 1"):
        violations.require(line.quantity <= MAX_QUANTITY, f"{path}.quantity",
                           f"at most {MAX_QUANTITY} units per line")
    price = line.unit_price
    if price is None:
        violations.add(f"{path}.unit_price", "required")
        return None
    return validate_money(violations, f"{path}.unit_price", price.currency_code, price.amount)


def _validate_customer(violations: Violations, path: str, customer: Customer) -> None:
    validate_text(violations, f"{path}.external_customer_id", customer.external_customer_id,
                  MAX_EXTERNAL_ID_LENGTH)
    for name in ("display_name", "email", "phone"):
        validate_text(violations, f"{path}.{name}", getattr(customer, name), MAX_TEXT_LENGTH)


def _validate_address(violations: Violations, path: str, address: Address) -> None:
    for name in ("recipient", "organization", "locality", "administrative_area",
                 "postal_code", "phone", "email"):
        validate_text(violations, f"{path}.{name}", getattr(address, name), MAX_TEXT_LENGTH)
    if violations.require(len(address.address_lines) <= MAX_ADDRESS_LINES,
                          f"{path}.address_lines", f"at most {MAX_ADDRESS_LINES} lines"):
        for index, text in enumerate(address.address_lines):
            validate_text(violations, f"{path}.address_lines[{index}]", text, MAX_TEXT_LENGTH)
    if address.location is not None:
        # Comparisons are False for NaN, so NaN is refused too (JSON could not store it).
        violations.require(-90 <= address.location.latitude <= 90,
                           f"{path}.location.latitude", "must be from -90 to 90")
        violations.require(-180 <= address.location.longitude <= 180,
                           f"{path}.location.longitude", "must be from -180 to 180")
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
    draft: OrderDraft,
    *,
    order_id: uuid.UUID,
    now: datetime,
    request_id: str = "",
    products: Mapping[str, Product] | None = None,
    policy: CapturePolicy | None = None,
    prefix: str = "order",
) -> Order:
    """A new order, or InvalidArgument listing every violation.

    An order captured without a payment status waits for one, like a web order: nothing
    ships unpaid unless the channel says it is paid.
    """
    products = products or {}
    policy = policy or CapturePolicy()
    validate_new_order(draft, request_id=request_id, products=products,
                       prefix=prefix).raise_if_any()
    assert draft.shipping_address is not None
    payment_status = PaymentStatus(draft.payment_status)
    if payment_status is PaymentStatus.UNSPECIFIED:
        payment_status = PaymentStatus.PENDING
    lines = [_order_line(n, line) for n, line in enumerate(draft.lines, start=1)]
    order = Order(
        id=order_id,
        channel=draft.channel,
        external_order_id=draft.external_order_id,
        customer=draft.customer,
        shipping_address=draft.shipping_address,
        lines=lines,
        service_level=ServiceLevel(draft.service_level),
        payment_status=payment_status,
        status=(OrderStatus.PENDING_ALLOCATION if payment_status in PAID
                else OrderStatus.PAYMENT_PENDING),
        create_time=now,
        update_time=now,
        priority_flag=draft.priority,
        tags=tuple(dict.fromkeys(draft.tags)),
        gift_note=draft.gift_note,
        order_time=draft.order_time or now,
        promise_time=draft.promise_time,
        payment_due_time=now + policy.payment_timeout if payment_status in UNPAID else None,
        weight_grams=sum(
            products[x.sku].weight_grams * x.quantity for x in lines if x.sku in products
        ),
    )
    threshold = policy.high_value_thresholds.get(order.currency_code)
    order.high_value = threshold is not None and order.total.amount >= threshold
    if payment_status in (PaymentStatus.AUTHORIZED, PaymentStatus.PAID):
        # The channel took the money: the payment history starts with it.
        kind = (PaymentKind.CAPTURE if payment_status is PaymentStatus.PAID
                else PaymentKind.AUTHORIZATION)
        order.payments.append(Payment(f"{order.channel}:{order.external_order_id}", kind,
                                      order.total, provider=order.channel, at=now))
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
