"""Money as written on the wire, checked the same way in every service."""

from __future__ import annotations

from decimal import Decimal

import pytest
from oms_platform.errors import Violations
from oms_platform.money import Money, check_money


def check(currency: str, amount: str, *,
          positive: bool = False) -> tuple[Money | None, dict[str, str]]:
    violations = Violations()
    money = check_money(violations, "price", currency, amount, positive=positive)
    return money, {v.field: v.description for v in violations.items}


def test_valid_money_comes_back_in_the_currency_s_minor_units() -> None:
    assert check("EUR", "5") == (Money("EUR", Decimal("5.00")), {})
    assert check("JPY", "1200") == (Money("JPY", Decimal("1200")), {})
    assert check("KWD", "1.125") == (Money("KWD", Decimal("1.125")), {})


@pytest.mark.parametrize(("currency", "amount", "field"), [
    ("EUX", "1.00", "price.currency_code"),   # three letters, but no ISO 4217 currency
    ("eur", "1.00", "price.currency_code"),
    ("EUR", "1e3", "price.amount"),
    ("EUR", "1.005", "price.amount"),        # EUR has two fraction digits
    ("JPY", "1.5", "price.amount"),
    ("EUR", "-1.00", "price.amount"),
    ("EUR", "", "price.amount"),
    ("EUR", "1" * 19, "price.amount"),
])
def test_faults_name_their_field(currency: str, amount: str, field: str) -> None:
    money, faults = check(currency, amount)
    assert money is None
    assert field in faults


def test_positive_refuses_zero() -> None:
    assert check("EUR", "0.00")[0] == Money("EUR", Decimal("0.00"))
    assert check("EUR", "0.00", positive=True) == (None, {"price.amount": "must be more than zero"})


def test_arithmetic_stays_in_one_currency() -> None:
    assert Money.of("EUR", "1.10") + Money.of("EUR", "2.05") == Money.of("EUR", "3.15")
    assert Money.of("EUR", "3.15") - Money.of("EUR", "2.05") == Money.of("EUR", "1.10")
    with pytest.raises(ValueError):
        Money.of("EUR", "1") + Money.of("USD", "1")
