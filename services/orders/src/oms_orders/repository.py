"""Storing and loading orders. Every function runs inside the caller's transaction."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from oms_platform.outbox import add_event
from sqlalchemy import Integer, Row, cast, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms_orders import convert, domain
from oms_orders.tables import metadata, order_allocations, order_lines, order_timeline, orders

OUTBOX = metadata.tables["outbox"]
SOURCE = "/oms/orders"
"""The CloudEvents ``source`` of every event this service publishes."""


async def add(session: AsyncSession, order: domain.Order, *, request_id: str | None) -> bool:
    """Stores a new order with its events; False (and nothing written) if it already exists.

    ``ON CONFLICT DO NOTHING`` makes concurrent duplicates safe: a second insert of the same
    request id or channel order waits for the first transaction and then inserts nothing.
    """
    inserted = await session.scalar(
        pg_insert(orders)
        .values(
            id=order.id,
            channel=order.channel,
            external_order_id=order.external_order_id,
            request_id=request_id,
            status=order.status.value,
            customer=dataclasses.asdict(order.customer),
            shipping_address=dataclasses.asdict(order.shipping_address),
            service_level=order.service_level.value,
            payment_status=order.payment_status.value,
            currency_code=order.currency_code,
            total_amount=order.total.amount,
            create_time=order.create_time,
            update_time=order.update_time,
        )
        .on_conflict_do_nothing()
        .returning(orders.c.id)
    )
    if inserted is None:
        return False
    await session.execute(
        insert(order_lines),
        [
            {
                "order_id": order.id,
                "line_id": line.line_id,
                "external_line_id": line.external_line_id,
                "sku": line.sku,
                "quantity": line.quantity,
                "unit_price": line.unit_price.amount,
            }
            for line in order.lines
        ],
    )
    await _record_events(session, order)
    return True


async def find_duplicate(
    session: AsyncSession, *, request_id: str | None, channel: str, external_order_id: str
) -> domain.Order | None:
    """The order an idempotent retry refers to: by request id first, then by channel order."""
    order_id = None
    if request_id:
        order_id = await session.scalar(
            select(orders.c.id).where(orders.c.request_id == request_id)
        )
    if order_id is None:
        order_id = await session.scalar(
            select(orders.c.id).where(
                orders.c.channel == channel, orders.c.external_order_id == external_order_id
            )
        )
    return await get(session, order_id) if order_id is not None else None


async def get(
    session: AsyncSession, order_id: uuid.UUID, *, for_update: bool = False
) -> domain.Order | None:
    query = select(orders).where(orders.c.id == order_id)
    if for_update:
        query = query.with_for_update()
    row = (await session.execute(query)).one_or_none()
    if row is None:
        return None
    lines = (
        await session.execute(
            select(order_lines)
            .where(order_lines.c.order_id == order_id)
            .order_by(cast(order_lines.c.line_id, Integer))
        )
    ).all()
    allocated = (
        await session.execute(
            select(order_allocations)
            .where(order_allocations.c.order_id == order_id)
            .order_by(order_allocations.c.node_id, cast(order_allocations.c.line_id, Integer))
        )
    ).all()
    return _order(row, lines, allocated)


async def save(session: AsyncSession, order: domain.Order) -> None:
    """Stores a changed order: its status, allocations, and the events it recorded."""
    await session.execute(
        update(orders)
        .where(orders.c.id == order.id)
        .values(status=order.status.value, update_time=order.update_time)
    )
    await session.execute(delete(order_allocations).where(order_allocations.c.order_id == order.id))
    rows = [
        {
            "order_id": order.id,
            "node_id": allocation.node_id,
            "line_id": line.line_id,
            "sku": line.sku,
            "quantity": line.quantity,
        }
        for allocation in order.allocations
        for line in allocation.lines
    ]
    if rows:
        await session.execute(insert(order_allocations), rows)
    await _record_events(session, order)


async def _record_events(session: AsyncSession, order: domain.Order) -> None:
    """Turns the order's new domain events into timeline rows and outbox messages."""
    for event in order.events:
        match event:
            case domain.OrderPlaced():
                await _add_timeline(session, order.id, event.at, "created", {
                    "channel": order.channel,
                    "external_order_id": order.external_order_id,
                    "total": {"currency_code": order.currency_code,
                              "amount": f"{order.total.amount:f}"},
                })
                await add_event(session, OUTBOX, convert.order_created(order),
                                aggregate_id=order.name, source=SOURCE)
            case domain.StatusChanged():
                await _add_timeline(session, order.id, event.at, event.status.value.lower(), {
                    "previous_status": event.previous.value, **event.detail,
                })
                await add_event(session, OUTBOX, convert.status_changed(order, event),
                                aggregate_id=order.name, source=SOURCE)
    order.events.clear()


async def _add_timeline(
    session: AsyncSession, order_id: uuid.UUID, at: datetime, kind: str, detail: dict[str, Any]
) -> None:
    await session.execute(
        insert(order_timeline).values(order_id=order_id, at=at, kind=kind, detail=detail)
    )


def _order(
    row: Row[Any], lines: Sequence[Row[Any]], allocated: Sequence[Row[Any]]
) -> domain.Order:
    currency = row.currency_code
    allocations: dict[str, list[domain.AllocatedLine]] = {}
    for line in allocated:
        allocations.setdefault(line.node_id, []).append(
            domain.AllocatedLine(line.line_id, line.sku, line.quantity)
        )
    address = dict(row.shipping_address)
    location = address.pop("location", None)
    return domain.Order(
        id=row.id,
        channel=row.channel,
        external_order_id=row.external_order_id,
        customer=domain.Customer(**row.customer),
        shipping_address=domain.Address(
            **{**address, "address_lines": tuple(address["address_lines"])},
            location=domain.LatLng(**location) if location else None,
        ),
        lines=tuple(
            domain.OrderLine(
                line_id=line.line_id,
                sku=line.sku,
                quantity=line.quantity,
                unit_price=domain.Money.of(currency, line.unit_price),
                external_line_id=line.external_line_id,
            )
            for line in lines
        ),
        service_level=domain.ServiceLevel(row.service_level),
        payment_status=domain.PaymentStatus(row.payment_status),
        status=domain.OrderStatus(row.status),
        create_time=row.create_time,
        update_time=row.update_time,
        allocations=tuple(
            domain.Allocation(node_id, tuple(node_lines))
            for node_id, node_lines in allocations.items()
        ),
    )
