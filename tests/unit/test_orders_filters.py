"""The ListOrders/CountOrders filter without a server: what parses, and that everything
else is INVALID_ARGUMENT on `filter`."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from oms_orders.lifecycle.domain import OrderStatus
from oms_orders.search.domain import parse
from oms_platform.errors import InvalidArgument
from oms_platform.filtering import MAX_FILTER_LENGTH, MAX_FILTER_TERMS, Condition, Filter


def test_a_conjunction_of_terms_and_text_searches_parses() -> None:
    assert parse('status = RELEASED AND create_time >= "2025-11-01T00:00:00Z" AND '
                 'sku = "A \\"B\\" \\\\C" AND "Ada"') == Filter(
        conditions=(Condition("status", "=", OrderStatus.RELEASED),
               Condition("create_time", ">=", datetime(2025, 11, 1, tzinfo=UTC)),
               Condition("sku", "=", 'A "B" \\C')),
        text=("Ada",))
    assert parse("item_count > -999999999999999999").conditions[0].value == -999999999999999999
    assert parse(" AND ".join(["priority = true"] * MAX_FILTER_TERMS))


@pytest.mark.parametrize("expression", [
    'sku = "\\x"', 'sku = "\\n"', 'sku = "SKU', "colour = red", "priority = maybe",
    "create_time > 5", 'create_time > "2025-11-01"', "item_count > 1.5",
    "item_count > 9999999999999999999", "item_count > \u0663", 'sku = "a\x00"', "a\x00",
    "status = RELEASED AND", "status = RELEASED OR status = SHIPPED", "= RELEASED",
    "status = SHIPPING", 'tags = ""' + " AND x" * MAX_FILTER_TERMS, "x" * (MAX_FILTER_LENGTH + 1),
])
def test_a_malformed_filter_is_refused_on_the_filter_field(expression: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        parse(expression)
    assert [v.field for v in refused.value.violations] == ["filter"]
