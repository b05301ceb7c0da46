"""Outbound webhooks, as partners manage them: subscribe an endpoint to event types, list
and delete endpoints, read an endpoint's delivery log page by page, and replay a delivery.
Every id is checked against the caller: another partner's endpoint or delivery is 404,
exactly like one that does not exist."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from google.protobuf import json_format
from oms.gateway.v1 import webhooks_pb2
from oms_platform import pagination

from oms_gateway.auth import require
from oms_gateway.fields import Shape
from oms_gateway.idempotency.middleware import HEADER, reached
from oms_gateway.partners.domain import Partner
from oms_gateway.problems import Problem
from oms_gateway.webhooks import convert, store
from oms_gateway.webhooks.bodies import invalid, parse
from oms_gateway.webhooks.domain import (
    EVENT_TYPES,
    MAX_DESCRIPTION_LENGTH,
    MAX_ENDPOINTS_PER_PARTNER,
    may_subscribe,
    url_violation,
)
from oms_gateway.webhooks.signing import new_secret

ENDPOINT_BODY = Shape(webhooks_pb2.WebhookEndpoint.DESCRIPTOR)
MAX_EVENT_TYPES = 20
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20
_LIST = "webhook-deliveries"

router = APIRouter(tags=["webhooks out"])


def _json(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message)


def _id(raw: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise _not_found(what, raw) from None


def _not_found(what: str, raw: str) -> Problem:
    return Problem(404, "Not found", f"no {what} {raw}", kind="not-found")


def _check(partner: Partner, message: webhooks_pb2.WebhookEndpoint,
           allow_private: bool) -> None:
    """Every violation of a new endpoint at once."""
    errors = []
    bad_url = url_violation(message.url, allow_private=allow_private)
    if bad_url:
        errors.append({"field": "url", "detail": bad_url})
    if not 0 < len(message.event_types) <= MAX_EVENT_TYPES:
        errors.append({"field": "eventTypes", "detail": f"1 to {MAX_EVENT_TYPES} event types"})
    for index, event_type in enumerate(message.event_types[:MAX_EVENT_TYPES]):
        if event_type not in EVENT_TYPES:
            errors.append({"field": f"eventTypes[{index}]", "detail": "one of "
                           + ", ".join(EVENT_TYPES)})
        elif not may_subscribe(partner, event_type):
            errors.append({"field": f"eventTypes[{index}]",
                           "detail": f"not an event a {partner.kind.value} partner hears of"})
    if len(message.description) > MAX_DESCRIPTION_LENGTH:
        errors.append({"field": "description",
                       "detail": f"at most {MAX_DESCRIPTION_LENGTH} characters"})
    if errors:
        raise invalid("; ".join(f"{e['field']}: {e['detail']}" for e in errors), errors)


@router.post("/v1/webhook-endpoints", status_code=201,
             summary="Subscribe an endpoint to event types")
async def create_endpoint(
    request: Request, response: Response,
    endpoint: dict[str, Any],
    partner: Annotated[Partner, Depends(require("webhooks:write"))],
    idempotency_key: Annotated[str, Header(alias=HEADER)],
) -> dict[str, Any]:
    """The answer carries the endpoint's signing secret, once: keep it to verify the
    deliveries' signatures. A partner has at most 20 endpoints."""
    message = parse(request, endpoint, ENDPOINT_BODY)
    state = request.app.state
    _check(partner, message, state.settings.webhook_allow_private_urls)
    reached(request)
    created = await store.create_endpoint(
        state.engine, partner.partner_id, message.url, list(dict.fromkeys(message.event_types)),
        message.description, new_secret(), MAX_ENDPOINTS_PER_PARTNER)
    if created is None:
        raise Problem(409, "Too many endpoints", f"a partner has at most "
                      f"{MAX_ENDPOINTS_PER_PARTNER} endpoints; delete one first",
                      kind="failed-precondition")
    response.headers["Location"] = f"/v1/webhookEndpoints/{created.id}"
    return _json(convert.endpoint(created, with_secret=True))


