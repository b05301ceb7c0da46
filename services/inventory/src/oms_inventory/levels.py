"""What every stock movement ends with: a `StockLevelChanged` event per touched level, so that
channel connectors can update their listings before they oversell.

Call `publish_changes` once per transaction with every (node_id, sku) it touched, after the
writes: it reads the levels as the transaction left them and adds the events to the outbox in
that same transaction."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp
from oms.inventory.v1 import events_pb2
from oms_platform.outbox import add_event
from sqlalchemy import func, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from oms_inventory.tables import channel_buffers, metadata, stock_levels

SOURCE = "/oms/inventory"
ALL_SKUS = "*"

AVAILABLE = func.greatest(
    stock_levels.c.on_hand - stock_levels.c.reserved - stock_levels.c.safety_stock, 0
)


async def publish_changes(session: AsyncSession, keys: Iterable[tuple[str, str]]) -> None:
    touched = sorted(set(keys))
    if not touched:
        return
    skus = sorted({sku for _, sku in touched})
    levels = (
        await session.execute(
            select(
                stock_levels.c.node_id,
                stock_levels.c.sku,
                stock_levels.c.on_hand,
                stock_levels.c.reserved,
                stock_levels.c.safety_stock,
                AVAILABLE.label("available"),
            ).where(tuple_(stock_levels.c.node_id, stock_levels.c.sku).in_(touched))
        )
    ).all()
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
    now = Timestamp()
    now.FromDatetime(datetime.now(UTC))
    for level in levels:
        network_available = int(network.get(level.sku) or 0)
        event = events_pb2.StockLevelChanged(
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
        )
        await add_event(
            session,
            metadata.tables["outbox"],
            event,
            aggregate_id=f"fulfilmentNodes/{level.node_id}/stockLevels/{level.sku}",
            source=SOURCE,
        )
