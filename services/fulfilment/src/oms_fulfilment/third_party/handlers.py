"""What a 3PL or a dropship supplier is sent as the order changes: the request a release
starts, and the units a cancellation takes back."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from oms_fulfilment.fulfilment_orders import domain as orders_domain
from oms_fulfilment.fulfilment_orders import store as orders_store
from oms_fulfilment.tables import add_events
from oms_fulfilment.third_party import convert, store


async def request_fulfilment(session: AsyncSession, order_id: uuid.UUID,
                             now: datetime) -> None:
    """Writes `FulfilmentRequested` (a 3PL) or `PurchaseOrderRequested` (a supplier) for a
    new fulfilment order, in the transaction that creates it, on the node's own subject."""
    (order,) = await orders_store.load(session, [order_id])
    products = await store.products(session, {line.sku for line in order.lines})
    event = convert.requested_event(order, products, now)
    await add_events(session, [(event, orders_domain.name_of(order_id),
                                order.row.node_id)])


async def tell_third_parties(session: AsyncSession, cancelled: dict[uuid.UUID, dict[str, int]],
                             reason: str, now: datetime) -> None:
    """Writes `FulfilmentCancelled` for each 3PL or supplier order that lost units, in the
    cancellation's transaction."""
    if not cancelled:
        return
    events = []
    for order in await orders_store.load(session, cancelled):
        if order.third_party:
            event = convert.cancelled_event(order, cancelled[order.row.id], reason, now)
            events.append((event, event.fulfilment_order, order.row.node_id))
    await add_events(session, events)
