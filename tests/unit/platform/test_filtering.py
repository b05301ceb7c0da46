"""The one AIP-160 filter parser: what it accepts, what each term becomes, what it refuses."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum

import pytest
from oms_platform import filtering
from oms_platform.errors import InvalidArgument
from oms_platform.filtering import Condition


class Status(Enum):
    NEW = "NEW"
    RELEASED = "RELEASED"


FIELDS = {
    "status": filtering.enum(Status.__members__, prefix="ORDER_STATUS_"),
    "sku": filtering.text(wildcard=True),
    "gtin": filtering.text("=", "!="),
    "count": filtering.integer(),
    "created": filtering.time(),
    "fragile": filtering.boolean(),
    "tags": filtering.member(),
}


def parse(expression: str, *, text_search: bool = False) -> filtering.Filter:
    return filtering.parse(expression, FIELDS, text_search=text_search)


def refusal(expression: str, *, text_search: bool = False) -> str:
    with pytest.raises(InvalidArgument) as caught:
        parse(expression, text_search=text_search)
    (violation,) = caught.value.violations
    assert violation.field == "filter"
    return violation.description


def test_an_empty_filter_has_no_terms() -> None:
    assert parse("") == filtering.Filter()
    assert parse("   ") == filtering.Filter()


def test_terms_come_back_typed() -> None:
    parsed = parse('status = ORDER_STATUS_RELEASED AND count >= 3 AND fragile = true AND '
                   'created < "2025-11-01T00:00:00Z" AND tags:gift AND sku != "A\\"B"')
    assert parsed.conditions == (
        Condition("status", "=", Status.RELEASED),
        Condition("count", ">=", 3),
        Condition("fragile", "=", True),
        Condition("created", "<", datetime(2025, 11, 1, tzinfo=UTC)),
        Condition("tags", ":", "gift"),
        Condition("sku", "!=", 'A"B'),
    )


def test_a_trailing_star_is_a_prefix_where_the_field_allows_it() -> None:
    assert parse('sku = "TSHIRT-*"').conditions == (Condition("sku", "prefix", "TSHIRT-"),)
    assert parse("gtin = 123*").conditions == (Condition("gtin", "=", "123*"),)
    assert "trailing" in refusal("sku = A*B*")


def test_bare_values_search_text_only_where_the_list_offers_it() -> None:
    assert parse('status = NEW AND "Ada Lovelace"', text_search=True).text == ("Ada Lovelace",)
    assert "not a term" in refusal("Ada")
    assert "empty" in refusal('""', text_search=True)


@pytest.mark.parametrize(("expression", "says"), [
    ('sku = "unterminated', "not closed"),
    ("sku = A OR sku = B", "joined by AND"),
    ("sku = A sku = B", "joined by AND"),
    ("(sku = A)", "cannot read"),
    ("NOT sku = A", "joined by AND"),
    ("sku =", "ends too early"),
    ("sku = A AND", "ends too early"),
    ("sku = = A", "unexpected"),
    ("colour = red", "unknown field 'colour'"),
    ("gtin : 12", "takes = !="),
    ("status = SHIPPED", "one of NEW, RELEASED"),
    ("fragile = maybe", "true or false"),
    ('fragile = "true"', "unquoted"),
    ('sku = "a\tb"', "control character"),
    ("count = 99999999999999999999", "whole number"),
    ("count = 1.5", "whole number"),
    ('created > "2025-11-01"', "time zone"),
    ('created > "yesterday"', "RFC 3339"),
])
def test_malformed_filters_are_refused_with_a_reason(expression: str, says: str) -> None:
    assert says in refusal(expression)


def test_only_quote_and_backslash_escapes_are_defined() -> None:
    assert parse('sku = "\\\\ \\""').conditions == (Condition("sku", "=", '\\ "'),)
    assert "unknown escape \\x" in refusal('sku = "\\x"')


def test_what_the_database_cannot_compare_is_refused() -> None:
    assert "NUL" in refusal('sku = "a\x00"')
    assert "whole number" in refusal("count = \u0663")  # an Arabic-Indic three


def test_filters_are_bounded() -> None:
    assert "terms" in refusal(" AND ".join(["count = 1"] * (filtering.MAX_FILTER_TERMS + 1)))
    assert "characters" in refusal("sku = " + "A" * filtering.MAX_FILTER_LENGTH)
