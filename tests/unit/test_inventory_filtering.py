"""Inventory's list filters and field checks without a server."""

from __future__ import annotations

import pytest
from oms_inventory.catalogue.domain import (
    PRODUCT_FILTER_FIELDS,
    Bin,
    check_bins,
    check_regions,
    check_time_of_day,
    check_time_zone,
)
from oms_platform import filtering
from oms_platform.errors import InvalidArgument, Violations
from oms_platform.filtering import Condition
from oms_platform.money import check_money

FIELDS = {**PRODUCT_FILTER_FIELDS, "regions": filtering.member()}


def parse_filter(text: str, fields: dict[str, filtering.Field]) -> list[Condition]:
    return list(filtering.parse(text, fields).conditions)


def test_conditions_joined_by_and() -> None:
    assert parse_filter('sku = "MUG-*" AND fragile = true AND title : "blue mug"', FIELDS) == [
        Condition("sku", "prefix", "MUG-"),
        Condition("fragile", "=", True),
        Condition("title", ":", "blue mug"),
    ]
    assert parse_filter("backorder_policy != DENY", FIELDS) == [
        Condition("backorder_policy", "!=", "DENY")]
    assert parse_filter('sku="A\\"B"', FIELDS) == [Condition("sku", "=", 'A"B')]
    assert parse_filter('title = "café \U0001f600"', FIELDS) == [
        Condition("title", "=", "café \U0001f600")]
    assert len(parse_filter(" AND ".join(["sku = x"] * 20), FIELDS)) == 20
    assert parse_filter("", FIELDS) == []
    assert parse_filter("   ", FIELDS) == []


@pytest.mark.parametrize("text", [
    "colour = red",  # unknown field
    "fragile = yes",  # not a boolean
    'fragile = "true"',  # a quoted boolean is a string
    "backorder_policy = MAYBE",  # not an allowed value
    "fragile : true",  # operator the field does not support
    "sku = A OR sku = B",  # OR is not supported
    "sku = A sku = B",  # missing AND
    "sku =",  # missing value
    "sku = = A",
    "sku = A*B*",  # only a trailing wildcard
    "sku = A AND",
    "(sku = A)",
    'sku = "\\x"',  # only \" and \\ are escapes
    'sku = "\\u00e9"',  # UTF-8 is written as it is
    'sku = "abc',  # unterminated
    'sku = "a\tb"',  # a raw control character inside quotes
    'sku = "a\x00"',  # NUL: no PostgreSQL text holds it
    "fragile = 18446744073709551616",  # a number where a boolean belongs
    "sku = " + "x" * 3000,  # too long
    " AND ".join(["sku = x"] * 21),  # too many conditions
])
def test_what_is_not_understood_is_refused(text: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        parse_filter(text, FIELDS)
    assert [v.field for v in refused.value.violations] == ["filter"]


def fields_of(violations: Violations) -> list[str]:
    return [v.field for v in violations.items]


def test_regions_time_zones_times_and_money() -> None:
    violations = Violations()
    check_regions(violations, "r", ["US", "US-CA", "us", "USA", "US-CA"])
    check_time_zone(violations, "tz", "America/Los_Angeles")
    check_time_zone(violations, "tz", "Mars/Olympus")
    check_time_zone(violations, "tz", "")
    check_time_of_day(violations, "cut", 17, 30, 0, 0)
    check_time_of_day(violations, "cut", 24, 0, 0, 0)
    check_money(violations, "cost", "USD", "4.95")
    check_money(violations, "cost", "usd", "-1")
    check_money(violations, "fee", "ABC", "1")  # three letters, but no ISO 4217 currency
    assert fields_of(violations) == ["r[2]", "r[3]", "r[4]", "tz", "cut", "cost.currency_code",
                                     "cost.amount", "fee.currency_code"]


def test_bins_are_checked() -> None:
    violations = Violations()
    check_bins(violations, "bins", [Bin("A-1", "z", 1), Bin("A-1", "z", 2), Bin("", "", -1)])
    assert fields_of(violations) == ["bins[1].bin_code", "bins[2].bin_code", "bins[2].zone",
                                     "bins[2].walk_sequence"]
