"""The life of a reservation after allocation: it expires unless the order is paid, is
released when the order is cancelled, is consumed when its package ships; a returned unit
that passes inspection goes back on the shelf.

Each function runs in the caller's transaction (the consumer's inbox transaction, or the
expiry sweep's) and guards on state, so redelivered or duplicated events change nothing:
shipments and returns claim a ledger request id per package/return line, payment and
cancellation act on what is still reserved or waiting."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

import structlog
from google.protobuf.timestamp_pb2 import Timestamp
from oms.fulfilment.v1 import events_pb2 as fulfilment_events
from oms.inventory.v1 import events_pb2
from oms.orders.v1 import events_pb2 as order_events
from oms.returns.v1 import events_pb2 as returns_events
from oms_platform.values import LatLng
from sqlalchemy import delete, exists, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms_inventory import allocation_store as store
from oms_inventory.allocation import (
    OrderRequest,
    allocate_orders,
    lines_from_json,
    serve_backorders,
)
from oms_inventory.allocation_planner import Destination
from oms_inventory.allocation_store import Held
from oms_inventory.domain import Line
from oms_inventory.settings import InventorySettings
from oms_inventory.stock import store as stock_store
from oms_inventory.stock.domain import LedgerKind
from oms_inventory.tables import (
    backorders,
    fulfilment_nodes,
    order_allocations,
    products,
    reservations,
    stock_ledger,
    stock_levels,
)

log = structlog.get_logger(__name__)



class OrderNotSeen(Exception):
    """An event about an order whose ``OrderCreated`` has not been handled yet."""


async def _lock_order(session: AsyncSession, order: str) -> object | None:
    statement = (select(order_allocations).where(order_allocations.c.order_name == order)
                 .with_for_update())
    return (await session.execute(statement)).one_or_none()


async def _lock_levels_of(session: AsyncSession, skus: set[str]) -> None:
    """Locks every level of these SKUs before reservations and backorders are read, so that
    a concurrent backorder fill (which holds the level first) has either committed or not
    begun."""
    await store.stock_of(session, skus=skus, lock=True)


async def _finish_release(session: AsyncSession, order: str, released: Sequence[Held],
                          reason: int, settings: InventorySettings) -> None:
    keys = {(h.node_id, h.sku) for h in released}
    await store.release(session, released)
    if released:
        await store.add_events(session, [(events_pb2.StockReleased(
            order=order,
            lines=[events_pb2.ReleasedLine(line_id=h.line_id, sku=h.sku, node_id=h.node_id,
                                           quantity=h.quantity) for h in released],
            reason=reason,  # type: ignore[arg-type]
            release_time=_now(),
        ), order)])
    await serve_backorders(session, keys, settings)
    await stock_store.publish_changes(session, keys, settings)


async def expire_due(session: AsyncSession, settings: InventorySettings) -> int:
    """Releases the reservations of up to ``expiry_batch_size`` unpaid orders whose payment
    is overdue; returns how many orders expired. ``SKIP LOCKED`` lets several replicas sweep
    at once, each taking other orders."""
    due = (await session.execute(
        select(order_allocations.c.order_name, order_allocations.c.expired_lines)
        .where(order_allocations.c.expire_time <= datetime.now(UTC))
        .order_by(order_allocations.c.expire_time, order_allocations.c.order_name)
        .limit(settings.expiry_batch_size)
        .with_for_update(skip_locked=True)
    )).all()
    if not due:
        return 0
    orders = [row.order_name for row in due]
    held = await store.held_by(session, orders)
    waiting = (await session.execute(
        select(backorders.c.order_name, backorders.c.line_id, backorders.c.sku,
               backorders.c.quantity).where(backorders.c.order_name.in_(orders)))).all()
    await _lock_levels_of(session, {h.sku for h in held} | {w.sku for w in waiting})
    held = await store.held_by(session, orders, lock=True)
    waiting = (await session.execute(
        select(backorders.c.order_name, backorders.c.line_id, backorders.c.sku,
               backorders.c.quantity).where(backorders.c.order_name.in_(orders))
        .with_for_update())).all()
    keys = {(h.node_id, h.sku) for h in held}
    await store.release(session, held)
    await session.execute(delete(backorders).where(backorders.c.order_name.in_(orders)))
    messages = []
    for row in due:
        mine = [h for h in held if h.order == row.order_name]
        expired = lines_from_json(row.expired_lines) + [
            Line(h.line_id, h.sku, h.quantity) for h in mine] + [
            Line(w.line_id, w.sku, w.quantity) for w in waiting if w.order_name == row.order_name]
        await session.execute(
            update(order_allocations).where(order_allocations.c.order_name == row.order_name)
            .values(expire_time=None, expired_lines=_json(expired)))
        if mine:
            messages.append((events_pb2.StockReleased(
                order=row.order_name,
                lines=[events_pb2.ReleasedLine(line_id=h.line_id, sku=h.sku,
                                               node_id=h.node_id, quantity=h.quantity)
                       for h in mine],
                reason=events_pb2.RELEASE_REASON_EXPIRED,
                release_time=_now(),
            ), row.order_name))
    await store.add_events(session, messages)
    await serve_backorders(session, keys, settings)
    await stock_store.publish_changes(session, keys, settings)
    log.info("reservations expired", orders=orders)
    return len(orders)


async def on_order_paid(session: AsyncSession, event: order_events.OrderPaid,
                        settings: InventorySettings) -> None:
    """Stops the order's reservations from expiring; what already expired is allocated
    again, as a new order would be (it may be backordered or refused by then)."""
    row = await _lock_order(session, event.order)
    if row is None:
        # Overtook its OrderCreated (same fetch, handled concurrently): retried with backoff,
        # or the order's reservations would expire although it is paid.
        raise OrderNotSeen(f"{event.order} is not known yet; its payment is retried")
    if row.cancelled:  # type: ignore[attr-defined]
        return
    expired = lines_from_json(row.expired_lines)  # type: ignore[attr-defined]
    await session.execute(
        update(order_allocations).where(order_allocations.c.order_name == event.order)
        .values(paid=True, expire_time=None, expired_lines=[]))
    if expired:
        location = (LatLng(row.latitude, row.longitude)  # type: ignore[attr-defined]
                    if row.latitude is not None else None)  # type: ignore[attr-defined]
        await allocate_orders(session, [OrderRequest(
            order=event.order, lines=expired,
            destination=Destination(location, row.region_code,  # type: ignore[attr-defined]
                                    row.administrative_area),  # type: ignore[attr-defined]
            priority=row.priority, capture_time=row.capture_time)],  # type: ignore[attr-defined]
            settings)
        log.info("expired order paid, allocated again", order=event.order)


async def on_order_cancelled(session: AsyncSession, event: order_events.OrderCancelled,
                             settings: InventorySettings) -> None:
    """Takes cancelled units off the backorder queue first (they hold nothing), then
    releases reserved ones. A cancellation of an order not seen yet marks it, so that its
    late ``OrderCreated`` allocates nothing."""
    order = event.order
    row = await _lock_order(session, order)
    if row is None:
        if not event.whole_order:
            # Events of one fetch are handled concurrently, so a cancellation can overtake
            # its order's creation: retried (with backoff) until the order is here.
            raise OrderNotSeen(f"{order} is not known yet; its cancellation is retried")
        await session.execute(pg_insert(order_allocations).values(
            order_name=order, capture_time=datetime.now(UTC), cancelled=True,
        ).on_conflict_do_nothing())
        return
    skus = {line.sku for line in event.lines} | {
        h.sku for h in await store.held_by(session, [order])} | set((await session.scalars(
            select(backorders.c.sku).where(backorders.c.order_name == order))).all())
    await _lock_levels_of(session, skus)
    held = await store.held_by(session, [order], lock=True)
    waiting = {(w.line_id): w for w in (await session.execute(
        select(backorders).where(backorders.c.order_name == order).with_for_update())).all()}
    expired = lines_from_json(row.expired_lines)  # type: ignore[attr-defined]

    if event.whole_order:
        released = held
        await session.execute(delete(backorders).where(backorders.c.order_name == order))
        expired = []
    else:
        released = []
        for line in event.lines:
            left = line.quantity
            wait = waiting.get(line.line_id)
            if wait is not None and left:
                dropped = min(left, wait.quantity)
                left -= dropped
                if dropped == wait.quantity:
                    await session.execute(delete(backorders).where(backorders.c.id == wait.id))
                else:
                    await session.execute(update(backorders).where(backorders.c.id == wait.id)
                                          .values(quantity=wait.quantity - dropped))
            for h in (h for h in held if h.line_id == line.line_id):
                if not left:
                    break
                taken = min(left, h.quantity)
                released.append(Held(h.order, h.line_id, h.node_id, h.sku, taken))
                left -= taken
            kept = []
            for e in expired:
                if e.line_id == line.line_id and left:
                    taken = min(left, e.quantity)
                    left -= taken
                    if e.quantity > taken:
                        kept.append(Line(e.line_id, e.sku, e.quantity - taken))
                else:
                    kept.append(e)
            expired = kept
    await session.execute(
        update(order_allocations).where(order_allocations.c.order_name == order)
        .values(expired_lines=_json(expired),
                **({"cancelled": True, "expire_time": None} if event.whole_order else {})))
    await _finish_release(session, order, released, events_pb2.RELEASE_REASON_CANCELLED,
                          settings)
    log.info("order cancelled", order=order, released=sum(h.quantity for h in released))


class UnknownStockLevel(Exception):
    """An event moved stock at a (node, SKU) this service has no level for."""


async def on_package_shipped(session: AsyncSession, event: fulfilment_events.PackageShipped,
                             settings: InventorySettings) -> None:
    """Shipped units leave on-hand and their reservation. Each (package, order, line) is
    claimed once through the ledger's unique request id, whatever the event id."""
    node_id = event.node_id
    skus = {line.sku for line in event.lines}
    await store.stock_of(session, keys={(node_id, s) for s in skus}, lock=True)
    touched: set[tuple[str, str]] = set()
    for line in event.lines:
        if line.quantity <= 0:
            continue
        reservation = (await session.execute(
            select(reservations.c.id, reservations.c.quantity).where(
                reservations.c.order_name == line.order, reservations.c.line_id == line.line_id,
                reservations.c.node_id == node_id).with_for_update())).one_or_none()
        from_reserved = min(line.quantity, reservation.quantity) if reservation else 0
        claimed = await session.scalar(
            pg_insert(stock_ledger).values(
                node_id=node_id, sku=line.sku, kind=LedgerKind.SHIPMENT,
                on_hand_delta=-line.quantity,
                reserved_delta=-from_reserved, reference=event.package,
                request_id=f"ship:{event.package}:{line.order}:{line.line_id}")
            .on_conflict_do_nothing(index_elements=[stock_ledger.c.request_id])
            .returning(stock_ledger.c.id))
        if claimed is None:
            continue
        if reservation is not None:
            if from_reserved == reservation.quantity:
                await session.execute(delete(reservations)
                                      .where(reservations.c.id == reservation.id))
            else:
                await session.execute(update(reservations)
                                      .where(reservations.c.id == reservation.id)
                                      .values(quantity=reservation.quantity - from_reserved))
        shipped = await session.execute(
            update(stock_levels)
            .where(stock_levels.c.node_id == node_id, stock_levels.c.sku == line.sku)
            .values(on_hand=stock_levels.c.on_hand - line.quantity,
                    reserved=stock_levels.c.reserved - from_reserved))
        if shipped.rowcount == 0:  # type: ignore[attr-defined]
            # Units left a node that never held the SKU: the ledger row is rolled back with
            # this error, and the event retried, then dead-lettered for a person to look at,
            # rather than recording a movement no level shows.
            raise UnknownStockLevel(f"{event.package} shipped {line.sku} from {node_id}, "
                                    "which holds no stock of it")
        touched.add((node_id, line.sku))
    await stock_store.publish_changes(session, touched, settings)


