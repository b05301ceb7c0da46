"""Allocation, routing and backorders: the storage-facing half of the planner.

Orders are allocated in batches: the consumer hands every ``OrderCreated`` of one fetch to
:func:`allocate_orders` in one transaction. It locks the stock rows of every SKU the batch
names (``SELECT … FOR UPDATE`` in (node_id, sku) order), plans the orders one after the
other in memory against the locked quantities (priority orders first, then by capture
time), and writes the result in a few set-based statements. A hot SKU then costs one row
lock per batch instead of one per order, and the conditional UPDATE (``on_hand - reserved
- safety_stock >= quantity``) still guards every unit: if it ever found less than the
locked read, the transaction would roll back and the batch be retried, never oversell.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog
from google.protobuf.timestamp_pb2 import Timestamp
from oms.common.v1 import common_pb2
from oms.inventory.v1 import events_pb2
from oms.orders.v1 import events_pb2 as order_events
from oms.orders.v1 import orders_pb2
from oms_platform.values import LatLng
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms_inventory import allocation_store as store
from oms_inventory import geo
from oms_inventory.allocation_planner import (
    Destination,
    Plan,
    Policy,
    Strategy,
    plan,
    rank,
)
from oms_inventory.allocation_store import Held
from oms_inventory.domain import Line
from oms_inventory.settings import InventorySettings
from oms_inventory.stock import store as stock_store
from oms_inventory.tables import order_allocations

log = structlog.get_logger(__name__)

PAID = {orders_pb2.PAYMENT_STATUS_AUTHORIZED, orders_pb2.PAYMENT_STATUS_PAID}
# Claims orders for allocation; run with a list of rows, so that it compiles once whatever
# the batch's size.
_CLAIM = (pg_insert(order_allocations).on_conflict_do_nothing()
          .returning(order_allocations.c.order_name))


@dataclass
class OrderRequest:
    """An order (or the part of one) to allocate."""

    order: str
    lines: list[Line]
    destination: Destination
    priority: bool = False
    capture_time: datetime = field(default_factory=lambda: datetime.now(UTC))
    expire_time: datetime | None = None


def destination_of(address: common_pb2.Address) -> Destination:
    """The address's coordinates, else a centroid of its US state or country."""
    location = (LatLng(address.location.latitude, address.location.longitude)
                if address.HasField("location")
                else geo.centroid(address.region_code, address.administrative_area))
    return Destination(location, address.region_code.strip().upper(),
                       address.administrative_area.strip().upper())


def request_of(event: order_events.OrderCreated) -> OrderRequest:
    capture = (event.create_time.ToDatetime(UTC) if event.HasField("create_time")
               else datetime.now(UTC))
    unpaid = event.payment_status not in PAID
    expire = (event.payment_due_time.ToDatetime(UTC)
              if unpaid and event.HasField("payment_due_time") else None)
    return OrderRequest(
        order=event.order,
        lines=[Line(line.line_id, line.sku, line.quantity) for line in event.lines
               if line.quantity > 0],
        destination=destination_of(event.shipping_address),
        priority=event.priority,
        capture_time=capture,
        expire_time=expire,
    )


async def on_orders_created(session: AsyncSession, events: Sequence[order_events.OrderCreated],
                            settings: InventorySettings) -> None:
    """Allocates a batch of new orders in the caller's transaction. An order seen before
    (another copy of its event under a new id, or cancelled before it arrived) is skipped:
    its ``order_allocations`` row exists, and a concurrent copy waits on the unique index."""
    requests: dict[str, OrderRequest] = {}
    for event in events:
        if event.order not in requests:
            requests[event.order] = request_of(event)
    if not requests:
        return
    rows = [{"order_name": r.order, "priority": r.priority, "capture_time": r.capture_time,
             "latitude": r.destination.location.latitude if r.destination.location else None,
             "longitude": r.destination.location.longitude if r.destination.location else None,
             "region_code": r.destination.region_code,
             "administrative_area": r.destination.administrative_area,
             "expire_time": r.expire_time}
            for r in sorted(requests.values(), key=lambda r: r.order)]
    new = set((await session.scalars(_CLAIM, rows)).all())
    skipped = sorted(set(requests) - new)
    if skipped:
        log.info("orders already handled", orders=skipped)
    await allocate_orders(session, [requests[name] for name in requests if name in new],
                          settings)


async def on_order_created(session: AsyncSession, event: order_events.OrderCreated,
                           settings: InventorySettings) -> None:
    await on_orders_created(session, [event], settings)


