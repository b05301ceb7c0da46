"""The webhooks' pure rules: signatures checked as Standard Webhooks has them (and made so
that the library verifies them), the retry schedule's figures, endpoint URLs, who hears of
an event, and which payments a provider may report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from oms_gateway.partners.domain import Kind, Partner
from oms_gateway.webhooks.domain import (
    Owners,
    Payment,
    may_subscribe,
    payment_is_theirs,
    retry_delay,
    url_violation,
)
from oms_gateway.webhooks.signing import check, new_secret, signed_headers
from standardwebhooks import Webhook

BODY = b'{"events":[]}'


def partner(kind: Kind, **bound: frozenset[str]) -> Partner:
    return Partner(partner_id="p", kind=kind, name="p", channels=bound.get("channels",
                   frozenset()), scopes=frozenset(), carriers=bound.get("carriers", frozenset()),
                   nodes=bound.get("nodes", frozenset()))


def test_a_signature_made_here_is_verified_by_the_library_and_by_the_check() -> None:
    secret = new_secret()
    now = datetime.now(UTC)
    headers = signed_headers(secret, "msg_1", BODY, now=now)
    assert headers["webhook-timestamp"] == str(int(now.timestamp()))
    assert headers["webhook-signature"].startswith("v1,")
    assert check(headers, BODY, [secret]) is None
    # As a receiver would, at the time it arrives.
    assert Webhook(secret).verify(BODY, signed_headers(secret, "msg_1", BODY)) == {"events": []}


def test_a_rotated_secret_still_verifies_during_the_overlap() -> None:
    old, new = new_secret(), new_secret()
    assert check(signed_headers(old, "m", BODY), BODY, [new, old]) is None


@pytest.mark.parametrize(("change", "status", "field"), [
    (lambda h: h.update({"webhook-signature": "v1,AAAA"}), 401, "webhook-signature"),
    (lambda h: h.update({"webhook-signature": "v1"}), 401, "webhook-signature"),
    (lambda h: h.pop("webhook-signature"), 401, "webhook-signature"),
    (lambda h: h.update({"webhook-id": "msg_other"}), 401, "webhook-signature"),
    (lambda h: h.pop("webhook-id"), 400, "webhook-id"),
    (lambda h: h.update({"webhook-timestamp": "soon"}), 400, "webhook-timestamp"),
    (lambda h: h.update({"webhook-timestamp": "9" * 30}), 400, "webhook-timestamp"),
], ids=["wrong", "malformed", "missing", "another-id", "no-id", "not-a-number", "far-future"])
def test_what_does_not_verify_is_refused_naming_the_header(change, status, field) -> None:  # type: ignore[no-untyped-def]
    secret = new_secret()
    headers = signed_headers(secret, "msg_1", BODY, now=datetime.now(UTC))
    change(headers)
    refusal = check(headers, BODY, [secret])
    assert refusal is not None and (refusal.status, refusal.field) == (status, field)


def test_the_timestamp_may_be_five_minutes_off_and_no_more() -> None:
    secret = new_secret()
    # Ten seconds' margin either side of the bound: the clock runs on during the test.
    for offset, fresh in ((timedelta(minutes=4, seconds=50), True),
                          (-timedelta(minutes=4, seconds=50), True),
                          (timedelta(minutes=5, seconds=10), False),
                          (-timedelta(minutes=5, seconds=10), False)):
        headers = signed_headers(secret, "m", BODY, now=datetime.now(UTC) - offset)
        refusal = check(headers, BODY, [secret])
        assert (refusal is None) is fresh, offset
        if not fresh:
            assert refusal is not None and refusal.status == 400


def test_a_tampered_body_or_another_partners_secret_is_a_401() -> None:
    secret = new_secret()
    headers = signed_headers(secret, "m", BODY, now=datetime.now(UTC))
    for body, secrets in ((b'{"events":[1]}', [secret]), (BODY, [new_secret()]), (BODY, [])):
        refusal = check(headers, body, secrets)
        assert refusal is not None and refusal.status == 401


def test_retries_double_from_the_base_up_to_the_cap() -> None:
    base, cap = timedelta(seconds=60), timedelta(hours=6)
    waits = [retry_delay(n, base, cap).total_seconds() / 60 for n in range(1, 12)]
    assert waits == [1, 2, 4, 8, 16, 32, 64, 128, 256, 360, 360]
    # With the defaults (12 attempts), the last comes 1,231 minutes (20.5 h) after the first.
    assert sum(waits) == 1231
    assert retry_delay(500, base, cap) == cap


@pytest.mark.parametrize(("url", "private_ok", "bad"), [
    ("https://partner.example.com/hooks", False, False),
    ("http://203.0.113.7:8080/x", False, True),  # documentation range: not global
    ("http://8.8.8.8/x", False, False),
    ("http://127.0.0.1:9000/x", False, True),
    ("http://127.0.0.1:9000/x", True, False),
    ("http://10.1.2.3/x", False, True),
    ("http://localhost/x", False, True),
    ("ftp://partner.example.com/x", True, True),
    ("https://user:pw@partner.example.com/", True, True),
    ("https:///nohost", True, True),
    ("https://partner.example.com:99999/", True, True),
    ("", True, True),
])
def test_endpoint_urls(url: str, private_ok: bool, bad: bool) -> None:
    assert (url_violation(url, allow_private=private_ok) is not None) is bad


def test_who_may_subscribe_and_who_hears_of_an_event() -> None:
    shop = partner(Kind.SALES_CHANNEL, channels=frozenset({"web", "app"}))
    tpl = partner(Kind.THREE_PL, nodes=frozenset({"fra"}))
    assert may_subscribe(shop, "order.created") and not may_subscribe(shop, "fulfilment.requested")
    assert may_subscribe(tpl, "fulfilment.requested") and not may_subscribe(tpl, "order.created")
    assert not may_subscribe(shop, "order.eaten")
    assert Owners(channels=frozenset({"web"})).entitle(shop)
    assert Owners(channels=frozenset({"web", "app"})).entitle(shop)
    # A merged shipment with another channel's order is no one channel's to hear of.
    assert not Owners(channels=frozenset({"web", "other"})).entitle(shop)
    assert not Owners().entitle(shop), "an order nobody knows is nobody's"
    assert Owners(node="fra").entitle(tpl) and not Owners(node="ber").entitle(tpl)
    assert not Owners(node="fra").entitle(shop)
    assert not Owners(channels=frozenset({"web"})).entitle(tpl)


def test_a_provider_reports_only_its_own_payments() -> None:
    capture = Payment("pi_1", "PAYMENT_KIND_CAPTURE", "stripe-acme")
    assert payment_is_theirs([], "pi_1", "PAYMENT_KIND_CAPTURE", "stripe-acme")
    assert payment_is_theirs([capture], "pi_1", "PAYMENT_KIND_CAPTURE", "stripe-acme")
    assert payment_is_theirs([capture], "re_1", "PAYMENT_KIND_REFUND", "stripe-acme")
    # Another provider: not the same transaction, no refund of a capture it did not make,
    # and no report on an order whose money another took.
    assert not payment_is_theirs([capture], "pi_1", "PAYMENT_KIND_CAPTURE", "adyen-acme")
    assert not payment_is_theirs([capture], "re_2", "PAYMENT_KIND_REFUND", "adyen-acme")
    assert not payment_is_theirs([capture], "pi_2", "PAYMENT_KIND_CAPTURE", "adyen-acme")
    assert not payment_is_theirs([], "re_3", "PAYMENT_KIND_REFUND", "stripe-acme")
    failed = Payment("pi_0", "PAYMENT_KIND_FAILURE", "adyen-acme")
    assert payment_is_theirs([failed], "pi_1", "PAYMENT_KIND_CAPTURE", "stripe-acme"), (
        "a declined attempt elsewhere leaves the order open to another provider")


def test_the_readmes_worked_example_is_what_the_library_signs() -> None:
    signature = Webhook("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").sign(
        "msg_p5jXN8AQM9LWM0D4loKWxJek", datetime.fromtimestamp(1614265330, UTC),
        '{"test": 2432232314}')
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
