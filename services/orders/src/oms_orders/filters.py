"""The ListOrders / CountOrders filter: an AIP-160 conjunction, parsed without SQL.

``status = RELEASED AND region_code = "DE" AND create_time >= "2025-11-01T00:00:00Z"``: terms
``field op value`` joined by AND; a bare value (quoted or not) is a text search over the order
number, the customer's name and email, and the SKUs. OR and parentheses are not supported:
the back office's filters are conjunctions, and they map onto indexed columns one to one.
In a quoted value ``\"`` is a quote and ``\\`` a backslash; no other escape is defined.

Whatever the caller writes, the answer is a ``Filter`` or INVALID_ARGUMENT on ``filter``: a
filter is at most ``MAX_FILTER_LENGTH`` characters and ``MAX_FILTER_TERMS`` terms, and
holds nothing the database could not compare (a NUL character, a number beyond 64 bits).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn

from oms_platform.errors import FieldViolation, InvalidArgument

from oms_orders.domain import MAX_FILTER_LENGTH, MAX_FILTER_TERMS, OrderStatus, PaymentStatus

_TOKEN = re.compile(
    r'\s*(?:(?P<op>>=|<=|!=|=|<|>|:)|"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<word>[^\s=<>!:"]+))'
)
_ESCAPE = re.compile(r"\\(.)")
_WHOLE_NUMBER = re.compile(r"-?[0-9]{1,18}")
COMPARISONS = ("=", "!=", "<", "<=", ">", ">=")

FIELDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "status": ("status", ("=", "!=")),
    "payment_status": ("payment_status", ("=", "!=")),
    "channel": ("text", ("=", "!=")),
    "region_code": ("text", ("=", "!=")),
    "customer": ("text", ("=",)),
    "sku": ("text", ("=", ":")),
    "tags": ("text", (":", "=")),
    "priority": ("bool", ("=",)),
    "high_value": ("bool", ("=",)),
    "merged": ("bool", ("=",)),
    "create_time": ("time", COMPARISONS),
    "order_time": ("time", COMPARISONS),
    "ship_time": ("time", COMPARISONS),
    "promise_time": ("time", COMPARISONS),
    "weight_grams": ("int", COMPARISONS),
    "item_count": ("int", COMPARISONS),
}


@dataclass(frozen=True)
class Term:
    field: str
    op: str
    value: Any


@dataclass(frozen=True)
class Filter:
    terms: tuple[Term, ...] = ()
    text: tuple[str, ...] = ()


def parse(expression: str) -> Filter:
    """The parsed filter, or INVALID_ARGUMENT on field ``filter`` saying what is wrong."""
    if len(expression) > MAX_FILTER_LENGTH:
        _refuse(f"at most {MAX_FILTER_LENGTH} characters")
    if "\x00" in expression:
        _refuse("must not contain NUL characters")
    tokens = _tokens(expression)
    terms: list[Term] = []
    text: list[str] = []
    position = 0
    while position < len(tokens):
        kind, value = tokens[position]
        if position and kind == "word" and value == "AND":
            position += 1
            if position == len(tokens):
                _refuse("AND must join two terms")
            kind, value = tokens[position]
        elif position:
            _refuse("terms must be joined by AND (OR is not supported)")
        following = tokens[position + 1] if position + 1 < len(tokens) else None
        if following and following[0] == "op":
            if kind != "word":
                _refuse(f"a field name must come before {following[1]!r}")
            if position + 2 >= len(tokens) or tokens[position + 2][0] == "op":
                _refuse(f"{value} {following[1]} needs a value")
            terms.append(_term(value, following[1], tokens[position + 2][1]))
            position += 3
        elif kind == "op":
            _refuse(f"unexpected {value!r}")
        else:
            if not value.strip():
                _refuse("an empty text search")
            text.append(value)
            position += 1
        if len(terms) + len(text) > MAX_FILTER_TERMS:
            _refuse(f"at most {MAX_FILTER_TERMS} terms")
    return Filter(tuple(terms), tuple(text))


def _tokens(expression: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    expression = expression.strip()
    while position < len(expression):
        match = _TOKEN.match(expression, position)
        if match is None or match.end() == position:
            _refuse(f"cannot read the filter at character {position + 1}")
        assert match is not None
        kind = match.lastgroup or "word"
        value = match.group(kind)
        if kind == "quoted":
            escaped = set(_ESCAPE.findall(value)) - {'"', "\\"}
            if escaped:
                _refuse(f"unknown escape \\{min(escaped)} at character {position + 1}; "
                        'only \\" and \\\\ are defined')
            value = _ESCAPE.sub(r"\1", value)
        tokens.append((kind, value))
        position = match.end()
        while position < len(expression) and expression[position].isspace():
            position += 1
    return tokens


def _term(field: str, op: str, raw: str) -> Term:
    known = FIELDS.get(field)
    if known is None:
        _refuse(f"unknown field {field!r}; known: {', '.join(sorted(FIELDS))}")
    assert known is not None
    kind, ops = known
    if op not in ops:
        _refuse(f"{field} takes {' '.join(ops)}, not {op}")
    value: Any = raw
    if kind == "status":
        value = _enum(OrderStatus, "ORDER_STATUS_", field, raw)
    elif kind == "payment_status":
        value = _enum(PaymentStatus, "PAYMENT_STATUS_", field, raw)
    elif kind == "bool":
        if raw.lower() not in ("true", "false"):
            _refuse(f"{field} is true or false")
        value = raw.lower() == "true"
    elif kind == "int":
        if not _WHOLE_NUMBER.fullmatch(raw):
            _refuse(f"{field} takes a whole number of at most 18 digits")
        value = int(raw)
    elif kind == "time":
        try:
            value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            _refuse(f'{field} takes an RFC 3339 time such as "2025-11-01T00:00:00Z"')
        if value.tzinfo is None:
            _refuse(f"{field} needs a time zone offset (Z for UTC)")
    return Term(field, op, value)


def _enum(enum: Any, prefix: str, field: str, raw: str) -> Any:
    name = raw.removeprefix(prefix)
    if name not in enum.__members__:
        _refuse(f"{field} is one of {', '.join(enum.__members__)}")
    return enum(name)


def _refuse(description: str) -> NoReturn:
    raise InvalidArgument([FieldViolation("filter", description)])
