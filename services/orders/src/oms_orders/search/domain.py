"""Searching orders: the ListOrders / CountOrders filter, an AIP-160 conjunction parsed
without SQL.

``status = RELEASED AND region_code = "DE" AND create_time >= "2025-11-01T00:00:00Z"``: terms
``field op value`` joined by AND; a bare value (quoted or not) is a text search over the order
number, the customer's name and email, and the SKUs. OR and parentheses are not supported:
the back office's filters are conjunctions, and they map onto indexed columns one to one.
In a quoted value ``\"`` is a quote and ``\\`` a backslash; no other escape is defined.

The grammar, its bounds and its refusals are the platform's (:mod:`oms_platform.filtering`),
the same for every list of the suite; this module declares the fields, and what CountOrders
sums up for the back office's tiles.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from oms_platform import filtering
from oms_platform.filtering import Filter

from oms_orders.lifecycle.domain import OrderStatus, PaymentStatus

FIELDS: dict[str, filtering.Field] = {
    "status": filtering.enum(OrderStatus.__members__, prefix="ORDER_STATUS_"),
    "payment_status": filtering.enum(PaymentStatus.__members__, prefix="PAYMENT_STATUS_"),
    "channel": filtering.text("=", "!="),
    "region_code": filtering.text("=", "!="),
    "customer": filtering.text("="),
    "sku": filtering.text("=", ":"),
    "tags": filtering.text(":", "="),
    "priority": filtering.boolean("="),
    "high_value": filtering.boolean("="),
    "merged": filtering.boolean("="),
    "create_time": filtering.time(),
    "order_time": filtering.time(),
    "ship_time": filtering.time(),
    "promise_time": filtering.time(),
    "weight_grams": filtering.integer(),
    "item_count": filtering.integer(),
}


def parse(expression: str) -> Filter:
    """The parsed filter, or INVALID_ARGUMENT on field ``filter`` saying what is wrong."""
    return filtering.parse(expression, FIELDS, text_search=True)


MAX_PAGE_SIZE = 500
"""Orders per ListOrders page; a larger ``page_size`` is read as this."""


@dataclass(frozen=True)
class Summary:
    """What the back office's tiles show of the orders a CountOrders matched."""

    payment_required: int
    waiting_for_stock: int
    ready_to_release: int
    ready_to_ship: int
    on_hold: int
    in_transit: int
    total: int


def summarize(counts: Mapping[OrderStatus, int]) -> Summary:
    S = OrderStatus
    return Summary(
        payment_required=counts.get(S.PAYMENT_PENDING, 0),
        waiting_for_stock=counts.get(S.PENDING_ALLOCATION, 0) + counts.get(S.AWAITING_STOCK, 0),
        ready_to_release=counts.get(S.ALLOCATED, 0),
        ready_to_ship=counts.get(S.RELEASED, 0) + counts.get(S.PARTIALLY_SHIPPED, 0),
        on_hold=counts.get(S.ON_HOLD, 0),
        in_transit=counts.get(S.SHIPPED, 0),
        total=sum(counts.values()),
    )
