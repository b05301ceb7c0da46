"""Opaque page tokens (AIP-158) for keyset pagination, the same in every service.

A token carries the key of the last row of a page and a fingerprint of the list's
parameters (parent, filter, ...): a token used with other parameters is refused, as AIP-158
asks, instead of silently paging through a different list."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any


class PageTokenError(ValueError):
    """A token this list did not issue, or issued for other parameters."""


def _fingerprint(query: Mapping[str, Any]) -> str:
    canonical = json.dumps(query, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def encode_page_token(after: Sequence[Any], query: Mapping[str, Any]) -> str:
    """The token of the page after the key ``after`` (JSON values) of a list with these
    parameters."""
    payload = json.dumps({"after": list(after), "query": _fingerprint(query)},
                         separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_page_token(token: str, query: Mapping[str, Any]) -> list[Any] | None:
    """The key to continue after; None for the first page (no token)."""
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode()))
        after = payload["after"]
        fingerprint = payload["query"]
    except (ValueError, KeyError, TypeError, binascii.Error) as error:
        raise PageTokenError("not a page token of this list") from error
    if fingerprint != _fingerprint(query) or not isinstance(after, list):
        raise PageTokenError("was issued for other list parameters; start again without it")
    return after
