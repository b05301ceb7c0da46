"""What the gateway runs for webhooks beside its routes: the consumer that queues deliveries
(when NATS is configured), the delivery workers, and the sweeps of expired inbound ids and
old deliveries; and what the OpenAPI document says of the webhook routes."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import grpc
import structlog
from nats.aio.client import Client
from nats.js.errors import NotFoundError
from oms.gateway.v1 import webhooks_pb2
from oms.orders.v1 import orders_pb2
from oms.shipping.v1 import shipping_pb2, shipping_pb2_grpc
from oms_platform import bus
from oms_platform.consumer import EventConsumer
from oms_platform.db import session_factory
from oms_platform.events import stream_name
from opentelemetry.instrumentation.grpc import aio_client_interceptors

from oms_gateway.openapi import Operation
from oms_gateway.problems import SERVICE_STATUSES
from oms_gateway.settings import GatewaySettings
from oms_gateway.tables import metadata
from oms_gateway.webhooks import inbound_store, store
from oms_gateway.webhooks.delivery import Deliverer, Policy
from oms_gateway.webhooks.endpoints import ENDPOINT_BODY
from oms_gateway.webhooks.handlers import CONSUMER, Fanout
from oms_gateway.webhooks.inbound import PAYMENT_BODY, TRACKING_BODY

log = structlog.get_logger(__name__)

SWEEP_INTERVAL_SECONDS = 300.0
# What the webhook routes can answer besides their success (openapi.statuses is the order
# routes'): no Idempotency-Key on the inbound ones, so no 422. Every route is under the
# partner's rate limit (429).
_INBOUND = frozenset(SERVICE_STATUSES | {400, 401, 403, 404, 409, 413, 429, 503})
_MANAGE = frozenset({400, 401, 403, 429, 503})
OPERATIONS = {
    ("POST", "/v1/webhooks/tracking"): Operation(
        shipping_pb2.RecordTrackingEventsResponse.DESCRIPTOR, 200, TRACKING_BODY,
        description="What the events changed (the first answer again for a webhook id "
        "already taken)", problems=_INBOUND),
    ("POST", "/v1/webhooks/payments"): Operation(
        orders_pb2.Order.DESCRIPTOR, 200, PAYMENT_BODY, description="The order as it is now "
        "(the first answer again for a webhook id already taken)", problems=_INBOUND),
    ("POST", "/v1/webhook-endpoints"): Operation(
        webhooks_pb2.WebhookEndpoint.DESCRIPTOR, 201, ENDPOINT_BODY,
        description="The endpoint, with its signing secret (shown once)",
        example={"url": "https://partner.example.com/oms-webhooks",
                 "eventTypes": ["order.created", "order.status_changed"],
                 "description": "order updates"},
        example_summary="Order updates of the demo channel",
        problems=_MANAGE | {409, 413, 422}),
    ("GET", "/v1/webhook-endpoints"): Operation(
        webhooks_pb2.ListWebhookEndpointsResponse.DESCRIPTOR,
        description="The partner's endpoints", problems=_MANAGE),
    ("DELETE", "/v1/webhook-endpoints/{endpoint_id}"): Operation(
        webhooks_pb2.WebhookEndpoint.DESCRIPTOR, description="The endpoint deleted",
        problems=_MANAGE | {404}),
    ("GET", "/v1/webhook-endpoints/{endpoint_id}/deliveries"): Operation(
        webhooks_pb2.ListWebhookDeliveriesResponse.DESCRIPTOR,
        description="A page of deliveries, newest first", problems=_MANAGE | {404}),
    ("POST", "/v1/webhook-deliveries/{delivery_id}:replay"): Operation(
        webhooks_pb2.WebhookDelivery.DESCRIPTOR, description="The delivery, queued again",
        problems=_MANAGE | {404, 409, 413, 422}),
}


@dataclass
class Webhooks:
    """The running parts, stopped in reverse."""

    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    consumer: EventConsumer | None = None
    nats: Client | None = None
    shipping_channel: grpc.aio.Channel | None = None

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
        for task in self.tasks:  # the consumer's start, should NATS not have answered yet
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.nats is not None:
            with contextlib.suppress(Exception):
                await self.nats.drain()
        if self.shipping_channel is not None:
            await self.shipping_channel.close()


def policy(settings: GatewaySettings) -> Policy:
    return Policy(max_attempts=settings.webhook_max_attempts,
                  base=timedelta(seconds=settings.webhook_backoff_base_seconds),
                  cap=timedelta(seconds=settings.webhook_backoff_max_seconds),
                  timeout=settings.webhook_timeout_seconds,
                  concurrency=settings.webhook_concurrency,
                  poll_interval=settings.webhook_poll_interval_seconds)


async def start(state: Any, settings: GatewaySettings) -> Webhooks:
    """Starts them with what the app's state holds (its engine, its orders stub)."""
    running = Webhooks()
    running.shipping_channel = grpc.aio.insecure_channel(
        settings.shipping_target, interceptors=aio_client_interceptors(),
        options=[("grpc.initial_reconnect_backoff_ms", 200),
                 ("grpc.max_reconnect_backoff_ms", 2000)])
    state.shipping = shipping_pb2_grpc.ShippingServiceStub(running.shipping_channel)
    state.webhook_wake = asyncio.Event()
    running.tasks.append(asyncio.create_task(
        Deliverer(state.engine, policy(settings), state.webhook_wake).run(),
        name="webhook-delivery"))
    running.tasks.append(asyncio.create_task(_sweep(state.engine, settings),
                                             name="webhook-sweep"))
    if settings.nats_url is None:
        log.warning("OMS_NATS_URL unset: no domain events are queued for webhooks")
        return running
    fanout = Fanout(state.orders, max_pending=settings.webhook_max_pending_per_endpoint,
                    timeout=settings.request_timeout_seconds, queued=state.webhook_wake)
    # In the background: the partner API serves while NATS is out of reach, as the services
    # keep serving through an outage; events wait in their streams meanwhile.
    running.tasks.append(asyncio.create_task(_consume(running, state, settings.nats_url,
                                                      fanout), name="webhook-consumer"))
    return running


