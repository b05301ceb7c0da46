"""Webhooks in: carriers post tracking events, payment providers payment events.

Each request carries the partner's API key (who it is, and the scope) and a Standard
Webhooks signature under one of the partner's signing secrets (that the body is the
partner's and fresh). In order: the signature (401; a stale or missing timestamp 400), the
body (400 naming its fields), whose the objects are (404 for another carrier's shipment or
another provider's payment), then the webhook id: an id already answered gets that answer
again, byte for byte, and changes nothing. Only accepted webhooks keep their id; a refused
one, or one met by an outage, leaves nothing, so its retry is handled afresh.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response
from google.protobuf import json_format
from oms.orders.v1 import orders_pb2
from oms.shipping.v1 import shipping_pb2

from oms_gateway.auth import require
from oms_gateway.fields import Shape
from oms_gateway.partners.domain import Partner
from oms_gateway.problems import Problem
from oms_gateway.webhooks import inbound_store, partner_secrets, signing
from oms_gateway.webhooks.bodies import invalid, parse, raw_body
from oms_gateway.webhooks.domain import Payment, payment_is_theirs

PREFIX = "/v1/webhooks/"
TRACKING_BODY = Shape(shipping_pb2.RecordTrackingEventsRequest.DESCRIPTOR)
PAYMENT_BODY = Shape(orders_pb2.RecordPaymentRequest.DESCRIPTOR)
REPLAYED = "Webhook-Replayed"
_ORDER_NAME = re.compile(r"^orders/[0-9a-fA-F-]{36}$")
_JSON = "application/json"

router = APIRouter(tags=["webhooks in"])

WebhookId = Annotated[str, Header(alias=signing.ID_HEADER, description=(
    "The webhook's id, the same on every retry of it (Standard Webhooks)"))]
WebhookTimestamp = Annotated[str, Header(alias=signing.TIMESTAMP_HEADER, description=(
    "When it was signed, in seconds since the Unix epoch; within 5 minutes of now"))]
WebhookSignature = Annotated[str, Header(alias=signing.SIGNATURE_HEADER, description=(
    "`v1,<base64 HMAC-SHA256 of id.timestamp.body>` under the partner's signing secret"))]


def _to_json(message: Any) -> bytes:
    return json_format.MessageToJson(message, indent=None).encode()


def _actor(partner: Partner) -> tuple[tuple[str, str], ...]:
    return (("oms-actor", f"partner:{partner.partner_id}"),)


async def _verified(request: Request, partner: Partner) -> bytes:
    """The raw body, once its signature is the partner's; else the refusal."""
    state = request.app.state
    raw = await raw_body(request, state.settings.max_body_bytes)
    refusal = signing.check(request.headers, raw,
                            await partner_secrets.live(state.engine, partner.partner_id))
    if refusal is None:
        return raw
    errors = [{"field": refusal.field, "detail": refusal.detail}]
    if refusal.status == 401:
        raise Problem(401, "Invalid signature", refusal.detail, kind="invalid-signature",
                      extra={"errors": errors})
    raise invalid(refusal.detail, errors)


async def _once(request: Request, partner: Partner,
                work: Callable[[], Awaitable[bytes]]) -> Response:
    """Runs ``work`` once per webhook id: its answer is kept for the id's lifetime."""
    state = request.app.state
    settings = state.settings
    webhook_id = request.headers[signing.ID_HEADER]
    lease = await inbound_store.claim(
        state.engine, partner.partner_id, webhook_id,
        lease=timedelta(seconds=settings.idempotency_lease_seconds),
        ttl=timedelta(seconds=settings.inbound_webhook_ttl_seconds))
    if lease is None:
        answer = await inbound_store.find(state.engine, partner.partner_id, webhook_id)
        if answer is not None and answer.status is not None:
            return Response(answer.body, status_code=answer.status, media_type=_JSON,
                            headers={REPLAYED: "true"})
        raise Problem(409, "Webhook in flight", "a webhook with this id is still being "
                      "handled; retry it later", kind="webhook-in-flight",
                      headers={"Retry-After": "1"})
    try:
        body = await work()
    except BaseException:
        await inbound_store.release(state.engine, partner.partner_id, webhook_id, lease)
        raise
    await inbound_store.complete(state.engine, partner.partner_id, webhook_id, lease, 200,
                                 body)
    return Response(body, media_type=_JSON)


