"""List requests: the filter fields of inventory's lists, and opaque keyset page tokens.
Plain Python, so the rules are tested without a server.

Filters are parsed by the platform (:mod:`oms_platform.filtering`, AIP-160 conjunctions, the
same grammar and bounds in every service): `=` on a text field with a value ending in `*`
matches by prefix (AIP-160's wildcard); `:` ("has") matches a substring of a text field or
a member of a list field."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from oms_platform import pagination
from oms_platform.pagination import PageTokenError

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


class FilterError(ValueError):
    """A page token this list did not issue."""


def is_storable_text(value: str) -> bool:
    """Whether PostgreSQL can store (and so compare) the string: no NUL, valid UTF-8."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def like_escape(value: str) -> str:
    """A literal for LIKE patterns with the default backslash escape."""
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def page_size(requested: int) -> int:
    """AIP-158: zero means the default; larger than the maximum is capped."""
    if requested <= 0:
        return DEFAULT_PAGE_SIZE
    return min(requested, MAX_PAGE_SIZE)


def encode_page_token(after: Sequence[Any], query: Mapping[str, Any]) -> str:
    """An opaque token for the page after the key `after` of a list with these parameters."""
    return pagination.encode_page_token(after, query)


# The type of each part of a list's key, in order: a decoded key must have exactly these.
KeyShape = tuple[type, ...]
INT64 = range(-2**63, 2**63)


def decode_page_token(token: str, query: Mapping[str, Any],
                      shape: KeyShape) -> list[Any] | None:
    """The key to continue after; None for the first page. A token made for other list
    parameters (AIP-158: the filter must not change between pages) is refused, and so is
    a key not of the list's shape: whatever a token says reaches the database only as the
    parts the list's query expects."""
    try:
        after = pagination.decode_page_token(token, query)
    except PageTokenError as error:
        raise FilterError(str(error)) from error
    if after is None:
        return None
    if len(after) != len(shape) or not all(map(_fits, after, shape)):
        raise FilterError("not a page token of this list")
    return after


def _fits(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool) and value in INT64
    return isinstance(value, str) and is_storable_text(value)