async def allocate_orders(session: AsyncSession, requests: Sequence[OrderRequest],
                          settings: InventorySettings) -> None:
    """Reserves, backorders or rejects the lines of ``requests`` and emits the events."""
    requests = [r for r in requests if r.lines]
    if not requests:
        return
    strategy = settings.strategy
    skus = {line.sku for r in requests for line in r.lines}
    products = await store.load_products(session, skus)
    capped = {s for s, rule in products.items() if rule.policy is Policy.ALLOW_UP_TO_LIMIT}
    await store.lock_backorder_limits(session, capped)
    nodes = await store.load_nodes(session)
    available = await store.stock_of(session, skus=skus, lock=True)
    waiting = await store.waiting_units(session, capped)

    held: list[Held] = []
    waits: list[dict[str, object]] = []
    outgoing: list[tuple[events_pb2.StockAllocated | events_pb2.StockBackordered
                         | events_pb2.AllocationFailed, str]] = []
    now = _now()
    for request in sorted(requests, key=lambda r: (not r.priority, r.capture_time)):
        result = plan(request.lines, products=products, nodes=nodes, available=available,
                      waiting=waiting, destination=request.destination, strategy=strategy)
        for node_id, lines in result.shipments.items():
            held += [Held(request.order, ln.line_id, node_id, ln.sku, ln.quantity)
                     for ln in lines]
        waits += [{"order_name": request.order, "line_id": ln.line_id, "sku": ln.sku,
                   "quantity": ln.quantity, "priority": request.priority,
                   "capture_time": request.capture_time} for ln in result.backordered]
        outgoing += _events(request, result, now)
        log.debug("order planned", order=request.order, nodes=sorted(result.shipments),
                  backordered=len(result.backordered), rejected=len(result.rejected))
        if result.notes:
            log.info("order routed by another strategy", order=request.order,
                     strategy=result.strategy, notes=result.notes)
    await store.reserve(session, held)
    await store.add_backorders(session, waits)
    await store.add_events(session, [(message, message.order) for message in outgoing])
    await stock_store.publish_changes(session, {(h.node_id, h.sku) for h in held}, settings)
    log.info("orders allocated", orders=len(requests), units=sum(h.quantity for h in held),
             backordered=len(waits))


def _events(request: OrderRequest, result: Plan, now: Timestamp) -> list[
        events_pb2.StockAllocated | events_pb2.StockBackordered | events_pb2.AllocationFailed]:
    out: list[events_pb2.StockAllocated | events_pb2.StockBackordered
              | events_pb2.AllocationFailed] = []
    if result.shipments:
        allocated = events_pb2.StockAllocated(
            order=request.order,
            allocations=[_node_allocation(node_id, lines)
                         for node_id, lines in result.shipments.items()],
            allocate_time=now,
            complete=not result.backordered,
        )
        if request.expire_time is not None:
            allocated.expire_time.FromDatetime(request.expire_time)
        out.append(allocated)
    if result.backordered:
        out.append(events_pb2.StockBackordered(
            order=request.order,
            lines=[events_pb2.BackorderedLine(line_id=ln.line_id, sku=ln.sku,
                                              quantity=ln.quantity)
                   for ln in result.backordered],
            backorder_time=now,
        ))
    if result.rejected:
        out.append(events_pb2.AllocationFailed(
            order=request.order,
            lines=[events_pb2.FailedLine(
                line_id=r.line.line_id, sku=r.line.sku, quantity=r.line.quantity,
                reason=events_pb2.AllocationFailureReason.Value(
                    "ALLOCATION_FAILURE_REASON_" + r.reason.value),
                message=r.message) for r in result.rejected],
            fail_time=now,
        ))
    return out


def _node_allocation(node_id: str, lines: Iterable[Line]) -> events_pb2.NodeAllocation:
    return events_pb2.NodeAllocation(
        node_id=node_id,
        lines=[events_pb2.AllocatedLine(line_id=ln.line_id, sku=ln.sku, quantity=ln.quantity)
               for ln in lines])


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
            if not left or units <= 0:
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
    now = _now()
    messages = []
    for order, order_held in per_order.items():
        by_node: dict[str, list[Line]] = {}
        for h in order_held:
            by_node.setdefault(h.node_id, []).append(Line(h.line_id, h.sku, h.quantity))
        event = events_pb2.StockAllocated(
            order=order,
            allocations=[_node_allocation(n, lines) for n, lines in sorted(by_node.items())],
            allocate_time=now,
            complete=order not in still_waiting,
        )
        if expiry.get(order) is not None:
            event.expire_time.FromDatetime(expiry[order])  # type: ignore[arg-type]
        messages.append((event, order))
    await store.add_events(session, messages)
    log.info("backorders served", orders=len(per_order), units=sum(h.quantity for h in held))
    return {(h.node_id, h.sku) for h in held}


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


async def preview(session: AsyncSession, request: OrderRequest, strategy: Strategy) -> Plan:
    """The plan allocation would make now, without locking or writing anything."""
    skus = {line.sku for line in request.lines}
    products = await store.load_products(session, skus)
    capped = {s for s, rule in products.items() if rule.policy is Policy.ALLOW_UP_TO_LIMIT}
    return plan(request.lines, products=products, nodes=await store.load_nodes(session),
                available=await store.stock_of(session, skus=skus, lock=False),
                waiting=await store.waiting_units(session, capped),
                destination=request.destination, strategy=strategy)


def _now() -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.now(UTC))
    return stamp


def lines_from_json(value: object) -> list[Line]:
    items = json.loads(value) if isinstance(value, str) else value
    return [Line(i["line_id"], i["sku"], int(i["quantity"])) for i in items or []]
