"""The order aggregate without a server: validation, money, and the status state machine."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from oms_orders.domain import (
    Address,
    AllocatedLine,
    Allocation,
    BackorderedLine,
    InvalidAllocation,
    LineDraft,
    Money,
    MoneyDraft,
    Order,
    OrderDraft,
    OrderPlaced,
    OrderStatus,
    StatusChanged,
    parse_order_name,
    place_order,
    validate_new_order,
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
    )
    return replace(base, **changes)


def new_order(**changes: Any) -> Order:
    order = place_order(draft(**changes), order_id=uuid.uuid4(), now=NOW)
    order.events.clear()
    return order


def violation_fields(order_draft: OrderDraft, request_id: str = "") -> list[str]:
    return [v.field for v in validate_new_order(order_draft, request_id=request_id).items]


def full_allocation(order: Order, node: str = "node-1") -> list[Allocation]:
    return [Allocation(node, tuple(AllocatedLine(x.line_id, x.sku, x.quantity)
                                   for x in order.lines))]


def backordered(order: Order) -> list[BackorderedLine]:
    first = order.lines[0]
    return [BackorderedLine(first.line_id, first.sku, first.quantity)]


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
    ],
)
def test_each_invalid_field_is_named(changes: dict[str, Any], field: str) -> None:
    assert violation_fields(draft(**changes)) == [field]


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


# --- the state machine ----------------------------------------------------------------------


def test_allocation_moves_a_pending_order_to_allocated() -> None:
    order = new_order()
    allocations = full_allocation(order)

    assert order.allocate(allocations, at=LATER) is True

    assert order.status is OrderStatus.ALLOCATED
    assert order.allocations == tuple(allocations)
    assert order.update_time == LATER
    [change] = order.events
    assert isinstance(change, StatusChanged)
    assert (change.previous, change.status) == (
        OrderStatus.PENDING_ALLOCATION, OrderStatus.ALLOCATED)


def test_a_backorder_moves_a_pending_order_to_awaiting_stock() -> None:
    order = new_order()

    assert order.backorder(backordered(order), at=LATER) is True

    assert order.status is OrderStatus.AWAITING_STOCK
    assert order.allocations == ()
    assert [(e.previous, e.status) for e in order.events if isinstance(e, StatusChanged)] == [
        (OrderStatus.PENDING_ALLOCATION, OrderStatus.AWAITING_STOCK)]


def test_stock_arriving_later_allocates_an_order_awaiting_stock() -> None:
    order = new_order()
    order.backorder(backordered(order), at=NOW)

    assert order.allocate(full_allocation(order), at=LATER) is True

    assert order.status is OrderStatus.ALLOCATED
    assert [(e.previous, e.status) for e in order.events if isinstance(e, StatusChanged)] == [
        (OrderStatus.PENDING_ALLOCATION, OrderStatus.AWAITING_STOCK),
        (OrderStatus.AWAITING_STOCK, OrderStatus.ALLOCATED),
    ]


def test_a_late_backorder_never_moves_an_allocated_order_back() -> None:
    order = new_order()
    order.allocate(full_allocation(order), at=NOW)
    order.events.clear()

    assert order.backorder(backordered(order), at=LATER) is False

    assert order.status is OrderStatus.ALLOCATED
    assert order.update_time == NOW
    assert order.events == []


def test_a_repeated_allocation_is_a_no_op_and_keeps_the_first() -> None:
    order = new_order()
    first = full_allocation(order, "node-1")
    order.allocate(first, at=NOW)
    order.events.clear()

    assert order.allocate(full_allocation(order, "node-2"), at=LATER) is False

    assert order.allocations == tuple(first)
    assert order.events == []


def test_a_repeated_backorder_is_a_no_op() -> None:
    order = new_order()
    order.backorder(backordered(order), at=NOW)
    order.events.clear()

    assert order.backorder(backordered(order), at=LATER) is False

    assert order.status is OrderStatus.AWAITING_STOCK
    assert order.events == []


def test_an_allocation_may_split_a_line_across_nodes() -> None:
    order = new_order(lines=[line("SKU-1", 5)])
    split = [Allocation("node-1", (AllocatedLine("1", "SKU-1", 2),)),
             Allocation("node-2", (AllocatedLine("1", "SKU-1", 3),))]

    assert order.allocate(split, at=LATER) is True


@pytest.mark.parametrize(
    "allocated",
    [
        [AllocatedLine("1", "SKU-1", 3)],
        [AllocatedLine("1", "SKU-1", 3), AllocatedLine("2", "SKU-2", 2)],
        [AllocatedLine("1", "SKU-1", 3), AllocatedLine("2", "OTHER", 1)],
        [AllocatedLine("1", "SKU-1", 3), AllocatedLine("2", "SKU-2", 1),
         AllocatedLine("9", "SKU-9", 1)],
        [],
    ],
    ids=["line-missing", "too-many-units", "wrong-sku", "unknown-line", "empty"],
)
def test_an_allocation_that_does_not_match_the_order_is_refused(
    allocated: list[AllocatedLine],
) -> None:
    order = new_order()

    with pytest.raises(InvalidAllocation):
        order.allocate([Allocation("node-1", tuple(allocated))], at=LATER)

    assert order.status is OrderStatus.PENDING_ALLOCATION
    assert order.allocations == ()
    assert order.events == []


@pytest.mark.parametrize(
    "line_backordered",
    [BackorderedLine("9", "SKU-9", 1), BackorderedLine("1", "SKU-1", 4),
     BackorderedLine("1", "SKU-1", 0)],
    ids=["unknown-line", "more-than-ordered", "zero"],
)
def test_a_backorder_that_does_not_match_the_order_is_refused(
    line_backordered: BackorderedLine,
) -> None:
    order = new_order()

    with pytest.raises(InvalidAllocation):
        order.backorder([line_backordered], at=LATER)

    assert order.status is OrderStatus.PENDING_ALLOCATION


@given(st.lists(st.sampled_from(["allocated", "backordered"]), max_size=12))
def test_no_sequence_of_events_moves_an_order_back_from_allocated(kinds: list[str]) -> None:
    """Deliveries of an allocation and a backorder, duplicated and in any order."""
    order = new_order()
    seen_allocated = False
    for kind in kinds:
        if kind == "allocated":
            order.allocate(full_allocation(order), at=LATER)
            seen_allocated = True
        else:
            order.backorder(backordered(order), at=LATER)
        if seen_allocated:
            assert order.status is OrderStatus.ALLOCATED

    changes = [(e.previous, e.status) for e in order.events if isinstance(e, StatusChanged)]
    assert all(previous is not OrderStatus.ALLOCATED for previous, _ in changes)
    assert len(changes) == len(set(changes))
    expected = (OrderStatus.ALLOCATED if "allocated" in kinds
                else OrderStatus.AWAITING_STOCK if kinds
                else OrderStatus.PENDING_ALLOCATION)
    assert order.status is expected


# --- names ----------------------------------------------------------------------------------


def test_order_names_are_orders_slash_a_canonical_uuid() -> None:
    order_id = uuid.uuid4()
    assert parse_order_name(f"orders/{order_id}") == order_id
    for bad in ["", "orders/", f"order/{order_id}", f"orders/{order_id}/x",
                f"orders/{str(order_id).upper()}", f"orders/{order_id.hex}", "orders/42"]:
        assert parse_order_name(bad) is None
