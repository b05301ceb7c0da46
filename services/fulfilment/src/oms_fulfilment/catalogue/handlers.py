"""The product master's changes, kept newest first."""

from __future__ import annotations

from datetime import UTC, datetime

from oms.inventory.v1 import events_pb2 as inventory_events
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms_fulfilment.fulfilment_orders.handlers import time_of
from oms_fulfilment.tables import fulfilment_products


async def on_product_changed(session: AsyncSession,
                             event: inventory_events.ProductChanged) -> None:
    """An older change arriving late changes nothing."""
    product = event.product
    statement = pg_insert(fulfilment_products).values(
        sku=product.sku, title=product.title, gtin=product.gtin,
        weight_grams=product.weight.grams, length_mm=product.dimensions.length_mm,
        width_mm=product.dimensions.width_mm, height_mm=product.dimensions.height_mm,
        fragile=product.fragile, deleted=event.deleted,
        change_time=time_of(event.change_time, datetime.now(UTC)))
    await session.execute(statement.on_conflict_do_update(
        index_elements=[fulfilment_products.c.sku],
        set_={c.name: statement.excluded[c.name] for c in fulfilment_products.columns
              if c.name != "sku"},
        where=fulfilment_products.c.change_time <= statement.excluded.change_time))
