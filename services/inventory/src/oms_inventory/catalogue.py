"""Storage of the product master and the fulfilment nodes, and the `ProductChanged` events that
tell other services (orders keeps minimum order quantities) what changed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from oms.common.v1 import common_pb2
from oms.inventory.v1 import events_pb2, inventory_pb2
from oms_platform.filtering import Condition
from sqlalchemy import (
    ColumnElement,
    Row,
    delete,
    false,
    func,
    insert,
    or_,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms_inventory.filtering import like_escape
from oms_inventory.levels import add_events
from oms_inventory.tables import fulfilment_nodes, node_bins, products

POLICY_PREFIX = "BACKORDER_POLICY_"

# Product columns a create, an update or an upsert may write (everything but the key and
# the bookkeeping).
PRODUCT_FIELDS = (
    "title", "gtin", "weight_grams", "length_mm", "width_mm", "height_mm", "fragile",
    "hazardous", "minimum_order_quantity", "returnable", "backorder_policy", "backorder_limit",
    "reorder_point", "supplier_lead_time_days",
)


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def product_message(row: Row[Any]) -> inventory_pb2.Product:
    product = inventory_pb2.Product(
        name=f"products/{row.sku}",
        sku=row.sku,
        title=row.title,
        gtin=row.gtin,
        create_time=_timestamp(row.create_time),
        update_time=_timestamp(row.update_time),
        fragile=row.fragile,
        hazardous=row.hazardous,
        minimum_order_quantity=row.minimum_order_quantity,
        returnable=row.returnable,
        backorder_policy=inventory_pb2.BackorderPolicy.Value(POLICY_PREFIX
                                                             + row.backorder_policy),
        backorder_limit=row.backorder_limit,
        reorder_point=row.reorder_point,
        supplier_lead_time_days=row.supplier_lead_time_days,
    )
    if row.weight_grams is not None:
        product.weight.grams = row.weight_grams
    if row.length_mm is not None:
        product.dimensions.CopyFrom(common_pb2.Dimensions(
            length_mm=row.length_mm, width_mm=row.width_mm, height_mm=row.height_mm))
    return product


def product_values(product: inventory_pb2.Product) -> dict[str, Any]:
    """The columns of a product message; unset optional parts are NULL."""
    policy = product.backorder_policy or inventory_pb2.BACKORDER_POLICY_DENY
    has_dimensions = product.HasField("dimensions")
    return {
        "title": product.title,
        "gtin": product.gtin,
        "weight_grams": product.weight.grams if product.HasField("weight") else None,
        "length_mm": product.dimensions.length_mm if has_dimensions else None,
        "width_mm": product.dimensions.width_mm if has_dimensions else None,
        "height_mm": product.dimensions.height_mm if has_dimensions else None,
        "fragile": product.fragile,
        "hazardous": product.hazardous,
        "minimum_order_quantity": max(1, product.minimum_order_quantity),
        "returnable": product.returnable,
        "backorder_policy": inventory_pb2.BackorderPolicy.Name(policy).removeprefix(
            POLICY_PREFIX),
        "backorder_limit": product.backorder_limit,
        "reorder_point": product.reorder_point,
        "supplier_lead_time_days": product.supplier_lead_time_days,
    }


async def publish_product_changes(session: AsyncSession, rows: Sequence[Row[Any]], *,
                                  deleted: bool = False) -> None:
    """One `ProductChanged` per row, written to the outbox in one statement (a catalogue
    import may change a thousand products at once)."""
    if not rows:
        return
    now = _timestamp(datetime.now(UTC))
    await add_events(session, [
        (f"products/{row.sku}", events_pb2.ProductChanged(
            product=product_message(row), deleted=deleted, change_time=now))
        for row in rows
    ])


PRODUCT_FILTERS: dict[str, Any] = {
    "sku": products.c.sku,
    "title": products.c.title,
    "gtin": products.c.gtin,
    "fragile": products.c.fragile,
    "hazardous": products.c.hazardous,
    "returnable": products.c.returnable,
    "backorder_policy": products.c.backorder_policy,
}


def text_condition(column: Any, condition: Condition) -> ColumnElement[bool]:
    value = condition.value
    if condition.operator == "prefix":
        return column.like(like_escape(str(value)) + "%")  # type: ignore[no-any-return]
    if condition.operator == ":":
        return column.ilike("%" + like_escape(str(value)) + "%")  # type: ignore[no-any-return]
    if condition.operator == "!=":
        return column != value  # type: ignore[no-any-return]
    return column == value  # type: ignore[no-any-return]


async def list_products(session: AsyncSession, conditions: Sequence[Condition], *,
                        show_deleted: bool, after: str | None,
                        limit: int) -> Sequence[Row[Any]]:
    statement = select(products).order_by(products.c.sku).limit(limit)
    if not show_deleted:
        statement = statement.where(products.c.deleted.is_(false()))
    if after is not None:
        statement = statement.where(products.c.sku > after)
    for condition in conditions:
        statement = statement.where(text_condition(PRODUCT_FILTERS[condition.field], condition))
    return (await session.execute(statement)).all()


async def update_product(session: AsyncSession, sku: str,
                         values: Mapping[str, Any]) -> Row[Any] | None:
    """The updated product; None if there is no live product with the SKU."""
    statement = (
        update(products)
        .where(products.c.sku == sku, products.c.deleted.is_(false()))
        .values(**values, update_time=func.now())
        .returning(*products.c)
    )
    return (await session.execute(statement)).one_or_none()


async def delete_product(session: AsyncSession, sku: str) -> Row[Any] | None:
    """The product as deleted now; None if it was already deleted or never existed."""
    statement = (
        update(products)
        .where(products.c.sku == sku, products.c.deleted.is_(false()))
        .values(deleted=True, update_time=func.now())
        .returning(*products.c)
    )
    return (await session.execute(statement)).one_or_none()


async def upsert_products(session: AsyncSession,
                          rows: Sequence[Mapping[str, Any]]) -> Sequence[Row[Any]]:
    """Inserts or replaces the products in one statement and returns those that changed.
    An unchanged product is left alone (no new update time, no event), so re-importing a
    catalogue only announces what is different; a deleted one comes back."""
    statement = pg_insert(products).values(list(rows))
    excluded = statement.excluded
    changed = or_(
        products.c.deleted.is_(true()),
        tuple_(*(products.c[name] for name in PRODUCT_FIELDS)).is_distinct_from(
            tuple_(*(excluded[name] for name in PRODUCT_FIELDS))),
    )
    statement = statement.on_conflict_do_update(
        index_elements=[products.c.sku],
        set_={**{name: excluded[name] for name in PRODUCT_FIELDS},
              "deleted": false(), "update_time": func.now()},
        where=changed,
    ).returning(*products.c)
    return (await session.execute(statement)).all()


async def products_by_sku(session: AsyncSession, skus: Sequence[str]) -> dict[str, Row[Any]]:
    statement = select(products).where(products.c.sku.in_(skus))
    return {row.sku: row for row in await session.execute(statement)}


# --- Fulfilment nodes ---

NODE_FILTERS = ("type", "region")


def node_region_condition(region: str) -> ColumnElement[bool]:
    """Nodes that ship to a region: those listing it, its country, or no region at all."""
    country = region.split("-", 1)[0]
    regions = fulfilment_nodes.c.service_regions
    return or_(
        func.cardinality(regions) == 0,
        regions.any_() == region,  # type: ignore[arg-type]
        regions.any_() == country,  # type: ignore[arg-type]
    )


async def list_nodes(session: AsyncSession, conditions: Sequence[Condition], *,
                     after: str | None, limit: int) -> Sequence[Row[Any]]:
    statement = select(fulfilment_nodes).order_by(fulfilment_nodes.c.node_id).limit(limit)
    if after is not None:
        statement = statement.where(fulfilment_nodes.c.node_id > after)
    for condition in conditions:
        if condition.field == "type":
            matches = fulfilment_nodes.c.node_type == condition.value
        else:
            matches = node_region_condition(str(condition.value))
        statement = statement.where(matches if condition.operator != "!=" else ~matches)
    return (await session.execute(statement)).all()


async def update_node(session: AsyncSession, node_id: str,
                      values: Mapping[str, Any]) -> Row[Any] | None:
    statement = (
        update(fulfilment_nodes)
        .where(fulfilment_nodes.c.node_id == node_id)
        .values(**values, update_time=func.now())
        .returning(*fulfilment_nodes.c)
    )
    return (await session.execute(statement)).one_or_none()


async def replace_bins(session: AsyncSession, node_id: str,
                       bins: Sequence[Mapping[str, Any]]) -> None:
    await session.execute(delete(node_bins).where(node_bins.c.node_id == node_id))
    if bins:
        await session.execute(insert(node_bins),
                              [{"node_id": node_id, **bin_} for bin_ in bins])


async def bins_of(session: AsyncSession, node_ids: Sequence[str]) -> dict[str, list[Row[Any]]]:
    """Each node's bins in walking order."""
    if not node_ids:
        return {}
    statement = (
        select(node_bins)
        .where(node_bins.c.node_id.in_(node_ids))
        .order_by(node_bins.c.node_id, node_bins.c.walk_sequence, node_bins.c.bin_code)
    )
    found: dict[str, list[Row[Any]]] = {node_id: [] for node_id in node_ids}
    for row in await session.execute(statement):
        found[row.node_id].append(row)
    return found

