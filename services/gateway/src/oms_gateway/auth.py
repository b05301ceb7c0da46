"""Who is calling. The seam partner authentication plugs into.

Routes depend on :func:`current_partner`; today every caller is the anonymous partner with
all scopes, because per-partner credentials, scopes and rate limits are their own piece of
work. Replacing this dependency is all that work needs to touch in the routes; whatever
replaces it keeps recording the partner on the request, where the access log finds it.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from starlette.types import Scope


@dataclass(frozen=True)
class Partner:
    partner_id: str
    scopes: frozenset[str]


ANONYMOUS = Partner(partner_id="anonymous", scopes=frozenset({"*"}))


async def current_partner(request: Request) -> Partner:
    partner = ANONYMOUS
    request.state.partner = partner
    return partner


def partner_of(scope: Scope) -> str | None:
    """The partner a request was identified as; None before (or without) identification."""
    partner = scope.get("state", {}).get("partner")
    return partner.partner_id if isinstance(partner, Partner) else None
