"""List requests: a small subset of the AIP-160 filter language and opaque keyset page tokens.
Plain Python, so the rules are tested without a server.

The filter grammar, case-sensitive except for the keyword AND::

    filter     := condition ("AND" condition)*
    condition  := field operator value
    operator   := "=" | "!=" | ":"
    value      := "quoted string" | bare-word | true | false

`=` on a text field with a value ending in `*` matches by prefix (AIP-160's wildcard); `:`
("has") matches a substring of a text field or a member of a list field. OR, NOT and
parentheses are not supported: listing screens and catalogue tools need conjunctions only,
and a rejected filter is better than one that is half understood."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from oms_platform import pagination
from oms_platform.pagination import PageTokenError

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_FILTER_LENGTH = 2000
MAX_CONDITIONS = 20

TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<op>!=|=|:)
      | (?P<word>[A-Za-z0-9_.*\-/]+)
    )""",
    re.VERBOSE,
)


class FieldType(Enum):
    TEXT = "text"
    BOOL = "bool"
    ENUM = "enum"
    LIST = "list"


@dataclass(frozen=True)
class FieldSpec:
    type: FieldType
    operators: frozenset[str]
    values: frozenset[str] = frozenset()  # the allowed values of an ENUM


@dataclass(frozen=True)
class Condition:
    field: str
    operator: str  # "=", "!=", ":" or "prefix"
    value: str | bool


class FilterError(ValueError):
    pass


def text_field(*operators: str) -> FieldSpec:
    return FieldSpec(FieldType.TEXT, frozenset(operators or ("=", "!=", ":")))


def bool_field() -> FieldSpec:
    return FieldSpec(FieldType.BOOL, frozenset(("=", "!=")))


def enum_field(values: Sequence[str]) -> FieldSpec:
    return FieldSpec(FieldType.ENUM, frozenset(("=", "!=")), frozenset(values))


def list_field() -> FieldSpec:
    return FieldSpec(FieldType.LIST, frozenset((":",)))


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise FilterError(f"unexpected character at {position}: {text[position:][:10]!r}")
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


def parse_filter(text: str, fields: Mapping[str, FieldSpec]) -> list[Condition]:
    """The conditions of a filter, every one checked against the fields a list supports.
    Anything else, however malformed, is a `FilterError`."""
    if len(text) > MAX_FILTER_LENGTH:
        raise FilterError(f"at most {MAX_FILTER_LENGTH} characters")
    tokens = _tokens(text)
    conditions: list[Condition] = []
    index = 0
    while index < len(tokens):
        if conditions:
            if tokens[index] != ("word", "AND"):
                raise FilterError(f"expected AND, found {tokens[index][1]!r}")
            if len(conditions) == MAX_CONDITIONS:
                raise FilterError(f"at most {MAX_CONDITIONS} conditions")
            index += 1
        if index + 3 > len(tokens):
            raise FilterError("expected a condition: field, operator and value")
        (field_kind, field), (op_kind, operator), (value_kind, raw) = tokens[index:index + 3]
        index += 3
        if field_kind != "word" or field not in fields:
            raise FilterError(f"unknown field {field!r}; known: {', '.join(sorted(fields))}")
        if op_kind != "op":
            raise FilterError(f"expected an operator after {field}, found {operator!r}")
        if value_kind == "op":
            raise FilterError(f"expected a value after {field} {operator}")
        conditions.append(_condition(field, fields[field], operator, raw,
                                     quoted=value_kind == "string"))
    return conditions


def _condition(field: str, spec: FieldSpec, operator: str, raw: str, *,
               quoted: bool) -> Condition:
    if operator not in spec.operators:
        raise FilterError(f"{field} supports {', '.join(sorted(spec.operators))}")
    value = _unquoted(field, raw) if quoted else raw
    if spec.type is FieldType.BOOL:
        if quoted or value not in ("true", "false"):
            raise FilterError(f"{field} must be compared with true or false")
        return Condition(field, operator, value == "true")
    if spec.type is FieldType.ENUM:
        if value not in spec.values:
            raise FilterError(f"{field} must be one of {', '.join(sorted(spec.values))}")
        return Condition(field, operator, value)
    if operator == "=" and value.endswith("*"):
        stem = value[:-1]
        if "*" in stem:
            raise FilterError(f"{field}: only a trailing * is supported")
        return Condition(field, "prefix", stem)
    return Condition(field, operator, value)


def _unquoted(field: str, raw: str) -> str:
    """A quoted value's text: JSON string escapes, and nothing a database column cannot hold
    (NUL, or half of a surrogate pair, which has no UTF-8)."""
    try:
        value = json.loads(raw)
    except ValueError as error:
        raise FilterError(f"{field}: {raw[:20]!r}… is not a valid quoted string "
                          "(JSON escapes)") from error
    if not is_storable_text(value):
        raise FilterError(f"{field}: the value holds a character no text can store")
    return str(value)


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
