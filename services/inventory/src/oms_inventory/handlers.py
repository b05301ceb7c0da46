"""Event handlers. Each runs inside the consumer's inbox transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import structlog
from google.protobuf.timestamp_pb2 import Timestamp
from oms.common.v1 import common_pb2
from oms.inventory.v1 import events_pb2
from oms.orders.v1 import events_pb2 as order_events
from oms_platform.outbox import add_event
from sqlalchemy.ext.asyncio import AsyncSession

from oms_inventory import geo, repository
from oms_inventory.domain import LatLng, Line, quantities_by_sku, rank_nodes, reservation_order
from oms_inventory.tables import metadata

log = structlog.get_logger(__name__)

SOURCE = "/oms/inventory"


async def on_order_created(session: AsyncSession, event: order_events.OrderCreated) -> None:
    """Reserves the whole order at the best node that has it all, or backorders it."""
    order = event.order
    await repository.lock_order(session, order)
    if await repository.order_is_handled(session, order):
        log.info("order already allocated or backordered", order=order)
        return
    lines = [Line(line.line_id, line.sku, line.quantity) for line in event.lines]
    if not lines:
        log.warning("order without lines ignored", order=order)
        return
    candidates = await repository.candidate_nodes(session, quantities_by_sku(lines))
    for node in rank_nodes(candidates, destination(event.shipping_address)):
        if await _reserve_all(session, order, node.node_id, lines):
            await repository.record_reservations(session, order, node.node_id, lines)
            await _publish(session, order, _allocated(order, node.node_id, lines))
            log.info("order allocated", order=order, node_id=node.node_id)
            return
    await repository.record_backorders(session, order, lines)
    await _publish(session, order, _backordered(order, lines))
    log.info("order backordered", order=order, lines=len(lines))


def destination(address: common_pb2.Address) -> LatLng | None:
    if address.HasField("location"):
        return LatLng(address.location.latitude, address.location.longitude)
    return geo.centroid(address.region_code, address.administrative_area)


async def _reserve_all(session: AsyncSession, order: str, node_id: str,
                       lines: Sequence[Line]) -> bool:
    """Reserves every line at one node, or nothing: the candidate list was read without
    locks, so another order may have taken the stock since; then the savepoint is undone and
    the caller tries the next node."""
    savepoint = await session.begin_nested()
    for line in reservation_order(lines):
        if not await repository.reserve(session, node_id, line.sku, line.quantity):
            await savepoint.rollback()
            log.info("stock taken meanwhile, trying the next node", order=order,
                     node_id=node_id, sku=line.sku)
            return False
    await savepoint.commit()
    return True


async def _publish(session: AsyncSession, order: str,
                   message: events_pb2.StockAllocated | events_pb2.StockBackordered) -> None:
    await add_event(session, metadata.tables["outbox"], message, aggregate_id=order,
                    source=SOURCE)


def _now() -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.now(UTC))
    return stamp


def _allocated(order: str, node_id: str, lines: Sequence[Line]) -> events_pb2.StockAllocated:
    return events_pb2.StockAllocated(
        order=order,
        allocations=[
            events_pb2.NodeAllocation(
                node_id=node_id,
                lines=[
                    events_pb2.AllocatedLine(line_id=line.line_id, sku=line.sku,
                                             quantity=line.quantity)
                    for line in lines
                ],
            )
        ],
        allocate_time=_now(),
    )


def _backordered(order: str, lines: Sequence[Line]) -> events_pb2.StockBackordered:
    return events_pb2.StockBackordered(
        order=order,
        lines=[
            events_pb2.BackorderedLine(line_id=line.line_id, sku=line.sku,
                                       quantity=line.quantity)
            for line in lines
        ],
        backorder_time=_now(),
    )
