"""Storage of allocation: reading what the planner needs (products' backorder rules, nodes,
available stock, waiting units), the orders seen, reservations and the backorder queue; and
writing what it decided in a handful of set-based statements (one UPDATE for every level a
batch touches, multi-row inserts for reservations, ledger rows and events), whatever the
batch's size.

Lock order, everywhere: ``order_allocations`` rows, then ``stock_levels`` rows by
(node_id, sku), then ``backorders`` rows. Transactions that follow it may wait for each
other but never deadlock."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from oms_platform.values import LatLng
from sqlalchemy import Row, bindparam, delete, exists, func, insert, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms_inventory.allocation.domain import (
    Held,
    Line,
    Money,
    Node,
    Policy,
    ProductRule,
    shipment_key,
)
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

# Run with lists of rows (constant statements, compiled once): a line reserved at a node, or
# waiting, again holds or waits for more.
_insert_reservations = pg_insert(reservations)
_ADD_RESERVATIONS = _insert_reservations.on_conflict_do_update(
    index_elements=[reservations.c.order_name, reservations.c.line_id, reservations.c.node_id],
    set_={"quantity": reservations.c.quantity + _insert_reservations.excluded.quantity},
)
_insert_backorders = pg_insert(backorders)
_ADD_BACKORDERS = _insert_backorders.on_conflict_do_update(
    index_elements=[backorders.c.order_name, backorders.c.line_id],
    set_={"quantity": backorders.c.quantity + _insert_backorders.excluded.quantity,
          "shorted_node_id": func.coalesce(_insert_backorders.excluded.shorted_node_id,
                                           backorders.c.shorted_node_id)},
)


async def load_products(session: AsyncSession, skus: Iterable[str]) -> dict[str, ProductRule]:
    """The rules of the known, not deleted products among ``skus``."""
    wanted = sorted(set(skus))
    if not wanted:
        return {}
    statement = select(products.c.sku, products.c.backorder_policy,
                       products.c.backorder_limit).where(
        products.c.sku.in_(wanted), products.c.deleted.is_(False))
    result = {}
    for row in await session.execute(statement):
        try:
            policy = Policy(row.backorder_policy)
        except ValueError:
            policy = Policy.DENY
        result[row.sku] = ProductRule(row.sku, policy, row.backorder_limit)
    return result


async def load_nodes(session: AsyncSession, node_ids: Iterable[str] | None = None) -> list[Node]:
    statement = select(fulfilment_nodes.c.node_id, fulfilment_nodes.c.latitude,
                       fulfilment_nodes.c.longitude, fulfilment_nodes.c.priority,
                       fulfilment_nodes.c.shipment_cost, fulfilment_nodes.c.shipment_cost_currency,
                       fulfilment_nodes.c.service_regions)
    if node_ids is not None:
        statement = statement.where(fulfilment_nodes.c.node_id.in_(sorted(set(node_ids))))
    return [
        Node(row.node_id, LatLng(row.latitude, row.longitude), row.priority,
             None if row.shipment_cost is None
             else Money(Decimal(row.shipment_cost), row.shipment_cost_currency),
             tuple(row.service_regions or ()))
        for row in await session.execute(statement)
    ]


async def stock_of(session: AsyncSession, *, skus: Iterable[str] = (),
                   keys: Iterable[tuple[str, str]] = (),
                   lock: bool) -> dict[tuple[str, str], int]:
    """Available units per (node_id, sku) of the given SKUs (every node) or keys. With
    ``lock``, the rows stay locked until the transaction ends, taken in (node_id, sku) order
    so that concurrent batches wait for each other instead of deadlocking."""
    available = stock_levels.c.on_hand - stock_levels.c.reserved - stock_levels.c.safety_stock
    statement = select(stock_levels.c.node_id, stock_levels.c.sku, available.label("available"))
    wanted_skus, wanted_keys = sorted(set(skus)), sorted(set(keys))
    if wanted_skus:
        statement = statement.where(stock_levels.c.sku.in_(wanted_skus))
    elif wanted_keys:
        statement = statement.where(
            tuple_(stock_levels.c.node_id, stock_levels.c.sku).in_(wanted_keys))
    else:
        return {}
    statement = statement.order_by(stock_levels.c.node_id, stock_levels.c.sku)
    if lock:
        statement = statement.with_for_update()
    return {(row.node_id, row.sku): row.available for row in await session.execute(statement)}


async def waiting_units(session: AsyncSession, skus: Iterable[str]) -> dict[str, int]:
    wanted = sorted(set(skus))
    if not wanted:
        return {}
    statement = (select(backorders.c.sku, func.sum(backorders.c.quantity))
                 .where(backorders.c.sku.in_(wanted)).group_by(backorders.c.sku))
    return {sku: int(units) for sku, units in await session.execute(statement)}


async def lock_backorder_limits(session: AsyncSession, skus: Iterable[str]) -> None:
    """Serialises the transactions that may add backorders for capped SKUs, so that two of
    them cannot both stay within the limit and together exceed it."""
    for sku in sorted(set(skus)):
        await session.execute(select(func.pg_advisory_xact_lock(
            func.hashtextextended("backorder-limit:" + sku, 0))))


_RESERVE = text("""
    UPDATE stock_levels AS s SET reserved = s.reserved + v.quantity
    FROM jsonb_to_recordset(:rows) AS v(node_id text, sku text, quantity bigint)
    WHERE s.node_id = v.node_id AND s.sku = v.sku
      AND s.on_hand - s.reserved - s.safety_stock >= v.quantity
