"""The SQL of a search: a parsed filter's conditions over the indexed columns of ``orders``,
a page of orders newest first, and the counts per status. Every function runs inside the
caller's transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from oms_platform.filtering import Filter
from sqlalchemy import ColumnElement, func, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from oms_orders.lifecycle import domain
from oms_orders.lifecycle.store import LINES_JSON, order_of
from oms_orders.tables import orders

_OPS = {
    "=": lambda c, v: c == v, "!=": lambda c, v: c != v, "<": lambda c, v: c < v,
    "<=": lambda c, v: c <= v, ">": lambda c, v: c > v, ">=": lambda c, v: c >= v,
}


def conditions(parsed: Filter) -> list[ColumnElement[bool]]:
    """SQL conditions of a parsed filter."""
    found: list[ColumnElement[bool]] = []
    for term in parsed.conditions:
        match term.field:
            case "customer":
                found.append(or_(
                    orders.c.customer_key == f"email:{term.value.strip().lower()}",
                    orders.c.customer["external_customer_id"].astext == term.value,
                ))
            case "sku":
                found.append(orders.c.skus.contains([term.value]))
            case "tags":
                found.append(orders.c.tags.contains([term.value]))
            case "merged":
                found.append(orders.c.merge_group.is_not(None) if term.value
                             else orders.c.merge_group.is_(None))
            case "status" | "payment_status":
                found.append(_OPS[term.operator](orders.c[term.field], term.value.value))
            case _:
                found.append(_OPS[term.operator](orders.c[term.field], term.value))
    for text in parsed.text:
        pattern = "%" + text.lower().replace("\\", "\\\\").replace("%", "\\%").replace(
            "_", "\\_") + "%"
        found.append(or_(orders.c.search_text.like(pattern),
                         orders.c.skus.contains([text])))
    return found


async def list_orders(
    session: AsyncSession, where: Sequence[ColumnElement[bool]], *, limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> list[domain.Order]:
    """Newest first; ``after`` is the (create_time, id) of the last order of the page before."""
    query = select(orders, LINES_JSON).where(*where)
    if after is not None:
        query = query.where(tuple_(orders.c.create_time, orders.c.id) < tuple_(*after))
    query = query.order_by(orders.c.create_time.desc(), orders.c.id.desc()).limit(limit)
    found = [order_of(row) for row in (await session.execute(query)).all()]
    groups = {o.merge_group for o in found if o.merge_group is not None}
    if groups:
        members = await session.execute(
            select(orders.c.id, orders.c.merge_group).where(orders.c.merge_group.in_(groups)))
        names: dict[uuid.UUID, list[str]] = {}
        for order_id, group in members:
            names.setdefault(group, []).append(domain.order_name(order_id))
        for order in found:
            if order.merge_group is not None:
                order.merged_with = tuple(sorted(
                    n for n in names.get(order.merge_group, []) if n != order.name))
    return found


async def count_orders(
    session: AsyncSession, where: Sequence[ColumnElement[bool]]
) -> dict[domain.OrderStatus, int]:
    rows = await session.execute(
        select(orders.c.status, func.count()).where(*where).group_by(orders.c.status)
    )
    return {domain.OrderStatus(status): count for status, count in rows}
