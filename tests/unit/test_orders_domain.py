"""Capturing an order without a server: validation, money, special orders, names.

The lifecycle (the state machine) is tested in test_orders_lifecycle.py."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from oms_orders.capture.domain import (
    MAX_ADDRESS_LINES,
    MAX_QUANTITY,
    MAX_TEXT_LENGTH,
    CapturePolicy,
    LineDraft,
    OrderDraft,
    Product,
    place_order,
    validate_new_order,
)
from oms_orders.lifecycle.domain import (
    MAX_LINES,
    MAX_TAGS,
    Address,
    Customer,
    LatLng,
    Money,
    MoneyDraft,
    Order,
    OrderPlaced,
    OrderStatus,
    PaymentDraft,
    PaymentKind,
    PaymentStatus,
    ServiceLevel,
    address_key,
    customer_key,
    parse_order_name,
    validate_payment,
)
from oms_platform.errors import InvalidArgument

NOW = datetime(2025, 11, 23, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)

ADDRESS = Address(
    recipient="Ada Lovelace",
    address_lines=("12 Marylebone Road",),
    locality="London",
    postal_code="NW1 5LR",
    region_code="GB",
)


def line(sku: str = "SKU-1", quantity: int = 1, amount: str = "19.99",
         currency: str = "EUR") -> LineDraft:
    return LineDraft(sku=sku, quantity=quantity, unit_price=MoneyDraft(currency, amount))


def draft(**changes: Any) -> OrderDraft:
    base = OrderDraft(
        channel="shopify-main",
        external_order_id=f"#{uuid.uuid4().hex[:8]}",
        lines=[line("SKU-1", 3, "19.99"), line("SKU-2", 1, "0.10")],
        shipping_address=ADDRESS,
        payment_status="PAID",
    )
    return replace(base, **changes)


def new_order(**changes: Any) -> Order:
    order = place_order(draft(**changes), order_id=uuid.uuid4(), now=NOW)
    order.events.clear()
    return order


def violation_fields(order_draft: OrderDraft, request_id: str = "") -> list[str]:
    return [v.field for v in validate_new_order(order_draft, request_id=request_id).items]


# --- placing an order -----------------------------------------------------------------------


def test_a_placed_order_awaits_allocation_with_numbered_lines_and_a_decimal_total() -> None:
    order = place_order(draft(), order_id=uuid.uuid4(), now=NOW)

    assert order.status is OrderStatus.PENDING_ALLOCATION
    assert [x.line_id for x in order.lines] == ["1", "2"]
    assert order.total == Money("EUR", Decimal("60.07"))
    assert order.name == f"orders/{order.id}"
    assert order.events == [OrderPlaced(NOW)]
    assert order.create_time == order.update_time == NOW


def test_amounts_are_kept_in_the_minor_units_of_their_currency() -> None:
    order = new_order(lines=[line(amount="5", quantity=3)])
    assert order.lines[0].unit_price.amount.as_tuple().exponent == -2
    assert str(order.total) == "15.00 EUR"

    yen = new_order(lines=[line(amount="1500", currency="JPY", quantity=2)])
    assert str(yen.total) == "3000 JPY"

    dinar = new_order(lines=[line(amount="1.125", currency="BHD", quantity=3)])
    assert str(dinar.total) == "3.375 BHD"


def test_money_never_rounds_like_a_float() -> None:
    assert Money.of("EUR", "0.10") * 3 == Money.of("EUR", "0.30")
    assert Money.of("EUR", "0.1") + Money.of("EUR", "0.2") == Money("EUR", Decimal("0.30"))
    with pytest.raises(ValueError):
        _ = Money.of("EUR", 1) + Money.of("USD", 1)


def test_an_invalid_draft_is_refused_with_every_violation() -> None:
    with pytest.raises(InvalidArgument) as refused:
        place_order(draft(channel="", lines=[]), order_id=uuid.uuid4(), now=NOW)
    assert [v.field for v in refused.value.violations] == ["order.channel", "order.lines"]


# --- validation -----------------------------------------------------------------------------


def test_a_valid_draft_has_no_violations() -> None:
    assert violation_fields(draft(), request_id="r" * 100) == []


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"channel": ""}, "order.channel"),
        ({"channel": "   "}, "order.channel"),
        ({"channel": "c" * 101}, "order.channel"),
        ({"external_order_id": ""}, "order.external_order_id"),
        ({"lines": []}, "order.lines"),
        ({"lines": [line(sku="")]}, "order.lines[0].sku"),
        ({"lines": [line(), line(quantity=0)]}, "order.lines[1].quantity"),
        ({"lines": [line(quantity=-2)]}, "order.lines[0].quantity"),
        ({"lines": [LineDraft("SKU-1", 1, None)]}, "order.lines[0].unit_price"),
        ({"lines": [line(currency="XXY")]}, "order.lines[0].unit_price.currency_code"),
        ({"lines": [line(currency="eur")]}, "order.lines[0].unit_price.currency_code"),
        ({"lines": [line(currency="")]}, "order.lines[0].unit_price.currency_code"),
        ({"lines": [line(amount="-1.00")]}, "order.lines[0].unit_price.amount"),
        ({"lines": [line(amount="abc")]}, "order.lines[0].unit_price.amount"),
        ({"lines": [line(amount="")]}, "order.lines[0].unit_price.amount"),
        ({"lines": [line(amount="NaN")]}, "order.lines[0].unit_price.amount"),
        ({"lines": [line(amount="1e3")]}, "order.lines[0].unit_price.amount"),
        ({"lines": [line(amount="19.999")]}, "order.lines[0].unit_price.amount"),
        ({"lines": [line(amount="100.5", currency="JPY")]}, "order.lines[0].unit_price.amount"),
        ({"lines": [line(amount="1.2345", currency="KWD")]}, "order.lines[0].unit_price.amount"),
        ({"lines": [line(), line(currency="USD")]}, "order.lines[1].unit_price.currency_code"),
        ({"shipping_address": None}, "order.shipping_address"),
        ({"shipping_address": replace(ADDRESS, recipient="")}, "order.shipping_address.recipient"),
        ({"shipping_address": replace(ADDRESS, address_lines=())},
         "order.shipping_address.address_lines[0]"),
        ({"shipping_address": replace(ADDRESS, address_lines=(" ", "Flat 2"))},
         "order.shipping_address.address_lines[0]"),
        ({"shipping_address": replace(ADDRESS, locality="")}, "order.shipping_address.locality"),
        ({"shipping_address": replace(ADDRESS, postal_code="")},
         "order.shipping_address.postal_code"),
        ({"shipping_address": replace(ADDRESS, region_code="")},
         "order.shipping_address.region_code"),
        ({"shipping_address": replace(ADDRESS, region_code="XX")},
         "order.shipping_address.region_code"),
        ({"shipping_address": replace(ADDRESS, region_code="gb")},
         "order.shipping_address.region_code"),
        ({"service_level": "7"}, "order.service_level"),
        ({"payment_status": "REFUNDED"}, "order.payment_status"),
        ({"lines": [line(quantity=MAX_QUANTITY + 1)]}, "order.lines[0].quantity"),
        ({"lines": [line()] * (MAX_LINES + 1)}, "order.lines"),
        ({"lines": [line(sku="SKU\x00")]}, "order.lines[0].sku"),
        ({"customer": Customer(email="e" * (MAX_TEXT_LENGTH + 1))}, "order.customer.email"),
        ({"shipping_address": replace(ADDRESS, address_lines=("1",) * (MAX_ADDRESS_LINES + 1))},
         "order.shipping_address.address_lines"),
        ({"shipping_address": replace(ADDRESS, recipient="Ada\x00")},
         "order.shipping_address.recipient"),
        ({"shipping_address": replace(ADDRESS, location=LatLng(91, 0))},
         "order.shipping_address.location.latitude"),
        ({"shipping_address": replace(ADDRESS, location=LatLng(0, float("nan")))},
         "order.shipping_address.location.longitude"),
        ({"tags": [f"t{n}" for n in range(MAX_TAGS + 1)]}, "order.tags"),
        ({"tags": ["vip\x00"]}, "order.tags[0]"),
        ({"gift_note": "\x00"}, "order.gift_note"),
    ],
)
def test_each_invalid_field_is_named(changes: dict[str, Any], field: str) -> None:
    assert violation_fields(draft(**changes)) == [field]


def test_the_largest_order_still_counts_its_units_in_32_bits() -> None:
    assert MAX_LINES * MAX_QUANTITY < 2**31
    biggest = draft(lines=[line(f"SKU-{n}", MAX_QUANTITY) for n in range(MAX_LINES)])
    assert violation_fields(biggest) == []
    assert new_order(lines=biggest.lines).item_count == MAX_LINES * MAX_QUANTITY


def test_the_request_id_is_at_most_100_characters() -> None:
    assert violation_fields(draft(), request_id="r" * 101) == ["request_id"]


def test_amounts_with_as_many_fraction_digits_as_the_currency_allows_are_valid() -> None:
    for amount, currency in [("0", "EUR"), ("0.00", "EUR"), ("19.9", "EUR"), ("1500", "JPY"),
                             ("12", "KRW"), ("1.125", "BHD"), ("0.001", "TND")]:
        assert violation_fields(draft(lines=[line(amount=amount, currency=currency)])) == []


def test_several_violations_are_reported_at_once() -> None:
    broken = draft(
        external_order_id="",
        lines=[line(sku="", quantity=0, amount="-5"), line(currency="XXY")],
        shipping_address=replace(ADDRESS, locality="", region_code="ZZ"),
    )
    assert violation_fields(broken, request_id="x" * 200) == [
        "order.external_order_id",
        "order.lines[0].sku",
        "order.lines[0].quantity",
        "order.lines[0].unit_price.amount",
        "order.lines[1].unit_price.currency_code",
        "order.shipping_address.locality",
        "order.shipping_address.region_code",
        "request_id",
    ]


# --- capture rules: payment, special orders, product master ---------------------------------


def test_a_paid_order_starts_its_payment_history_with_the_channels_capture() -> None:
    order = new_order()
    assert order.payment_status is PaymentStatus.PAID
    assert order.payment_due_time is None
    [payment] = order.payments
    assert (payment.kind, payment.amount) == (PaymentKind.CAPTURE, order.total)


@pytest.mark.parametrize("status", ["PENDING", "UNSPECIFIED"])
def test_an_unpaid_order_waits_for_its_payment_until_it_is_due(status: str) -> None:
    policy = CapturePolicy(payment_timeout=timedelta(minutes=10))
    order = place_order(draft(payment_status=status), order_id=uuid.uuid4(), now=NOW,
                        policy=policy)
    assert order.status is OrderStatus.PAYMENT_PENDING
    assert order.payment_status is PaymentStatus.PENDING
    assert order.payment_due_time == NOW + timedelta(minutes=10)
    assert order.payments == []


@pytest.mark.parametrize(("level", "flag", "priority"), [
    ("EXPRESS", False, True), ("NEXT_DAY", False, True), ("STANDARD", False, False),
    ("STANDARD", True, True), ("UNSPECIFIED", False, False),
])
def test_priority_comes_from_the_service_level_or_the_flag(
    level: str, flag: bool, priority: bool
) -> None:
    order = new_order(service_level=level, priority=flag)
    assert order.service_level is ServiceLevel(level)
    assert order.priority is priority


def test_an_order_is_high_value_from_its_currencys_threshold() -> None:
    policy = CapturePolicy(high_value_thresholds={"EUR": Decimal("60.07")})
    at_threshold = place_order(draft(), order_id=uuid.uuid4(), now=NOW, policy=policy)
    below = place_order(draft(lines=[line(amount="60.06")]), order_id=uuid.uuid4(), now=NOW,
                        policy=policy)
    other_currency = place_order(draft(lines=[line(amount="1000", currency="USD")]),
                                 order_id=uuid.uuid4(), now=NOW, policy=policy)
    assert (at_threshold.high_value, below.high_value, other_currency.high_value) == (
        True, False, False)


def test_minimum_order_quantities_of_known_products_are_enforced() -> None:
    products = {"SKU-1": Product("SKU-1", minimum_order_quantity=4, weight_grams=250)}
    assert [v.field for v in validate_new_order(draft(), products=products).items] == [
        "order.lines[0].quantity"]
    order = place_order(draft(lines=[line("SKU-1", 4), line("SKU-NEW", 2)]),
                        order_id=uuid.uuid4(), now=NOW, products=products)
    assert order.weight_grams == 1000  # an unknown SKU is accepted and weighs nothing here


def test_tags_and_gift_notes_are_bounded() -> None:
    assert violation_fields(draft(tags=["vip", " x", ""], gift_note="n" * 501)) == [
        "order.tags[1]", "order.tags[2]", "order.gift_note"]
    assert new_order(tags=["vip", "vip", "gift"]).tags == ("vip", "gift")


def test_one_customer_and_one_address_are_recognised_across_channels() -> None:
    ada = Customer(email=" Ada@Example.com", external_customer_id="42")
    assert customer_key("amazon-de", ada) == customer_key("shopify", replace(
        ada, email="ada@example.com", external_customer_id="7"))
    assert customer_key("amazon-de", Customer(external_customer_id="42")) != customer_key(
        "ebay", Customer(external_customer_id="42"))
    assert customer_key("amazon-de", Customer()) == ""
    assert address_key(ADDRESS) == address_key(replace(
        ADDRESS, recipient="ada  LOVELACE", locality="london"))
    assert address_key(ADDRESS) != address_key(replace(ADDRESS, postal_code="NW1 6XE"))


# --- names ----------------------------------------------------------------------------------


def test_order_names_are_orders_slash_a_canonical_uuid() -> None:
    order_id = uuid.uuid4()
    assert parse_order_name(f"orders/{order_id}") == order_id
    for bad in ["", "orders/", f"order/{order_id}", f"orders/{order_id}/x",
                f"orders/{str(order_id).upper()}", f"orders/{order_id.hex}", "orders/42"]:
        assert parse_order_name(bad) is None


# --- reported payments ----------------------------------------------------------------------


def payment(kind: str = "CAPTURE", amount: str | None = "60.07", **changes: Any) -> PaymentDraft:
    money = MoneyDraft("EUR", amount) if amount is not None else None
    return replace(PaymentDraft("pi_1", kind, money, provider="stripe"), **changes)


@pytest.mark.parametrize(("draft", "fields"), [
    (payment(), []),
    (payment("FAILURE", None), []),
    (payment("FAILURE", "0"), []),
    (payment(amount="0"), ["payment.amount.amount"]),
    (payment("REFUND", "0.00"), ["payment.amount.amount"]),
    (payment("AUTHORIZATION", "-1"), ["payment.amount.amount"]),
    (payment(amount=None), ["payment.amount"]),
    (payment(amount="1.001"), ["payment.amount.amount"]),
    (payment("UNSPECIFIED"), ["payment.kind"]),
    (payment(transaction_id=" "), ["payment.transaction_id"]),
    (payment(message="m" * 501, provider="p" * 101), ["payment.provider", "payment.message"]),
], ids=["capture", "failure-without-amount", "failure-of-nothing", "capture-of-nothing",
        "refund-of-nothing", "negative", "no-amount", "fraction", "no-kind", "no-id", "long"])
def test_a_reported_payment_is_validated_before_the_order_is_read(
    draft: PaymentDraft, fields: list[str],
) -> None:
    assert [v.field for v in validate_payment(draft).items] == fields
