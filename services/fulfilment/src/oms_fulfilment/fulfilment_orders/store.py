"""The SQL of fulfilment orders: creating one from a release, reading them with their lines
and put-backs, recomputing statuses, and applying a cancellation. Every function runs inside
the caller's transaction and returns rows or domain values, never protos."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from oms_platform.filtering import Filter
from sqlalchemy import ColumnElement, exists, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms_fulfilment.fulfilment_orders import domain
from oms_fulfilment.tables import (
    fulfilment_order_lines,
    fulfilment_orders,
    packages,
    pick_allocations,
    pick_stops,
    put_backs,
    slots,
)

orders_t, lines_t = fulfilment_orders, fulfilment_order_lines


@dataclass
class FulfilmentOrder:
    row: Any
    lines: list[Any] = field(default_factory=list)
    put_backs: list[Any] = field(default_factory=list)
    packages: list[uuid.UUID] = field(default_factory=list)


@dataclass(frozen=True)
class NewLine:
    order: str
    line_id: str
    sku: str
    quantity: int
    external_line_id: str


async def create(session: AsyncSession, *, order: str, node_id: str, status: domain.Status,
                 priority: bool, service_level: int, promised_ship_time: datetime,
                 release_time: datetime, channel: str, external_order_id: str,
                 lines: Sequence[NewLine], now: datetime,
                 shipping_address: dict[str, Any] | None = None,
                 promise_time: datetime | None = None,
                 gift_note: str = "") -> uuid.UUID | None:
    """The new fulfilment order's id; None when the order already has one at the node."""
    new_id = uuid.uuid4()
    created = await session.scalar(pg_insert(orders_t).values(
        id=new_id, order_name=order, node_id=node_id, status=status.value, priority=priority,
        service_level=service_level, promised_ship_time=promised_ship_time,
        release_time=release_time, channel=channel, external_order_id=external_order_id,
        shipping_address=shipping_address or {}, promise_time=promise_time,
        gift_note=gift_note[:2000], create_time=now, update_time=now,
    ).on_conflict_do_nothing(constraint="uq_fulfilment_orders_order_node")
        .returning(orders_t.c.id))
    if created is None:
        return None
    bins = dict((await session.execute(select(slots.c.sku, slots.c.bin_code).where(
        slots.c.node_id == node_id, slots.c.sku.in_({line.sku for line in lines})))).all())
    await session.execute(pg_insert(lines_t), [
        {"fulfilment_order_id": new_id, "line_id": line.line_id, "position": position,
         "order_name": line.order, "sku": line.sku, "quantity": line.quantity,
         "external_line_id": line.external_line_id, "bin_code": bins.get(line.sku)}
        for position, line in enumerate(lines)])
    return new_id


async def load(session: AsyncSession, ids: Iterable[uuid.UUID]) -> list[FulfilmentOrder]:
    """The orders with their lines and put-backs, in the order of ``ids``."""
    wanted = list(ids)
    if not wanted:
        return []
    found = {row.id: FulfilmentOrder(row) for row in
             await session.execute(select(orders_t).where(orders_t.c.id.in_(wanted)))}
    for row in await session.execute(select(lines_t).where(
            lines_t.c.fulfilment_order_id.in_(wanted)).order_by(lines_t.c.position)):
        found[row.fulfilment_order_id].lines.append(row)
    for row in await session.execute(select(put_backs).where(
            put_backs.c.fulfilment_order_id.in_(wanted)).order_by(put_backs.c.id)):
        found[row.fulfilment_order_id].put_backs.append(row)
    for row in await session.execute(select(packages.c.fulfilment_order_id, packages.c.id)
                                     .where(packages.c.fulfilment_order_id.in_(wanted))
                                     .order_by(packages.c.position)):
        found[row.fulfilment_order_id].packages.append(row.id)
    return [found[i] for i in wanted if i in found]


_OPS = {
    "=": lambda c, v: c == v, "!=": lambda c, v: c != v, "<": lambda c, v: c < v,
    "<=": lambda c, v: c <= v, ">": lambda c, v: c > v, ">=": lambda c, v: c >= v,
}


def conditions(parsed: Filter) -> list[ColumnElement[bool]]:
    found: list[ColumnElement[bool]] = []
    for term in parsed.conditions:
        match term.field:
            case "order":
                found.append(_OPS[term.operator](orders_t.c.order_name, term.value))
            case "status":
                found.append(_OPS[term.operator](orders_t.c.status, term.value.value))
            case "needs_slot":
                waiting = exists().where(lines_t.c.fulfilment_order_id == orders_t.c.id,
                                         lines_t.c.bin_code.is_(None))
                found.append(waiting if term.value else ~waiting)
            case _:
                found.append(_OPS[term.operator](orders_t.c[term.field], term.value))
    return found


