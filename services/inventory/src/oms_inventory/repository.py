"""Storage operations of the inventory service. Each takes the caller's session, so that a
request or an event handler decides where its transaction begins and ends."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncSession

from oms_inventory.tables import reservations


async def reservations_of(session: AsyncSession, order: str) -> Sequence[Row[Any]]:
    statement = (
        select(reservations)
        .where(reservations.c.order_name == order)
        .order_by(reservations.c.line_id, reservations.c.id)
    )
    return (await session.execute(statement)).all()
