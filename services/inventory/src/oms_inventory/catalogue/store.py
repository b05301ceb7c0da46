"""Storage of the product master and the fulfilment nodes. Each function takes the caller's
session, so that a request decides where its transaction begins and ends."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from oms_platform.errors import NotFound
from oms_platform.filtering import Condition
from sqlalchemy import (
    ColumnElement,
    Row,
    delete,
    exists,
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

from oms_inventory.catalogue import convert
from oms_inventory.tables import add_events, fulfilment_nodes, node_bins, products

# Product columns a create, an update or an upsert may write (everything but the key and
# the bookkeeping).
PRODUCT_FIELDS = (
    "title", "gtin", "weight_grams", "length_mm", "width_mm", "height_mm", "fragile",
    "hazardous", "minimum_order_quantity", "returnable", "backorder_policy", "backorder_limit",
    "reorder_point", "supplier_lead_time_days",
)


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


async def publish_product_changes(session: AsyncSession, rows: Sequence[Row[Any]], *,
                                  deleted: bool = False) -> None:
    """One `ProductChanged` per row, written to the outbox in one statement (a catalogue
    import may change a thousand products at once)."""
    if rows:
        await add_events(session, convert.product_changes(rows, deleted=deleted))


def like_escape(value: str) -> str:
    """A literal for LIKE patterns with the default backslash escape."""
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


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



async def require_node_and_product(session: AsyncSession, node_id: str, sku: str) -> None:
    """NOT_FOUND, naming what is missing, unless both the node and the product exist."""
    node, product = await node_and_product_exist(session, node_id, sku)
    missing = [
        *([] if node else [f"fulfilmentNodes/{node_id}"]),
        *([] if product else [f"products/{sku}"]),
    ]
    if missing:
        raise NotFound(f"{' and '.join(missing)} not found", metadata={"name": missing[0]})


async def require_product(session: AsyncSession, sku: str) -> None:
    if await product_by_sku(session, sku) is None:
        raise NotFound(f"product {sku} not found", metadata={"name": f"products/{sku}"})