@router.get("/v1/webhook-endpoints", summary="List the partner's endpoints")
async def list_endpoints(
    request: Request,
    partner: Annotated[Partner, Depends(require("webhooks:read"))],
) -> dict[str, Any]:
    found = await store.endpoints_of(request.app.state.engine, partner.partner_id)
    return _json(webhooks_pb2.ListWebhookEndpointsResponse(
        webhook_endpoints=[convert.endpoint(e) for e in found]))


@router.delete("/v1/webhook-endpoints/{endpoint_id}",
               summary="Delete an endpoint, its queue and its log")
async def delete_endpoint(
    request: Request, endpoint_id: str,
    partner: Annotated[Partner, Depends(require("webhooks:write"))],
) -> dict[str, Any]:
    deleted = await store.delete_endpoint(request.app.state.engine, partner.partner_id,
                                          _id(endpoint_id, "webhook endpoint"))
    if deleted is None:
        raise _not_found("webhook endpoint", endpoint_id)
    return _json(convert.endpoint(deleted))


@router.get("/v1/webhook-endpoints/{endpoint_id}/deliveries",
            summary="An endpoint's deliveries and their attempts, page by page")
async def list_deliveries(
    request: Request, endpoint_id: str,
    partner: Annotated[Partner, Depends(require("webhooks:read"))],
    page_size: Annotated[int, Query(alias="pageSize", ge=0, le=MAX_PAGE_SIZE, description=(
        f"At most this many deliveries (0: {DEFAULT_PAGE_SIZE})"))] = 0,
    page_token: Annotated[str, Query(alias="pageToken", max_length=2000, description=(
        "A previous page's nextPageToken"))] = "",
) -> dict[str, Any]:
    """Newest first, each with its last 20 attempts."""
    state = request.app.state
    target = _id(endpoint_id, "webhook endpoint")
    if await store.endpoint(state.engine, partner.partner_id, target) is None:
        raise _not_found("webhook endpoint", endpoint_id)
    query = {"endpoint": str(target)}
    pagination.use_key(state.page_key)
    with pagination.serving(_LIST):
        try:
            after = _after(pagination.decode_page_token(page_token, query))
        except (pagination.PageTokenError, ValueError, TypeError, KeyError) as error:
            raise invalid("pageToken: not a token of this list", [
                {"field": "pageToken", "detail": "not a token of this list"}]) from error
        size = page_size or DEFAULT_PAGE_SIZE
        rows = await store.deliveries(state.engine, target, size + 1, after)
        token = ""
        if len(rows) > size:
            rows = rows[:size]
            last = rows[-1][0]
            token = pagination.encode_page_token([last.created_at.isoformat(), str(last.id)],
                                                 query)
    return _json(webhooks_pb2.ListWebhookDeliveriesResponse(
        webhook_deliveries=[convert.delivery(row, attempts) for row, attempts in rows],
        next_page_token=token))


def _after(key: list[Any] | None) -> tuple[datetime, uuid.UUID] | None:
    if key is None:
        return None
    moment, delivery_id = key  # a signed token: only ours, so only these shapes
    return datetime.fromisoformat(moment), uuid.UUID(delivery_id)


@router.post("/v1/webhook-deliveries/{delivery_id}:replay",
             summary="Send a delivery again, from its first attempt")
async def replay_delivery(
    request: Request, delivery_id: str,
    partner: Annotated[Partner, Depends(require("webhooks:write"))],
    idempotency_key: Annotated[str, Header(alias=HEADER)],
) -> dict[str, Any]:
    """Whatever its state: a failed delivery is retried with a fresh count of attempts, a
    delivered one is sent once more (with the same `webhook-id`)."""
    state = request.app.state
    target = _id(delivery_id, "webhook delivery")
    replayed = await store.replay(state.engine, partner.partner_id, target)
    if replayed is None:  # not stored: the key stays free, as for every id not the caller's
        raise _not_found("webhook delivery", delivery_id)
    reached(request)
    state.webhook_wake.set()
    return _json(convert.delivery(*replayed))