@router.post("/v1/webhooks/tracking", summary="Report tracking events (carrier webhook)")
async def tracking_webhook(
    request: Request,
    partner: Annotated[Partner, Depends(require("shipments:write"))],
    webhook_id: WebhookId, webhook_timestamp: WebhookTimestamp,
    webhook_signature: WebhookSignature,
) -> Response:
    """Up to 500 events of the partner's carriers' parcels (`carrier` is one of the partner's
    carrier ids). Tracking numbers the carrier has no label for are listed back and ignored;
    when none is known the answer is 404 and the id is not kept."""
    raw = await _verified(request, partner)
    message = parse(request, raw, TRACKING_BODY)
    for index, event in enumerate(message.events):
        if not partner.reports_for_carrier(event.carrier):
            raise Problem(404, "Not found", f"no shipments of carrier {event.carrier!r} are "
                          "this partner's", kind="not-found",
                          extra={"errors": [{"field": f"events[{index}].carrier",
                                             "detail": "not a carrier of this partner"}]})

    async def record() -> bytes:
        state = request.app.state
        reply = await state.shipping.RecordTrackingEvents(
            message, timeout=state.settings.request_timeout_seconds, metadata=_actor(partner))
        if reply.unknown_tracking_numbers and not reply.recorded and not reply.duplicates:
            raise Problem(404, "Not found", "no shipment of this partner's carriers has "
                          f"tracking number {reply.unknown_tracking_numbers[0]!r}",
                          kind="not-found")
        return _to_json(reply)

    return await _once(request, partner, record)


@router.post("/v1/webhooks/payments", summary="Report a payment event (payment provider "
             "webhook)")
async def payment_webhook(
    request: Request,
    partner: Annotated[Partner, Depends(require("payments:write"))],
    webhook_id: WebhookId, webhook_timestamp: WebhookTimestamp,
    webhook_signature: WebhookSignature,
) -> Response:
    """An authorisation, capture, failure or refund of an order of the partner's channels.
    `payment.provider` is the partner's id (empty is taken as it). Answers the order."""
    raw = await _verified(request, partner)
    message = parse(request, raw, PAYMENT_BODY)
    if not _ORDER_NAME.match(message.name):
        raise invalid("name: must be orders/{id}", [{"field": "name",
                                                      "detail": "must be orders/{id}"}])
    if message.payment.provider not in ("", partner.partner_id):
        raise invalid("payment.provider: must be the partner's id", [{
            "field": "payment.provider", "detail": f"must be {partner.partner_id} or empty"}])
    message.payment.provider = partner.partner_id
    state = request.app.state
    timeout = state.settings.request_timeout_seconds
    order = await state.orders.GetOrder(orders_pb2.GetOrderRequest(name=message.name),
                                        timeout=timeout)
    recorded = [Payment(p.transaction_id, orders_pb2.PaymentKind.Name(p.kind), p.provider)
                for p in order.payments]
    if not partner.may_see_channel(order.channel):
        raise Problem(404, "Not found", f"no order {message.name}", kind="not-found")
    if not payment_is_theirs(recorded, message.payment.transaction_id,
                             orders_pb2.PaymentKind.Name(message.payment.kind),
                             partner.partner_id):
        raise Problem(404, "Not found", f"no payment of this partner on {message.name} to "
                      "report this for", kind="not-found")

    async def record() -> bytes:
        return _to_json(await state.orders.RecordPayment(message, timeout=timeout,
                                                         metadata=_actor(partner)))

    return await _once(request, partner, record)
