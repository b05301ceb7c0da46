"""Field paths as the partner wrote them.

The orders service names a bad field by its path in the gRPC request
(``order.lines[0].unit_price.currency_code``); the partner sent a JSON body that is one field
of that request (the order), in the proto3 JSON mapping's names
(``lines[0].unitPrice.currencyCode``). :class:`Body` translates one into the other through the
proto descriptors — so a renamed or added field cannot go untranslated — and
:func:`violations` names every field of a body that does not parse, in the same JSON paths.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor

_SEGMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)|\[([^\]]*)\]")

# Well-known types with a JSON form of their own (a string, a number, any value): leaves.
_WELL_KNOWN = {
    "google.protobuf.Timestamp":
        "must be an RFC 3339 date-time with an offset, e.g. 2026-01-31T12:00:00Z",
    "google.protobuf.Duration": "must be seconds with an 's' suffix, e.g. 1.5s",
    "google.protobuf.FieldMask": "must be a string of comma-separated field paths",
    "google.protobuf.Struct": "must be an object",
    "google.protobuf.Value": "must be a JSON value",
    "google.protobuf.ListValue": "must be an array",
    "google.protobuf.Any": "must be an object with @type",
    **{f"google.protobuf.{name}Value": "must be a JSON value of the wrapped type"
       for name in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String",
                    "Bytes")},
}
_INTEGERS = {FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32,
             FieldDescriptor.TYPE_SFIXED32, FieldDescriptor.TYPE_UINT32,
             FieldDescriptor.TYPE_FIXED32}
_LONGS = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64,
          FieldDescriptor.TYPE_SFIXED64, FieldDescriptor.TYPE_UINT64,
          FieldDescriptor.TYPE_FIXED64}


def _segments(path: str) -> Iterator[tuple[str | None, str | None]]:
    for match in _SEGMENT.finditer(path):
        yield match.group(1), match.group(2)


def json_path(message: Descriptor | None, path: str) -> str:
    """``path`` (proto field names, from ``message``) in JSON names. A segment the descriptors
    do not know is kept as it is: a path is never made up, only renamed."""
    out = ""
    current: Descriptor | None = message
    for name, index in _segments(path):
        if index is not None:
            out += f"[{index}]"
            continue
        assert name is not None
        found = current.fields_by_name.get(name) if current is not None else None
        out += ("." if out else "") + (found.json_name if found is not None else name)
        current = found.message_type if found is not None else None
        if current is not None and current.GetOptions().map_entry:
            current = current.fields_by_name["value"].message_type
    return out


@dataclass(frozen=True)
class Shape:
    """How a route's JSON body sits in the gRPC request it becomes.

    ``request`` is the request's descriptor; ``wrapped`` the request's field the body is (None
    when the body is the request itself); ``elsewhere`` names where the partner gave the
    request's other fields (the path, a header): ``{"name": "order_id"}``.
    """

    request: Descriptor
    wrapped: str | None = None
    elsewhere: Mapping[str, str] = field(default_factory=dict)

    @property
    def message(self) -> Descriptor:
        if self.wrapped is None:
            return self.request
        return self.request.fields_by_name[self.wrapped].message_type

    @property
    def not_in_body(self) -> frozenset[str]:
        """The fields of the body's message the partner gives elsewhere, if any."""
        return frozenset(self.elsewhere) if self.wrapped is None else frozenset()

    def path(self, grpc_path: str) -> str:
        """A field violation's path in the request, as a path in the partner's body (or the
        path parameter or header it came from)."""
        first = grpc_path.split(".", 1)[0].split("[", 1)[0]
        if first in self.elsewhere:
            return self.elsewhere[first]
        if self.wrapped is not None and first == self.wrapped:
            rest = grpc_path[len(first):].lstrip(".")
            return json_path(self.message, rest) if rest else ""
        return json_path(self.request, grpc_path)


def violations(body: Any, message: Descriptor) -> list[dict[str, str]]:
    """Every field of ``body`` that does not parse as ``message`` in the proto3 JSON mapping,
    as ``{"field": <JSON path>, "detail": ...}``. Each leaf is judged by the protobuf parser
    itself, so this cannot disagree with it on what a value may be; it only says where."""
    found: list[dict[str, str]] = []
    _walk(body, message, "", found)
    return found


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _walk(body: Any, message: Descriptor, path: str, found: list[dict[str, str]]) -> None:
    if message.full_name in _WELL_KNOWN:
        return
    if not isinstance(body, dict):
        found.append({"field": path, "detail": "must be an object"})
        return
    by_json = {f.json_name: f for f in message.fields}
    for key, value in body.items():
        descriptor = by_json.get(key) or message.fields_by_name.get(key)
        here = _join(path, str(key))
        if descriptor is None:
            found.append({"field": here, "detail": "unknown field"})
        elif value is None:
            continue  # null is the field's default in the JSON mapping
        elif descriptor.message_type is not None and descriptor.message_type.GetOptions(
                ).map_entry:
            _walk_map(value, descriptor, message, key, here, found)
        elif descriptor.is_repeated:
            if not isinstance(value, list):
                found.append({"field": here, "detail": "must be an array"})
                continue
            for index, item in enumerate(value):
                _leaf(item, descriptor, message, key, f"{here}[{index}]", found, item=True)
        else:
            _leaf(value, descriptor, message, key, here, found)


def _walk_map(value: Any, descriptor: FieldDescriptor, message: Descriptor, key: str,
              here: str, found: list[dict[str, str]]) -> None:
    if not isinstance(value, dict):
        found.append({"field": here, "detail": "must be an object"})
        return
    entry = descriptor.message_type.fields_by_name["value"]
    for name, item in value.items():
        where = f'{here}["{name}"]'
        if entry.message_type is not None and entry.message_type.full_name not in _WELL_KNOWN:
            _walk(item, entry.message_type, where, found)
        elif not _parses(message, {key: {name: item}}):
            found.append({"field": where, "detail": _expected(entry)})


def _leaf(value: Any, descriptor: FieldDescriptor, message: Descriptor, key: str, here: str,
          found: list[dict[str, str]], *, item: bool = False) -> None:
    nested = descriptor.message_type
    if nested is not None and nested.full_name not in _WELL_KNOWN:
        _walk(value, nested, here, found)
        return
    if not _parses(message, {key: [value] if item else value}):
        found.append({"field": here, "detail": _expected(descriptor)})


def _parses(message: Descriptor, body: dict[str, Any]) -> bool:
    try:
        json_format.ParseDict(body, message_factory.GetMessageClass(message)())
    except json_format.ParseError:
        return False
    return True


def _expected(descriptor: FieldDescriptor) -> str:
    if descriptor.message_type is not None:
        return _WELL_KNOWN.get(descriptor.message_type.full_name, "must be an object")
    if descriptor.enum_type is not None:
        names = ", ".join(v.name for v in descriptor.enum_type.values)
        return f"must be one of {names}"
    kind = descriptor.type
    if kind in _INTEGERS:
        return "must be an integer"
    if kind in _LONGS:
        return "must be an integer (or a string of one)"
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return "must be a number"
    if kind == FieldDescriptor.TYPE_BOOL:
        return "must be true or false"
    if kind == FieldDescriptor.TYPE_BYTES:
        return "must be base64"
    return "must be a string"