async def _consume(running: Webhooks, state: Any, nats_url: str, fanout: Fanout) -> None:
    running.nats = await bus.connect(nats_url, name="oms-gateway")
    js = running.nats.jetstream()
    subscriptions = fanout.subscriptions()
    attempt = 0
    while True:
        attempt += 1
        consumer: EventConsumer | None = None
        try:
            for producer in {s.message_type.DESCRIPTOR.full_name.split(".")[1]
                             for s in subscriptions}:
                # Created only if missing: its limits are the producing service's to set.
                try:
                    await js.stream_info(stream_name(producer))
                except NotFoundError:
                    await bus.ensure_stream(js, producer)
            consumer = EventConsumer(js, session_factory(state.engine), metadata,
                                     consumer=CONSUMER, subscriptions=subscriptions,
                                     batch_size=64, concurrency=8)
            await consumer.start()
        except Exception:
            log.exception("webhook consumer not started; retrying", attempt=attempt)
            if consumer is not None:  # a stream's pull may have begun: end it first
                await consumer.stop()
            await asyncio.sleep(min(0.5 * attempt, 10.0))
            continue
        running.consumer = consumer
        return


async def _sweep(engine: Any, settings: GatewaySettings) -> None:
    retention = timedelta(seconds=settings.webhook_retention_seconds)
    while True:
        await asyncio.sleep(SWEEP_INTERVAL_SECONDS)
        try:
            swept = await inbound_store.sweep(engine) + await store.sweep(engine, retention)
            if swept:
                log.info("expired webhook rows deleted", count=swept)
        except Exception:
            log.exception("webhook sweep failed; retried next interval")
