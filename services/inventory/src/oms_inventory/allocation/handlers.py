"""How allocation reacts to events, in the caller's transaction (the consumer's inbox
transaction, or a background sweep's).

Allocation, routing and backorders: the storage-facing half of the planner.

Orders are allocated in batches: the consumer hands every ``OrderCreated`` of one fetch to
:func:`allocate_orders` in one transaction. It locks the stock rows of every SKU the batch
names (``SELECT … FOR UPDATE`` in (node_id, sku) order), plans the orders one after the
other in memory against the locked quantities (priority orders first, then by capture
time), and writes the result in a few set-based statements. A hot SKU then costs one row
lock per batch instead of one per order, and the conditional UPDATE (``on_hand - reserved
- safety_stock >= quantity``) still guards every unit: if it ever found less than the
locked read, the transaction would roll back and the batch be retried, never oversell.

The life of a reservation after allocation: it expires unless the order is paid, is
released when the order is cancelled, is consumed when its package ships; a returned unit
that passes inspection goes back on the shelf.

Each function runs in the caller's transaction (the consumer's inbox transaction, or the
expiry sweep's) and guards on state, so redelivered or duplicated events change nothing:
shipments and returns claim a ledger request id per package/return line, payment and
cancellation act on what is still reserved or waiting.

``serve_backorders`` is also what a stock movement that may have grown available stock calls
(stock's api): waiting lines are served before the movement is announced."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

import structlog
from google.protobuf.message import Message
from oms.fulfilment.v1 import events_pb2 as fulfilment_events
from oms.inventory.v1 import events_pb2
from oms.orders.v1 import events_pb2 as order_events
from oms.returns.v1 import events_pb2 as returns_events
from oms_platform.values import LatLng
from sqlalchemy.ext.asyncio import AsyncSession

from oms_inventory.allocation import convert, store
from oms_inventory.allocation.domain import (
    Destination,
    Held,
    Line,
    OrderRequest,
    Policy,
    plan,
    rank,
    short_pick,
    short_pick_key,
)
from oms_inventory.settings import InventorySettings
from oms_inventory.stock import store as stock_store
from oms_inventory.tables import add_events

log = structlog.get_logger(__name__)


async def on_orders_created(session: AsyncSession, events: Sequence[order_events.OrderCreated],
                            settings: InventorySettings) -> None:
    """Allocates a batch of new orders in the caller's transaction. An order seen before
    (another copy of its event under a new id, or cancelled before it arrived) is skipped:
    its ``order_allocations`` row exists, and a concurrent copy waits on the unique index."""
    requests: dict[str, OrderRequest] = {}
    for event in events:
        if event.order not in requests:
            requests[event.order] = convert.request_of(event)
    if not requests:
        return
    rows = [{"order_name": r.order, "priority": r.priority, "capture_time": r.capture_time,
             "latitude": r.destination.location.latitude if r.destination.location else None,
             "longitude": r.destination.location.longitude if r.destination.location else None,
             "region_code": r.destination.region_code,
             "administrative_area": r.destination.administrative_area,
             "expire_time": r.expire_time}
            for r in sorted(requests.values(), key=lambda r: r.order)]
    new = await store.claim_orders(session, rows)
    skipped = sorted(set(requests) - new)
    if skipped:
        log.info("orders already handled", orders=skipped)
    await allocate_orders(session, [requests[name] for name in requests if name in new],
                          settings)


async def on_order_created(session: AsyncSession, event: order_events.OrderCreated,
                           settings: InventorySettings) -> None:
    await on_orders_created(session, [event], settings)


async def allocate_orders(session: AsyncSession, requests: Sequence[OrderRequest],
                          settings: InventorySettings, *, again: bool = False,
                          shorted_node_id: str | None = None) -> None:
    """Reserves, backorders or rejects the lines of ``requests`` and emits the events.

    ``again``: the orders were allocated before (some of their lines may wait in the queue),
    so ``StockAllocated.complete`` is asked of the queue rather than of this plan alone.
    ``shorted_node_id``: a node that just came up short of these lines. They are not
    allocated there, and what of them waits is not served from there either, until a count
    of the SKU there (``CountStock``) settles what the short left in doubt."""
    requests = [r for r in requests if r.lines]
    if not requests:
        return
    strategy = settings.strategy
    skus = {line.sku for r in requests for line in r.lines}
    products = await store.load_products(session, skus)
    capped = {s for s, rule in products.items() if rule.policy is Policy.ALLOW_UP_TO_LIMIT}
    await store.lock_backorder_limits(session, capped)
    nodes = [n for n in await store.load_nodes(session) if n.node_id != shorted_node_id]
    available = await store.stock_of(session, skus=skus, lock=True)
    waiting = await store.waiting_units(session, capped)

    held: list[Held] = []
    waits: list[dict[str, object]] = []
    outgoing: list[convert.AllocationEvent] = []
    now = convert.now()
    for request in sorted(requests, key=lambda r: (not r.priority, r.capture_time)):
        result = plan(request.lines, products=products, nodes=nodes, available=available,
                      waiting=waiting, destination=request.destination, strategy=strategy)
        for node_id, lines in result.shipments.items():
            held += [Held(request.order, ln.line_id, node_id, ln.sku, ln.quantity)
                     for ln in lines]
        waits += [{"order_name": request.order, "line_id": ln.line_id, "sku": ln.sku,
                   "quantity": ln.quantity, "priority": request.priority,
                   "capture_time": request.capture_time, "shorted_node_id": shorted_node_id}
                  for ln in result.backordered]
        outgoing += convert.plan_events(request, result, now)
        log.debug("order planned", order=request.order, nodes=sorted(result.shipments),
                  backordered=len(result.backordered), rejected=len(result.rejected))
        if result.notes:
            log.info("order routed by another strategy", order=request.order,
                     strategy=result.strategy, notes=result.notes)
    await store.reserve(session, held)
    await store.add_backorders(session, waits)
    if again:
        waiting_orders = await store.orders_waiting(session, {r.order for r in requests})
        for message in outgoing:
            if isinstance(message, events_pb2.StockAllocated) and message.order in waiting_orders:
                message.complete = False
    await add_events(session, [(message, message.order) for message in outgoing])
    await stock_store.publish_changes(session, {(h.node_id, h.sku) for h in held}, settings)
    log.info("orders allocated", orders=len(requests), units=sum(h.quantity for h in held),
             backordered=len(waits))


async def serve_backorders(session: AsyncSession, keys: Iterable[tuple[str, str]],
                           settings: InventorySettings) -> set[tuple[str, str]]:
    """Serves the backorder queues of the SKUs whose available stock may have grown at these
    (node_id, sku) levels, in the caller's transaction (before it publishes the changes).

    Only the given levels are drawn from: stock elsewhere did not change, and had it been
    available, the queue would have been served from it before. Waiting lines take their
    turn by priority, capture time and arrival; a line may be filled in part, and from
    several of the given nodes (best first by the default strategy for its destination).

    Bounded: only the head of each queue is read and locked, as many lines as the stock
    could fill and at most ``backorder_serve_batch_size`` in all; what is left waits for the
    background sweep's next pass (see ``sweep_backorders``). Returns the levels it reserved
    stock at."""
    touched = sorted(set(keys))
    if not touched:
        return set()
    available = {k: units for k, units in
                 (await store.stock_of(session, keys=touched, lock=True)).items() if units > 0}
    if not available:
        return set()
    stock: dict[str, dict[str, int]] = {}
    for (node_id, sku), units in available.items():
        stock.setdefault(sku, {})[node_id] = units
    queue = await store.queue_heads(session, stock, budget=settings.backorder_serve_batch_size)
    if not queue:
        return set()
    strategy = settings.strategy
    nodes = await store.load_nodes(session, {node_id for node_id, _ in available})
    held: list[Held] = []
    served: dict[int, int] = {}
    per_order: dict[str, list[Held]] = {}
    expiry: dict[str, datetime | None] = {}
    notes: set[str] = set()
    for entry in queue:
        location = (LatLng(entry.latitude, entry.longitude)
                    if entry.latitude is not None else None)
        destination = Destination(location, entry.region_code or "",
                                  entry.administrative_area or "")
        left = entry.quantity
        ranking = rank(nodes, destination, strategy)
        if ranking.note:
            notes.add(ranking.note)
        for node in ranking.nodes:
            units = available.get((node.node_id, entry.sku), 0)
            if not left or units <= 0 or node.node_id == entry.shorted_node_id:
                continue
            taken = min(units, left)
            available[node.node_id, entry.sku] = units - taken
            left -= taken
            h = Held(entry.order_name, entry.line_id, node.node_id, entry.sku, taken)
            held.append(h)
            per_order.setdefault(entry.order_name, []).append(h)
            expiry[entry.order_name] = entry.expire_time
        if left < entry.quantity:
            served[entry.id] = entry.quantity - left
    if notes:
        log.info("backorders routed by another strategy", notes=sorted(notes))
    if not held:
        return set()
    await store.reserve(session, held)
    await store.take_from_queue(session, served)
    still_waiting = await store.orders_waiting(session, per_order)
    now = convert.now()
    messages: list[tuple[Message, str]] = []
    for order, order_held in per_order.items():
        by_node: dict[str, list[Line]] = {}
        for h in order_held:
            by_node.setdefault(h.node_id, []).append(Line(h.line_id, h.sku, h.quantity))
        messages.append((convert.allocated(order, sorted(by_node.items()), now,
                                           complete=order not in still_waiting,
                                           expire_time=expiry.get(order)), order))
    await add_events(session, messages)
    log.info("backorders served", orders=len(per_order), units=sum(h.quantity for h in held))
    return {(h.node_id, h.sku) for h in held}


async def unblock_shorted(session: AsyncSession, node_id: str, sku: str) -> int:
    """A count of the SKU at the node settled what a short pick there left in doubt: the
    lines that came up short there may be served from it again (the caller serves them);
    how many."""
    return await store.unblock_shorted(session, node_id, sku)


async def sweep_backorders(session: AsyncSession, settings: InventorySettings) -> int:
    """One pass of the background sweep: serves waiting lines wherever stock is available
    for their SKU at a node that ships to them (up to ``backorder_sweep_batch_size`` levels,
    ``backorder_serve_batch_size`` lines). It serves what movements left for later (their own
    serving is bounded), and catches the one case they cannot: a receipt that creates a
    node's first row for a SKU in the instant a batch, which found no row there to lock,
    backorders an order for it. Returns the number of levels it reserved stock at: the sweep
    runs passes, each its own transaction, until one serves nothing."""
    keys = await store.servable_levels(session, settings.backorder_sweep_batch_size)
    served = await serve_backorders(session, keys, settings)
    await stock_store.publish_changes(session, served, settings)
    return len(served)


class OrderNotSeen(Exception):
    """An event about an order whose ``OrderCreated`` has not been handled yet."""


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
        await add_events(session, [(convert.released(order, released, reason), order)])
    await serve_backorders(session, keys, settings)
    await stock_store.publish_changes(session, keys, settings)


async def expire_due(session: AsyncSession, settings: InventorySettings) -> int:
    """Releases the reservations of up to ``expiry_batch_size`` unpaid orders whose payment
    is overdue; returns how many orders expired. ``SKIP LOCKED`` lets several replicas sweep
    at once, each taking other orders."""
    due = await store.due_orders(session, settings.expiry_batch_size)
    if not due:
        return 0
    orders = [row.order_name for row in due]
    held = await store.held_by(session, orders)
    waiting = await store.waiting_of(session, orders)
    await _lock_levels_of(session, {h.sku for h in held} | {w.sku for w in waiting})
    held = await store.held_by(session, orders, lock=True)
    waiting = await store.waiting_of(session, orders, lock=True)
    keys = {(h.node_id, h.sku) for h in held}
    await store.release(session, held)
    await store.drop_waiting(session, orders)
    messages = []
    for row in due:
        mine = [h for h in held if h.order == row.order_name]
        expired = store.lines_from_json(row.expired_lines) + [
            Line(h.line_id, h.sku, h.quantity) for h in mine] + [
            Line(w.line_id, w.sku, w.quantity) for w in waiting if w.order_name == row.order_name]
        await store.update_order(session, row.order_name, expired=expired, expire_time=None)
        if mine:
            messages.append((convert.released(row.order_name, mine,
                                              events_pb2.RELEASE_REASON_EXPIRED),
                             row.order_name))
    await add_events(session, messages)
    await serve_backorders(session, keys, settings)
    await stock_store.publish_changes(session, keys, settings)
    log.info("reservations expired", orders=orders)
    return len(orders)


async def on_order_paid(session: AsyncSession, event: order_events.OrderPaid,
                        settings: InventorySettings) -> None:
    """Stops the order's reservations from expiring; what already expired is allocated
    again, as a new order would be (it may be backordered or refused by then)."""
    row = await store.lock_order(session, event.order)
    if row is None:
        # Overtook its OrderCreated (same fetch, handled concurrently): retried with backoff,
        # or the order's reservations would expire although it is paid.
        raise OrderNotSeen(f"{event.order} is not known yet; its payment is retried")
    if row.cancelled:  # type: ignore[attr-defined]
        return
    expired = store.lines_from_json(row.expired_lines)  # type: ignore[attr-defined]
    await store.update_order(session, event.order, paid=True, expire_time=None,
                             expired_lines=[])
    if expired:
        location = (LatLng(row.latitude, row.longitude)  # type: ignore[attr-defined]
                    if row.latitude is not None else None)  # type: ignore[attr-defined]
        await allocate_orders(session, [OrderRequest(
            order=event.order, lines=expired,
            destination=Destination(location, row.region_code,  # type: ignore[attr-defined]
                                    row.administrative_area),  # type: ignore[attr-defined]
            priority=row.priority, capture_time=row.capture_time)],  # type: ignore[attr-defined]
            settings, again=True)
        log.info("expired order paid, allocated again", order=event.order)


async def on_order_cancelled(session: AsyncSession, event: order_events.OrderCancelled,
                             settings: InventorySettings) -> None:
    """Takes cancelled units off the backorder queue first (they hold nothing), then
    releases reserved ones. A cancellation of an order not seen yet marks it, so that its
    late ``OrderCreated`` allocates nothing."""
    order = event.order
    row = await store.lock_order(session, order)
    if row is None:
        if not event.whole_order:
            # Events of one fetch are handled concurrently, so a cancellation can overtake
            # its order's creation: retried (with backoff) until the order is here.
            raise OrderNotSeen(f"{order} is not known yet; its cancellation is retried")
        await store.mark_unseen_cancelled(session, order)
        return
    skus = {line.sku for line in event.lines} | {
        h.sku for h in await store.held_by(session, [order])} | {
        w.sku for w in await store.waiting_of(session, [order])}
    await _lock_levels_of(session, skus)
    held = await store.held_by(session, [order], lock=True)
    waiting = {w.line_id: w for w in await store.waiting_of(session, [order], lock=True)}
    expired = store.lines_from_json(row.expired_lines)  # type: ignore[attr-defined]

    if event.whole_order:
        released = held
        await store.drop_waiting(session, [order])
        expired = []
    else:
        released = []
        for line in event.lines:
            left = line.quantity
            wait = waiting.get(line.line_id)
            if wait is not None and left:
                dropped = min(left, wait.quantity)
                left -= dropped
                await store.reduce_waiting(session, wait, dropped)
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
    await store.update_order(
        session, order, expired=expired,
        **({"cancelled": True, "expire_time": None} if event.whole_order else {}))
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
        shipped = await store.ship(session, node_id=node_id, package=event.package,
                                   order=line.order, line_id=line.line_id, sku=line.sku,
                                   quantity=line.quantity)
        if shipped is False:
            continue
        if shipped is None:
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
    node_known, known = await store.restockable(session, node_id, {ln.sku for ln in lines})
    touched: set[tuple[str, str]] = set()
    for line in sorted(lines, key=lambda ln: (ln.sku, ln.line_id)):
        if not node_known or line.sku not in known:
            log.warning("returned units of an unknown node or SKU not restocked",
                        return_name=getattr(event, "return"), node_id=node_id, sku=line.sku)
            continue
        if not await store.restock(session, node_id=node_id,
                                   return_name=getattr(event, "return"), line_id=line.line_id,
                                   sku=line.sku, quantity=line.quantity):
            continue
        touched.add((node_id, line.sku))
    await serve_backorders(session, touched, settings)
    await stock_store.publish_changes(session, touched, settings)




async def on_pick_shorted(session: AsyncSession, event: fulfilment_events.PickShorted,
                          settings: InventorySettings) -> None:
    """A picker found a bin short: the missing units leave the node's on-hand and the shorted
    line's reservation there (a ``PICK_SHORT`` ledger row), a task to count the bin is
    opened, and what the line lost is allocated again by the usual rules, at any node but
    this one (``StockAllocated`` for the new node, or backordered, or refused by the
    product's policy). Claimed once per (pick list, order, line, bin) through the ledger's
    unique request id, whatever the event id."""
    node_id, sku = event.node_id, event.sku
    if event.quantity <= 0:
        return
    # Lock order: the order first, then every level of the SKU (in (node_id, sku) order,
    # as a batch allocation takes them), then the reservation.
    order_row = await store.lock_order(session, event.order)
    await _lock_levels_of(session, {sku})
    current = await store.level_of(session, node_id, sku)
    if current is None:
        # Nothing of the SKU was ever recorded there: there is nothing to take away, nor a
        # reservation to move; the units were never this service's to lose.
        log.warning("short pick at a node that holds no stock of the SKU", node_id=node_id,
                    sku=sku, order=event.order, pick_list=event.pick_list)
        return
    reservation = await store.line_reservation(session, order=event.order,
                                               line_id=event.line_id, node_id=node_id)
    effect = short_pick(shortfall=event.quantity, on_hand=current.on_hand,
                        reserved=current.reserved,
                        line_reserved=reservation.quantity if reservation else 0)
    reference = convert.short_reference(event)
    if not await store.take_short(
            # A 3PL's short shipment has no pick list: once per fulfilment order then.
            session, request_id=short_pick_key(event.pick_list or event.fulfilment_order,
                                               event.order, event.line_id, event.bin_code),
            node_id=node_id, sku=sku, reservation=reservation,
            on_hand_drop=effect.on_hand_drop, reserved_drop=effect.reserved_drop,
            reference=reference):
        return
    await stock_store.open_count_task(session, node_id=node_id, bin_code=event.bin_code,
                                      sku=sku, reason=convert.short_reason(event),
                                      reference=reference)
    again = order_row is not None and not order_row.cancelled  # type: ignore[attr-defined]
    if effect.reallocate and again:
        assert order_row is not None
        location = (LatLng(order_row.latitude, order_row.longitude)  # type: ignore[attr-defined]
                    if order_row.latitude is not None else None)  # type: ignore[attr-defined]
        await allocate_orders(session, [OrderRequest(
            order=event.order, lines=[Line(event.line_id, sku, effect.reallocate)],
            destination=Destination(location, order_row.region_code,  # type: ignore[attr-defined]
                                    order_row.administrative_area),  # type: ignore[attr-defined]
            priority=order_row.priority,  # type: ignore[attr-defined]
            capture_time=order_row.capture_time,  # type: ignore[attr-defined]
            expire_time=order_row.expire_time)],  # type: ignore[attr-defined]
            settings, again=True, shorted_node_id=node_id)
    await stock_store.publish_changes(session, {(node_id, sku)}, settings)
    log.info("pick short", node_id=node_id, sku=sku, order=event.order, line_id=event.line_id,
             bin_code=event.bin_code, on_hand_drop=effect.on_hand_drop,
             reallocated=effect.reallocate if again else 0)