async def on_return_received(session: AsyncSession, event: returns_events.ReturnReceived,
                             settings: InventorySettings) -> None:
    """Units that passed inspection go back on hand at the receiving node, once per
    (return, line); the SKU's backorders are served from them."""
    node_id = event.node_id
    lines = [line for line in event.lines if line.restock and line.quantity > 0]
    if not lines:
        return
    node_known = await session.scalar(select(exists().where(
        fulfilment_nodes.c.node_id == node_id)))
    known = set((await session.scalars(select(products.c.sku).where(
        products.c.sku.in_({line.sku for line in lines})))).all())
    touched: set[tuple[str, str]] = set()
    for line in sorted(lines, key=lambda ln: (ln.sku, ln.line_id)):
        if not node_known or line.sku not in known:
            log.warning("returned units of an unknown node or SKU not restocked",
                        return_name=getattr(event, "return"), node_id=node_id, sku=line.sku)
            continue
        claimed = await session.scalar(
            pg_insert(stock_ledger).values(
                node_id=node_id, sku=line.sku, kind=LedgerKind.RETURN_RESTOCK,
                on_hand_delta=line.quantity,
                reserved_delta=0, reference=getattr(event, "return"),
                request_id=f"return:{getattr(event, 'return')}:{line.line_id}")
            .on_conflict_do_nothing(index_elements=[stock_ledger.c.request_id])
            .returning(stock_ledger.c.id))
        if claimed is None:
            continue
        statement = pg_insert(stock_levels).values(node_id=node_id, sku=line.sku,
                                                   on_hand=line.quantity, reserved=0)
        await session.execute(statement.on_conflict_do_update(
            index_elements=[stock_levels.c.node_id, stock_levels.c.sku],
            set_={"on_hand": stock_levels.c.on_hand + statement.excluded.on_hand}))
        touched.add((node_id, line.sku))
    await serve_backorders(session, touched, settings)
    await stock_store.publish_changes(session, touched, settings)


def _json(lines: Sequence[Line]) -> list[dict[str, object]]:
    return json.loads(store.lines_json(lines))


def _now() -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.now(UTC))
    return stamp
