"""The rules of idempotency keys, without a database or a web framework."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from enum import Enum

MAX_KEY_LENGTH = 255
# Visible ASCII: what travels unchanged in a header and prints unambiguously in a log.
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
# The answer headers a replay repeats; the rest (date, server, trace ids) belong to the reply.
REPLAYED_HEADERS = ("content-type", "location")
REPLAY_HEADER = "Idempotent-Replayed"


def key_violation(key: str | None) -> str | None:
    """Why a key cannot be used, or None."""
    if key is None:
        return "every POST needs an Idempotency-Key header (e.g. a random UUID per request)"
    if not _KEY.match(key):
        return f"1 to {MAX_KEY_LENGTH} visible ASCII characters"
    return None


def fingerprint(method: str, path: str, query: bytes, body: bytes) -> bytes:
    """A hash of the canonical request: a JSON body is compared by its meaning (key order and
    whitespace do not matter), anything else by its bytes."""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"),
                               ensure_ascii=False).encode()
    except (ValueError, UnicodeDecodeError):
        canonical = body
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), query, canonical):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()


def forwarded_request_id(partner_id: str, key: str, request_fingerprint: bytes) -> str:
    """The ``request_id`` the key becomes in the service's request: the service deduplicates
    on it too, so a request retried after the gateway lost its lease still changes nothing.
    It names the request, not only the key: the same key from two partners, or reused for
    another request once expired, never names the same request."""
    digest = hashlib.sha256(f"{partner_id}\n{key}\n".encode() + request_fingerprint)
    return digest.hexdigest()


def is_stored(status: int) -> bool:
    """Which answers are final: a 429 or 5xx is an invitation to retry with the same key, so
    it is not stored and the key is free again."""
    return status < 500 and status != 429


class Outcome(Enum):
    CLAIMED = "claimed"
    REPLAY = "replay"
    IN_FLIGHT = "in_flight"
    MISMATCH = "mismatch"


@dataclass(frozen=True)
class Stored:
    fingerprint: bytes
    status: int | None  # None while in flight
    headers: dict[str, str]
    body: bytes


def judge(stored: Stored | None, request_fingerprint: bytes) -> Outcome:
    """What a request meets when its key was already claimed (by the time of the look,
    ``None``: released again, which the caller answers like a request still in flight)."""
    if stored is None:
        return Outcome.IN_FLIGHT
    if stored.fingerprint != request_fingerprint:
        return Outcome.MISMATCH
    return Outcome.IN_FLIGHT if stored.status is None else Outcome.REPLAY
