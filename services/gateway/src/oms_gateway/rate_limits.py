"""Per-partner rate limits: a moving window per partner (the ``limits`` library), kept in
each gateway replica's memory.

Every identified request spends one unit of each of its partner's quotas (e.g. 20 a second
and 600 a minute); once one is spent the answer is 429 with ``Retry-After`` — the seconds
until the oldest request in that window leaves it — and nothing behind this layer runs, so a
refused request stores nothing and does not take its ``Idempotency-Key``. Every answer to an
identified partner carries its quotas and what is left of them in the IETF
``RateLimit-Policy`` and ``RateLimit`` fields (draft-ietf-httpapi-ratelimit-headers):

    RateLimit-Policy: "20 per 1 second";q=20;w=1, "600 per 1 minute";q=600;w=60
    RateLimit: "20 per 1 second";r=19;t=1, "600 per 1 minute";r=599;t=60

A moving window rather than a fixed one: a fixed window lets a partner send twice its quota
across a window's boundary. In memory rather than in PostgreSQL: a counted write per request
would double the gateway's database load for a figure that may be approximate; the price is
that each replica counts on its own (see the README on sizing limits by replica count).

Memory is bounded twice: the library forgets a window once its last request has left it, and
at most ``max_partners`` partners are tracked, the least recently seen forgotten beyond that
(only identified partners are counted, so the bound is reached only by that many partners
calling at once). A partner's window holds one entry per request in it (about 160 bytes).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from oms_gateway.auth import partner_in
from oms_gateway.partners.domain import Kind, Partner
from oms_gateway.problems import Problem, problem_response

# Per replica (at least two in the chart). A sales channel's order sync is bursty and must
# not be held below what one marketplace sends at peak (a sustained 30 orders a second per
# replica); carriers' tracking and payment providers' webhooks come in larger bursts still.
DEFAULT_LIMITS = {
    Kind.SALES_CHANNEL: "50/second;1800/minute",
    Kind.THREE_PL: "50/second;1800/minute",
    Kind.CARRIER: "100/second;3600/minute",
    Kind.PAYMENT_PROVIDER: "100/second;3600/minute",
}
POLICY_HEADER = "RateLimit-Policy"
STATE_HEADER = "RateLimit"


def parse(text: str, *, where: str) -> tuple[RateLimitItem, ...]:
    """``"20/second;600/minute"`` as the library's items; ValueError naming ``where``."""
    try:
        items = tuple(parse_many(text))
    except ValueError as error:
        raise ValueError(f"{where}: {text!r} is not a rate limit such as "
                         f"'20/second;600/minute' ({error})") from error
    if not items or any(item.amount < 1 for item in items):
        raise ValueError(f"{where}: {text!r} sets no quota of at least 1")
    return items


def policies(by_kind: Mapping[str, str], by_partner: Mapping[str, str]
             ) -> tuple[dict[Kind, tuple[RateLimitItem, ...]],
                        dict[str, tuple[RateLimitItem, ...]]]:
    """The kinds' quotas (the defaults, with those configured in their place) and the
    partners' own; ValueError on an unknown kind or a malformed limit."""
    kinds = {kind.value: kind for kind in Kind}
    unknown = sorted(set(by_kind) - set(kinds))
    if unknown:
        raise ValueError(f"rate limits for unknown partner kinds {unknown} "
                         f"(known: {sorted(kinds)})")
    merged = {kind: parse(by_kind.get(kind.value, default), where=f"rate limit of {kind.value}")
              for kind, default in DEFAULT_LIMITS.items()}
    own = {partner_id: parse(text, where=f"rate limit of partner {partner_id}")
           for partner_id, text in by_partner.items()}
    return merged, own


@dataclass(frozen=True)
class Quota:
    """One quota of a partner as it stands: ``remaining`` units, the next one back in
    ``reset`` seconds."""

    item: RateLimitItem
    remaining: int
    reset: int

    @property
    def name(self) -> str:
        return str(self.item)  # "20 per 1 second"


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    quotas: Sequence[Quota]

    @property
    def retry_after(self) -> int:
        """Seconds until every spent quota has a unit again."""
        return max([q.reset for q in self.quotas if q.remaining <= 0], default=1)

    def headers(self) -> dict[str, str]:
        return {
            POLICY_HEADER: ", ".join(
                f'"{q.name}";q={q.item.amount};w={q.item.get_expiry()}' for q in self.quotas),
            STATE_HEADER: ", ".join(
                f'"{q.name}";r={max(q.remaining, 0)};t={q.reset}' for q in self.quotas),
        }


class RateLimits:
    """The quotas of every partner of one replica, and what they have spent."""

    def __init__(self, by_kind: Mapping[Kind, tuple[RateLimitItem, ...]],
                 by_partner: Mapping[str, tuple[RateLimitItem, ...]], *,
                 max_partners: int) -> None:
        self._by_kind = dict(by_kind)
        self._by_partner = dict(by_partner)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._max_partners = max_partners
        self._seen: OrderedDict[str, None] = OrderedDict()

    def quotas_of(self, partner: Partner) -> tuple[RateLimitItem, ...]:
        return self._by_partner.get(partner.partner_id) or self._by_kind[partner.kind]

    async def spend(self, partner: Partner) -> Verdict:
        """One unit of each quota, if every quota has one; else nothing is spent."""
        items = self.quotas_of(partner)
        await self._track(partner.partner_id, items)
        who = partner.partner_id
        # The window's oldest request leaves it at reset_time (a hit does not change that
        # but in an empty window, whose reset is a whole window away either way).
        stats = [await self._limiter.get_window_stats(item, who) for item in items]
        now = time.time()
        allowed = all(s.remaining > 0 for s in stats)
        if allowed:
            # Another request may have taken the last unit since.
            allowed = all([await self._limiter.hit(item, who) for item in items])
        spent = 1 if allowed else 0
        return Verdict(allowed, [
            Quota(item, max(0, s.remaining - spent), max(1, math.ceil(s.reset_time - now)))
            for item, s in zip(items, stats, strict=True)])

    async def _track(self, partner_id: str, items: tuple[RateLimitItem, ...]) -> None:
        self._seen[partner_id] = None
        self._seen.move_to_end(partner_id)
        while len(self._seen) > self._max_partners:
            forgotten, _ = self._seen.popitem(last=False)
            for item in {*self._by_kind.values(), *self._by_partner.values()}:
                for each in item:
                    await self._limiter.clear(each, forgotten)


class RateLimit:
    """The layer between authentication (it needs the partner) and the idempotency layer
    (a refused request must not take its key)."""

    def __init__(self, app: ASGIApp, *, limits: RateLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        partner = partner_in(scope)
        if scope["type"] != "http" or partner is None:
            await self.app(scope, receive, send)
            return
        verdict = await self.limits.spend(partner)
        headers = verdict.headers()
        if not verdict.allowed:
            problem = Problem(
                429, "Too many requests",
                f"the partner's rate limit is spent ({_spent(verdict)}); retry after the "
                "time in Retry-After", kind="rate-limited", retry_after=verdict.retry_after,
                headers=headers)
            await problem_response(Request(scope), problem)(scope, receive, send)
            return
        encoded = [(name.lower().encode(), value.encode()) for name, value in headers.items()]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *encoded]}
            await send(message)

        await self.app(scope, receive, sending)


def _spent(verdict: Verdict) -> str:
    return ", ".join(q.name for q in verdict.quotas if q.remaining <= 0) or "a quota"
