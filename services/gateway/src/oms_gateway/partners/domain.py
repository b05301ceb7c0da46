"""Partners, their keys and scopes: pure rules, no database or web framework.

API keys are 256 random bits, so they are stored as their SHA-256: a slow password hash
(argon2, bcrypt) protects secrets a person chose, which are guessable; a random key is not,
and inverting SHA-256 for a 256-bit input is out of reach. A fast hash also costs each
request microseconds, not the tens of milliseconds a password hash is tuned to take.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from enum import Enum


class Kind(Enum):
    SALES_CHANNEL = "sales_channel"
    THREE_PL = "3pl"
    CARRIER = "carrier"
    PAYMENT_PROVIDER = "payment_provider"


# Per resource and action. Those of resources the gateway does not serve yet are named now,
# so partners created today keep them when the routes arrive.
SCOPE_DESCRIPTIONS = {
    "orders:read": "Read the partner's channels' orders",
    "orders:write": "Create and cancel orders on the partner's channels",
    "payments:write": "Report payments of the partner's channels' orders (and by webhook)",
    "stock:read": "Read what the partner's channels may sell",
    "fulfilment:read": "Read fulfilment orders (routes to come)",
    "fulfilment:write": "Report fulfilment progress (routes to come)",
    "shipments:write": "Report tracking of the partner's carriers' shipments (by webhook)",
    "returns:write": "Report returns (routes to come)",
    "webhooks:read": "List the partner's webhook endpoints and their deliveries",
    "webhooks:write": "Subscribe webhook endpoints, delete them, replay deliveries",
}
SCOPES = frozenset(SCOPE_DESCRIPTIONS)
_WEBHOOKS = frozenset({"webhooks:read", "webhooks:write"})
DEFAULT_SCOPES = {
    Kind.SALES_CHANNEL: frozenset({"orders:read", "orders:write", "stock:read",
                                   "returns:write"}) | _WEBHOOKS,
    Kind.PAYMENT_PROVIDER: frozenset({"payments:write"}) | _WEBHOOKS,
    Kind.THREE_PL: frozenset({"fulfilment:read", "fulfilment:write"}) | _WEBHOOKS,
    Kind.CARRIER: frozenset({"shipments:write"}) | _WEBHOOKS,
}
# The kinds that work with orders, and only those of the channels they are bound to.
CHANNEL_BOUND = frozenset({Kind.SALES_CHANNEL, Kind.PAYMENT_PROVIDER})

MAX_CHANNELS = 50
_CHANNEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_PARTNER_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")

KEY_PREFIX = "oms"
_KEY = re.compile(r"^oms_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class Partner:
    partner_id: str
    kind: Kind
    name: str
    channels: frozenset[str]
    scopes: frozenset[str]
    # A carrier partner's carrier ids, a 3PL's fulfilment node ids.
    carriers: frozenset[str] = frozenset()
    nodes: frozenset[str] = frozenset()

    def may_see_channel(self, channel: str) -> bool:
        return self.kind in CHANNEL_BOUND and channel in self.channels

    def reports_for_carrier(self, carrier: str) -> bool:
        return self.kind is Kind.CARRIER and carrier in self.carriers

    def runs_node(self, node_id: str) -> bool:
        return self.kind is Kind.THREE_PL and node_id in self.nodes


class PartnerError(ValueError):
    """A partner definition that cannot be stored, with every reason."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons


def check_partner(partner_id: str, kind: Kind, name: str, channels: frozenset[str],
                  scopes: frozenset[str], carriers: frozenset[str] = frozenset(),
                  nodes: frozenset[str] = frozenset()) -> None:
    reasons = []
    for field, values, owner in (("carriers", carriers, Kind.CARRIER),
                                 ("nodes", nodes, Kind.THREE_PL)):
        if values and kind is not owner:
            reasons.append(f"{field}: only a {owner.value} partner is bound to {field}")
        if len(values) > MAX_CHANNELS or any(not _CHANNEL.match(v) for v in values):
            reasons.append(f"{field}: at most {MAX_CHANNELS} ids of letters, digits, . _ -")
    if not _PARTNER_ID.match(partner_id):
        reasons.append("id: 1 to 64 of a-z, 0-9 and '-', starting with a letter or digit")
    if not name.strip() or len(name) > 200:
        reasons.append("name: 1 to 200 characters")
    unknown = sorted(scopes - SCOPES)
    if unknown:
        reasons.append(f"scopes: unknown {', '.join(unknown)} (known: "
                       f"{', '.join(sorted(SCOPES))})")
    bad = sorted(c for c in channels if not _CHANNEL.match(c))
    if bad:
        reasons.append(f"channels: malformed {', '.join(bad)}")
    if len(channels) > MAX_CHANNELS:
        reasons.append(f"channels: at most {MAX_CHANNELS}")
    if kind is Kind.SALES_CHANNEL and not channels:
        reasons.append("channels: a sales channel is bound to at least one channel id")
    if channels and kind not in CHANNEL_BOUND:
        reasons.append(f"channels: a {kind.value} partner is not bound to channels")
    if reasons:
        raise PartnerError(reasons)


@dataclass(frozen=True)
class NewKey:
    """A key as issued: ``secret`` is shown once and never stored."""

    prefix: str
    secret: str
    digest: bytes


def issue_key() -> NewKey:
    prefix = secrets.token_hex(6)
    secret = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    return NewKey(prefix=prefix, secret=secret, digest=digest(secret))


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def key_prefix(secret: str) -> str | None:
    """The lookup part of a well-formed key, else None (so no lookup is made)."""
    match = _KEY.match(secret)
    return match.group(1) if match else None


def matches(secret: str, stored_digest: bytes) -> bool:
    return hmac.compare_digest(digest(secret), stored_digest)
