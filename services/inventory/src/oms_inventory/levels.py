"""What every stock movement ends with: a `StockLevelChanged` event per touched level, so that
channel connectors can update their listings before they oversell, and a
`ReorderPointReached` event for each level whose available stock has just fallen to its
reorder point.

Call `publish_changes` once per transaction with every (node_id, sku) it touched, after the
writes: it reads the levels as the transaction left them and adds the events to the outbox in
that same transaction. It runs on the allocation hot path, so it costs a constant number of
statements whatever the number of keys: one read of the levels with their products, one of
the network totals, one of the channel buffers, and only when needed one read of the ledger
(for velocities older than the refresh interval) and one batched write of the replenishment
state. Because the caller has already written (and so locked) each touched level, two
transactions never both see a level cross its reorder point: the second waits for the first
and then reads the flag the first set."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from oms.inventory.v1 import events_pb2
from oms_platform import outbox
from sqlalchemy import (
    Boolean,
    Row,
    and_,
    bindparam,
    case,
    func,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from oms_inventory import stock_rules
from oms_inventory.settings import InventorySettings
from oms_inventory.tables import channel_buffers, metadata, products, stock_ledger, stock_levels

SOURCE = "/oms/inventory"
ALL_SKUS = "*"
RESERVATION = "RESERVATION"
RELEASE = "RELEASE"

AVAILABLE = func.greatest(
    stock_levels.c.on_hand - stock_levels.c.reserved - stock_levels.c.safety_stock, 0
)


@dataclass(frozen=True)
class Replenishment:
    node_id: str
    sku: str
    available: int
    reorder_point: int
    suggested_quantity: int
    velocity: Decimal
    lead_time_days: int


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


async def velocities(session: AsyncSession, keys: Sequence[tuple[str, str]],
                     window_days: int) -> dict[tuple[str, str], Decimal]:
    """Units sold per day over the window, per level: one grouped read of the ledger."""
    if not keys:
        return {}
    reserved = func.coalesce(func.sum(stock_ledger.c.reserved_delta).filter(
        stock_ledger.c.kind == RESERVATION), 0)
    released = func.coalesce(func.sum(-stock_ledger.c.reserved_delta).filter(
        stock_ledger.c.kind == RELEASE), 0)
    statement = (
        select(stock_ledger.c.node_id, stock_ledger.c.sku, reserved, released)
        .where(
            tuple_(stock_ledger.c.node_id, stock_ledger.c.sku).in_(sorted(keys)),
            stock_ledger.c.kind.in_((RESERVATION, RELEASE)),
            stock_ledger.c.at >= func.now() - timedelta(days=window_days),
        )
        .group_by(stock_ledger.c.node_id, stock_ledger.c.sku)
    )
    found = {
        (node_id, sku): stock_rules.daily_velocity(int(taken), int(given_back), window_days)
        for node_id, sku, taken, given_back in await session.execute(statement)
    }
    return {key: found.get(key, Decimal(0)) for key in keys}


def replenishment(row: Row[Any], velocity: Decimal, review_days: int) -> Replenishment:
    point = stock_rules.reorder_point(
        fixed=row.fixed_reorder_point, velocity=velocity,
        lead_time_days=row.supplier_lead_time_days, safety_stock=row.safety_stock)
    return Replenishment(
        node_id=row.node_id,
        sku=row.sku,
        available=row.available,
        reorder_point=point,
        suggested_quantity=stock_rules.suggested_quantity(
            available_units=row.available, point=point, velocity=velocity,
            review_days=review_days),
        velocity=velocity,
        lead_time_days=row.supplier_lead_time_days,
    )


LEVEL_COLUMNS = (
    stock_levels.c.node_id,
    stock_levels.c.sku,
    stock_levels.c.on_hand,
    stock_levels.c.reserved,
    stock_levels.c.safety_stock,
    AVAILABLE.label("available"),
    stock_levels.c.daily_velocity,
    stock_levels.c.velocity_time,
    stock_levels.c.at_reorder_point,
    products.c.reorder_point.label("fixed_reorder_point"),
    products.c.supplier_lead_time_days,
)


def levels_with_products() -> Any:
    return select(*LEVEL_COLUMNS).join(products, products.c.sku == stock_levels.c.sku)


async def publish_changes(session: AsyncSession, keys: Iterable[tuple[str, str]],
                          settings: InventorySettings) -> None:
    touched = sorted(set(keys))
    if not touched:
        return
    skus = sorted({sku for _, sku in touched})
    levels = (
        await session.execute(
            levels_with_products()
            .where(tuple_(stock_levels.c.node_id, stock_levels.c.sku).in_(touched))
            # The order every writer locks levels in: a flag written below never deadlocks.
            .order_by(stock_levels.c.node_id, stock_levels.c.sku)
        )
    ).all()
    reached = await _track_reorder_points(session, levels, settings)
    network = dict(
        (
            await session.execute(
                select(stock_levels.c.sku, func.sum(AVAILABLE))
                .where(stock_levels.c.sku.in_(skus))
                .group_by(stock_levels.c.sku)
            )
        ).all()
    )
    buffers: dict[str, dict[str, int]] = {}
    for channel, sku, buffer in await session.execute(
        select(channel_buffers.c.channel, channel_buffers.c.sku, channel_buffers.c.buffer).where(
            or_(channel_buffers.c.sku.in_(skus), channel_buffers.c.sku == ALL_SKUS)
        )
    ):
        per_channel = buffers.setdefault(channel, {})
        per_channel[sku] = buffer
    now = _timestamp(datetime.now(UTC))
    outgoing: list[tuple[str, Message]] = []
    for level in levels:
        network_available = int(network.get(level.sku) or 0)
        outgoing.append((_level_name(level.node_id, level.sku), events_pb2.StockLevelChanged(
            node_id=level.node_id,
            sku=level.sku,
            on_hand=level.on_hand,
            reserved=level.reserved,
            safety_stock=level.safety_stock,
            available=level.available,
            network_available=network_available,
            channels=[
                events_pb2.ChannelAvailability(
                    channel=channel,
                    available_to_sell=max(
                        0, network_available - per_sku.get(level.sku, per_sku.get(ALL_SKUS, 0))
                    ),
                )
                for channel, per_sku in sorted(buffers.items())
                if level.sku in per_sku or ALL_SKUS in per_sku
            ],
            change_time=now,
        )))
    for item in reached:
        outgoing.append((_level_name(item.node_id, item.sku), events_pb2.ReorderPointReached(
            node_id=item.node_id,
            sku=item.sku,
            available=item.available,
            reorder_point=item.reorder_point,
            suggested_quantity=item.suggested_quantity,
            daily_velocity=decimal_text(item.velocity),
            lead_time_days=item.lead_time_days,
            reach_time=now,
        )))
    await add_events(session, outgoing)


async def add_events(session: AsyncSession, outgoing: Sequence[tuple[str, Message]]) -> None:
    """Adds (aggregate id, event) pairs to the outbox in one statement."""
    await outbox.add_events(session, metadata.tables["outbox"],
                            [(event, aggregate, None) for aggregate, event in outgoing],
                            source=SOURCE)


async def _track_reorder_points(session: AsyncSession, levels: Sequence[Row[Any]],
                                settings: InventorySettings) -> list[Replenishment]:
    """Flips each level's at-reorder-point flag where it changed and returns the levels that
    have just reached their point. Velocities are read from the ledger only where the cached
    one is older than the refresh interval, so a hot SKU costs no ledger scan."""
    now = datetime.now(UTC)
    fresh_after = now - timedelta(seconds=settings.velocity_refresh_seconds)
    stale = [(row.node_id, row.sku) for row in levels
             if row.velocity_time is None or row.velocity_time <= fresh_after]
    refreshed = await velocities(session, stale, settings.velocity_window_days)
    reached: list[Replenishment] = []
    changes: list[dict[str, Any]] = []
    for row in levels:
        key = (row.node_id, row.sku)
        velocity = refreshed.get(key, row.daily_velocity)
        state = replenishment(row, velocity, settings.review_period_days)
        at_point = stock_rules.at_reorder_point(state.available, state.reorder_point)
        if at_point and not row.at_reorder_point:
            reached.append(state)
        if key in refreshed or at_point != row.at_reorder_point:
            changes.append({
                "b_node_id": row.node_id, "b_sku": row.sku, "b_at": at_point,
                "b_velocity": velocity, "b_refresh": key in refreshed,
            })
    if changes:
        await session.execute(
            update(stock_levels)
            .where(and_(stock_levels.c.node_id == bindparam("b_node_id"),
                        stock_levels.c.sku == bindparam("b_sku")))
            .values(
                at_reorder_point=bindparam("b_at"),
                daily_velocity=bindparam("b_velocity"),
                velocity_time=case((bindparam("b_refresh", type_=Boolean), func.now()),
                                   else_=stock_levels.c.velocity_time),
            )
            .execution_options(synchronize_session=False),
            changes,
        )
    return reached


def decimal_text(value: Decimal) -> str:
    """A decimal without trailing zeros or an exponent: "2", "2.7143"."""
    return format(value.normalize(), "f")


def _level_name(node_id: str, sku: str) -> str:
    return f"fulfilmentNodes/{node_id}/stockLevels/{sku}"
