"""Who is calling: every request but the health and documentation paths and the token
endpoint carries a partner's API key (``Authorization: Bearer oms_…``) or an OAuth2 access
token the gateway issued (``Authorization: Bearer <JWT>``), checked before anything else runs
— an anonymous caller learns nothing, not even which paths exist (401 everywhere).

The :class:`Authenticate` layer records the partner on the request, where the routes, the
idempotency layer, the audit log and the access log find it; a route then asks for the scope
it needs with :func:`require` (403 without it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, OAuth2
from starlette.datastructures import State
from starlette.types import ASGIApp, Receive, Scope, Send

from oms_gateway.oauth.domain import looks_like_token, verify
from oms_gateway.partners import store
from oms_gateway.partners.domain import SCOPE_DESCRIPTIONS, Partner
from oms_gateway.problems import Problem, problem_response

# Served to anyone: probes, and the documentation a partner reads before having a key.
TOKEN_PATH = "/oauth/token"
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json", "/docs", "/redoc",
                        "/docs/oauth2-redirect", TOKEN_PATH})
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="oms"'}
_BAD_TOKEN = {"WWW-Authenticate": 'Bearer realm="oms", error="invalid_token"'}

# Declare the schemes in the OpenAPI document; the check itself is the middleware's.
bearer = HTTPBearer(auto_error=False, scheme_name="apiKey",
                    description="An API key issued to the partner: `oms_<prefix>_<secret>`")
oauth2 = OAuth2(auto_error=False, scheme_name="oauth2", flows={"clientCredentials": {
    "tokenUrl": TOKEN_PATH, "scopes": SCOPE_DESCRIPTIONS}},
    description="An access token from the token endpoint: client id = the partner's id, "
    "client secret = its API key (a token lasts OMS_GATEWAY_ACCESS_TOKEN_TTL_SECONDS)")


def unauthenticated(detail: str, headers: dict[str, str] | None = None) -> Problem:
    return Problem(401, "Unauthenticated", detail, kind="unauthenticated",
                   headers=headers or _CHALLENGE)


async def identify(state: State, credential: str) -> Partner | None:
    """The partner behind an API key or an access token; None if there is none now. A
    token's partner keeps only the scopes the token names that it still holds."""
    engine = state.engine
    if not looks_like_token(credential):
        return await store.authenticate(engine, credential)
    claims = verify(credential, secret=state.token_secret, now=datetime.now(UTC))
    if claims is None:
        return None
    partner = await store.active(engine, claims.partner_id)
    if partner is None:
        return None
    return dataclasses.replace(partner, scopes=partner.scopes & claims.scopes)


class Authenticate:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        scheme, _, secret = request.headers.get("authorization", "").partition(" ")
        credential = secret.strip()
        if scheme.lower() != "bearer" or not credential:
            problem = unauthenticated(
                "send the partner's API key or an access token as Authorization: Bearer")
        else:
            partner = await identify(scope["app"].state, credential)
            if partner is not None:
                scope.setdefault("state", {})["partner"] = partner
                await self.app(scope, receive, send)
                return
            problem = (unauthenticated("the access token is invalid or expired", _BAD_TOKEN)
                       if looks_like_token(credential)
                       else unauthenticated("the API key is unknown, expired or revoked"))
        await problem_response(request, problem)(scope, receive, send)


def require(scope_name: str) -> Callable[..., Awaitable[Partner]]:
    """The dependency of a route that needs ``scope_name`` (e.g. ``orders:write``)."""

    # A default, not an annotation: the annotations are strings, evaluated where
    # ``scope_name`` is out of reach.
    with_scope = Security(oauth2, scopes=[scope_name])

    async def partner_with_scope(
        request: Request,
        _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        __: str | None = with_scope,
    ) -> Partner:
        partner = partner_in(request.scope)
        if partner is None:  # only if a route were left open by mistake: refuse, never serve
            raise unauthenticated("send the partner's API key as Authorization: Bearer")
        if scope_name not in partner.scopes:
            raise Problem(403, "Permission denied",
                          f"the partner's credentials lack the scope {scope_name}",
                          kind="permission-denied", extra={"scope": scope_name})
        return partner

    return partner_with_scope


def partner_in(scope: Scope) -> Partner | None:
    partner = scope.get("state", {}).get("partner")
    return partner if isinstance(partner, Partner) else None


def partner_of(scope: Scope) -> str | None:
    """The partner a request was identified as; None before (or without) identification."""
    partner = partner_in(scope)
    return partner.partner_id if partner is not None else None
