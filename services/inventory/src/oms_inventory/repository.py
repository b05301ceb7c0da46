"""Storage operations of the inventory service. Each takes the caller's session, so that a
request or an event handler decides where its transaction begins and ends."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms_inventory.tables import reservations, stock_levels


async def change_on_hand(session: AsyncSession, node_id: str, sku: str,
                         delta: int) -> tuple[int, int] | None:
    """Adds ``delta`` to on-hand in one conditional write; None if that would leave less on
    hand than is reserved."""
    await session.execute(
        pg_insert(stock_levels)
        .values(node_id=node_id, sku=sku, on_hand=0, reserved=0)
        .on_conflict_do_nothing()
    )
    statement = (
        update(stock_levels)
        .where(
            stock_levels.c.node_id == node_id,
            stock_levels.c.sku == sku,
            stock_levels.c.on_hand + delta >= stock_levels.c.reserved,
        )
        .values(on_hand=stock_levels.c.on_hand + delta)
        .returning(stock_levels.c.on_hand, stock_levels.c.reserved)
    )
    row = (await session.execute(statement)).one_or_none()
    return (row.on_hand, row.reserved) if row else None


async def reservations_of(session: AsyncSession, order: str) -> Sequence[Row[Any]]:
    statement = (
        select(reservations)
        .where(reservations.c.order_name == order)
        .order_by(reservations.c.line_id, reservations.c.id)
    )
    return (await session.execute(statement)).all()
