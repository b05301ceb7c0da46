"""Stock levels, movements, buffers, drifts and suggestions as messages and events."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from oms.inventory.v1 import events_pb2, inventory_pb2
from oms_platform.values import timestamp
from sqlalchemy import Row

from oms_inventory.stock.domain import ALL_SKUS, Drift, LedgerKind, Replenishment, available

REASON_PREFIX = "ADJUSTMENT_REASON_"
KIND_PREFIX = "STOCK_MOVEMENT_KIND_"


def adjustment_kind(reason: int) -> LedgerKind | None:
    """The ledger kind of an adjustment's reason; None when unset or unknown."""
    if reason == inventory_pb2.ADJUSTMENT_REASON_UNSPECIFIED \
            or reason not in inventory_pb2.AdjustmentReason.values():
        return None
    return LedgerKind(inventory_pb2.AdjustmentReason.Name(reason).removeprefix(REASON_PREFIX))


def decimal_text(value: Decimal) -> str:
    """A decimal without trailing zeros or an exponent: "2", "2.7143"."""
    return format(value.normalize(), "f")


def level_name(node_id: str, sku: str) -> str:
    return f"fulfilmentNodes/{node_id}/stockLevels/{sku}"


def stock_level(row: Row[Any]) -> inventory_pb2.StockLevel:
    return inventory_pb2.StockLevel(
        name=level_name(row.node_id, row.sku),
        node_id=row.node_id,
        sku=row.sku,
        on_hand=row.on_hand,
        reserved=row.reserved,
        safety_stock=row.safety_stock,
        available=available(row.on_hand, row.reserved, row.safety_stock),
    )


def movement(row: Row[Any]) -> inventory_pb2.StockMovement:
    kind = KIND_PREFIX + row.kind
    return inventory_pb2.StockMovement(
        name=f"{level_name(row.node_id, row.sku)}/stockMovements/{row.id}",
        node_id=row.node_id,
        sku=row.sku,
        kind=inventory_pb2.StockMovementKind.Value(kind)
        if kind in inventory_pb2.StockMovementKind.keys() else 0,
        on_hand_delta=row.on_hand_delta,
        reserved_delta=row.reserved_delta,
        reference=row.reference or "",
        create_time=timestamp(row.at),
    )


def count_task(row: Row[Any]) -> inventory_pb2.CountTask:
    task = inventory_pb2.CountTask(
        name=f"fulfilmentNodes/{row.node_id}/countTasks/{row.id}",
        node_id=row.node_id,
        bin_code=row.bin_code,
        sku=row.sku,
        reason=row.reason,
        reference=row.reference,
        create_time=timestamp(row.create_time),
    )
    if row.close_time is not None:
        task.close_time.CopyFrom(timestamp(row.close_time))
    return task


def channel_buffer(channel: str, sku: str, buffer: int) -> inventory_pb2.ChannelBuffer:
    return inventory_pb2.ChannelBuffer(name=f"channels/{channel}/buffers/{sku}",
                                       channel=channel, sku=sku, buffer=buffer)


def drift(found: Drift, repaired: bool) -> inventory_pb2.StockDrift:
    return inventory_pb2.StockDrift(
        node_id=found.node_id, sku=found.sku, recorded_on_hand=found.recorded.on_hand,
        recorded_reserved=found.recorded.reserved, ledger_on_hand=found.ledger.on_hand,
        ledger_reserved=found.ledger.reserved, repaired=repaired)


def suggestion(s: Replenishment) -> inventory_pb2.ReplenishmentSuggestion:
    return inventory_pb2.ReplenishmentSuggestion(
        node_id=s.node_id, sku=s.sku, available=s.available, reorder_point=s.reorder_point,
        suggested_quantity=s.suggested_quantity, daily_velocity=decimal_text(s.velocity),
        lead_time_days=s.lead_time_days)


def level_events(levels: Sequence[Row[Any]], network: Mapping[str, int],
                 buffers: Mapping[str, Mapping[str, int]], reached: Sequence[Replenishment],
                 now: Timestamp) -> list[tuple[Message, str]]:
    """A `StockLevelChanged` per level (with each channel's available-to-sell: the network's
    available less the channel's buffer for the SKU, else its "*" buffer) and a
    `ReorderPointReached` per level that has just reached its point; with aggregate ids."""
    outgoing: list[tuple[Message, str]] = []
    for level in levels:
        network_available = int(network.get(level.sku) or 0)
        outgoing.append((events_pb2.StockLevelChanged(
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
        ), level_name(level.node_id, level.sku)))
    for item in reached:
        outgoing.append((events_pb2.ReorderPointReached(
            node_id=item.node_id,
            sku=item.sku,
            available=item.available,
            reorder_point=item.reorder_point,
            suggested_quantity=item.suggested_quantity,
            daily_velocity=decimal_text(item.velocity),
            lead_time_days=item.lead_time_days,
            reach_time=now,
        ), level_name(item.node_id, item.sku)))
    return outgoing


def available_to_sell(product: str, levels: Sequence[Row[Any]],
                      buffers: Mapping[str, int]) -> inventory_pb2.AvailableToSell:
    network = sum(available(r.on_hand, r.reserved, r.safety_stock) for r in levels)
    return inventory_pb2.AvailableToSell(
        product=product,
        network_available=network,
        channels=[
            inventory_pb2.ChannelAvailableToSell(
                channel=channel, buffer=buffer, available_to_sell=max(0, network - buffer))
            for channel, buffer in sorted(buffers.items())
        ],
        stock_levels=[stock_level(row) for row in levels],
    )
