"""The SQL of notifications: enqueueing once per (order, kind, key), the contacts and delivery
state the KPI read model wrote, taking due rows for the sender, and an order's listing.
Every function runs inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, bindparam, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms_orders.insights.domain import UnknownOrder
from oms_orders.notifications.domain import Status
from oms_orders.tables import kpi_orders, kpi_packages, notifications


async def enqueue(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
    """New notification rows; one already enqueued (same order, kind and key) is kept."""
    if rows:
        await session.execute(pg_insert(notifications).values(rows).on_conflict_do_nothing())


@dataclass(frozen=True)
class Contact:
    email: str
    customer_name: str
    external_order_id: str


async def contacts(
    session: AsyncSession, names: Sequence[str], event_type: str
) -> dict[str, Contact]:
    """Whom to write to about each named order; UnknownOrder while one is not in the read
    model yet."""
    rows = await session.execute(
        select(kpi_orders.c.order_name, kpi_orders.c.email, kpi_orders.c.customer_name,
               kpi_orders.c.external_order_id)
        .where(kpi_orders.c.order_name.in_(set(names)))
    )
    found = {row.order_name: Contact(row.email, row.customer_name, row.external_order_id)
             for row in rows}
    missing = sorted(set(names) - set(found))
    if missing:
        raise UnknownOrder(f"{event_type} names orders not yet known: {', '.join(missing)}")
    return found


async def delivered_orders(session: AsyncSession, package: str) -> list[Row[Any]]:
    """The orders of a delivered package with their contacts and delivery state."""
    return list((
        await session.execute(
            select(kpi_orders.c.order_name, kpi_orders.c.email, kpi_orders.c.customer_name,
                   kpi_orders.c.external_order_id, kpi_orders.c.delivered_time,
                   kpi_packages.c.carrier, kpi_packages.c.tracking_number,
                   kpi_packages.c.deliver_time)
            .join(kpi_packages, kpi_packages.c.order_name == kpi_orders.c.order_name)
            .where(kpi_packages.c.package == package)
        )
    ).all())


async def take_due(session: AsyncSession, limit: int) -> list[Row[Any]]:
    """Up to ``limit`` due notifications, locked; rows another replica holds are skipped."""
    return list((
        await session.execute(
            select(notifications)
            .where(notifications.c.status == Status.PENDING.value,
                   notifications.c.not_before <= func.now())
            .order_by(notifications.c.not_before, notifications.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).all())


async def mark_sent(session: AsyncSession, ids: Sequence[int]) -> None:
    if ids:
        await session.execute(
            update(notifications)
            .where(notifications.c.id == bindparam("n_id"))
            .values(status=Status.SENT.value, send_time=func.now()),
            [{"n_id": n} for n in ids],
        )


async def mark_failed(session: AsyncSession, failures: Sequence[Mapping[str, Any]]) -> None:
    """Each failure: ``id``, ``status``, ``attempts``, ``error``, ``not_before``."""
    if failures:
        await session.execute(
            update(notifications)
            .where(notifications.c.id == bindparam("n_id"))
            .values(status=bindparam("n_status"), attempts=bindparam("n_attempts"),
                    last_error=bindparam("n_error"), not_before=bindparam("n_not_before")),
            [{f"n_{key}": value for key, value in failure.items()} for failure in failures],
        )


async def of_order(
    session: AsyncSession, order_name: str, *, after: int, limit: int
) -> list[Row[Any]]:
    """An order's notifications after the id ``after``, oldest first."""
    return list((
        await session.execute(
            select(notifications)
            .where(notifications.c.order_name == order_name, notifications.c.id > after)
            .order_by(notifications.c.id)
            .limit(limit)
        )
    ).all())


async def order_known(session: AsyncSession, order_name: str) -> bool:
    return bool(await session.scalar(
        select(exists().where(kpi_orders.c.order_name == order_name))))
