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
from sqlalchemy import ColumnElement, exists, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms_fulfilment.fulfilment_orders import domain
from oms_fulfilment.tables import (
    fulfilment_order_lines,
    fulfilment_orders,
    package_lines,
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
    package_statuses: list[str] = field(default_factory=list)

    @property
    def third_party(self) -> bool:
        return bool(self.row.mode != "IN_HOUSE")


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
                 gift_note: str = "", mode: str = "IN_HOUSE") -> uuid.UUID | None:
    """The new fulfilment order's id; None when the order already has one at the node."""
    new_id = uuid.uuid4()
    created = await session.scalar(pg_insert(orders_t).values(
        id=new_id, order_name=order, node_id=node_id, status=status.value, priority=priority,
        service_level=service_level, promised_ship_time=promised_ship_time,
        release_time=release_time, channel=channel, external_order_id=external_order_id,
        shipping_address=shipping_address or {}, promise_time=promise_time,
        gift_note=gift_note[:2000], create_time=now, update_time=now, mode=mode,
        third_party_progress="" if mode == "IN_HOUSE" else "REQUESTED",
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
    for row in await session.execute(select(packages.c.fulfilment_order_id, packages.c.id,
                                            packages.c.status)
                                     .where(packages.c.fulfilment_order_id.in_(wanted))
                                     .order_by(packages.c.position)):
        found[row.fulfilment_order_id].packages.append(row.id)
        found[row.fulfilment_order_id].package_statuses.append(row.status)
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


async def shipped_units(session: AsyncSession, ids: Iterable[uuid.UUID]
                        ) -> dict[tuple[uuid.UUID, str], int]:
    """Units of each (fulfilment order, line) in packages that left the node."""
    rows = await session.execute(
        select(packages.c.fulfilment_order_id, package_lines.c.line_id,
               func.sum(package_lines.c.quantity))
        .join(packages, packages.c.id == package_lines.c.package_id)
        .where(packages.c.fulfilment_order_id.in_(list(ids)), packages.c.status == "SHIPPED")
        .group_by(packages.c.fulfilment_order_id, package_lines.c.line_id))
    return {(order_id, line_id): int(units) for order_id, line_id, units in rows}


def _shipped_of(order: FulfilmentOrder, shipped: dict[tuple[uuid.UUID, str], int]
                ) -> dict[str, int]:
    """Per line id: a 3PL's shipped units are its picked ones; in-house, its shipped
    packages'."""
    if order.third_party:
        return {line.line_id: line.picked for line in order.lines}
    return {line.line_id: shipped.get((order.row.id, line.line_id), 0) for line in order.lines}


async def refresh_statuses(session: AsyncSession, ids: Iterable[uuid.UUID],
                           now: datetime) -> None:
    """Derives each order's status from its lines again, after they changed. While any of
    its packages is open or sealed, packing owns the status (``follow_packages``)."""
    orders = await load(session, set(ids))
    shipped = await shipped_units(session, [o.row.id for o in orders])
    for order in orders:
        if order.row.status == domain.Status.CANCELLED.value or any(
                status in ("PACKING", "SEALED") for status in order.package_statuses):
            continue
        status = domain.status_of([line_state(line) for line in order.lines],
                                  shipped=sum(_shipped_of(order, shipped).values()),
                                  third_party=order.third_party)
        if status.value != order.row.status:
            await session.execute(update(orders_t).where(orders_t.c.id == order.row.id)
                                  .values(status=status.value, update_time=now))


async def cancel(session: AsyncSession, order: str, units: dict[str, int] | None,
                 reason: str, now: datetime) -> dict[uuid.UUID, dict[str, int]]:
    """Cancels an order's lines at every node (``units`` per line id; None: all of them):
    units not yet on a list are dropped, units on a list awaiting confirmation are taken
    off it, picked units are recorded to be put back in their bin, and packages not shipped
    that held them are cancelled (their labels voided by the void sweep). Units that left
    the node stay shipped. Returns the units cancelled per fulfilment order and line id."""
    rows = (await session.execute(
        select(lines_t, orders_t.c.node_id, orders_t.c.mode).join(
            orders_t, orders_t.c.id == lines_t.c.fulfilment_order_id)
        .where(lines_t.c.order_name == order,
               orders_t.c.status != domain.Status.CANCELLED.value)
        .with_for_update(of=lines_t))).all()
    shipped = await shipped_units(session, {row.fulfilment_order_id for row in rows})
    touched: dict[uuid.UUID, dict[str, int]] = {}
    put_back: set[uuid.UUID] = set()
    for row in rows:
        if units is not None and row.line_id not in units:
            continue
        gone = row.picked if row.mode != "IN_HOUSE" else shipped.get(
            (row.fulfilment_order_id, row.line_id), 0)
        taken = domain.cancel_units(line_state(row),
                                    None if units is None else units[row.line_id],
                                    shipped=gone)
        if taken.units == 0:
            continue
        touched.setdefault(row.fulfilment_order_id, {})[row.line_id] = taken.units
        if taken.from_allocated:
            await _take_off_lists(session, row.fulfilment_order_id, row.line_id,
                                  taken.from_allocated)
        if taken.put_back:
            put_back.add(row.fulfilment_order_id)
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
    if put_back:
        await cancel_packages(session, put_back, now)
    await refresh_statuses(session, touched, now)
    if touched:
        await session.execute(update(orders_t).where(
            orders_t.c.id.in_(touched), orders_t.c.status == domain.Status.CANCELLED.value)
            .values(cancel_reason=reason[:500]))
    return touched


async def cancel_packages(session: AsyncSession, ids: Iterable[uuid.UUID],
                          now: datetime) -> None:
    """Cancels the packages of these orders that have not left: they never ship. A sealed
    one had its label purchase tried, so shipping may hold a label to void."""
    await session.execute(update(packages).where(
        packages.c.fulfilment_order_id.in_(list(ids)),
        packages.c.status.in_(("PACKING", "SEALED")))
        .values(void_pending=packages.c.status == "SEALED", status="CANCELLED",
                update_time=now))


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


async def put_back_page(session: AsyncSession, node_id: str, *, show_confirmed: bool,
                        after: int | None, limit: int) -> list[Any]:
    """A node's put-backs, oldest first, with their line's order."""
    query = (select(put_backs, lines_t.c.order_name)
             .join(lines_t, (lines_t.c.fulfilment_order_id == put_backs.c.fulfilment_order_id)
                   & (lines_t.c.line_id == put_backs.c.line_id))
             .where(put_backs.c.node_id == node_id))
    if not show_confirmed:
        query = query.where(put_backs.c.confirm_time.is_(None))
    if after is not None:
        query = query.where(put_backs.c.id > after)
    return list((await session.execute(query.order_by(put_backs.c.id).limit(limit))).all())


async def confirm_put_back(session: AsyncSession, order_id: uuid.UUID, put_back_id: int,
                           now: datetime) -> Any | None:
    """Marks a put-back done (once: a second confirmation keeps the first time); the row
    with its line's order, None when there is no such put-back."""
    await session.execute(update(put_backs).where(
        put_backs.c.id == put_back_id, put_backs.c.fulfilment_order_id == order_id,
        put_backs.c.confirm_time.is_(None)).values(confirm_time=now))
    return (await session.execute(
        select(put_backs, lines_t.c.order_name)
        .join(lines_t, (lines_t.c.fulfilment_order_id == put_backs.c.fulfilment_order_id)
              & (lines_t.c.line_id == put_backs.c.line_id))
        .where(put_backs.c.id == put_back_id,
               put_backs.c.fulfilment_order_id == order_id))).one_or_none()
