"""Storing new orders and reading the products capture checks them against. Every function
runs inside the caller's transaction."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import String, any_, bindparam, insert, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms_orders.capture import domain
from oms_orders.lifecycle import store
from oms_orders.lifecycle.domain import Order
from oms_orders.tables import order_lines, order_products, orders

ORDER_INSERT = (
    pg_insert(orders)
    .values({c: bindparam(c.name, type_=c.type) for c in orders.c})
    .on_conflict_do_nothing()
    .returning(orders.c.id)
)
LINES_INSERT = insert(order_lines)


# `= ANY(array)` rather than an expanding IN: one SQL text whatever the number of SKUs, so
# it is compiled and prepared once (it runs on every capture).
PRODUCTS_QUERY = select(order_products).where(
    order_products.c.sku == any_(bindparam("skus", type_=ARRAY(String))),
    order_products.c.deleted.is_(False),
)


async def products(session: AsyncSession, skus: Iterable[str]) -> dict[str, domain.Product]:
    """The known products among ``skus`` (minimum order quantities, weights)."""
    wanted = sorted(set(skus))
    if not wanted:
        return {}
    rows = await session.execute(PRODUCTS_QUERY, {"skus": wanted})
    return {
        row.sku: domain.Product(row.sku, row.minimum_order_quantity, row.weight_grams)
        for row in rows
    }


def insert_order(keys: Sequence[tuple[str, str, str]]) -> list[int]:
    """The order in which to insert several new orders in one transaction, given each one's
    unique keys (channel, external order id, request id): sorted by them.

    An insert that meets a key another open transaction inserted waits for that transaction.
    Two imports of overlapping orders, each inserting in its request's order, would wait for
    each other's rows in a cycle (a deadlock, 40P01); in one order for everyone, the second
    waits for the first and then finds the orders it made. (Imports that pair one request id
    with different channel orders can still cross on the two keys; PostgreSQL then aborts one,
    which the caller sees as a retryable ABORTED.)"""
    return sorted(range(len(keys)), key=keys.__getitem__)


async def add(session: AsyncSession, order: Order, *, request_id: str | None) -> bool:
    """Stores a new order with its events; False (and nothing written) if it already exists.

    ``ON CONFLICT DO NOTHING`` makes concurrent duplicates safe: a second insert of the same
    request id or channel order waits for the first transaction and then inserts nothing.
    """
    row = {
        **store.order_row(order),
        "id": order.id,
        "channel": order.channel,
        "external_order_id": order.external_order_id,
        "request_id": request_id,
        "customer": dataclasses.asdict(order.customer),
        "shipping_address": dataclasses.asdict(order.shipping_address),
        "service_level": order.service_level.value,
        "currency_code": order.currency_code,
        "total_amount": order.total.amount,
        "create_time": order.create_time,
        "order_time": order.order_time,
        "region_code": order.shipping_address.region_code,
        "customer_key": order.customer_key,
        "address_key": order.address_key,
        "search_text": " ".join([order.external_order_id, order.customer.display_name,
                                 order.customer.email]).lower(),
        "skus": sorted({line.sku for line in order.lines}),
        "item_count": order.item_count,
        "weight_grams": order.weight_grams,
    }
    if await session.scalar(ORDER_INSERT, row) is None:
        return False
    await session.execute(LINES_INSERT, [
        {
            "order_id": order.id,
            "line_id": line.line_id,
            "external_line_id": line.external_line_id,
            "sku": line.sku,
            "quantity": line.quantity,
            "unit_price": line.unit_price.amount,
        }
        for line in order.lines
    ])
    order.changed_lines.clear()
    await store.record_events(session, [order], ())
    return True


async def find_duplicate(
    session: AsyncSession, *, request_id: str | None, channel: str, external_order_id: str
) -> Order | None:
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
    return await store.get(session, order_id) if order_id is not None else None


async def upsert_product(
    session: AsyncSession, product: domain.Product, *, deleted: bool, change_time: datetime
) -> None:
    """Keeps the newest state of a product; an older change arriving late is ignored."""
    statement = pg_insert(order_products).values(
        sku=product.sku, minimum_order_quantity=product.minimum_order_quantity,
        weight_grams=product.weight_grams, deleted=deleted, change_time=change_time,
    )
    await session.execute(statement.on_conflict_do_update(
        index_elements=[order_products.c.sku],
        set_={c: statement.excluded[c] for c in
              ("minimum_order_quantity", "weight_grams", "deleted", "change_time")},
        where=order_products.c.change_time <= statement.excluded.change_time,
    ))
