"""The ``filter`` of every list (AIP-160), parsed once here for every service.

A filter is a conjunction: ``status = RELEASED AND create_time >= "2025-11-01T00:00:00Z"``.
Each term is ``field operator value``, or, where a list offers it, a bare value that searches
text. In a quoted value ``\\"`` is a quote and ``\\\\`` a backslash; no other escape is
defined. OR, NOT and parentheses are refused rather than half understood: listing screens and
back-office tools need conjunctions, and each term maps onto an indexed column.

Each list declares its fields with a kind and the operators it takes; the parser returns the
terms with their values already converted (bool, int, aware datetime, enum member), so the
SQL side never sees text it has to interpret. Every refusal is INVALID_ARGUMENT on the field
``filter`` with a sentence saying what to write instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, NoReturn

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from oms_platform.errors import FieldViolation, InvalidArgument

MAX_FILTER_LENGTH = 2000
MAX_FILTER_TERMS = 20

COMPARISONS = ("=", "!=", "<", "<=", ">", ">=")

_GRAMMAR = r"""
    start: [term (_AND term)*]
    ?term: comparison | search
    comparison: WORD OP value
    search: value
    ?value: STRING | WORD

    _AND.2: "AND"
    OP: ">=" | "<=" | "!=" | "=" | "<" | ">" | ":"
    STRING: /"(?:[^"\\]|\\.)*"/
    WORD: /[^\s=<>!:"()]+/

    %ignore /\s+/
"""
_PARSER = Lark(_GRAMMAR, parser="lalr")


class Kind(Enum):
    TEXT = "text"
    BOOL = "bool"
    ENUM = "enum"
    INT = "int"
    TIME = "time"
    LIST = "list"


@dataclass(frozen=True)
class Field:
    kind: Kind
    operators: tuple[str, ...]
    # ENUM: the accepted names and what each means; a name may also carry the prefix.
    values: Mapping[str, Any] = field(default_factory=dict)
    prefix: str = ""
    # TEXT: `field = "abc*"` matches by prefix (AIP-160's wildcard).
    wildcard: bool = False


def text(*operators: str, wildcard: bool = False) -> Field:
    return Field(Kind.TEXT, operators or ("=", "!=", ":"), wildcard=wildcard)


def boolean(*operators: str) -> Field:
    return Field(Kind.BOOL, operators or ("=", "!="))


def enum(values: Mapping[str, Any], *operators: str, prefix: str = "") -> Field:
    return Field(Kind.ENUM, operators or ("=", "!="), values=values, prefix=prefix)


def integer(*operators: str) -> Field:
    return Field(Kind.INT, operators or COMPARISONS)


def time(*operators: str) -> Field:
    return Field(Kind.TIME, operators or COMPARISONS)


def member() -> Field:
    """A list field: ``tags:gift`` holds when ``gift`` is one of the values."""
    return Field(Kind.LIST, (":",))


@dataclass(frozen=True)
class Condition:
    field: str
    operator: str  # one of COMPARISONS, ":" or "prefix"
    value: Any


@dataclass(frozen=True)
class Filter:
    conditions: tuple[Condition, ...] = ()
    text: tuple[str, ...] = ()


def parse(expression: str, fields: Mapping[str, Field], *, text_search: bool = False) -> Filter:
    """The filter's terms checked against ``fields``, or INVALID_ARGUMENT on ``filter``.
    ``text_search`` lets a bare value search the list's text."""
    if len(expression) > MAX_FILTER_LENGTH:
        refuse(f"at most {MAX_FILTER_LENGTH} characters")
    if "\x00" in expression:
        refuse("must not contain NUL characters")
    try:
        tree = _PARSER.parse(expression)
    except UnexpectedInput as error:
        refuse(_syntax_error(error))
    if len(tree.children) > MAX_FILTER_TERMS:
        refuse(f"at most {MAX_FILTER_TERMS} terms")
    terms = [_term(term, fields, text_search) for term in tree.children if term is not None]
    return Filter(
        tuple(t for t in terms if isinstance(t, Condition)),
        tuple(t for t in terms if isinstance(t, str)),
    )


def refuse(description: str) -> NoReturn:
    raise InvalidArgument([FieldViolation("filter", description)])


def _syntax_error(error: UnexpectedInput) -> str:
    where = f"at character {error.column}" if getattr(error, "column", -1) > 0 else "at its end"
    if isinstance(error, UnexpectedEOF) or (
        isinstance(error, UnexpectedToken) and error.token.type == "$END"
    ):
        return "ends too early: a field and an operator need a value, and AND a term after it"
    if isinstance(error, UnexpectedToken):
        if "_AND" in error.expected:
            return f"terms must be joined by AND {where} (OR, NOT and parentheses are " \
                   "not supported)"
        return f"unexpected {error.token!s} {where}"
    if isinstance(error, UnexpectedCharacters):
        if error.char == '"':
            return f"a quoted value is not closed {where}"
        if "_AND" in error.allowed:
            return f"terms must be joined by AND {where} (OR, NOT and parentheses are " \
                   "not supported)"
        return f"cannot read {error.char!r} {where}"
    return f"cannot read the filter {where}"


_ESCAPE = re.compile(r"\\(.)")
_WHOLE_NUMBER = re.compile(r"-?[0-9]{1,18}")


def _term(term: Tree[Token], fields: Mapping[str, Field], text_search: bool) -> Condition | str:
    if term.data == "search":
        (value,) = term.children
        if not text_search:
            refuse(f"{_raw(value)!r} is not a term: write field = value")
        if not _raw(value).strip():
            refuse("an empty text search")
        return _raw(value)
    name_token, operator_token, value = term.children
    assert isinstance(value, Token)
    name, operator = str(name_token), str(operator_token)
    spec = fields.get(name)
    if spec is None:
        refuse(f"unknown field {name!r}; known: {', '.join(sorted(fields))}")
    if operator not in spec.operators:
        refuse(f"{name} takes {' '.join(spec.operators)}, not {operator}")
    return _condition(name, spec, operator, _raw(value), quoted=value.type == "STRING")


def _raw(value: Token | Tree[Token]) -> str:
    assert isinstance(value, Token)
    if value.type != "STRING":
        return str(value)
    quoted = str(value)[1:-1]
    if any(ord(c) < 0x20 or c == "\x7f" for c in quoted):
        refuse(f"a control character in the quoted value at character {value.column}; "
               "write it out instead")
    unknown = set(_ESCAPE.findall(quoted)) - {'"', "\\"}
    if unknown:
        refuse(f"unknown escape \\{min(unknown)} at character {value.column}; "
               'only \\" and \\\\ are defined')
    return _ESCAPE.sub(r"\1", quoted)


def _condition(name: str, spec: Field, operator: str, raw: str, *, quoted: bool) -> Condition:
    if spec.kind is Kind.BOOL:
        if quoted or raw.lower() not in ("true", "false"):
            refuse(f"{name} is true or false, unquoted")
        return Condition(name, operator, raw.lower() == "true")
    if spec.kind is Kind.ENUM:
        value = spec.values.get(raw.removeprefix(spec.prefix)) if raw else None
        if value is None:
            refuse(f"{name} is one of {', '.join(spec.values)}")
        return Condition(name, operator, value)
    if spec.kind is Kind.INT:
        if not _WHOLE_NUMBER.fullmatch(raw):
            refuse(f"{name} takes a whole number of at most 18 digits")
        return Condition(name, operator, int(raw))
    if spec.kind is Kind.TIME:
        try:
            moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            refuse(f'{name} takes an RFC 3339 time such as "2025-11-01T00:00:00Z"')
        if moment.tzinfo is None:
            refuse(f"{name} needs a time zone offset (Z for UTC)")
        return Condition(name, operator, moment)
    if spec.wildcard and operator == "=" and raw.endswith("*"):
        stem = raw[:-1]
        if "*" in stem:
            refuse(f"{name}: only a trailing * is supported")
        return Condition(name, "prefix", stem)
    return Condition(name, operator, raw)
