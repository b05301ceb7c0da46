"""The events fulfilment orders come from: orders' releases and cancellations."""

from __future__ import annotations

from datetime import UTC, datetime

import structlog
from google.protobuf.json_format import MessageToDict
from google.protobuf.timestamp_pb2 import Timestamp
from oms.orders.v1 import events_pb2 as order_events
from sqlalchemy.ext.asyncio import AsyncSession

from oms_fulfilment.fulfilment_orders import domain, store
from oms_fulfilment.nodes.client import Nodes
from oms_fulfilment.nodes.domain import NodeType, promised_ship_time
from oms_fulfilment.third_party.domain import Mode
from oms_fulfilment.third_party.handlers import request_fulfilment, tell_third_parties

log = structlog.get_logger(__name__)

MODES = {NodeType.WAREHOUSE: Mode.IN_HOUSE,
         NodeType.THIRD_PARTY_LOGISTICS: Mode.THIRD_PARTY_LOGISTICS,
         NodeType.DROPSHIP_SUPPLIER: Mode.DROPSHIP}


def time_of(stamp: Timestamp, default: datetime) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC) if stamp.seconds or stamp.nanos else default


async def on_order_released(session: AsyncSession, event: order_events.OrderReleased, *,
                            nodes: Nodes) -> None:
    """One fulfilment order per order and node; a release seen again changes nothing. A
    release to a 3PL or a dropship supplier is never picked here: it is sent to the node
    (`FulfilmentRequested`, `PurchaseOrderRequested`) and awaits its progress reports."""
    now = datetime.now(UTC)
    node = await nodes.get(event.node_id)
    released = time_of(event.release_time, now)
    lines = [store.NewLine(line.order or event.order, line.line_id, line.sku, line.quantity,
                           line.external_line_id)
             for line in event.lines[:domain.MAX_LINES] if line.quantity > 0]
    if not lines:
        log.warning("release without lines ignored", order=event.order, node=event.node_id)
        return
    status = domain.Status.OPEN if node.picks_here else domain.Status.AWAITING_THIRD_PARTY
    mode = MODES[node.type]
    created = await store.create(
        session, order=event.order, node_id=event.node_id, status=status,
        priority=domain.is_priority(event.priority, event.service_level),
        service_level=event.service_level,
        promised_ship_time=promised_ship_time(node, released), release_time=released,
        channel=event.channel, external_order_id=event.external_order_id, lines=lines,
        now=now, shipping_address=MessageToDict(event.shipping_address),
        promise_time=event.promise_time.ToDatetime(tzinfo=UTC) if event.HasField("promise_time")
        else None, gift_note=event.gift_note, mode=mode.value)
    if created is not None and mode is not Mode.IN_HOUSE:
        await request_fulfilment(session, created, now)
    if created is not None:
        log.info("fulfilment order created", order=event.order, node=event.node_id,
                 fulfilment_order=str(created), status=status.value)


async def on_order_cancelled(session: AsyncSession, event: order_events.OrderCancelled) -> None:
    units = None if event.whole_order else {}
    for line in event.lines:
        if units is not None:
            units[line.line_id] = units.get(line.line_id, 0) + line.quantity
    now = datetime.now(UTC)
    touched = await store.cancel(session, event.order, units, event.reason, now)
    await tell_third_parties(session, touched, event.reason, now)
    if touched:
        log.info("fulfilment orders cancelled", order=event.order,
                 fulfilment_orders=[str(t) for t in touched])
