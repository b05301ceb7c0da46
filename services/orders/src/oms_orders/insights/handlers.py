"""The events the KPI read model consumes, each applied in the consumer's inbox transaction
(the KPI store says how a redelivery or a late event counts nothing twice)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from oms.fulfilment.v1 import events_pb2 as fulfilment_events
from oms.orders.v1 import events_pb2 as orders_events
from oms.returns.v1 import events_pb2 as returns_events
from oms.shipping.v1 import events_pb2 as shipping_events
from oms_platform.consumer import Handler, Subscription
from sqlalchemy.ext.asyncio import AsyncSession

from oms_orders.insights import convert, store
from oms_orders.insights.convert import instant
from oms_orders.insights.domain import Reason


def subscriptions() -> list[Subscription]:
    """The read model's handlers; they must run before the notifications' handlers, which
    read what these wrote in the same transaction. A fetch is applied in one transaction
    that first locks every order it names (see ``locked_first``)."""
    return [
        Subscription(subscription.message_type, subscription.handler,
                     batch_handler=locked_first(subscription.handler))
        for subscription in _SUBSCRIPTIONS
    ]


def locked_first(handler: Handler) -> Any:
    """A batch handler: locks every order the fetch names at once, in name order (so two
    fetches of different streams wait for each other instead of deadlocking), then
    applies the events in turn."""

    async def handle_all(session: AsyncSession, messages: Sequence[Any]) -> None:
        await store.lock_orders(session, {name for message in messages
                                          for name in convert.orders_named(message)})
        for message in messages:
            await handler(session, message)

    return handle_all




async def on_order_created(session: AsyncSession, event: orders_events.OrderCreated) -> None:
    await store.add_order(session, convert.placed_order(event), instant(event.promise_time))


async def on_order_promise_changed(
    session: AsyncSession, event: orders_events.OrderPromiseChanged
) -> None:
    await store.change_promise(session, event.order, instant(event.promise_time),
                               instant(event.change_time) or datetime.fromtimestamp(0, UTC))


async def on_order_cancelled(session: AsyncSession, event: orders_events.OrderCancelled) -> None:
    lines: Counter[str] = Counter()
    for line in event.lines:
        lines[line.line_id] += line.quantity
    await store.cancel_units(
        session, event.order, lines, whole_order=event.whole_order,
        cancel_time=instant(event.cancel_time) or datetime.fromtimestamp(0, UTC),
        reason=event.reason)


async def on_order_refunded(session: AsyncSession, event: orders_events.OrderRefunded) -> None:
    currency, amount = convert.money_of(event.amount)
    await store.add_refund(session, event.order, event.refund, currency, amount,
                           instant(event.refund_time) or datetime.now(UTC))


async def on_packing_verified(
    session: AsyncSession, event: fulfilment_events.PackingVerified
) -> None:
    await store.add_pack_checks(session, event.package, event.node_id,
                                convert.pack_checks(event),
                                instant(event.verify_time) or datetime.now(UTC))


async def on_package_shipped(
    session: AsyncSession, event: fulfilment_events.PackageShipped
) -> None:
    await store.add_package(session, convert.shipped_package(event))


async def on_shipment_delivered(
    session: AsyncSession, event: shipping_events.ShipmentDelivered
) -> None:
    await store.deliver_package(session, event.package, event.orders,
                                instant(event.deliver_time) or datetime.now(UTC))


async def on_return_received(
    session: AsyncSession, event: returns_events.ReturnReceived
) -> None:
    units: Counter[tuple[str, Reason]] = Counter()
    for line in event.lines:
        units[line.line_id, Reason.of(line.reason)] += line.quantity
    await store.add_return(session, getattr(event, "return"), event.order, units,
                           instant(event.receive_time) or datetime.now(UTC))


_SUBSCRIPTIONS = [
    Subscription(orders_events.OrderCreated, on_order_created),
    Subscription(orders_events.OrderPromiseChanged, on_order_promise_changed),
    Subscription(orders_events.OrderCancelled, on_order_cancelled),
    Subscription(orders_events.OrderRefunded, on_order_refunded),
    Subscription(fulfilment_events.PackingVerified, on_packing_verified),
    Subscription(fulfilment_events.PackageShipped, on_package_shipped),
    Subscription(shipping_events.ShipmentDelivered, on_shipment_delivered),
    Subscription(returns_events.ReturnReceived, on_return_received),
]