""").bindparams(bindparam("rows", type_=JSONB))

_RELEASE = text("""
    UPDATE stock_levels AS s SET reserved = s.reserved - v.quantity
    FROM jsonb_to_recordset(:rows) AS v(node_id text, sku text, quantity bigint)
    WHERE s.node_id = v.node_id AND s.sku = v.sku AND s.reserved >= v.quantity
""").bindparams(bindparam("rows", type_=JSONB))


class LostRace(RuntimeError):
    """A conditional write found less stock than the locked read: the transaction is rolled
    back (and the event retried) rather than oversell."""


def _per_level(held: Sequence[Held]) -> list[dict[str, Any]]:
    units: dict[tuple[str, str], int] = {}
    for h in held:
        units[h.node_id, h.sku] = units.get((h.node_id, h.sku), 0) + h.quantity
    return [{"node_id": n, "sku": s, "quantity": q} for (n, s), q in sorted(units.items())]


async def reserve(session: AsyncSession, held: Sequence[Held]) -> None:
    """Reserves every unit of ``held`` with one conditional UPDATE and records the
    reservations and their ledger rows."""
    if not held:
        return
    levels = _per_level(held)
    result = await session.execute(_RESERVE, {"rows": levels})
    if result.rowcount != len(levels):  # type: ignore[attr-defined]
        raise LostRace(f"{len(levels) - result.rowcount} levels had less available than "  # type: ignore[attr-defined]
                       "planned")
    merged: dict[tuple[str, str, str], Held] = {}
    for h in held:
        key = (h.order, h.line_id, h.node_id)
        earlier = merged.get(key)
        merged[key] = h if earlier is None else Held(
            h.order, h.line_id, h.node_id, h.sku, earlier.quantity + h.quantity)
    await session.execute(_ADD_RESERVATIONS, [
        {"order_name": h.order, "line_id": h.line_id, "node_id": h.node_id, "sku": h.sku,
         "quantity": h.quantity} for h in merged.values()])
    await session.execute(insert(stock_ledger), [
        {"node_id": h.node_id, "sku": h.sku, "kind": LedgerKind.RESERVATION, "on_hand_delta": 0,
         "reserved_delta": h.quantity, "reference": h.order} for h in held])


async def release(session: AsyncSession, held: Sequence[Held]) -> None:
    """Gives reserved units back: the levels, the reservation rows and the ledger."""
    if not held:
        return
    levels = _per_level(held)
    result = await session.execute(_RELEASE, {"rows": levels})
    if result.rowcount != len(levels):  # type: ignore[attr-defined]
        raise LostRace("a level holds fewer reserved units than its reservations")
    # Rows released whole go first: the update below would otherwise shrink them into
    # the delete's range.
    await session.execute(text("""
        DELETE FROM reservations AS r USING jsonb_to_recordset(:rows)
          AS v(order_name text, line_id text, node_id text, quantity int)
        WHERE r.order_name = v.order_name AND r.line_id = v.line_id AND r.node_id = v.node_id
          AND r.quantity <= v.quantity
    """).bindparams(bindparam("rows", type_=JSONB)), {"rows": _held_rows(held)})
    await session.execute(text("""
        UPDATE reservations AS r SET quantity = r.quantity - v.quantity
        FROM jsonb_to_recordset(:rows) AS v(order_name text, line_id text, node_id text,
                                             quantity int)
        WHERE r.order_name = v.order_name AND r.line_id = v.line_id AND r.node_id = v.node_id
          AND r.quantity > v.quantity
    """).bindparams(bindparam("rows", type_=JSONB)), {"rows": _held_rows(held)})
    await session.execute(insert(stock_ledger), [
        {"node_id": h.node_id, "sku": h.sku, "kind": LedgerKind.RELEASE, "on_hand_delta": 0,
         "reserved_delta": -h.quantity, "reference": h.order} for h in held])


def _held_rows(held: Sequence[Held]) -> list[dict[str, Any]]:
    return [{"order_name": h.order, "line_id": h.line_id, "node_id": h.node_id,
             "quantity": h.quantity} for h in held]


async def held_by(session: AsyncSession, orders: Iterable[str], *,
                  lock: bool = False) -> list[Held]:
    wanted = sorted(set(orders))
    if not wanted:
        return []
    statement = (select(reservations).where(reservations.c.order_name.in_(wanted))
                 .order_by(reservations.c.order_name, reservations.c.line_id,
                           reservations.c.node_id))
    if lock:
        statement = statement.with_for_update()
    return [Held(r.order_name, r.line_id, r.node_id, r.sku, r.quantity)
            for r in await session.execute(statement)]


# Whether one of the nodes {nodes} serves the destination of the order `o` of the waiting
# line `b` (and is not the node that came up short of it): the planner's `serves` rule (no
# regions = everywhere; else the country or the country-subdivision), asked of the database
# so that a queue is read only as far as lines those nodes can ship. The planner still
# decides; this only keeps lines no node here could take from using up a pass (and from
# starving the lines behind them).
_SERVED_BY = """EXISTS (
    SELECT 1 FROM fulfilment_nodes n
    WHERE n.node_id = ANY ({nodes}) AND n.node_id IS DISTINCT FROM b.shorted_node_id AND (
        cardinality(n.service_regions) = 0
        OR o.region_code = ANY (n.service_regions)
        OR (o.administrative_area <> ''
            AND o.region_code || '-' || o.administrative_area = ANY (n.service_regions))))"""

# Per SKU, the head of its queue in serving order, at most `take` lines (what its stock could
# fill) and at most `budget` lines in all, locked as read. The SKUs are visited in the order
# given and the outer LIMIT stops the visit: lines beyond it are neither read nor locked.
_QUEUE_HEAD = text(f"""
    SELECT q.* FROM jsonb_to_recordset(:skus) AS v(sku text, nodes text[], take int)
    CROSS JOIN LATERAL (
        SELECT b.id, b.order_name, b.line_id, b.sku, b.quantity, b.shorted_node_id,
               o.latitude, o.longitude,
               o.region_code, o.administrative_area, o.expire_time
        FROM backorders b LEFT JOIN order_allocations o ON o.order_name = b.order_name
        WHERE b.sku = v.sku AND {_SERVED_BY.format(nodes="v.nodes")}
        ORDER BY b.priority DESC, b.capture_time, b.id
        LIMIT v.take
        FOR UPDATE OF b
    ) AS q
    LIMIT :budget
