"""The domain events partners may hear of, queued as deliveries to the endpoints subscribed.

One durable JetStream consumer (``gateway-webhooks``) reads them with the platform's inbox,
so an event redelivered queues nothing twice (and the queue's unique (endpoint, message)
says so again). Each event goes to the endpoints of the partners it is about: a channel's
order events to that channel's partners (the order's channel is learnt from
``OrderCreated``, or asked of orders when a later event comes first), a release to the 3PL
running its node.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from oms.orders.v1 import events_pb2 as orders_events
from oms.orders.v1 import orders_pb2
from oms.shipping.v1 import events_pb2 as shipping_events
from oms_platform.consumer import Subscription
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession

from oms_gateway.webhooks import store
from oms_gateway.webhooks.domain import Owners

CONSUMER = "gateway-webhooks"


@dataclass(frozen=True)
class EventKind:
    event_type: str
    message: type[Message]
    # The order names it is about; None for an event meant for a node.
    orders: Callable[[Any], Sequence[str]] | None
    node: Callable[[Any], str] | None = None


KINDS = [
    EventKind("order.created", orders_events.OrderCreated, lambda e: [e.order]),
    EventKind("order.status_changed", orders_events.OrderStatusChanged, lambda e: [e.order]),
    EventKind("order.cancelled", orders_events.OrderCancelled, lambda e: [e.order]),
    EventKind("order.refunded", orders_events.OrderRefunded, lambda e: [e.order]),
    EventKind("fulfilment.requested", orders_events.OrderReleased, None, lambda e: e.node_id),
    EventKind("shipment.progressed", shipping_events.ShipmentProgressed, lambda e: e.orders),
    EventKind("shipment.delivered", shipping_events.ShipmentDelivered, lambda e: e.orders),
    EventKind("shipment.exception", shipping_events.DeliveryException, lambda e: e.orders),
]


def payload(event_type: str, message: Message, now: datetime) -> bytes:
    """The body every endpoint gets: Standard Webhooks' ``{type, timestamp, data}``."""
    data = json_format.MessageToDict(message)
    stamp = now.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return json.dumps({"type": event_type, "timestamp": stamp, "data": data},
                      separators=(",", ":")).encode()


class Fanout:
    """The consumer's handlers: ``orders`` answers for an order whose channel is not known
    yet; ``queued`` is set whenever deliveries were queued, to wake this replica's
    workers."""

    def __init__(self, orders: Any, *, max_pending: int, timeout: float,
                 queued: asyncio.Event) -> None:
        self._orders = orders
        self._max_pending = max_pending
        self._timeout = timeout
        self._queued = queued

    def subscriptions(self) -> list[Subscription]:
        return [Subscription(kind.message, self._handler(kind))
                for kind in KINDS]

    def _handler(self, kind: EventKind) -> Callable[[AsyncSession, Any], Any]:
        async def handle(session: AsyncSession, event: Any) -> None:
            if isinstance(event, orders_events.OrderCreated):
                await store.remember_channel(session, event.order, event.channel)
            owners = (Owners(node=kind.node(event)) if kind.node is not None
                      else Owners(channels=await self._channels(session, kind, event)))
            targets = [endpoint for endpoint, row in await store.subscribed(
                session, kind.event_type) if owners.entitle(store.partner_of_row(row))]
            if not targets:
                return
            await store.enqueue(session, targets, f"msg_{uuid.uuid4().hex}", kind.event_type,
                                payload(kind.event_type, event, datetime.now(UTC)),
                                self._max_pending)
            # Wake this replica's workers once the deliveries can be seen.
            sa_event.listen(session.sync_session, "after_commit",
                         lambda _: self._queued.set(), once=True)

        return handle

    async def _channels(self, session: AsyncSession, kind: EventKind, event: Any) -> frozenset[str]:
        assert kind.orders is not None
        names = [name for name in kind.orders(event) if name]
        known = await store.channels_of(session, names)
        for name in names:
            if name not in known:
                channel = await self._ask(name)
                if channel is None:
                    continue
                known[name] = channel
                await store.remember_channel(session, name, channel)
        # An order orders does not know makes the event nobody's: no partner may hold it.
        if any(name not in known for name in names):
            return frozenset()
        return frozenset(known.values())

    async def _ask(self, name: str) -> str | None:
        try:
            order = await self._orders.GetOrder(orders_pb2.GetOrderRequest(name=name),
                                                timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                return None
            raise  # orders out of reach: the event is retried later
        return str(order.channel)
