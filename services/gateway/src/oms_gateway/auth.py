"""Who is calling: every request but the health and documentation paths carries a partner's
API key (``Authorization: Bearer oms_…``), checked before anything else runs — an anonymous
caller learns nothing, not even which paths exist (401 everywhere).

The :class:`Authenticate` layer records the partner on the request, where the routes, the
idempotency layer, the audit log and the access log find it; a route then asks for the scope
it needs with :func:`require` (403 without it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

from oms_gateway.partners import store
from oms_gateway.partners.domain import Partner
from oms_gateway.problems import Problem, problem_response

# Served to anyone: probes, and the documentation a partner reads before having a key.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json", "/docs", "/redoc",
                        "/docs/oauth2-redirect"})
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="oms"'}

# Declares the scheme in the OpenAPI document; the check itself is the middleware's.
bearer = HTTPBearer(auto_error=False, scheme_name="apiKey",
                    description="An API key issued to the partner: `oms_<prefix>_<secret>`")


def unauthenticated(detail: str) -> Problem:
    return Problem(401, "Unauthenticated", detail, kind="unauthenticated", headers=_CHALLENGE)


class Authenticate:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        scheme, _, secret = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            problem = unauthenticated("send the partner's API key as Authorization: Bearer")
        else:
            partner = await store.authenticate(scope["app"].state.engine, secret.strip())
            if partner is not None:
                scope.setdefault("state", {})["partner"] = partner
                await self.app(scope, receive, send)
                return
            problem = unauthenticated("the API key is unknown, expired or revoked")
        await problem_response(request, problem)(scope, receive, send)


def require(scope_name: str) -> Callable[..., Awaitable[Partner]]:
    """The dependency of a route that needs ``scope_name`` (e.g. ``orders:write``)."""

    async def partner_with_scope(
        request: Request,
        _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
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
