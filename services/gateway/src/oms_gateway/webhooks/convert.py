"""Rows of the webhook tables as the API's messages (oms.gateway.v1)."""

from __future__ import annotations

from typing import Any

from oms.gateway.v1 import webhooks_pb2
from oms_platform.values import timestamp

from oms_gateway.webhooks.store import Endpoint

_STATES = {"pending": webhooks_pb2.WebhookDelivery.STATE_PENDING,
           "succeeded": webhooks_pb2.WebhookDelivery.STATE_SUCCEEDED,
           "failed": webhooks_pb2.WebhookDelivery.STATE_FAILED}


def endpoint(row: Endpoint, *, with_secret: bool = False) -> webhooks_pb2.WebhookEndpoint:
    return webhooks_pb2.WebhookEndpoint(
        name=f"webhookEndpoints/{row.id}", url=row.url, event_types=row.event_types,
        description=row.description, secret=row.secret if with_secret else "",
        create_time=timestamp(row.created_at))


def delivery(row: Any, attempts: list[Any]) -> webhooks_pb2.WebhookDelivery:
    message = webhooks_pb2.WebhookDelivery(
        name=f"webhookDeliveries/{row.id}", endpoint=f"webhookEndpoints/{row.endpoint_id}",
        webhook_id=row.message_id, event_type=row.event_type, state=_STATES[row.state],
        attempt_count=row.attempts, create_time=timestamp(row.created_at),
        attempts=[webhooks_pb2.WebhookAttempt(
            attempt_time=timestamp(a.at), status_code=a.status_code, error=a.error,
            duration_ms=a.duration_ms) for a in attempts])
    if row.state == "pending":
        message.next_attempt_time.CopyFrom(timestamp(row.next_attempt_at))
    return message
