"""Access tokens and the token request's rules: pure, no database or web framework.

Tokens are JWTs signed with HS256 under one secret shared by the gateway's replicas: the
gateway is both the issuer and the only audience, so an asymmetric key (EdDSA) would buy
nothing a partner could use — nobody else verifies these tokens — and would add a key pair
to manage. A token names the partner (``sub``) and its scopes; the partner is still looked
up on every request, so revoking it ends its tokens at once rather than at their expiry.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import parse_qsl, unquote

import jwt

ALGORITHM = "HS256"
ISSUER = "oms-gateway"
AUDIENCE = "oms-partner-api"
GRANT_TYPE = "client_credentials"
# Replicas' clocks differ a little; a token is not refused for being a few seconds early/late.
LEEWAY = timedelta(seconds=5)
MAX_FORM_BYTES = 4096


@dataclass(frozen=True)
class Claims:
    partner_id: str
    scopes: frozenset[str]
    expires_at: datetime


class OAuthError(Exception):
    """An error answer of the token endpoint (RFC 6749 §5.2): ``error`` is its code."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status


def issue(partner_id: str, scopes: frozenset[str], *, secret: bytes | str, ttl: timedelta,
          now: datetime) -> str:
    claims = {
        "iss": ISSUER, "aud": AUDIENCE, "sub": partner_id,
        "iat": int(now.timestamp()), "exp": int((now + ttl).timestamp()),
        "jti": secrets.token_hex(16), "scope": " ".join(sorted(scopes)),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM, headers={"typ": "at+jwt"})


def verify(token: str, *, secret: bytes | str, now: datetime) -> Claims | None:
    """The token's claims if it is ours (signature, issuer, audience) and unexpired."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], audience=AUDIENCE, issuer=ISSUER,
            leeway=LEEWAY, options={"require": ["exp", "iat", "sub", "aud", "iss"],
                                    "verify_iat": False},
        )
    except jwt.PyJWTError:
        return None
    # pyjwt checks expiry against the machine's clock; ``now`` makes the rule testable and
    # is the same clock in production.
    expires_at = datetime.fromtimestamp(claims["exp"], tz=now.tzinfo)
    if expires_at + LEEWAY <= now:
        return None
    scope = claims.get("scope", "")
    if not isinstance(scope, str) or not isinstance(claims["sub"], str):
        return None
    return Claims(claims["sub"], frozenset(scope.split()), expires_at)


def looks_like_token(credential: str) -> bool:
    return credential.count(".") == 2


@dataclass(frozen=True)
class TokenRequest:
    client_id: str
    client_secret: str
    scopes: frozenset[str] | None  # None: every scope of the partner


def parse_form(body: bytes, content_type: str, authorization: str) -> TokenRequest:
    """The token request of RFC 6749 §4.4.2, its client authenticated in the form's
    ``client_id``/``client_secret`` or by HTTP Basic (§2.3.1) — one of them, not both."""
    if content_type.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request",
                         "the body must be application/x-www-form-urlencoded")
    try:
        pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=bool(
            body), errors="strict")
    except (UnicodeDecodeError, ValueError) as error:
        raise OAuthError("invalid_request", "the body is not a valid form") from error
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise OAuthError("invalid_request", f"{name} is given more than once")
        form[name] = value
    grant = form.get("grant_type")
    if not grant:
        raise OAuthError("invalid_request", "grant_type is required")
    if grant != GRANT_TYPE:
        raise OAuthError("unsupported_grant_type", f"only {GRANT_TYPE} is supported")
    basic = _basic(authorization)
    in_form = "client_id" in form or "client_secret" in form
    if basic is not None and in_form:
        raise OAuthError("invalid_request", "authenticate the client one way, not two")
    client_id, client_secret = basic or (form.get("client_id", ""), form.get("client_secret",
                                                                           ""))
    if not client_id or not client_secret:
        raise OAuthError("invalid_client", "client_id and client_secret are required", 401)
    scope = form.get("scope")
    scopes = frozenset(scope.split()) if scope is not None else None
    if scopes is not None and not scopes:
        raise OAuthError("invalid_scope", "scope is empty")
    return TokenRequest(client_id, client_secret, scopes)


def _basic(authorization: str) -> tuple[str, str] | None:
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as error:
        raise OAuthError("invalid_client", "malformed Basic credentials", 401) from error
    client_id, colon, client_secret = decoded.partition(":")
    if not colon:
        raise OAuthError("invalid_client", "malformed Basic credentials", 401)
    # §2.3.1: both are form-urlencoded before they are joined.
    return unquote(client_id.replace("+", " ")), unquote(client_secret.replace("+", " "))


def granted(requested: frozenset[str] | None, held: frozenset[str]) -> frozenset[str]:
    """The scopes a token carries: what was asked for, never more than the partner holds."""
    if requested is None:
        return held
    beyond = requested - held
    if beyond:
        raise OAuthError("invalid_scope",
                         f"the partner does not hold {', '.join(sorted(beyond))}")
    return requested
