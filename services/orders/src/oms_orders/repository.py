"""Storing and loading orders. Every function runs inside the caller's transaction.

An order is loaded with its lines (and the other orders of its merged shipment) in one
statement, and saved with one UPDATE for the order rows and one for the lines that changed;
its small histories (holds, payments, shipments) live in JSON columns of its row for that
reason. Statements are built once at import, so SQLAlchemy compiles each only once.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from google.protobuf.message import Message
from oms_platform.outbox import add_events
from sqlalchemy import (
    ColumnElement,
    Integer,
    Row,
    String,
    Text,
    and_,
    any_,
    bindparam,
    cast,
    func,
    insert,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms_orders import convert, domain, filters
from oms_orders.tables import (
    metadata,
    order_commands,
    order_lines,
    order_products,
    order_timeline,
    orders,
)

OUTBOX = metadata.tables["outbox"]
SOURCE = "/oms/orders"
"""The CloudEvents ``source`` of every event this service publishes."""

ORDER_INSERT = (
    pg_insert(orders)
    .values({c: bindparam(c.name, type_=c.type) for c in orders.c})
    .on_conflict_do_nothing()
    .returning(orders.c.id)
)
LINES_INSERT = insert(order_lines)
TIMELINE_INSERT = insert(order_timeline)

_MUTABLE = [
    "status", "payment_status", "update_time", "priority", "priority_flag", "tags",
    "gift_note", "high_value", "promise_time", "payment_due_time", "release_time", "ship_time",
    "deliver_time", "merge_group", "holds", "payments", "shipments", "deliveries", "returns",
]
ORDER_UPDATE = (
    update(orders)
    .where(orders.c.id == bindparam("b_id"))
    .values({orders.c[n]: bindparam(n, type_=orders.c[n].type) for n in _MUTABLE})
)
_LINE_MUTABLE = ["allocated", "backordered", "failed", "cancelled", "shipped", "returned"]
LINES_UPDATE = (
    update(order_lines)
    .where(order_lines.c.order_id == bindparam("b_order_id"),
           order_lines.c.line_id == bindparam("b_line_id"))
    .values({order_lines.c[n]: bindparam(n, type_=order_lines.c[n].type)
             for n in _LINE_MUTABLE})
)

_LINES_JSON = (
    select(func.jsonb_agg(aggregate_order_by(
        func.jsonb_build_array(
            order_lines.c.line_id, order_lines.c.external_line_id, order_lines.c.sku,
            order_lines.c.quantity, cast(order_lines.c.unit_price, Text),
            order_lines.c.allocated, order_lines.c.backordered, order_lines.c.failed,
            order_lines.c.cancelled, order_lines.c.shipped, order_lines.c.returned,
        ),
        cast(order_lines.c.line_id, Integer),
    )))
    .where(order_lines.c.order_id == orders.c.id)
    .correlate(orders)
    .scalar_subquery()
    .label("lines")
)
_peer = orders.alias("peer")
_GROUP_OF = select(_peer.c.merge_group).where(_peer.c.id == bindparam("id")).scalar_subquery()
_IN_GROUP = or_(orders.c.id == bindparam("id"),
                and_(orders.c.merge_group.is_not(None), orders.c.merge_group == _GROUP_OF))
GROUP_QUERY = select(orders, _LINES_JSON).where(_IN_GROUP).order_by(orders.c.id)
# Locking is a statement of its own, before the read. A `SELECT ... FOR UPDATE` that waited
# for a lock returns the locked row as committed by its holder, but its subqueries (the lines)
# still see the snapshot taken before the wait: read in the same statement, a handler racing
# another (a payment and an allocation, say) would decide on stale lines. Read after the lock,
# in a new statement, they are current.
GROUP_LOCK = select(orders.c.id).where(_IN_GROUP).order_by(orders.c.id).with_for_update()
# The same for several orders at once (a batch of events): the orders and their groups.
_GROUPS_OF = select(_peer.c.merge_group).where(_peer.c.id.in_(bindparam("ids", expanding=True)))
_IN_GROUPS = or_(orders.c.id.in_(bindparam("ids", expanding=True)),
                 and_(orders.c.merge_group.is_not(None), orders.c.merge_group.in_(_GROUPS_OF)))
GROUPS_QUERY = select(orders, _LINES_JSON).where(_IN_GROUPS).order_by(orders.c.id)
GROUPS_LOCK = select(orders.c.id).where(_IN_GROUPS).order_by(orders.c.id).with_for_update()
ORDERS_QUERY = select(orders, _LINES_JSON).where(orders.c.id.in_(bindparam("ids", expanding=True)))
# `= ANY(array)` rather than an expanding IN: one SQL text whatever the number of SKUs, so
# it is compiled and prepared once (it runs on every capture).
PRODUCTS_QUERY = select(order_products).where(
    order_products.c.sku == any_(bindparam("skus", type_=ARRAY(String))),
    order_products.c.deleted.is_(False),
)


# --- capture ---------------------------------------------------------------------------------


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


async def add(session: AsyncSession, order: domain.Order, *, request_id: str | None) -> bool:
    """Stores a new order with its events; False (and nothing written) if it already exists.

    ``ON CONFLICT DO NOTHING`` makes concurrent duplicates safe: a second insert of the same
    request id or channel order waits for the first transaction and then inserts nothing.
    """
    row = {
        **_order_row(order),
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
    await _record_events(session, [order], ())
    return True


async def find_duplicate(
    session: AsyncSession, *, request_id: str | None, channel: str, external_order_id: str
) -> domain.Order | None:
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
    return await get(session, order_id) if order_id is not None else None


# --- loading and saving ----------------------------------------------------------------------


async def get(session: AsyncSession, order_id: uuid.UUID) -> domain.Order | None:
    group = await load_group(session, order_id, lock=False)
    return next((o for o in group if o.id == order_id), None)


async def load_group(
    session: AsyncSession, order_id: uuid.UUID, *, lock: bool = True
) -> list[domain.Order]:
    """The order and the other orders of its merged shipment, in id order (so that two
    transactions lock a group's rows in the same order); empty if there is no such order."""
    locked: set[uuid.UUID] = set()
    if lock:
        locked = set((await session.scalars(GROUP_LOCK, {"id": order_id})).all())
    rows = (await session.execute(GROUP_QUERY, {"id": order_id})).all()
    if lock and {row.id for row in rows} - locked:
        # A merge committed while we waited for the lock added members to the group. With
        # this order locked no merge can change the group any more: lock them all, read again.
        await session.execute(GROUP_LOCK, {"id": order_id})
        rows = (await session.execute(GROUP_QUERY, {"id": order_id})).all()
    group = [_order(row) for row in rows]
    names = [o.name for o in group if o.merge_group is not None]
    for order in group:
        if order.merge_group is not None:
            order.merged_with = tuple(n for n in names if n != order.name)
    return group


async def load_groups(
    session: AsyncSession, order_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, list[domain.Order]]:
    """Per order found, the order and the other orders of its merged shipment, all locked
    in id order and read in one statement each; orders of one group share the same objects,
    so a change to one member is seen through every other."""
    ids = sorted(set(order_ids))
    if not ids:
        return {}
    locked = set((await session.scalars(GROUPS_LOCK, {"ids": ids})).all())
    rows = (await session.execute(GROUPS_QUERY, {"ids": ids})).all()
    if {row.id for row in rows} - locked:
        # A merge committed while we waited added members: lock them too, read again.
        await session.execute(GROUPS_LOCK, {"ids": ids})
        rows = (await session.execute(GROUPS_QUERY, {"ids": ids})).all()
    loaded = [_order(row) for row in rows]
    groups: dict[uuid.UUID, list[domain.Order]] = {}
    for order in loaded:
        if order.merge_group is not None:
            groups.setdefault(order.merge_group, []).append(order)
    for members in groups.values():
        names = [o.name for o in members]
        for order in members:
            order.merged_with = tuple(n for n in names if n != order.name)
    wanted = set(ids)
    return {
        order.id: groups[order.merge_group] if order.merge_group is not None else [order]
        for order in loaded if order.id in wanted
    }


async def get_many(session: AsyncSession, ids: Sequence[uuid.UUID]) -> list[domain.Order]:
    if not ids:
        return []
    rows = (await session.execute(ORDERS_QUERY, {"ids": list(ids)})).all()
    return [_order(row) for row in rows]


async def save(
    session: AsyncSession, changed: Sequence[domain.Order],
    releases: Sequence[domain.Release] = (),
) -> None:
    """Stores changed orders (their rows and changed lines) and the events they recorded."""
    if not changed:
        return
    await session.execute(ORDER_UPDATE, [{**_order_row(o), "b_id": o.id} for o in changed])
    line_rows = [
        {
            "b_order_id": order.id,
            "b_line_id": line.line_id,
            "allocated": line.allocated,
            "backordered": line.backordered,
            "failed": line.failed,
            "cancelled": line.cancelled,
            "shipped": line.shipped,
            "returned": line.returned,
        }
        for order in changed
        for line in order.lines
        if line.line_id in order.changed_lines
    ]
    if line_rows:
        await session.execute(LINES_UPDATE, line_rows)
    for order in changed:
        order.changed_lines.clear()
    await _record_events(session, changed, releases)


def _order_row(order: domain.Order) -> dict[str, Any]:
    return {
        "status": order.status.value,
        "payment_status": order.payment_status.value,
        "update_time": order.update_time,
        "priority": order.priority,
        "priority_flag": order.priority_flag,
        "tags": list(order.tags),
        "gift_note": order.gift_note,
        "high_value": order.high_value,
        "promise_time": order.promise_time,
        "payment_due_time": order.payment_due_time,
        "release_time": order.release_time,
        "ship_time": order.ship_time,
        "deliver_time": order.deliver_time,
        "merge_group": order.merge_group,
        "holds": [_hold_json(h) for h in order.holds],
        "payments": [_payment_json(p) for p in order.payments],
        "shipments": [_shipment_json(s) for s in order.shipments],
        "deliveries": {k: v.isoformat() for k, v in order.deliveries.items()},
        "returns": list(order.returns),
    }


async def _record_events(
    session: AsyncSession, changed: Sequence[domain.Order], releases: Sequence[domain.Release]
) -> None:
    """Turns the orders' new domain events into timeline rows and outbox messages."""
    timeline: list[dict[str, Any]] = []
    messages: list[tuple[Message, str, str | None]] = []
    for order in changed:
        for event in order.events:
            match event:
                case domain.OrderPlaced():
                    timeline.append(_entry(order, event.at, "created", "api", {
                        "channel": order.channel,
                        "external_order_id": order.external_order_id,
                        "payment_status": order.payment_status.value,
                        "total": {"currency_code": order.currency_code,
                                  "amount": f"{order.total.amount:f}"},
                    }))
                    messages.append((convert.order_created(order), order.name, None))
                case domain.StatusChanged():
                    timeline.append(_entry(order, event.at, event.status.value.lower(),
                                           event.actor, {"previous_status": event.previous.value,
                                                         "reason": event.reason}))
                    messages.append((convert.status_changed(order, event), order.name, None))
                case domain.Noted():
                    timeline.append(_entry(order, event.at, event.kind, event.actor,
                                           dict(event.detail)))
                case domain.PaymentSettled():
                    messages.append((convert.order_paid(order, event), order.name, None))
                case domain.LinesCancelled():
                    timeline.append(_entry(order, event.at, "lines_cancelled", event.actor, {
                        "reason": event.reason, "whole_order": event.whole_order,
                        "lines": [{"line_id": x.line_id, "sku": x.sku, "quantity": x.quantity}
                                  for x in event.lines],
                    }))
                    messages.append((convert.order_cancelled(order, event), order.name, None))
        order.events.clear()
    for release in releases:
        messages.append((convert.order_released(release), release.order.name, release.node_id))
    if timeline:
        await session.execute(TIMELINE_INSERT, timeline)
    await add_events(session, OUTBOX, messages, source=SOURCE)


def _entry(order: domain.Order, at: datetime, kind: str, actor: str,
           detail: dict[str, Any]) -> dict[str, Any]:
    return {"order_id": order.id, "at": at, "kind": kind, "actor": actor, "detail": detail}


async def timeline(session: AsyncSession, order_id: uuid.UUID) -> list[Row[Any]]:
    return list((await session.execute(
        select(order_timeline.c.kind, order_timeline.c.at, order_timeline.c.actor,
               order_timeline.c.detail)
        .where(order_timeline.c.order_id == order_id)
        .order_by(order_timeline.c.id)
    )).all())


async def claim_command(
    session: AsyncSession, request_id: str, order_id: uuid.UUID, method: str
) -> bool:
    """False when a command with this idempotency key was already carried out."""
    claimed = await session.scalar(
        pg_insert(order_commands)
        .values(request_id=f"{method}:{request_id}", order_id=order_id, method=method)
        .on_conflict_do_nothing()
        .returning(order_commands.c.request_id)
    )
    return claimed is not None


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


async def overdue_payments(session: AsyncSession, now: datetime, limit: int) -> list[uuid.UUID]:
    """Unpaid orders past their payment due time, the longest overdue first. Not locked
    here: the caller locks them with their groups in id order (``lock_groups``)."""
    rows = await session.scalars(
        select(orders.c.id)
        .where(orders.c.payment_status.in_(["PENDING", "FAILED"]),
               orders.c.payment_due_time <= now,
               orders.c.status.not_in(["CANCELLED"]))
        .order_by(orders.c.payment_due_time)
        .limit(limit)
    )
    return list(rows)


async def lock_groups(session: AsyncSession, order_ids: Iterable[uuid.UUID]) -> None:
    """Locks the orders and the other orders of their merged groups in one statement, in id
    order: the order every handler locks in, so that no two transactions wait for each
    other in a cycle."""
    ids = sorted(set(order_ids))
    if ids:
        await session.execute(GROUPS_LOCK, {"ids": ids})


# --- rows to domain --------------------------------------------------------------------------


def _order(row: Row[Any]) -> domain.Order:
    currency = row.currency_code
    address = dict(row.shipping_address)
    location = address.pop("location", None)
    return domain.Order(
        id=row.id,
        channel=row.channel,
        external_order_id=row.external_order_id,
        customer=domain.Customer(**row.customer),
        shipping_address=domain.Address(
            **{**address, "address_lines": tuple(address["address_lines"])},
            location=domain.LatLng(**location) if location else None,
        ),
        lines=[
            domain.OrderLine(
                line_id=line_id, external_line_id=external_line_id, sku=sku, quantity=quantity,
                unit_price=domain.Money.of(currency, Decimal(price)), allocated=dict(allocated),
                backordered=backordered, failed=failed, cancelled=cancelled, shipped=shipped,
                returned=returned,
            )
            for (line_id, external_line_id, sku, quantity, price, allocated, backordered,
                 failed, cancelled, shipped, returned) in row.lines or []
        ],
        service_level=domain.ServiceLevel(row.service_level),
        payment_status=domain.PaymentStatus(row.payment_status),
        status=domain.OrderStatus(row.status),
        create_time=row.create_time,
        update_time=row.update_time,
        priority_flag=row.priority_flag,
        tags=tuple(row.tags),
        gift_note=row.gift_note,
        high_value=row.high_value,
        order_time=row.order_time,
        promise_time=row.promise_time,
        payment_due_time=row.payment_due_time,
        weight_grams=row.weight_grams,
        holds=[_hold(h) for h in row.holds],
        payments=[_payment(p, currency) for p in row.payments],
        shipments=[_shipment(s) for s in row.shipments],
        deliveries={k: datetime.fromisoformat(v) for k, v in row.deliveries.items()},
        returns=list(row.returns),
        release_time=row.release_time,
        ship_time=row.ship_time,
        deliver_time=row.deliver_time,
        merge_group=row.merge_group,
    )


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _hold_json(hold: domain.Hold) -> dict[str, Any]:
    return {"hold_id": hold.hold_id, "kind": hold.kind.value, "reason": hold.reason,
            "placed_by": hold.placed_by, "place_time": _time(hold.place_time),
            "released_by": hold.released_by, "release_time": _time(hold.release_time)}


def _hold(data: Mapping[str, Any]) -> domain.Hold:
    place_time = _parse_time(data["place_time"])
    assert place_time is not None
    return domain.Hold(data["hold_id"], domain.HoldKind(data["kind"]), data["reason"],
                       data["placed_by"], place_time, data["released_by"],
                       _parse_time(data["release_time"]))


def _payment_json(payment: domain.Payment) -> dict[str, Any]:
    return {"transaction_id": payment.transaction_id, "kind": payment.kind.value,
            "amount": f"{payment.amount.amount:f}", "provider": payment.provider,
            "message": payment.message, "at": _time(payment.at)}


def _payment(data: Mapping[str, Any], currency: str) -> domain.Payment:
    return domain.Payment(data["transaction_id"], domain.PaymentKind(data["kind"]),
                          domain.Money.of(currency, Decimal(data["amount"])), data["provider"],
                          data["message"], _parse_time(data["at"]))


def _shipment_json(shipment: domain.Shipment) -> dict[str, Any]:
    return {"package": shipment.package, "node_id": shipment.node_id,
            "carrier": shipment.carrier, "carrier_service": shipment.carrier_service,
            "tracking_number": shipment.tracking_number, "tracking_url": shipment.tracking_url,
            "ship_time": _time(shipment.ship_time),
            "lines": [[x.line_id, x.sku, x.quantity] for x in shipment.lines]}


def _shipment(data: Mapping[str, Any]) -> domain.Shipment:
    ship_time = _parse_time(data["ship_time"])
    assert ship_time is not None
    return domain.Shipment(
        data["package"], data["node_id"], data["carrier"], data["carrier_service"],
        data["tracking_number"], data["tracking_url"], ship_time,
        tuple(domain.LineQuantity(*x) for x in data["lines"]))



# --- search ----------------------------------------------------------------------------------

_OPS = {
    "=": lambda c, v: c == v, "!=": lambda c, v: c != v, "<": lambda c, v: c < v,
    "<=": lambda c, v: c <= v, ">": lambda c, v: c > v, ">=": lambda c, v: c >= v,
}


def conditions(parsed: filters.Filter) -> list[ColumnElement[bool]]:
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
    query = select(orders, _LINES_JSON).where(*where)
    if after is not None:
        query = query.where(tuple_(orders.c.create_time, orders.c.id) < tuple_(*after))
    query = query.order_by(orders.c.create_time.desc(), orders.c.id.desc()).limit(limit)
    found = [_order(row) for row in (await session.execute(query)).all()]
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
