"""Opaque page tokens (AIP-158) for keyset pagination, the same in every service.

A token carries the key of the last row of a page and a fingerprint of the list's
parameters (parent, filter, ...): a token used with other parameters is refused, as AIP-158
asks, instead of silently paging through a different list.

Tokens are signed (HMAC-SHA256, cut to 128 bits), so a caller can neither forge a key nor
alter one: the key reaches the SQL exactly as the list issued it. The signature also covers
the gRPC method being served, so a token of one list is refused by another list of the same
service whose key has another shape. A token that fails any check raises
:class:`PageTokenError`, which services answer with ``INVALID_ARGUMENT`` on ``page_token``.

Where the signing key comes from, decided so that every replica of a service accepts every
other's tokens and ``make run`` needs no configuration:

- ``OMS_PAGE_TOKEN_KEY`` when it is set (at least 32 characters; the Helm chart can fill it
  from a Secret, and services sharing it accept each other's tokens);
- otherwise a random 256-bit key that the platform generates the first time a service starts
  on its database and keeps there (``signing_keys``), read by every replica at start: the
  replicas share the database, so they share the key, and whoever can read it can read the
  service's data anyway.

Rotating the key (a new setting, or deleting the row) makes tokens issued before it refused:
the caller starts the listing again, which AIP-158 allows, since tokens are short-lived
anyway.

The key and the method are context variables: the service runtime sets the key as it starts,
so everything the service runs (its gRPC methods run in tasks started from there) signs with
its key, and two services in one test process keep theirs apart; the error interceptor sets
the method for each call. Code running outside a service (unit tests, scripts) signs with a
random key of its process.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import Any

KEY_NAME = "page_token"  # the row of ``signing_keys`` that holds the key
_SIGNATURE_BYTES = 16

_PROCESS_KEY = secrets.token_bytes(32)  # outside a service
_key: ContextVar[bytes] = ContextVar("page_token_key", default=_PROCESS_KEY)
_method: ContextVar[str] = ContextVar("page_token_method", default="")


class PageTokenError(ValueError):
    """A token this list did not issue, or issued for other parameters."""


def use_key(key: bytes) -> None:
    """Signs and checks tokens with ``key`` from now on, here and in the tasks started from
    here."""
    _key.set(key)


@contextlib.contextmanager
def serving(method: str) -> Iterator[None]:
    """Binds the tokens made and read inside the block to the method being served."""
    token = _method.set(method)
    try:
        yield
    finally:
        _method.reset(token)


def _fingerprint(query: Mapping[str, Any]) -> str:
    canonical = json.dumps(query, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _signature(payload: bytes) -> bytes:
    signed = _method.get().encode() + b"\n" + payload
    return hmac.new(_key.get(), signed, hashlib.sha256).digest()[:_SIGNATURE_BYTES]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode((text + "=" * (-len(text) % 4)).encode("ascii"))


def encode_page_token(after: Sequence[Any], query: Mapping[str, Any]) -> str:
    """The token of the page after the key ``after`` (JSON values) of a list with these
    parameters."""
    payload = json.dumps({"after": list(after), "query": _fingerprint(query)},
                         separators=(",", ":")).encode()
    return f"{_b64(payload)}.{_b64(_signature(payload))}"


def decode_page_token(token: str, query: Mapping[str, Any]) -> list[Any] | None:
    """The key to continue after; None for the first page (no token)."""
    if not token:
        return None
    body, _, signature = token.partition(".")
    try:
        payload = _unb64(body)
        genuine = hmac.compare_digest(_unb64(signature), _signature(payload))
    except (ValueError, binascii.Error) as error:
        raise PageTokenError("not a page token of this list") from error
    if not genuine:
        raise PageTokenError("not a page token of this list")
    content = json.loads(payload)
    if content["query"] != _fingerprint(query):
        raise PageTokenError("was issued for other list parameters; start again without it")
    after: list[Any] = content["after"]
    return after
