"""Money, the same in every service: an ISO 4217 currency and a Decimal amount, never a float.

On the wire money is ``oms.common.v1.Money`` with the amount as a decimal string; this
module checks that string as written (no exponent, no more fraction digits than the
currency has) and gives the :class:`Money` the rules compute with."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

import pycountry

from oms_platform.errors import Violations

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

_CURRENCY_CODE = re.compile(r"[A-Z]{3}")
_AMOUNT = re.compile(r"-?(?P<units>\d{1,18})(?:\.(?P<fraction>\d+))?")


def minor_units(currency_code: str) -> int:
    return MINOR_UNITS.get(currency_code, 2)


def is_currency(code: str) -> bool:
    return (
        _CURRENCY_CODE.fullmatch(code) is not None
        and pycountry.currencies.get(alpha_3=code) is not None
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

    def __sub__(self, other: Money) -> Money:
        if other.currency_code != self.currency_code:
            raise ValueError(f"cannot subtract {other.currency_code} from {self.currency_code}")
        return Money.of(self.currency_code, self.amount - other.amount)

    def __mul__(self, quantity: int) -> Money:
        return Money.of(self.currency_code, self.amount * quantity)

    def __str__(self) -> str:
        return f"{self.amount:f} {self.currency_code}"


def check_money(violations: Violations, path: str, currency_code: str, amount: str, *,
                positive: bool = False) -> Money | None:
    """Checks money as written, adding a violation under ``path`` for each fault; the Money
    when it is valid. Amounts are never negative; ``positive`` also refuses zero."""
    currency_ok = violations.require(
        is_currency(currency_code),
        f"{path}.currency_code",
        "must be an ISO 4217 currency code such as EUR",
    )
    match = _AMOUNT.fullmatch(amount)
    if not match:
        violations.add(f"{path}.amount", 'must be a decimal number such as "19.99"')
        return None
    if positive and Decimal(amount) <= 0:
        violations.add(f"{path}.amount", "must be more than zero")
        return None
    if amount.startswith("-"):
        violations.add(f"{path}.amount", "must not be negative")
        return None
    if not currency_ok:
        return None
    if len(match["fraction"] or "") > minor_units(currency_code):
        violations.add(
            f"{path}.amount",
            f"{currency_code} allows at most {minor_units(currency_code)} fraction digits",
        )
        return None
    return Money.of(currency_code, amount)
