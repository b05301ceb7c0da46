"""The event envelope: CloudEvents in binary mode over NATS headers, proto3 JSON body.

Everything about an event's address is derived from its proto message, so no catalogue can
drift from the contracts: ``oms.orders.v1.OrderCreated`` is published on the subject
``oms.orders.order_created`` (with the fulfilment node or partner id appended where an
event is meant for one of them) into the stream ``OMS_ORDERS``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from google.protobuf import json_format
from google.protobuf.message import Message

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def producing_service(message_type: type[Message] | Message) -> str:
    package = message_type.DESCRIPTOR.full_name.split(".")
    return package[1]


def event_type(message_type: type[Message] | Message) -> str:
    return message_type.DESCRIPTOR.full_name


def subject_for(message_type: type[Message] | Message, partition: str | None = None) -> str:
    base = f"oms.{producing_service(message_type)}.{_snake(message_type.DESCRIPTOR.name)}"
    return f"{base}.{partition}" if partition else base


def subject_filter(message_type: type[Message]) -> str:
    """Subjects of one event type, with or without a partition token."""
    return subject_for(message_type) + ".>"


def stream_name(service: str) -> str:
    return f"OMS_{service.upper()}"


def stream_subjects(service: str) -> list[str]:
    return [f"oms.{service}.>"]


@dataclass(frozen=True)
class Envelope:
    event_id: uuid.UUID
    subject: str
    headers: dict[str, str]
    payload: bytes


def encode(
    message: Message,
    *,
    aggregate_id: str,
    source: str,
    partition: str | None = None,
    trace_headers: Mapping[str, str] | None = None,
    event_id: uuid.UUID | None = None,
    time: datetime | None = None,
) -> Envelope:
    event_id = event_id or uuid.uuid4()
    headers = {
        "ce-specversion": SPEC_VERSION,
        "ce-id": str(event_id),
        "ce-type": event_type(message),
        "ce-source": source,
        "ce-subject": aggregate_id,
        "ce-time": (time or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
        "ce-datacontenttype": CONTENT_TYPE,
        "ce-dataschema": f"proto:{event_type(message)}",
        "content-type": CONTENT_TYPE,
        "Nats-Msg-Id": str(event_id),
        **(trace_headers or {}),
    }
    payload = json_format.MessageToJson(message, indent=None).encode()
    return Envelope(event_id, subject_for(message, partition), headers, payload)


class UnknownEventType(Exception):
    pass


def decode(headers: Mapping[str, str], payload: bytes,
           types: Iterable[type[Message]]) -> Message:
    by_type = {event_type(t): t for t in types}
    message_type = by_type.get(headers.get("ce-type", ""))
    if message_type is None:
        raise UnknownEventType(headers.get("ce-type", ""))
    message = message_type()
    json_format.Parse(payload, message, ignore_unknown_fields=True)
    return message
