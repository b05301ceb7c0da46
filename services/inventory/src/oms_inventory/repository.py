"""Storage operations of the inventory service. Each takes the caller's session, so that a
request or an event handler decides where its transaction begins and ends."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Row, exists, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms_inventory.tables import fulfilment_nodes, products, reservations, stock_levels


async def insert_product(session: AsyncSession, values: Mapping[str, Any]) -> Row[Any] | None:
    """The new product, or None if its SKU or request id is taken."""
    statement = (
        pg_insert(products).values(**values).on_conflict_do_nothing().returning(*products.c)
    )
    return (await session.execute(statement)).one_or_none()


async def product_by_sku(session: AsyncSession, sku: str) -> Row[Any] | None:
    return (await session.execute(select(products).where(products.c.sku == sku))).one_or_none()


async def product_by_request(session: AsyncSession, request_id: str) -> Row[Any] | None:
    statement = select(products).where(products.c.request_id == request_id)
    return (await session.execute(statement)).one_or_none()


async def insert_node(session: AsyncSession, values: Mapping[str, Any]) -> Row[Any] | None:
    """The new node, or None if its id or request id is taken."""
    statement = (
        pg_insert(fulfilment_nodes)
        .values(**values)
        .on_conflict_do_nothing()
        .returning(*fulfilment_nodes.c)
    )
    return (await session.execute(statement)).one_or_none()


async def node_by_id(session: AsyncSession, node_id: str) -> Row[Any] | None:
    statement = select(fulfilment_nodes).where(fulfilment_nodes.c.node_id == node_id)
    return (await session.execute(statement)).one_or_none()


async def node_by_request(session: AsyncSession, request_id: str) -> Row[Any] | None:
    statement = select(fulfilment_nodes).where(fulfilment_nodes.c.request_id == request_id)
    return (await session.execute(statement)).one_or_none()


async def node_and_product_exist(session: AsyncSession, node_id: str,
                                 sku: str) -> tuple[bool, bool]:
    statement = select(
        exists().where(fulfilment_nodes.c.node_id == node_id),
        exists().where(products.c.sku == sku),
    )
    node, product = (await session.execute(statement)).one()
    return bool(node), bool(product)


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
