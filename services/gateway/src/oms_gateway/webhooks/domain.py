"""The rules of webhooks, without a database, a web framework or NATS: which events exist
and who may hear of each, what an endpoint may be, how deliveries are retried, and which
payments a provider may report.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from urllib.parse import urlsplit

from oms_gateway.partners.domain import CHANNEL_BOUND, Kind, Partner


class Audience(Enum):
    """Whose an event is: a channel's (its orders) or a node's (a 3PL's work)."""

    CHANNEL = "channel"
    NODE = "node"


# The public event types, named as Standard Webhooks suggests (``resource.action``), each
# with whose it is. The payload is ``{"type", "timestamp", "data"}``, ``data`` the domain
# event in the proto3 JSON mapping (handlers.py names the message of each).
EVENT_TYPES = {
    "order.created": Audience.CHANNEL,
    "order.status_changed": Audience.CHANNEL,
    "order.cancelled": Audience.CHANNEL,
    "order.refunded": Audience.CHANNEL,
    "fulfilment.requested": Audience.NODE,
    "shipment.progressed": Audience.CHANNEL,
    "shipment.delivered": Audience.CHANNEL,
    "shipment.exception": Audience.CHANNEL,
}
MAX_ENDPOINTS_PER_PARTNER = 20
MAX_URL_LENGTH = 2000
MAX_DESCRIPTION_LENGTH = 500


def may_subscribe(partner: Partner, event_type: str) -> bool:
    """A channel-bound partner hears of its channels' orders; a 3PL of its nodes' work."""
    audience = EVENT_TYPES.get(event_type)
    if audience is Audience.CHANNEL:
        return partner.kind in CHANNEL_BOUND
    return audience is Audience.NODE and partner.kind is Kind.THREE_PL


@dataclass(frozen=True)
class Owners:
    """Whose one event is: every channel of the orders it names (a partner must hold them
    all, so a merged shipment never tells one channel of another's order), or its node."""

    channels: frozenset[str] = frozenset()
    node: str | None = None

    def entitle(self, partner: Partner) -> bool:
        if self.node is not None:
            return partner.runs_node(self.node)
        return bool(self.channels) and all(partner.may_see_channel(c) for c in self.channels)


def url_violation(url: str, *, allow_private: bool) -> str | None:
    """Why ``url`` cannot be an endpoint, or None. Without ``allow_private`` (tests, ``make
    run``) an address of the gateway's own networks is refused, so a partner cannot make the
    gateway call what stands behind it."""
    if not 0 < len(url) <= MAX_URL_LENGTH:
        return f"required, at most {MAX_URL_LENGTH} characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return "not a URL"
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "must be an http(s) URL with a host"
    if parts.username or parts.password:
        return "must not carry credentials"
    if allow_private:
        return None
    host = parts.hostname
    if host == "localhost" or host.endswith(".localhost"):
        return "must not name this host"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if not address.is_global:
        return "must not be a private, loopback or link-local address"
    return None


def retry_delay(attempts: int, base: timedelta, cap: timedelta) -> timedelta:
    """The wait after the ``attempts``-th failed attempt: doubling from ``base``, at most
    ``cap``."""
    return min(cap, base * (2 ** min(attempts - 1, 40)))


@dataclass(frozen=True)
class Payment:
    """A payment transaction the order holds."""

    transaction_id: str
    kind: str  # the PaymentKind name, e.g. "PAYMENT_KIND_CAPTURE"
    provider: str


def payment_is_theirs(recorded: Sequence[Payment], transaction_id: str, kind: str,
                      provider: str) -> bool:
    """Whether a provider may report this transaction on an order holding ``recorded``: a
    transaction id already there must be its own; a refund must give back a capture it
    reported; and an order another provider already took money for is not its to report on,
    unless it took part too."""
    same = [p for p in recorded if p.transaction_id == transaction_id]
    if same:
        return all(p.provider == provider for p in same)
    mine = [p for p in recorded if p.provider == provider]
    if kind == "PAYMENT_KIND_REFUND":
        return any(p.kind == "PAYMENT_KIND_CAPTURE" for p in mine)
    paying = ("PAYMENT_KIND_AUTHORIZATION", "PAYMENT_KIND_CAPTURE")
    others = [p for p in recorded if p.provider != provider and p.kind in paying]
    return not others or bool(mine)
