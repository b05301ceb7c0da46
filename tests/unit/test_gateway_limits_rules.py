"""The rate limits' rules without a server: configuration, the IETF fields, the bound on the
partners tracked, and the document's 429 on every operation."""

from __future__ import annotations

import pytest
from oms_gateway.app import create_app
from oms_gateway.auth import TOKEN_PATH
from oms_gateway.partners.domain import Kind, Partner
from oms_gateway.rate_limits import RateLimits, parse, policies
from oms_gateway.settings import GatewaySettings


def partner(partner_id: str, kind: Kind = Kind.SALES_CHANNEL) -> Partner:
    return Partner(partner_id=partner_id, kind=kind, name=partner_id,
                   channels=frozenset({"web"}), scopes=frozenset())


def test_kinds_keep_their_defaults_unless_configured_and_bad_limits_are_refused() -> None:
    by_kind, by_partner = policies({"carrier": "7/second"}, {"acme": "1/minute;10/hour"})
    assert [str(i) for i in by_kind[Kind.CARRIER]] == ["7 per 1 second"]
    assert [str(i) for i in by_kind[Kind.SALES_CHANNEL]] == ["50 per 1 second",
                                                             "1800 per 1 minute"]
    assert [i.amount for i in by_partner["acme"]] == [1, 10]
    with pytest.raises(ValueError, match="unknown partner kinds"):
        policies({"shop": "1/second"}, {})
    with pytest.raises(ValueError, match="partner acme"):
        policies({}, {"acme": "lots"})
    with pytest.raises(ValueError, match="no quota"):
        parse("0/second", where="test")


async def test_the_fields_name_each_quota_and_what_is_left() -> None:
    limits = RateLimits(*policies({"sales_channel": "2/minute;5/hour"}, {}), max_partners=10)
    first = await limits.spend(partner("a"))
    assert first.allowed
    assert first.headers() == {
        "RateLimit-Policy": '"2 per 1 minute";q=2;w=60, "5 per 1 hour";q=5;w=3600',
        "RateLimit": '"2 per 1 minute";r=1;t=60, "5 per 1 hour";r=4;t=3600',
    }
    await limits.spend(partner("a"))
    refused = await limits.spend(partner("a"))
    assert not refused.allowed
    assert [q.remaining for q in refused.quotas] == [0, 3], "a refusal spends nothing"
    assert 1 <= refused.retry_after <= 60, "the minute's quota is the one to wait for"


async def test_beyond_the_bound_the_least_recently_seen_partner_is_forgotten() -> None:
    limits = RateLimits(*policies({"sales_channel": "1/minute"}, {}), max_partners=2)
    for name in ("a", "b"):
        assert (await limits.spend(partner(name))).allowed
    assert not (await limits.spend(partner("a"))).allowed  # a is now the most recent
    assert (await limits.spend(partner("c"))).allowed  # b is forgotten
    assert not (await limits.spend(partner("a"))).allowed, "a is still tracked"
    assert (await limits.spend(partner("b"))).allowed, "b starts afresh"


def test_every_operation_documents_the_429_and_the_budget_on_its_answers() -> None:
    document = create_app(GatewaySettings(
        database_url="postgresql+psycopg://unused/unused")).openapi()
    for path, item in document["paths"].items():
        if path == TOKEN_PATH:
            continue
        for method, spec in item.items():
            responses = spec["responses"]
            assert "Retry-After" in responses["429"]["headers"], (method, path)
            for status, response in responses.items():
                headers = response.get("headers", {})
                expected = status != "401"
                assert ("RateLimit" in headers and "RateLimit-Policy" in headers) is expected, (
                    method, path, status)