async def list_ids(session: AsyncSession, where: Sequence[ColumnElement[bool]], *,
                   limit: int, after: tuple[datetime, uuid.UUID] | None) -> list[Any]:
    """(promised_ship_time, id) of a page, soonest due first."""
    query = select(orders_t.c.promised_ship_time, orders_t.c.id).where(*where)
    if after is not None:
        query = query.where(tuple_(orders_t.c.promised_ship_time, orders_t.c.id)
                            > tuple_(*after))
    query = query.order_by(orders_t.c.promised_ship_time, orders_t.c.id).limit(limit)
    return list((await session.execute(query)).all())


def line_state(row: Any) -> domain.LineState:
    return domain.LineState(row.quantity, row.allocated, row.picked, row.short, row.cancelled)


async def refresh_statuses(session: AsyncSession, ids: Iterable[uuid.UUID],
                           now: datetime) -> None:
    """Derives each order's status from its lines again, after they changed."""
    for order in await load(session, set(ids)):
        if order.row.status == domain.Status.CANCELLED.value:
            continue
        third_party = order.row.status == domain.Status.AWAITING_THIRD_PARTY.value
        status = domain.status_of([line_state(line) for line in order.lines],
                                  third_party=third_party)
        if (domain.Status(order.row.status) in domain.PACKING_STATUSES
                and status is not domain.Status.CANCELLED):
            continue
        if status.value != order.row.status:
            await session.execute(update(orders_t).where(orders_t.c.id == order.row.id)
                                  .values(status=status.value, update_time=now))


async def cancel(session: AsyncSession, order: str, units: dict[str, int] | None,
                 reason: str, now: datetime) -> list[uuid.UUID]:
    """Cancels an order's lines at every node (``units`` per line id; None: all of them):
    units not yet on a list are dropped, units on a list awaiting confirmation are taken
    off it, picked units are recorded to be put back in their bin. Returns the fulfilment
    orders touched."""
    rows = (await session.execute(
        select(lines_t, orders_t.c.node_id).join(orders_t, orders_t.c.id
                                                 == lines_t.c.fulfilment_order_id)
        .where(lines_t.c.order_name == order,
               orders_t.c.status != domain.Status.CANCELLED.value)
        .with_for_update(of=lines_t))).all()
    touched: set[uuid.UUID] = set()
    for row in rows:
        if units is not None and row.line_id not in units:
            continue
        taken = domain.cancel_units(line_state(row),
                                    None if units is None else units[row.line_id])
        if taken.units == 0:
            continue
        touched.add(row.fulfilment_order_id)
        if taken.from_allocated:
            await _take_off_lists(session, row.fulfilment_order_id, row.line_id,
                                  taken.from_allocated)
        if taken.put_back:
            await session.execute(put_backs.insert().values(
                fulfilment_order_id=row.fulfilment_order_id, line_id=row.line_id,
                node_id=row.node_id, sku=row.sku, bin_code=row.bin_code or "",
                quantity=taken.put_back, create_time=now))
        await session.execute(update(lines_t).where(
            lines_t.c.fulfilment_order_id == row.fulfilment_order_id,
            lines_t.c.line_id == row.line_id).values(
            cancelled=lines_t.c.cancelled + taken.units,
            allocated=lines_t.c.allocated - taken.from_allocated,
            picked=lines_t.c.picked - taken.put_back))
    await refresh_statuses(session, touched, now)
    if touched:
        await session.execute(update(orders_t).where(
            orders_t.c.id.in_(touched), orders_t.c.status == domain.Status.CANCELLED.value)
            .values(cancel_reason=reason[:500]))
    return sorted(touched)


async def _take_off_lists(session: AsyncSession, fulfilment_order_id: uuid.UUID,
                          line_id: str, units: int) -> None:
    """Removes up to ``units`` of a line from the unconfirmed stops that carry it."""
    pending = (await session.execute(
        select(pick_allocations.c.pick_list_id, pick_allocations.c.sequence,
               pick_allocations.c.quantity)
        .join(pick_stops, (pick_stops.c.pick_list_id == pick_allocations.c.pick_list_id)
              & (pick_stops.c.sequence == pick_allocations.c.sequence))
        .where(pick_allocations.c.fulfilment_order_id == fulfilment_order_id,
               pick_allocations.c.line_id == line_id, ~pick_stops.c.confirmed)
        .with_for_update(of=pick_stops))).all()
    for list_id, sequence, quantity in pending:
        taken = min(units, quantity)
        if taken == 0:
            break
        units -= taken
        await session.execute(update(pick_allocations).where(
            pick_allocations.c.pick_list_id == list_id, pick_allocations.c.sequence == sequence,
            pick_allocations.c.fulfilment_order_id == fulfilment_order_id,
            pick_allocations.c.line_id == line_id)
            .values(quantity=pick_allocations.c.quantity - taken))
        await session.execute(update(pick_stops).where(
            pick_stops.c.pick_list_id == list_id, pick_stops.c.sequence == sequence)
            .values(quantity=pick_stops.c.quantity - taken))
