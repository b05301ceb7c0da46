"""Storage operations of the inventory service. Each takes the caller's session, so that a
request or an event handler decides where its transaction begins and ends."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Row, and_, exists, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms_inventory.domain import CandidateNode, LatLng, Line
from oms_inventory.tables import (
    backorders,
    fulfilment_nodes,
    products,
    reservations,
    stock_ledger,
    stock_levels,
)

RESERVATION = "RESERVATION"


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


async def stock_level(session: AsyncSession, node_id: str, sku: str) -> tuple[int, int]:
    """(on_hand, reserved); a SKU never stocked at the node has none of either."""
    statement = select(stock_levels.c.on_hand, stock_levels.c.reserved).where(
        stock_levels.c.node_id == node_id, stock_levels.c.sku == sku
    )
    row = (await session.execute(statement)).one_or_none()
    return (row.on_hand, row.reserved) if row else (0, 0)


async def record_adjustment(session: AsyncSession, *, node_id: str, sku: str, kind: str,
                            delta: int, request_id: str | None) -> bool:
    """Writes the adjustment's ledger row; False if its request id was recorded before.

    Claiming the request id first makes concurrent retries of one request wait for each other
    on the unique index: the second sees the first's row once it commits, or inserts its own
    if the first rolled back."""
    statement = (
        pg_insert(stock_ledger)
        .values(node_id=node_id, sku=sku, kind=kind, on_hand_delta=delta, reserved_delta=0,
                reference=request_id, request_id=request_id)
        .on_conflict_do_nothing(index_elements=[stock_ledger.c.request_id])
        .returning(stock_ledger.c.id)
    )
    return (await session.scalar(statement)) is not None


async def adjustment_by_request(session: AsyncSession, request_id: str) -> Row[Any] | None:
    statement = select(stock_ledger).where(stock_ledger.c.request_id == request_id)
    return (await session.execute(statement)).one_or_none()


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


async def lock_order(session: AsyncSession, order: str) -> None:
    """Serialises the handling of one order until the transaction ends, so two copies of its
    event (with different event ids, which the inbox cannot catch) never both allocate."""
    await session.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(order, 0))))


async def order_is_handled(session: AsyncSession, order: str) -> bool:
    """Whether the order was already reserved or backordered."""
    statement = select(
        or_(
            exists().where(reservations.c.order_name == order),
            exists().where(backorders.c.order_name == order),
        )
    )
    return bool(await session.scalar(statement))


async def candidate_nodes(session: AsyncSession,
                          needed: Mapping[str, int]) -> list[CandidateNode]:
    """Nodes whose available stock covers every SKU of an order, in one query."""
    available = stock_levels.c.on_hand - stock_levels.c.reserved
    covers = or_(*(and_(stock_levels.c.sku == sku, available >= quantity)
                   for sku, quantity in needed.items()))
    statement = (
        select(
            fulfilment_nodes.c.node_id,
            fulfilment_nodes.c.latitude,
            fulfilment_nodes.c.longitude,
            fulfilment_nodes.c.priority,
        )
        .join(stock_levels, stock_levels.c.node_id == fulfilment_nodes.c.node_id)
        .where(covers)
        .group_by(fulfilment_nodes.c.node_id)
        .having(func.count() == len(needed))
    )
    return [
        CandidateNode(row.node_id, LatLng(row.latitude, row.longitude), row.priority)
        for row in await session.execute(statement)
    ]


async def reserve(session: AsyncSession, node_id: str, sku: str, quantity: int) -> bool:
    """Reserves units in one conditional write: never read-then-write, so two orders can
    never both take the last unit. False if not enough is available."""
    statement = (
        update(stock_levels)
        .where(
            stock_levels.c.node_id == node_id,
            stock_levels.c.sku == sku,
            stock_levels.c.on_hand - stock_levels.c.reserved >= quantity,
        )
        .values(reserved=stock_levels.c.reserved + quantity)
        .returning(stock_levels.c.reserved)
    )
    return (await session.scalar(statement)) is not None


async def record_reservations(session: AsyncSession, order: str, node_id: str,
                              lines: Sequence[Line]) -> None:
    await session.execute(
        insert(reservations),
        [
            {"order_name": order, "line_id": line.line_id, "node_id": node_id,
             "sku": line.sku, "quantity": line.quantity}
            for line in lines
        ],
    )
    await session.execute(
        insert(stock_ledger),
        [
            {"node_id": node_id, "sku": line.sku, "kind": RESERVATION, "on_hand_delta": 0,
             "reserved_delta": line.quantity, "reference": order}
            for line in lines
        ],
    )


async def record_backorders(session: AsyncSession, order: str, lines: Sequence[Line]) -> None:
    await session.execute(
        insert(backorders),
        [
            {"order_name": order, "line_id": line.line_id, "sku": line.sku,
             "quantity": line.quantity}
            for line in lines
        ],
    )


async def reservations_of(session: AsyncSession, order: str) -> Sequence[Row[Any]]:
    statement = (
        select(reservations)
        .where(reservations.c.order_name == order)
        .order_by(reservations.c.line_id, reservations.c.id)
    )
    return (await session.execute(statement)).all()
