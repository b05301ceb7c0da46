"""Loading and saving orders. Every function runs inside the caller's transaction.

An order is loaded with its lines (and the other orders of its merged shipment) in one
statement, and saved with one UPDATE for the order rows and one for the lines that changed;
its small histories (holds, payments, shipments) live in JSON columns of its row for that
reason. Statements are built once at import, so SQLAlchemy compiles each only once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from google.protobuf.message import Message
from oms_platform.outbox import add_events
from oms_platform.values import LatLng
from sqlalchemy import (
    Integer,
    Row,
    Text,
    and_,
    bindparam,
    cast,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms_orders.lifecycle import convert, domain
from oms_orders.tables import (
    metadata,
    order_commands,
    order_lines,
    order_timeline,
    orders,
)

OUTBOX = metadata.tables["outbox"]
SOURCE = "/oms/orders"
"""The CloudEvents ``source`` of every event this service publishes."""

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

LINES_JSON = (
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
GROUP_QUERY = select(orders, LINES_JSON).where(_IN_GROUP).order_by(orders.c.id)
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
GROUPS_QUERY = select(orders, LINES_JSON).where(_IN_GROUPS).order_by(orders.c.id)
GROUPS_LOCK = select(orders.c.id).where(_IN_GROUPS).order_by(orders.c.id).with_for_update()
ORDERS_QUERY = select(orders, LINES_JSON).where(orders.c.id.in_(bindparam("ids", expanding=True)))



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
    group = [order_of(row) for row in rows]
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
    loaded = [order_of(row) for row in rows]
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
    return [order_of(row) for row in rows]


async def save(
    session: AsyncSession, changed: Sequence[domain.Order],
    releases: Sequence[domain.Release] = (),
) -> None:
    """Stores changed orders (their rows and changed lines) and the events they recorded."""
    if not changed:
        return
    await session.execute(ORDER_UPDATE, [{**order_row(o), "b_id": o.id} for o in changed])
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
    await record_events(session, changed, releases)


def order_row(order: domain.Order) -> dict[str, Any]:
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


async def record_events(
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
                case domain.PromiseChanged():
                    messages.append((convert.promise_changed(order, event), order.name, None))
                case domain.PaymentRefunded():
                    messages.append((convert.order_refunded(order, event), order.name, None))
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


def order_of(row: Row[Any]) -> domain.Order:
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
            location=LatLng(**location) if location else None,
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



