"""The parts of a list request (AIP-132), the same for every list of the suite: the filter
(AIP-160, :mod:`oms_platform.filtering`), the page size and the page token (AIP-158, signed
by :mod:`oms_platform.pagination`) whose key must have the list's shape.

A list reads one row more than the page to know whether another page follows, and continues
after the key of the page's last row (keyset pages, stable under inserts)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from oms_platform import filtering
from oms_platform.errors import InvalidArgument, Violations
from oms_platform.pagination import PageTokenError, decode_page_token, encode_page_token

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

# The type of each part of a list's key, in order: a decoded key must have exactly these.
# A `datetime` part travels as its ISO 8601 text, a `uuid.UUID` as its text.
KeyShape = tuple[type, ...]
INT64 = range(-2**63, 2**63)


class ListRequest(Protocol):
    page_size: int
    page_token: str


class ListParameters(NamedTuple):
    filter: filtering.Filter
    after: list[Any] | None  # the key to continue after; None for the first page
    size: int


def parameters(request: ListRequest, query: Mapping[str, Any], key: KeyShape, *,
               fields: Mapping[str, filtering.Field] | None = None, text_search: bool = False,
               max_page_size: int = MAX_PAGE_SIZE,
               violations: Violations | None = None) -> ListParameters:
    """The filter (when the list has ``fields``; read from ``request.filter``), the key to
    continue after and the page size of a list request. Every bad part is a field
    violation, added to ``violations`` (the request's other checks) when given, and raised
    together. ``query`` is what the token is bound to: the parent, the filter, ..."""
    violations = violations if violations is not None else Violations()
    parsed = filtering.Filter()
    after = None
    if fields is not None:
        try:
            parsed = filtering.parse(request.filter, fields, text_search=text_search)
        except InvalidArgument as error:
            violations.items.extend(error.violations)
    if request.page_size < 0:
        violations.add("page_size", "must not be negative")
    try:
        after = decode_key(request.page_token, query, key)
    except PageTokenError as error:
        violations.add("page_token", str(error))
    violations.raise_if_any()
    return ListParameters(parsed, after, page_size(request.page_size, maximum=max_page_size))


def page_size(requested: int, *, maximum: int = MAX_PAGE_SIZE) -> int:
    """AIP-158: zero means the default; larger than the maximum is read as the maximum."""
    if requested <= 0:
        return min(DEFAULT_PAGE_SIZE, maximum)
    return min(requested, maximum)


def next_page_token(rows: Sequence[Any], size: int, key: Callable[[Any], list[Any]],
                    query: Mapping[str, Any]) -> str:
    """The token of the next page when the list read one row more than ``size``."""
    if len(rows) <= size:
        return ""
    return encode_page_token([_wire(part) for part in key(rows[size - 1])], query)


def decode_key(token: str, query: Mapping[str, Any], shape: KeyShape) -> list[Any] | None:
    """The key to continue after; None for the first page. A token made for other list
    parameters is refused, and so is a key not of the list's shape: whatever a token says
    reaches the database only as the parts the list's query expects."""
    after = decode_page_token(token, query)
    if after is None:
        return None
    if len(after) != len(shape) or not all(map(_fits, after, shape)):
        raise PageTokenError("not a page token of this list")
    return [datetime.fromisoformat(value) if kind is datetime
            else uuid.UUID(value) if kind is uuid.UUID else value
            for value, kind in zip(after, shape, strict=True)]


def is_storable_text(value: str) -> bool:
    """Whether PostgreSQL can store (and so compare) the string: no NUL, valid UTF-8."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _wire(part: Any) -> Any:
    if isinstance(part, datetime):
        return part.isoformat()
    return str(part) if isinstance(part, uuid.UUID) else part


def _fits(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool) and value in INT64
    if kind is datetime:
        try:
            return datetime.fromisoformat(value).tzinfo is not None
        except (TypeError, ValueError):
            return False
    if kind is uuid.UUID:
        try:
            uuid.UUID(value)
        except (TypeError, ValueError, AttributeError):
            return False
        return True
    return isinstance(value, str) and is_storable_text(value)
