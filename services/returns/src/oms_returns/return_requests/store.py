"""SQL of returns: the RMA and its lines, and the units of each order line already in a
return, claimed with one conditional write per line."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from oms_platform.filtering import Filter
from sqlalchemy import ColumnElement, Row, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms_returns.tables import return_lines as lines_t
from oms_returns.tables import returned_units as units_t
from oms_returns.tables import returns as returns_t


@dataclass(frozen=True)
class Return:
    row: Row[Any]
    lines: list[Row[Any]]


class LostRace(Exception):
    """Another return claimed units of these lines first: fewer are left than were read."""

    def __init__(self, lines: Sequence[str]) -> None:
        super().__init__(", ".join(lines))
        self.lines = list(lines)


async def load(session: AsyncSession, ids: Sequence[uuid.UUID], *,
               for_update: bool = False) -> list[Return]:
    """The returns in the order of ``ids``, with their lines."""
    if not ids:
        return []
    query = select(returns_t).where(returns_t.c.id.in_(ids))
    if for_update:
        query = query.with_for_update()
    rows = {row.id: row for row in (await session.execute(query)).all()}
    lines: dict[uuid.UUID, list[Row[Any]]] = {}
    for line in (await session.execute(select(lines_t).where(lines_t.c.return_id.in_(ids))
                                       .order_by(lines_t.c.position))).all():
        lines.setdefault(line.return_id, []).append(line)
    return [Return(rows[i], lines.get(i, [])) for i in ids if i in rows]


async def id_by_request(session: AsyncSession, request_id: str) -> uuid.UUID | None:
    return await session.scalar(select(returns_t.c.id)
                                .where(returns_t.c.request_id == request_id))


async def in_returns(session: AsyncSession, order: str, line_ids: Iterable[str]
                     ) -> dict[str, int]:
    """Units of each line in returns not rejected."""
    rows = await session.execute(select(units_t.c.line_id, units_t.c.requested).where(
        units_t.c.order_name == order, units_t.c.line_id.in_(list(line_ids))))
    return {row.line_id: row.requested for row in rows}


async def insert_return(session: AsyncSession, values: Mapping[str, Any]) -> bool:
    """Inserts the return; False when its request_id is taken. A concurrent twin waits here
    for the first to commit, before it claims any unit, and then finds its return."""
    inserted = await session.execute(insert(returns_t).values(**values)
                                     .on_conflict_do_nothing(index_elements=["request_id"])
                                     .returning(returns_t.c.id))
    return inserted.first() is not None


# One row per (order, line): inserted with the first claim, then raised only while the total
# stays within what was delivered. The WHERE is evaluated on the row as it is after any
# concurrent claim committed, so two claims can never both pass on the same units.
_CLAIM = text("""
    INSERT INTO returned_units AS u (order_name, line_id, delivered, requested)
    VALUES (:order_name, :line_id, :delivered, :quantity)
    ON CONFLICT (order_name, line_id) DO UPDATE
       SET requested = u.requested + excluded.requested,
           delivered = GREATEST(u.delivered, excluded.delivered)
     WHERE u.requested + excluded.requested <= GREATEST(u.delivered, excluded.delivered)
    RETURNING line_id
""")


async def claim_units(session: AsyncSession, order: str,
                      lines: Sequence[tuple[str, int, int]]) -> None:
    """Claims ``(line_id, delivered, quantity)`` for a return, in line order (two returns of
    the same lines lock them in the same order); LostRace names the lines with too few
    units left."""
    lost = []
    for line_id, delivered, quantity in sorted(lines):
        claimed = await session.execute(_CLAIM, {"order_name": order, "line_id": line_id,
                                                 "delivered": delivered,
                                                 "quantity": quantity})
        if claimed.first() is None:
            lost.append(line_id)
    if lost:
        raise LostRace(lost)


async def release_units(session: AsyncSession, order: str,
                        lines: Sequence[tuple[str, int]]) -> None:
    """Gives back a rejected return's units."""
    for line_id, quantity in sorted(lines):
        await session.execute(update(units_t).where(
            units_t.c.order_name == order, units_t.c.line_id == line_id)
            .values(requested=units_t.c.requested - quantity))


async def insert_lines(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
    await session.execute(insert(lines_t), list(rows))


async def change(session: AsyncSession, return_id: uuid.UUID, **values: Any) -> None:
    await session.execute(update(returns_t).where(returns_t.c.id == return_id)
                          .values(**values))


def conditions(parsed: Filter) -> list[ColumnElement[bool]]:
    columns = {"state": returns_t.c.state, "order": returns_t.c.order_name,
               "channel": returns_t.c.channel}
    found: list[ColumnElement[bool]] = []
    for term in parsed.conditions:
        value = term.value.value if term.field == "state" else term.value
        column = columns[term.field]
        found.append(column == value if term.operator == "=" else column != value)
    return found


async def list_ids(session: AsyncSession, where: Sequence[ColumnElement[bool]], *,
                   limit: int, after: tuple[datetime, uuid.UUID] | None) -> list[Any]:
    """(create_time, id) of a page, newest first."""
    query = select(returns_t.c.create_time, returns_t.c.id).where(*where)
    if after is not None:
        query = query.where(tuple_(returns_t.c.create_time, returns_t.c.id) < tuple_(*after))
    query = query.order_by(returns_t.c.create_time.desc(), returns_t.c.id.desc()).limit(limit)
    return list((await session.execute(query)).all())
