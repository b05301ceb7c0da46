"""The events capture consumes: inventory's product master, kept for the capture rules."""

from __future__ import annotations

from datetime import UTC, datetime

from oms.inventory.v1 import events_pb2 as inventory_events
from sqlalchemy.ext.asyncio import AsyncSession

from oms_orders.capture import domain, store
from oms_orders.lifecycle.convert import event_time


async def on_product_changed(
    session: AsyncSession, event: inventory_events.ProductChanged
) -> None:
    product = event.product
    await store.upsert_product(
        session,
        domain.Product(product.sku, product.minimum_order_quantity, product.weight.grams),
        deleted=event.deleted,
        change_time=event_time(event.change_time, datetime.now(UTC)),
    )
