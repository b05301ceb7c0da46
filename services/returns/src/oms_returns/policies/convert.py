"""Return policies between their protos, the rules' values and their stored JSON."""

from __future__ import annotations

from typing import Any

from oms.common.v1 import common_pb2
from oms.returns.v1 import returns_pb2
from oms_platform.errors import Violations
from oms_platform.money import Money, check_money
from oms_platform.values import timestamp
from sqlalchemy import Row

from oms_returns.policies.domain import Condition, Outcome, Policy

PREFIX = "returnPolicies/"


def name_of(policy_id: str) -> str:
    return f"{PREFIX}{policy_id}"


def money_of(violations: Violations, path: str, message: Any, field: str) -> Money | None:
    if not message.HasField(field):
        return None
    value = getattr(message, field)
    return check_money(violations, f"{path}{field}", value.currency_code, value.amount)


def money_message(value: Money | None) -> common_pb2.Money | None:
    return None if value is None else common_pb2.Money(currency_code=value.currency_code,
                                                       amount=f"{value.amount:f}")


def _enums(violations: Violations, path: str, values: Any, kind: Any) -> tuple[Any, ...]:
    found = []
    for index, value in enumerate(values):
        try:
            found.append(kind(value))
        except ValueError:
            violations.add(f"{path}[{index}]", f"must be a {kind.__name__} of the contract")
    return tuple(dict.fromkeys(found))


def policy_from_request(violations: Violations, request: returns_pb2.CreateReturnPolicyRequest
                        ) -> Policy:
    message, path = request.return_policy, "return_policy."
    return Policy(
        policy_id=request.return_policy_id, channel=message.channel, sku=message.sku,
        category=message.category, category_sku_prefixes=tuple(message.category_sku_prefixes),
        window_days=message.window_days,
        conditions=_enums(violations, f"{path}conditions", message.conditions, Condition),
        non_returnable=message.non_returnable,
        customer_pays_return_shipping=message.customer_pays_return_shipping,
        return_shipping_fee=money_of(violations, path, message, "return_shipping_fee"),
        restocking_fee_bps=message.restocking_fee_bps,
        restocking_fee=money_of(violations, path, message, "restocking_fee"),
        outcomes=_enums(violations, f"{path}outcomes", message.outcomes, Outcome),
        keep_it_below=money_of(violations, path, message, "keep_it_below"),
        auto_approve=message.auto_approve)


def _money_json(value: Money | None) -> dict[str, str] | None:
    return None if value is None else {"currency_code": value.currency_code,
                                       "amount": f"{value.amount:f}"}


def _money_from(stored: dict[str, str] | None) -> Money | None:
    return None if stored is None else Money.of(stored["currency_code"], stored["amount"])


def terms_json(policy: Policy) -> dict[str, Any]:
    """The terms as stored: everything but the id and the scope columns."""
    return {
        "category_sku_prefixes": list(policy.category_sku_prefixes),
        "window_days": policy.window_days,
        "conditions": [c.name for c in policy.conditions],
        "non_returnable": policy.non_returnable,
        "customer_pays_return_shipping": policy.customer_pays_return_shipping,
        "return_shipping_fee": _money_json(policy.return_shipping_fee),
        "restocking_fee_bps": policy.restocking_fee_bps,
        "restocking_fee": _money_json(policy.restocking_fee),
        "outcomes": [o.name for o in policy.outcomes],
        "keep_it_below": _money_json(policy.keep_it_below),
        "auto_approve": policy.auto_approve,
    }


def policy_of(row: Row[Any]) -> Policy:
    terms = row.terms
    return Policy(
        policy_id=row.id, channel=row.channel, sku=row.sku, category=row.category,
        category_sku_prefixes=tuple(terms["category_sku_prefixes"]),
        window_days=terms["window_days"],
        conditions=tuple(Condition[c] for c in terms["conditions"]),
        non_returnable=terms["non_returnable"],
        customer_pays_return_shipping=terms["customer_pays_return_shipping"],
        return_shipping_fee=_money_from(terms["return_shipping_fee"]),
        restocking_fee_bps=terms["restocking_fee_bps"],
        restocking_fee=_money_from(terms["restocking_fee"]),
        outcomes=tuple(Outcome[o] for o in terms["outcomes"]),
        keep_it_below=_money_from(terms["keep_it_below"]),
        auto_approve=terms["auto_approve"])


def policy_message(row: Row[Any]) -> returns_pb2.ReturnPolicy:
    policy = policy_of(row)
    return returns_pb2.ReturnPolicy(
        name=name_of(policy.policy_id), channel=policy.channel, sku=policy.sku,
        category=policy.category, category_sku_prefixes=policy.category_sku_prefixes,
        window_days=policy.window_days,
        conditions=[int(c) for c in policy.conditions],  # type: ignore[misc]
        non_returnable=policy.non_returnable,
        customer_pays_return_shipping=policy.customer_pays_return_shipping,
        return_shipping_fee=money_message(policy.return_shipping_fee),
        restocking_fee_bps=policy.restocking_fee_bps,
        restocking_fee=money_message(policy.restocking_fee),
        outcomes=[int(o) for o in policy.outcomes],  # type: ignore[misc]
        keep_it_below=money_message(policy.keep_it_below), auto_approve=policy.auto_approve,
        create_time=timestamp(row.create_time))
