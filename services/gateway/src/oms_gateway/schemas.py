"""JSON Schemas of the API's bodies, generated from the proto descriptors.

Generated rather than written as pydantic models: the bodies *are* the proto3 JSON mapping of
the contracts, so a model written by hand would be a second copy of ``proto/`` that a test
must keep in step; generated, a field added to a message is in the document on the next start.
The mapping is protobuf's: ``json_name`` (camelCase) properties, 64-bit integers as decimal
strings, enums by name, Timestamps as RFC 3339 date-times, Durations as ``"1.5s"``;
``google.api.field_behavior`` gives ``required`` (REQUIRED) and ``readOnly`` (OUTPUT_ONLY,
IDENTIFIER: the service sets them, a request's are ignored).
"""

from __future__ import annotations

from typing import Any

from google.api import field_behavior_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from oms_gateway.webhooks.domain import EVENT_TYPES

_REQUIRED = field_behavior_pb2.REQUIRED
_READ_ONLY = {field_behavior_pb2.OUTPUT_ONLY, field_behavior_pb2.IDENTIFIER}
_INT64 = {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"}
_UINT64 = {"type": "string", "format": "uint64", "pattern": "^[0-9]+$"}
_INT32 = {"type": "integer", "format": "int32", "minimum": -(2**31), "maximum": 2**31 - 1}
_UINT32 = {"type": "integer", "format": "uint32", "minimum": 0, "maximum": 2**32 - 1}
_SCALARS: dict[int, dict[str, Any]] = {
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
    FieldDescriptor.TYPE_DOUBLE: {"type": "number"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number"},
    FieldDescriptor.TYPE_INT32: _INT32, FieldDescriptor.TYPE_SINT32: _INT32,
    FieldDescriptor.TYPE_SFIXED32: _INT32,
    FieldDescriptor.TYPE_UINT32: _UINT32, FieldDescriptor.TYPE_FIXED32: _UINT32,
    FieldDescriptor.TYPE_INT64: _INT64, FieldDescriptor.TYPE_SINT64: _INT64,
    FieldDescriptor.TYPE_SFIXED64: _INT64,
    FieldDescriptor.TYPE_UINT64: _UINT64, FieldDescriptor.TYPE_FIXED64: _UINT64,
}
# Well-known types with a JSON form of their own.
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$"},
    "google.protobuf.FieldMask": {"type": "string"},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Empty": {"type": "object", "additionalProperties": False},
    "google.protobuf.Any": {"type": "object", "required": ["@type"]},
    "google.protobuf.StringValue": {"type": ["string", "null"]},
    "google.protobuf.BoolValue": {"type": ["boolean", "null"]},
    "google.protobuf.DoubleValue": {"type": ["number", "null"]},
    "google.protobuf.FloatValue": {"type": ["number", "null"]},
    "google.protobuf.Int32Value": {"type": ["integer", "null"]},
    "google.protobuf.UInt32Value": {"type": ["integer", "null"]},
    "google.protobuf.Int64Value": {"type": ["string", "null"], "pattern": "^-?[0-9]+$"},
    "google.protobuf.UInt64Value": {"type": ["string", "null"], "pattern": "^[0-9]+$"},
    "google.protobuf.BytesValue": {"type": ["string", "null"], "contentEncoding": "base64"},
}
# What the services check beyond the descriptors' types, where a partner most needs it:
# money is a decimal string, never a JSON number (oms_platform.money).
_REFINED: dict[tuple[str, str], dict[str, Any]] = {
    ("oms.common.v1.Money", "currency_code"): {
        "pattern": "^[A-Z]{3}$", "description": "ISO 4217, e.g. USD", "examples": ["USD"]},
    ("oms.common.v1.Money", "amount"): {
        "pattern": r"^-?[0-9]+(\.[0-9]+)?$",
        "description": "A decimal string in the currency's units, e.g. 19.99",
        "examples": ["19.99"]},
    # An endpoint's URL and event types, as webhooks.endpoints checks them.
    ("oms.gateway.v1.WebhookEndpoint", "url"): {
        "format": "uri", "pattern": "^https?://[^/?#@]+(/.*)?$", "maxLength": 2000,
        "examples": ["https://partner.example.com/oms-webhooks"]},
    ("oms.gateway.v1.WebhookEndpoint", "event_types"): {"enum": list(EVENT_TYPES)},
}


def behaviors(field: FieldDescriptor) -> set[int]:
    return set(field.GetOptions().Extensions[field_behavior_pb2.field_behavior])


class Components:
    """The schemas of messages, collected as they are referenced; one per message type,
    named by its message name (its full name if two packages share a name)."""

    def __init__(self) -> None:
        self.schemas: dict[str, dict[str, Any]] = {}
        self._names: dict[str, str] = {}

    def ref(self, message: Descriptor, *, name: str | None = None,
            without: frozenset[str] = frozenset()) -> dict[str, Any]:
        """A reference to ``message``'s schema; ``without`` leaves out fields the partner
        gives elsewhere (the path, a header), under a ``name`` of its own."""
        if message.full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[message.full_name])
        key = f"{message.full_name}-{','.join(sorted(without))}"
        if key not in self._names:
            chosen = name or message.name
            if chosen in self.schemas:
                chosen = message.full_name
            self._names[key] = chosen
            self.schemas[chosen] = {}  # reserved first: messages may refer to themselves
            self.schemas[chosen] = {**self._message(message, without), "title": chosen}
        return {"$ref": f"#/components/schemas/{self._names[key]}"}

    def _message(self, message: Descriptor, without: frozenset[str]) -> dict[str, Any]:
        properties: dict[str, Any] = {}
        required: list[str] = []
        for field in message.fields:
            if field.name in without:
                continue
            schema = self._field(message, field)
            marks = behaviors(field)
            if marks & _READ_ONLY:
                schema["readOnly"] = True
            elif _REQUIRED in marks:
                required.append(field.json_name)
            properties[field.json_name] = schema
        schema: dict[str, Any] = {"type": "object", "title": message.name,
                                  "properties": properties, "additionalProperties": False}
        if required:
            schema["required"] = required
        return schema

    def _field(self, message: Descriptor, field: FieldDescriptor) -> dict[str, Any]:
        nested = field.message_type
        if nested is not None and nested.GetOptions().map_entry:
            return {"type": "object",
                    "additionalProperties": self._single(nested, nested.fields_by_name["value"])}
        single = self._single(message, field)
        return {"type": "array", "items": single} if field.is_repeated else single

    def _single(self, message: Descriptor, field: FieldDescriptor) -> dict[str, Any]:
        if field.message_type is not None:
            return self.ref(field.message_type)
        if field.enum_type is not None:
            return {"type": "string", "enum": [value.name for value in field.enum_type.values]}
        return {**_SCALARS[field.type], **_REFINED.get((message.full_name, field.name), {})}


PROBLEM = {
    "type": "object",
    "title": "Problem",
    "description": "An RFC 9457 problem. `errors` names every bad field at once, by its "
                   "JSON path in the request body (or the header or path parameter).",
    "required": ["type", "title", "status", "detail", "instance"],
    "properties": {
        "type": {"type": "string", "format": "uri",
                 "examples": ["https://oms.example.com/problems/invalid-argument"]},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {"type": "array", "items": {
            "type": "object", "required": ["field", "detail"],
            "additionalProperties": False,
            "properties": {"field": {"type": "string",
                                     "examples": ["lines[0].unitPrice.currencyCode"]},
                           "detail": {"type": "string"}}}},
        "reason": {"type": "string", "description": "The service's stable reason code",
                   "examples": ["ORDER_SHIPPED"]},
        "scope": {"type": "string", "description": "The scope the credentials lack (403)"},
    },
    "additionalProperties": False,
}