""").bindparams(bindparam("skus", type_=JSONB))

_SERVABLE_LEVELS = text(f"""
    SELECT s.node_id, s.sku FROM stock_levels s
    WHERE s.on_hand - s.reserved - s.safety_stock > 0
      AND EXISTS (SELECT 1 FROM backorders b
                  LEFT JOIN order_allocations o ON o.order_name = b.order_name
                  WHERE b.sku = s.sku AND {_SERVED_BY.format(nodes="ARRAY[s.node_id]")})
    ORDER BY s.node_id, s.sku LIMIT :limit
""")

_TAKE_WHOLE = text("""
    DELETE FROM backorders AS b USING jsonb_to_recordset(:rows) AS v(id bigint, quantity int)
    WHERE b.id = v.id AND b.quantity <= v.quantity
""").bindparams(bindparam("rows", type_=JSONB))
_TAKE_PART = text("""
    UPDATE backorders AS b SET quantity = b.quantity - v.quantity
    FROM jsonb_to_recordset(:rows) AS v(id bigint, quantity int)
    WHERE b.id = v.id AND b.quantity > v.quantity
""").bindparams(bindparam("rows", type_=JSONB))


async def queue_heads(session: AsyncSession, stock: Mapping[str, Mapping[str, int]], *,
                      budget: int) -> Sequence[Any]:
    """The waiting lines that the given stock ({sku: {node_id: units}}) could serve, in
    serving order per SKU: per SKU at most as many lines as its units (each line takes one at
    least), at most ``budget`` in all; locked until the transaction ends."""
    skus = [{"sku": sku, "nodes": sorted(units), "take": min(sum(units.values()), budget)}
            for sku, units in sorted(stock.items())]
    if not skus or budget <= 0:
        return []
    return (await session.execute(_QUEUE_HEAD, {"skus": skus, "budget": budget})).all()


async def servable_levels(session: AsyncSession, limit: int) -> list[tuple[str, str]]:
    """Levels with available stock and a waiting line of their SKU that their node serves."""
    rows = await session.execute(_SERVABLE_LEVELS, {"limit": limit})
    return [(row.node_id, row.sku) for row in rows]


async def take_from_queue(session: AsyncSession, served: Mapping[int, int]) -> None:
    """Takes the served units (per backorder id) off the queue: lines served whole leave it."""
    rows = [{"id": i, "quantity": q} for i, q in served.items()]
    if rows:
        await session.execute(_TAKE_WHOLE, {"rows": rows})
        await session.execute(_TAKE_PART, {"rows": rows})


async def add_backorders(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
    """Adds waiting units; a line already waiting waits for more."""
    if not rows:
        return
    await session.execute(_ADD_BACKORDERS, list(rows))


async def unblock_shorted(session: AsyncSession, node_id: str, sku: str) -> int:
    """Lines that came up short of the SKU at the node may be served from it again (a count
    there settled the doubt); how many."""
    result = await session.execute(
        update(backorders)
        .where(backorders.c.sku == sku, backorders.c.shorted_node_id == node_id)
        .values(shorted_node_id=None))
    return int(result.rowcount)  # type: ignore[attr-defined]


async def orders_waiting(session: AsyncSession, orders: Iterable[str]) -> set[str]:
    wanted = sorted(set(orders))
    if not wanted:
        return set()
    statement = select(backorders.c.order_name).where(
        backorders.c.order_name.in_(wanted)).distinct()
    return set((await session.scalars(statement)).all())


def lines_json(lines: Iterable[Any]) -> str:
    return json.dumps([{"line_id": ln.line_id, "sku": ln.sku, "quantity": ln.quantity}
                       for ln in lines])


def lines_from_json(value: object) -> list[Line]:
    items = json.loads(value) if isinstance(value, str) else value
    return [Line(i["line_id"], i["sku"], int(i["quantity"])) for i in items or []]


def _json(lines: Sequence[Line]) -> list[dict[str, object]]:
    return json.loads(lines_json(lines))  # type: ignore[no-any-return]


# --- Orders seen ---

# Claims orders for allocation; run with a list of rows, so that it compiles once whatever
# the batch's size.
_CLAIM = (pg_insert(order_allocations).on_conflict_do_nothing()
          .returning(order_allocations.c.order_name))


async def claim_orders(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> set[str]:
    """Records orders as seen; returns those not seen before (a concurrent copy of one
    waits on the unique index)."""
    return set((await session.scalars(_CLAIM, list(rows))).all())


async def lock_order(session: AsyncSession, order: str) -> Row[Any] | None:
    statement = (select(order_allocations).where(order_allocations.c.order_name == order)
                 .with_for_update())
    return (await session.execute(statement)).one_or_none()


async def mark_unseen_cancelled(session: AsyncSession, order: str) -> None:
    """Marks an order cancelled before it was seen, so that its late ``OrderCreated``
    allocates nothing."""
    await session.execute(pg_insert(order_allocations).values(
        order_name=order, capture_time=datetime.now(UTC), cancelled=True,
    ).on_conflict_do_nothing())


async def update_order(session: AsyncSession, order: str, *,
                       expired: Sequence[Line] | None = None, **values: Any) -> None:
    """Sets columns of an order seen; `expired`, when given, its expired lines."""
    if expired is not None:
        values["expired_lines"] = _json(expired)
    await session.execute(update(order_allocations)
                          .where(order_allocations.c.order_name == order).values(**values))


async def due_orders(session: AsyncSession, limit: int) -> Sequence[Row[Any]]:
    """Up to `limit` unpaid orders past their payment due time, locked; ``SKIP LOCKED`` lets
    several replicas sweep at once, each taking other orders."""
    return (await session.execute(
        select(order_allocations.c.order_name, order_allocations.c.expired_lines)
        .where(order_allocations.c.expire_time <= datetime.now(UTC))
        .order_by(order_allocations.c.expire_time, order_allocations.c.order_name)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )).all()


# --- The backorder queue of orders ---

async def waiting_of(session: AsyncSession, orders: Sequence[str], *,
                     lock: bool = False) -> Sequence[Row[Any]]:
    """The waiting lines of these orders."""
    statement = select(backorders).where(backorders.c.order_name.in_(orders))
    if lock:
        statement = statement.with_for_update()
    return (await session.execute(statement)).all()


async def drop_waiting(session: AsyncSession, orders: Sequence[str]) -> None:
    await session.execute(delete(backorders).where(backorders.c.order_name.in_(orders)))


async def reduce_waiting(session: AsyncSession, wait: Row[Any], dropped: int) -> None:
    """Takes `dropped` units off a waiting line; the line leaves the queue when none wait."""
    if dropped == wait.quantity:
        await session.execute(delete(backorders).where(backorders.c.id == wait.id))
    else:
        await session.execute(update(backorders).where(backorders.c.id == wait.id)
                              .values(quantity=wait.quantity - dropped))


async def backorder_page(session: AsyncSession, sku: str, *, after: Sequence[Any] | None,
                         limit: int) -> Sequence[Row[Any]] | None:
    """A page of the SKU's queue in serving order (priority first, capture time, arrival),
    keyset-paged so that a page stays right while lines ahead of it are served; None when
    there is no product with the SKU."""
    statement = (select(backorders).where(backorders.c.sku == sku)
                 .order_by(backorders.c.priority.desc(), backorders.c.capture_time,
                           backorders.c.id).limit(limit))
    if after is not None:
        priority, capture, row_id = after
        key = tuple_(~backorders.c.priority, backorders.c.capture_time, backorders.c.id)
        statement = statement.where(key > tuple_(not priority, capture, row_id))
    if not await session.scalar(select(exists().where(products.c.sku == sku))):
        return None
    return (await session.execute(statement)).all()


async def reservations_of(session: AsyncSession, order: str) -> Sequence[Row[Any]]:
    statement = (
        select(reservations)
        .where(reservations.c.order_name == order)
        .order_by(reservations.c.line_id, reservations.c.id)
    )
    return (await session.execute(statement)).all()


# --- Shipments and returns ---

async def _claim_ledger(session: AsyncSession, request_id: str, **values: Any) -> bool:
    """Writes a ledger row unless its request id was recorded before."""
    claimed = await session.scalar(
        pg_insert(stock_ledger).values(**values, request_id=request_id)
        .on_conflict_do_nothing(index_elements=[stock_ledger.c.request_id])
        .returning(stock_ledger.c.id))
    return claimed is not None


async def ship(session: AsyncSession, *, node_id: str, package: str, order: str,
               line_id: str, sku: str, quantity: int) -> bool | None:
    """Shipped units leave on-hand and the line's reservation at the node, once per
    (package, order, line): False if that was recorded before, None if the node holds no
    level of the SKU (nothing is written then but the ledger row, which the caller rolls
    back)."""
    reservation = (await session.execute(
        select(reservations.c.id, reservations.c.quantity).where(
            reservations.c.order_name == order, reservations.c.line_id == line_id,
            reservations.c.node_id == node_id).with_for_update())).one_or_none()
    from_reserved = min(quantity, reservation.quantity) if reservation else 0
    if not await _claim_ledger(
            session, shipment_key(package, order, line_id), node_id=node_id, sku=sku,
            kind=LedgerKind.SHIPMENT, on_hand_delta=-quantity, reserved_delta=-from_reserved,
            reference=package):
        return False
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
        .where(stock_levels.c.node_id == node_id, stock_levels.c.sku == sku)
        .values(on_hand=stock_levels.c.on_hand - quantity,
                reserved=stock_levels.c.reserved - from_reserved))
    return None if shipped.rowcount == 0 else True  # type: ignore[attr-defined]


async def restockable(session: AsyncSession, node_id: str,
                      skus: Iterable[str]) -> tuple[bool, set[str]]:
    """Whether the node exists, and which of the SKUs are products."""
    node_known = await session.scalar(select(exists().where(
        fulfilment_nodes.c.node_id == node_id)))
    known = set((await session.scalars(select(products.c.sku).where(
        products.c.sku.in_(set(skus))))).all())
    return bool(node_known), known


async def restock(session: AsyncSession, *, node_id: str, return_name: str, line_id: str,
                  sku: str, quantity: int) -> bool:
    """Returned units back on hand, once per (return, line); False if recorded before."""
    if not await _claim_ledger(
            session, f"return:{return_name}:{line_id}", node_id=node_id, sku=sku,
            kind=LedgerKind.RETURN_RESTOCK, on_hand_delta=quantity, reserved_delta=0,
            reference=return_name):
        return False
    statement = pg_insert(stock_levels).values(node_id=node_id, sku=sku, on_hand=quantity,
                                               reserved=0)
    await session.execute(statement.on_conflict_do_update(
        index_elements=[stock_levels.c.node_id, stock_levels.c.sku],
        set_={"on_hand": stock_levels.c.on_hand + statement.excluded.on_hand}))
    return True


# --- Short picks ---

async def level_of(session: AsyncSession, node_id: str, sku: str) -> Row[Any] | None:
    """The level's on-hand and reserved units (the caller has locked it)."""
    return (await session.execute(
        select(stock_levels.c.on_hand, stock_levels.c.reserved)
        .where(stock_levels.c.node_id == node_id, stock_levels.c.sku == sku))).one_or_none()


