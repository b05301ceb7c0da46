"""List-request plumbing shared by every capability's lists (catalogue: products and nodes;
stock: levels, movements, buffers, suggestions; allocation: backorders): the page size
(AIP-158: one default and one cap for every list of the service), opaque keyset page tokens
whose key must have the list's shape, and the filter of a list parsed by the platform's
AIP-160 parser (:mod:`oms_platform.filtering`). Plain Python, so it is tested without a
server."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from oms_platform import filtering, pagination
from oms_platform.errors import InvalidArgument, Violations
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


def page_size(requested: int) -> int:
    """AIP-158: zero means the default; larger than the maximum is capped."""
    if requested <= 0:
        return DEFAULT_PAGE_SIZE
    return min(requested, MAX_PAGE_SIZE)


def encode_page_token(after: Sequence[Any], query: Mapping[str, Any]) -> str:
    """An opaque token for the page after the key `after` of a list with these parameters."""
    return pagination.encode_page_token(after, query)


# The type of each part of a list's key, in order: a decoded key must have exactly these.
# A `datetime` part travels as its ISO 8601 text.
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
    return [datetime.fromisoformat(value) if kind is datetime else value
            for value, kind in zip(after, shape, strict=True)]


def _fits(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool) and value in INT64
    if kind is datetime:
        try:
            datetime.fromisoformat(value)
        except (TypeError, ValueError):
            return False
        return True
    return isinstance(value, str) and is_storable_text(value)


def list_parameters(request: Any, query: Mapping[str, Any],
                    fields: Mapping[str, filtering.Field], key: KeyShape,
                    violations: Violations | None = None,
                    ) -> tuple[list[filtering.Condition], list[Any] | None, int]:
    """The filter conditions, the key to continue after and the page size of a list request
    (one with `filter` when `fields` is given, `page_size` and `page_token`); every bad part
    is a field violation, added to `violations` (the request's other checks) when given."""
    violations = violations if violations is not None else Violations()
    conditions: list[filtering.Condition] = []
    after = None
    if fields:
        try:
            conditions = list(filtering.parse(request.filter, fields).conditions)
        except InvalidArgument as error:
            violations.items.extend(error.violations)
    if request.page_size < 0:
        violations.add("page_size", "must not be negative")
    try:
        after = decode_page_token(request.page_token, query, key)
    except FilterError as error:
        violations.add("page_token", str(error))
    violations.raise_if_any()
    return conditions, after, page_size(request.page_size)


def next_token(rows: Sequence[Any], size: int, key: Callable[[Any], list[Any]],
               query: Mapping[str, Any]) -> str:
    """The token of the next page when the list read one row more than `size`."""
    if len(rows) <= size:
        return ""
    return encode_page_token(key(rows[size - 1]), query)
