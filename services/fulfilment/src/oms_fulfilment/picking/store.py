"""The SQL of picking: the queue of open orders a run draws from (claimed with SKIP LOCKED,
so two runs never take the same order), the lists it writes, a stop's confirmation and the
floor figures. Every function runs inside the caller's transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms_fulfilment.fulfilment_orders import domain as orders_domain
from oms_fulfilment.fulfilment_orders.store import refresh_statuses
from oms_fulfilment.picking import domain
from oms_fulfilment.tables import (
    fulfilment_order_lines,
    fulfilment_orders,
    fulfilment_products,
    pick_allocations,
    pick_lists,
    pick_requests,
    pick_stops,
)

# How many of the most urgent open orders a run considers: enough for a wave of the
# largest size, bounded so a run reads a page, not the node's whole backlog.
CANDIDATE_SCAN = 1000

lines_t = fulfilment_order_lines


async def take_request(session: AsyncSession, request_id: str, node_id: str,
                       now: datetime) -> bool:
    """True when the request id is new (this transaction now holds it)."""
    taken = await session.scalar(pg_insert(pick_requests).values(
        request_id=request_id, node_id=node_id, create_time=now)
        .on_conflict_do_nothing().returning(pick_requests.c.request_id))
    return taken is not None


async def lists_of_request(session: AsyncSession, request_id: str) -> list[uuid.UUID]:
    return list(await session.scalars(select(pick_lists.c.id).where(
        pick_lists.c.request_id == request_id).order_by(pick_lists.c.create_time,
                                                        pick_lists.c.zone)))


async def candidates(session: AsyncSession, node_id: str) -> list[domain.Candidate]:
    """The node's open orders whose every line has a bin, most urgent first, locked for
    this run; orders another run holds are skipped."""
    waiting = select(lines_t.c.fulfilment_order_id).where(
        lines_t.c.fulfilment_order_id == fulfilment_orders.c.id, lines_t.c.bin_code.is_(None),
        lines_t.c.quantity - lines_t.c.cancelled > 0)
    rows = (await session.execute(
        select(fulfilment_orders.c.id, fulfilment_orders.c.priority,
               fulfilment_orders.c.promised_ship_time, fulfilment_orders.c.release_time)
        .where(fulfilment_orders.c.node_id == node_id,
               fulfilment_orders.c.status == orders_domain.Status.OPEN.value,
               ~waiting.exists())
        .order_by(fulfilment_orders.c.priority.desc(), fulfilment_orders.c.promised_ship_time,
                  fulfilment_orders.c.release_time, fulfilment_orders.c.id)
        .limit(CANDIDATE_SCAN)
        .with_for_update(skip_locked=True))).all()
    if not rows:
        return []
    lines: dict[uuid.UUID, list[domain.CandidateLine]] = {row.id: [] for row in rows}
    for line in await session.execute(
            select(lines_t, func.coalesce(fulfilment_products.c.weight_grams, 0).label("grams"))
            .outerjoin(fulfilment_products, fulfilment_products.c.sku == lines_t.c.sku)
            .where(lines_t.c.fulfilment_order_id.in_(list(lines)))
            .order_by(lines_t.c.fulfilment_order_id, lines_t.c.position)):
        units = line.quantity - line.allocated - line.picked - line.short - line.cancelled
        if units > 0:
            lines[line.fulfilment_order_id].append(domain.CandidateLine(
                line.line_id, line.order_name, line.sku, units, line.bin_code, line.grams))
    return [domain.Candidate(str(row.id), row.priority, row.promised_ship_time,
                             row.release_time, tuple(lines[row.id])) for row in rows]


async def save(session: AsyncSession, node_id: str, planned: Sequence[domain.PlannedList],
               request_id: str | None, now: datetime) -> list[uuid.UUID]:
    ids = []
    touched: set[uuid.UUID] = set()
    for plan in planned:
        list_id = uuid.uuid4()
        ids.append(list_id)
        await session.execute(pick_lists.insert().values(
            id=list_id, node_id=node_id, strategy=plan.strategy.value, zone=plan.zone,
            fulfilment_orders=[uuid.UUID(f) for f in plan.fulfilment_orders],
            units=plan.units, weight_grams=plan.weight_grams, request_id=request_id,
            create_time=now))
        await session.execute(pick_stops.insert(), [
            {"pick_list_id": list_id, "sequence": s.sequence, "bin_code": s.bin_code,
             "zone": s.zone, "sku": s.sku, "quantity": s.quantity} for s in plan.stops])
        await session.execute(pick_allocations.insert(), [
            {"pick_list_id": list_id, "sequence": s.sequence,
             "fulfilment_order_id": uuid.UUID(a.fulfilment_order), "line_id": a.line_id,
             "position": position, "tote": a.tote, "quantity": a.quantity}
            for s in plan.stops for position, a in enumerate(s.allocations)])
        for stop in plan.stops:
            for a in stop.allocations:
                touched.add(uuid.UUID(a.fulfilment_order))
                await session.execute(update(lines_t).where(
                    lines_t.c.fulfilment_order_id == uuid.UUID(a.fulfilment_order),
                    lines_t.c.line_id == a.line_id)
                    .values(allocated=lines_t.c.allocated + a.quantity))
    await refresh_statuses(session, touched, now)
    return ids


@dataclass
class PickListRows:
    row: Any
    stops: list[Any] = field(default_factory=list)
    allocations: dict[int, list[Any]] = field(default_factory=dict)


async def load(session: AsyncSession, ids: Sequence[uuid.UUID]) -> list[PickListRows]:
    if not ids:
        return []
    found = {row.id: PickListRows(row) for row in
             await session.execute(select(pick_lists).where(pick_lists.c.id.in_(ids)))}
    for stop in await session.execute(select(pick_stops).where(
            pick_stops.c.pick_list_id.in_(ids)).order_by(pick_stops.c.sequence)):
        found[stop.pick_list_id].stops.append(stop)
    for a in await session.execute(
            select(pick_allocations, fulfilment_order_lines.c.order_name)
            .join(fulfilment_order_lines,
                  (fulfilment_order_lines.c.fulfilment_order_id
                   == pick_allocations.c.fulfilment_order_id)
                  & (fulfilment_order_lines.c.line_id == pick_allocations.c.line_id))
            .where(pick_allocations.c.pick_list_id.in_(ids))
            .order_by(pick_allocations.c.position)):
        found[a.pick_list_id].allocations.setdefault(a.sequence, []).append(a)
    return [found[i] for i in ids if i in found]


async def list_page(session: AsyncSession, node_id: str | None, *, limit: int,
                    after: tuple[datetime, uuid.UUID] | None) -> list[Any]:
    query = select(pick_lists.c.create_time, pick_lists.c.id)
    if node_id:
        query = query.where(pick_lists.c.node_id == node_id)
    if after is not None:
        query = query.where(func.row(pick_lists.c.create_time, pick_lists.c.id)
                            < func.row(*after))
    return list((await session.execute(query.order_by(
        pick_lists.c.create_time.desc(), pick_lists.c.id.desc()).limit(limit))).all())


async def lock_stop(session: AsyncSession, list_id: uuid.UUID, sequence: int) -> Any | None:
    return (await session.execute(
        select(pick_stops, pick_lists.c.node_id).join(
            pick_lists, pick_lists.c.id == pick_stops.c.pick_list_id)
        .where(pick_stops.c.pick_list_id == list_id, pick_stops.c.sequence == sequence)
        .with_for_update(of=pick_stops))).first()


async def stop_allocations(session: AsyncSession, list_id: uuid.UUID,
                           sequence: int) -> list[Any]:
    return list((await session.execute(
        select(pick_allocations, fulfilment_order_lines.c.order_name,
               fulfilment_order_lines.c.allocated.label("line_allocated"))
        .join(fulfilment_order_lines,
              (fulfilment_order_lines.c.fulfilment_order_id
               == pick_allocations.c.fulfilment_order_id)
              & (fulfilment_order_lines.c.line_id == pick_allocations.c.line_id))
        .where(pick_allocations.c.pick_list_id == list_id,
               pick_allocations.c.sequence == sequence)
        .order_by(pick_allocations.c.position)
        .with_for_update(of=fulfilment_order_lines))).all())


async def record_confirmation(session: AsyncSession, list_id: uuid.UUID, sequence: int,
                              picked: int, reason: domain.ShortReason | None,
                              outcomes: Sequence[domain.StopOutcome], now: datetime) -> None:
    await session.execute(update(pick_stops).where(
        pick_stops.c.pick_list_id == list_id, pick_stops.c.sequence == sequence).values(
        confirmed=True, picked=picked, short_reason=reason.value if reason else None,
        confirm_time=now))
    touched = set()
    for outcome in outcomes:
        a = outcome.allocation
        order_id = uuid.UUID(a.fulfilment_order)
        touched.add(order_id)
        await session.execute(update(pick_allocations).where(
            pick_allocations.c.pick_list_id == list_id, pick_allocations.c.sequence == sequence,
            pick_allocations.c.fulfilment_order_id == order_id,
            pick_allocations.c.line_id == a.line_id).values(picked=outcome.picked,
                                                              short=outcome.short))
        values: dict[str, Any] = {"allocated": lines_t.c.allocated - a.quantity,
                                  "picked": lines_t.c.picked + outcome.picked,
                                  "short": lines_t.c.short + outcome.short}
        if outcome.short and reason is not None:
            values["short_reason"] = reason.value
        await session.execute(update(lines_t).where(
            lines_t.c.fulfilment_order_id == order_id, lines_t.c.line_id == a.line_id)
            .values(**values))
    open_stops = await session.scalar(select(func.count()).select_from(pick_stops).where(
        pick_stops.c.pick_list_id == list_id, ~pick_stops.c.confirmed))
    if not open_stops:
        await session.execute(update(pick_lists).where(pick_lists.c.id == list_id)
                              .values(complete_time=now))
    await refresh_statuses(session, touched, now)


@dataclass(frozen=True)
class Floor:
    pick_lists: int
    units: int
    stops: int
    allocations: int
    units_shorted: int
    past_cutoff: int


async def floor(session: AsyncSession, node_id: str, since: datetime, now: datetime) -> Floor:
    lists, units = (await session.execute(
        select(func.count(), func.coalesce(func.sum(pick_lists.c.units), 0))
        .where(pick_lists.c.node_id == node_id, pick_lists.c.create_time >= since))).one()
    recent = select(pick_lists.c.id).where(pick_lists.c.node_id == node_id,
                                           pick_lists.c.create_time >= since)
    stops = await session.scalar(select(func.count()).select_from(pick_stops).where(
        pick_stops.c.pick_list_id.in_(recent)))
    allocations, shorted = (await session.execute(
        select(func.count(), func.coalesce(func.sum(pick_allocations.c.short), 0))
        .where(pick_allocations.c.pick_list_id.in_(recent)))).one()
    late = await session.scalar(select(func.count()).select_from(fulfilment_orders).where(
        fulfilment_orders.c.node_id == node_id,
        fulfilment_orders.c.status.in_([orders_domain.Status.OPEN.value,
                                        orders_domain.Status.PICKING.value]),
        fulfilment_orders.c.promised_ship_time < now))
    return Floor(int(lists), int(units), int(stops or 0), int(allocations), int(shorted),
                 int(late or 0))


async def titles(session: AsyncSession, skus: set[str]) -> dict[str, str]:
    """The product replica's titles of the SKUs it knows."""
    rows = await session.execute(select(fulfilment_products.c.sku, fulfilment_products.c.title)
                                 .where(fulfilment_products.c.sku.in_(skus)))
    return dict(rows.all())  # type: ignore[arg-type]
