"""Who is calling. The seam partner authentication plugs into.

Routes depend on :func:`current_partner`; today every caller is the anonymous partner with
all scopes, because per-partner credentials, scopes and rate limits are their own piece of
work. Replacing this dependency is all that work needs to touch in the routes.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request


@dataclass(frozen=True)
class Partner:
    partner_id: str
    scopes: frozenset[str]


ANONYMOUS = Partner(partner_id="anonymous", scopes=frozenset({"*"}))


async def current_partner(request: Request) -> Partner:
    return ANONYMOUS
