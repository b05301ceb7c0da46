"""Shipping rules, pure: what the merchant charges the customer (free over a basket value,
flat per service level), evaluated before carrier rates, the first that applies winning."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from oms_platform.money import Money

from oms_shipping.carriers.domain import Level


@dataclass(frozen=True)
class ShippingRule:
    rule_id: str
    priority: int
    display_name: str = ""
    service_levels: frozenset[Level] = frozenset()
    destination_countries: frozenset[str] = frozenset()
    min_basket_value: Money | None = None
    free: bool = False
    flat_price: Money | None = None

    def applies(self, level: Level, country: str, basket_value: Money | None) -> bool:
        if self.service_levels and level not in self.service_levels:
            return False
        if self.destination_countries and country not in self.destination_countries:
            return False
        if self.min_basket_value is not None:
            if basket_value is None \
                    or basket_value.currency_code != self.min_basket_value.currency_code:
                return False
            if basket_value.amount < self.min_basket_value.amount:
                return False
        return True

    def customer_price(self, currency_code: str) -> Money:
        if self.free or self.flat_price is None:
            return Money.of(currency_code, 0)
        return self.flat_price


def first_rule(rules: Iterable[ShippingRule], level: Level, country: str,
               basket_value: Money | None) -> ShippingRule | None:
    """The first rule by priority (then id) whose conditions hold."""
    for rule in sorted(rules, key=lambda r: (r.priority, r.rule_id)):
        if rule.applies(level, country, basket_value):
            return rule
    return None
