"""OAuth2 client credentials without servers: the token request's rules (RFC 6749 §4.4,
§2.3.1, §5.2), the tokens' signature, audience and expiry."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from oms_gateway.oauth.domain import (
    AUDIENCE,
    ISSUER,
    OAuthError,
    granted,
    issue,
    parse_form,
    verify,
)

SECRET = "s" * 40
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
FORM = "application/x-www-form-urlencoded"


def test_a_token_names_the_partner_and_scopes_and_lasts_its_ttl() -> None:
    token = issue("acme", frozenset({"orders:read", "orders:write"}), secret=SECRET,
                  ttl=timedelta(seconds=900), now=datetime.now(UTC))
    claims = verify(token, secret=SECRET, now=datetime.now(UTC))
    assert claims is not None
    assert (claims.partner_id, claims.scopes) == ("acme", {"orders:read", "orders:write"})
    assert verify(token, secret=SECRET, now=datetime.now(UTC) + timedelta(seconds=906)) is None
    decoded = jwt.decode(token, SECRET, algorithms=["HS256"], audience=AUDIENCE)
    assert decoded["iss"] == ISSUER and decoded["exp"] - decoded["iat"] == 900


def test_a_token_is_refused_when_expired_forged_or_not_for_this_api() -> None:
    now = datetime.now(UTC)
    expired = issue("acme", frozenset(), secret=SECRET, ttl=timedelta(seconds=900),
                    now=now - timedelta(seconds=1000))
    forged = issue("acme", frozenset({"orders:write"}), secret="x" * 40,
                   ttl=timedelta(seconds=900), now=now)
    claims = {"iss": ISSUER, "sub": "acme", "iat": int(now.timestamp()),
              "exp": int(now.timestamp()) + 900, "scope": "orders:read"}
    elsewhere = jwt.encode({**claims, "aud": "another-api"}, SECRET, algorithm="HS256")
    unsigned = jwt.encode({**claims, "aud": AUDIENCE}, None, algorithm="none")
    no_expiry = jwt.encode({k: v for k, v in {**claims, "aud": AUDIENCE}.items()
                            if k != "exp"}, SECRET, algorithm="HS256")
    for token in (expired, forged, elsewhere, unsigned, no_expiry, "a.b.c", ""):
        assert verify(token, secret=SECRET, now=now) is None, token


def _basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def test_the_client_authenticates_in_the_form_or_by_basic() -> None:
    in_form = parse_form(b"grant_type=client_credentials&client_id=acme&client_secret=k%2B1",
                         FORM, "")
    assert (in_form.client_id, in_form.client_secret, in_form.scopes) == ("acme", "k+1", None)
    by_basic = parse_form(b"grant_type=client_credentials&scope=orders:read+orders:write",
                          f"{FORM}; charset=utf-8", _basic("acme", "k%2B1"))
    assert (by_basic.client_id, by_basic.client_secret) == ("acme", "k+1")
    assert by_basic.scopes == {"orders:read", "orders:write"}


@pytest.mark.parametrize(("body", "content_type", "authorization", "error", "status"), [
    (b"grant_type=client_credentials&client_id=a&client_secret=b", "application/json", "",
     "invalid_request", 400),
    (b"client_id=a&client_secret=b", FORM, "", "invalid_request", 400),
    (b"grant_type=password&client_id=a&client_secret=b", FORM, "", "unsupported_grant_type",
     400),
    (b"grant_type=client_credentials&client_id=a", FORM, "", "invalid_client", 401),
    (b"grant_type=client_credentials", FORM, "", "invalid_client", 401),
    (b"grant_type=client_credentials&client_id=a&client_secret=b", FORM, _basic("a", "b"),
     "invalid_request", 400),
    (b"grant_type=client_credentials&grant_type=client_credentials", FORM, _basic("a", "b"),
     "invalid_request", 400),
    (b"grant_type=client_credentials", FORM, "Basic not-base64!", "invalid_client", 401),
    (b"grant_type=client_credentials&scope=", FORM, _basic("a", "b"), "invalid_scope", 400),
    (b"\xff\xfe", FORM, _basic("a", "b"), "invalid_request", 400),
], ids=["not-a-form", "no-grant", "password-grant", "no-secret", "no-client", "both-ways",
        "repeated", "bad-basic", "empty-scope", "not-ascii"])
def test_a_bad_token_request_is_its_oauth_error(
    body: bytes, content_type: str, authorization: str, error: str, status: int,
) -> None:
    with pytest.raises(OAuthError) as refused:
        parse_form(body, content_type, authorization)
    assert (refused.value.error, refused.value.status) == (error, status)


def test_a_token_carries_what_was_asked_never_more_than_the_partner_holds() -> None:
    held = frozenset({"orders:read", "orders:write"})
    assert granted(None, held) == held
    assert granted(frozenset({"orders:read"}), held) == {"orders:read"}
    with pytest.raises(OAuthError) as refused:
        granted(frozenset({"orders:read", "payments:write"}), held)
    assert refused.value.error == "invalid_scope" and "payments:write" in str(refused.value)
