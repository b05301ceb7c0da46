"""Inventory events, each handled inside the consumer's inbox transaction."""

from __future__ import annotations

from datetime import UTC, datetime

import structlog
from oms.inventory.v1 import events_pb2 as inventory_events
from sqlalchemy.ext.asyncio import AsyncSession

from oms_orders import convert, domain, repository

log = structlog.get_logger(__name__)


async def on_stock_allocated(
    session: AsyncSession, event: inventory_events.StockAllocated
) -> None:
    order = await _load(session, event.order, "StockAllocated")
    if order is not None and order.allocate(
        convert.allocations_from_proto(event), at=datetime.now(UTC)
    ):
        await repository.save(session, order)
        log.info("order allocated", order=order.name)


async def on_stock_backordered(
    session: AsyncSession, event: inventory_events.StockBackordered
) -> None:
    order = await _load(session, event.order, "StockBackordered")
    if order is not None and order.backorder(
        convert.backordered_from_proto(event), at=datetime.now(UTC)
    ):
        await repository.save(session, order)
        log.info("order awaits stock", order=order.name)


async def _load(session: AsyncSession, name: str, event_type: str) -> domain.Order | None:
    """The order locked for this transaction; None (logged) if there is no such order.

    An event for an order we do not know cannot succeed on a retry, so it is acknowledged
    rather than retried into the dead letters.
    """
    order_id = domain.parse_order_name(name)
    order = await repository.get(session, order_id, for_update=True) if order_id else None
    if order is None:
        log.warning("event for an unknown order ignored", order=name, event_type=event_type)
    return order
