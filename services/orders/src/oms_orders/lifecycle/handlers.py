"""Events of other services, each handled inside the consumer's inbox transaction.

Each handler loads the order with the other orders of its merged shipment (locked), lets the
aggregate decide, releases to the warehouse what became releasable, and saves what changed.
Duplicates and late events are no-ops by the aggregate's guards (quantities per line, package
and return ids); an event that arrived before the one it depends on raises ``OutOfOrder`` and
is retried by the consumer.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

import structlog
from oms.fulfilment.v1 import events_pb2 as fulfilment_events
from oms.inventory.v1 import events_pb2 as inventory_events
from oms.returns.v1 import events_pb2 as returns_events
from oms.shipping.v1 import events_pb2 as shipping_events
from oms_platform.service import Runtime
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_orders.lifecycle import convert, domain, store
from oms_orders.settings import OrdersSettings

log = structlog.get_logger(__name__)

Change = Callable[[domain.Order, datetime], bool]


async def apply(
    session: AsyncSession, name: str, event_type: str, change: Change
) -> domain.Order | None:
    """Runs ``change`` on the order named ``name`` and saves it (with any release)."""
    order_id = domain.parse_order_name(name)
    group = await store.load_group(session, order_id) if order_id else []
    order = next((o for o in group if o.id == order_id), None)
    if order is None:
        # An event for an order we do not know cannot succeed on a retry, so it is
        # acknowledged rather than retried into the dead letters.
        log.warning("event for an unknown order ignored", order=name, event_type=event_type)
        return None
    now = datetime.now(UTC)
    if not change(order, now):
        return order
    changed, releases = _release(order, group, now)
    await store.save(session, changed, releases)
    return order


def _release(order: domain.Order, group: list[domain.Order],
             now: datetime) -> tuple[list[domain.Order], list[domain.Release]]:
    """After ``order`` changed: what its merged group (or it alone) releases now, and the
    orders to save — the changed one and any member the release moved."""
    members = [o for o in group if order.merge_group and o.merge_group == order.merge_group]
    releases = domain.release_ready(members or [order], at=now)
    if releases:
        log.info("order released", order=order.name, nodes=[r.node_id for r in releases])
    return [order, *(o for o in members if o is not order and o.release_time == now)], releases


async def on_stock_allocated(
    session: AsyncSession, event: inventory_events.StockAllocated
) -> None:
    allocations = convert.allocations_from_proto(event)
    await apply(session, event.order, "StockAllocated",
                lambda order, now: order.allocate(allocations, at=now))


async def on_stocks_allocated(
    session: AsyncSession, events: Sequence[inventory_events.StockAllocated]
) -> None:
    """A fetch of ``StockAllocated`` in one transaction (the consumer's batch mode): every
    order named is locked and read at once, each event applied in turn, and everything that
    changed saved and released together — a constant number of statements for the batch
    instead of nine per event. If anything fails, the consumer handles the events one by
    one through :func:`on_stock_allocated`."""
    names = list(dict.fromkeys(event.order for event in events))
    ids = {name: domain.parse_order_name(name) for name in names}
    groups = await store.load_groups(session, [i for i in ids.values() if i])
    now = datetime.now(UTC)
    changed: dict[uuid.UUID, domain.Order] = {}
    releases: list[domain.Release] = []
    for event in events:
        order_id = ids[event.order]
        group = groups.get(order_id) if order_id else None
        order = next((o for o in group if o.id == order_id), None) if group else None
        if order is None:
            log.warning("event for an unknown order ignored", order=event.order,
                        event_type="StockAllocated")
            continue
        if not order.allocate(convert.allocations_from_proto(event), at=now):
            continue
        saved, released = _release(order, group or [], now)
        changed |= {o.id: o for o in saved}
        releases += released
    await store.save(session, list(changed.values()), releases)


async def on_stock_backordered(
    session: AsyncSession, event: inventory_events.StockBackordered
) -> None:
    lines = convert.backordered_from_proto(event)
    await apply(session, event.order, "StockBackordered",
                lambda order, now: order.backorder(lines, at=now))


async def on_allocation_failed(
    session: AsyncSession, event: inventory_events.AllocationFailed
) -> None:
    lines = convert.failed_from_proto(event)
    await apply(session, event.order, "AllocationFailed",
                lambda order, now: order.allocation_failed(lines, at=now))


async def on_stock_released(
    session: AsyncSession, event: inventory_events.StockReleased
) -> None:
    lines = convert.released_from_proto(event)
    expired = event.reason == inventory_events.RELEASE_REASON_EXPIRED
    await apply(session, event.order, "StockReleased",
                lambda order, now: order.stock_released(lines, expired=expired, at=now))


async def on_package_shipped(
    session: AsyncSession, event: fulfilment_events.PackageShipped
) -> None:
    # A merged shipment's package holds lines of several orders: each counts its own.
    for name in dict.fromkeys(line.order for line in event.lines):
        await apply(session, name, "PackageShipped", lambda order, now, name=name: order.ship(
            convert.package_from_proto(event, name, now), at=now))


async def on_shipment_delivered(
    session: AsyncSession, event: shipping_events.ShipmentDelivered
) -> None:
    for name in dict.fromkeys(event.orders):
        await apply(session, name, "ShipmentDelivered", lambda order, now: order.deliver(
            event.package, deliver_time=convert.event_time(event.deliver_time, now), at=now,
            carrier=event.carrier, tracking_number=event.tracking_number))


async def on_delivery_exception(
    session: AsyncSession, event: shipping_events.DeliveryException
) -> None:
    for name in dict.fromkeys(event.orders):
        await apply(session, name, "DeliveryException", lambda order, now: (
            order.delivery_exception(event.package, event.description, at=now,
                                     carrier=event.carrier,
                                     tracking_number=event.tracking_number)))


async def on_return_received(
    session: AsyncSession, event: returns_events.ReturnReceived
) -> None:
    lines = convert.returned_from_proto(event)
    await apply(session, event.order, "ReturnReceived", lambda order, now: order.receive_return(
        getattr(event, "return"), lines, node_id=event.node_id, at=now))


async def on_refund_issued(session: AsyncSession, event: returns_events.RefundIssued) -> None:
    def refund(order: domain.Order, now: datetime) -> bool:
        amount = event.amount
        payment = domain.Payment(
            event.refund, domain.PaymentKind.REFUND,
            domain.Money.of(amount.currency_code or order.currency_code, amount.amount or "0"),
            provider="returns", message=getattr(event, "return"),
            at=convert.event_time(event.refund_time, now))
        return order.record_payment(payment, at=now, actor="returns")

    await apply(session, event.order, "RefundIssued", refund)


# --- the payment sweep -----------------------------------------------------------------------


async def cancel_overdue_payments(
    sessions: async_sessionmaker[AsyncSession], now: datetime, *, limit: int = 100
) -> int:
    """Cancels unpaid orders past their payment due time; returns how many.

    The orders are locked with their merged groups by id, as the handlers lock them, before
    any is changed. Locked by due time (or one by one with their groups) the sweep could hold
    an order a handler waits for while waiting for one that handler holds. The lock waits
    rather than skipping orders another replica holds: a skipped member would be waited for
    later, out of order. A second replica's sweep so waits for the first and then finds the
    orders cancelled."""
    async with sessions.begin() as session:
        overdue = sorted(await store.overdue_payments(session, now, limit))
        await store.lock_groups(session, overdue)
        cancelled = 0
        for order_id in overdue:
            # Each order in a savepoint of its own: one that cannot be cancelled (logged)
            # does not hold back the others.
            try:
                async with session.begin_nested():
                    order = await apply(session, domain.order_name(order_id), "PaymentSweep",
                                        lambda order, _: order.expire_payment(now))
            except Exception as error:
                log.error("overdue order not cancelled", order_id=str(order_id),
                          error=repr(error))
                continue
            cancelled += bool(order and order.status is domain.OrderStatus.CANCELLED)
    if cancelled:
        log.info("unpaid orders cancelled", count=cancelled)
    return cancelled


def payment_sweep(settings: OrdersSettings) -> Callable[[Runtime], Awaitable[None]]:
    async def sweep(runtime: Runtime) -> None:
        while True:
            try:
                while await cancel_overdue_payments(runtime.sessions, datetime.now(UTC)):
                    pass
            except Exception as error:
                log.warning("payment sweep failed", error=repr(error))
            await asyncio.sleep(settings.payment_sweep_interval_seconds)

    return sweep