async def line_reservation(session: AsyncSession, *, order: str, line_id: str,
                           node_id: str) -> Row[Any] | None:
    """The units of the order line reserved at the node, locked."""
    return (await session.execute(
        select(reservations.c.id, reservations.c.quantity).where(
            reservations.c.order_name == order, reservations.c.line_id == line_id,
            reservations.c.node_id == node_id).with_for_update())).one_or_none()


async def take_short(session: AsyncSession, *, request_id: str, node_id: str, sku: str,
                     reservation: Row[Any] | None, on_hand_drop: int, reserved_drop: int,
                     reference: str) -> bool:
    """Units a picker did not find leave on-hand, and the shorted line's reservation, once per
    ``request_id``; False if that was recorded before (nothing is written then)."""
    if not await _claim_ledger(
            session, request_id, node_id=node_id, sku=sku, kind=LedgerKind.PICK_SHORT,
            on_hand_delta=-on_hand_drop, reserved_delta=-reserved_drop, reference=reference):
        return False
    if reservation is not None and reserved_drop:
        if reserved_drop >= reservation.quantity:
            await session.execute(delete(reservations)
                                  .where(reservations.c.id == reservation.id))
        else:
            await session.execute(update(reservations)
                                  .where(reservations.c.id == reservation.id)
                                  .values(quantity=reservation.quantity - reserved_drop))
    await session.execute(
        update(stock_levels)
        .where(stock_levels.c.node_id == node_id, stock_levels.c.sku == sku)
        .values(on_hand=stock_levels.c.on_hand - on_hand_drop,
                reserved=stock_levels.c.reserved - reserved_drop))
    return True
