"""Allocation between messages and the domain: orders and addresses in, plans, reservations,
backorders and the allocation events out."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from oms.common.v1 import common_pb2
from oms.fulfilment.v1 import events_pb2 as fulfilment_events
from oms.inventory.v1 import events_pb2, inventory_pb2
from oms.orders.v1 import events_pb2 as order_events
from oms.orders.v1 import orders_pb2
from oms_platform.values import LatLng, timestamp
from sqlalchemy import Row

from oms_inventory.allocation.domain import (
    Destination,
    Held,
    Line,
    OrderRequest,
    Plan,
    centroid,
)

PAID = {orders_pb2.PAYMENT_STATUS_AUTHORIZED, orders_pb2.PAYMENT_STATUS_PAID}
STRATEGY_NAMES = {
    inventory_pb2.ALLOCATION_STRATEGY_NEAREST: "nearest",
    inventory_pb2.ALLOCATION_STRATEGY_PRIORITY: "priority",
    inventory_pb2.ALLOCATION_STRATEGY_LOWEST_COST: "lowest_cost",
}
STRATEGY_VALUES = {name: value for value, name in STRATEGY_NAMES.items()}

AllocationEvent = (events_pb2.StockAllocated | events_pb2.StockBackordered
                   | events_pb2.AllocationFailed)


def location_of(address: common_pb2.Address) -> LatLng | None:
    if not address.HasField("location"):
        return None
    return LatLng(address.location.latitude, address.location.longitude)


def destination_of(address: common_pb2.Address) -> Destination:
    """The address's coordinates, else a centroid of its US state or country."""
    location = location_of(address) or centroid(address.region_code,
                                                 address.administrative_area)
    return Destination(location, address.region_code.strip().upper(),
                       address.administrative_area.strip().upper())


def request_of(event: order_events.OrderCreated) -> OrderRequest:
    capture = (event.create_time.ToDatetime(UTC) if event.HasField("create_time")
               else datetime.now(UTC))
    unpaid = event.payment_status not in PAID
    expire = (event.payment_due_time.ToDatetime(UTC)
              if unpaid and event.HasField("payment_due_time") else None)
    return OrderRequest(
        order=event.order,
        lines=[Line(line.line_id, line.sku, line.quantity) for line in event.lines
               if line.quantity > 0],
        destination=destination_of(event.shipping_address),
        priority=event.priority,
        capture_time=capture,
        expire_time=expire,
    )


def lines_of(lines: Iterable[Any]) -> list[Line]:
    return [Line(ln.line_id, ln.sku, ln.quantity) for ln in lines]


def plan_message(result: Plan, strategy: int) -> inventory_pb2.AllocationPlan:
    def planned(line: Line) -> inventory_pb2.PlannedLine:
        return inventory_pb2.PlannedLine(line_id=line.line_id, sku=line.sku,
                                         quantity=line.quantity)

    return inventory_pb2.AllocationPlan(
        shipments=[inventory_pb2.PlannedShipment(node_id=node_id,
                                                 lines=[planned(ln) for ln in lines])
                   for node_id, lines in result.shipments.items()],
        backordered_lines=[planned(ln) for ln in result.backordered],
        refused_lines=[inventory_pb2.RefusedLine(line=planned(r.line), reason=r.reason.value,
                                                 message=r.message)
                       for r in result.rejected],
        strategy=strategy,  # type: ignore[arg-type]
    )


def backorder(row: Row[Any]) -> inventory_pb2.Backorder:
    return inventory_pb2.Backorder(
        order=row.order_name, line_id=row.line_id, sku=row.sku, quantity=row.quantity,
        priority=row.priority, capture_time=timestamp(row.capture_time),
        create_time=timestamp(row.created_at))


def reservation(row: Row[Any]) -> inventory_pb2.Reservation:
    return inventory_pb2.Reservation(order=row.order_name, line_id=row.line_id,
                                     node_id=row.node_id, sku=row.sku, quantity=row.quantity)


def now() -> Timestamp:
    return timestamp(datetime.now(UTC))


def plan_events(request: OrderRequest, result: Plan, at: Timestamp) -> list[AllocationEvent]:
    out: list[AllocationEvent] = []
    if result.shipments:
        out.append(allocated(request.order, result.shipments.items(), at,
                             complete=not result.backordered, expire_time=request.expire_time))
    if result.backordered:
        out.append(events_pb2.StockBackordered(
            order=request.order,
            lines=[events_pb2.BackorderedLine(line_id=ln.line_id, sku=ln.sku,
                                              quantity=ln.quantity)
                   for ln in result.backordered],
            backorder_time=at,
        ))
    if result.rejected:
        out.append(events_pb2.AllocationFailed(
            order=request.order,
            lines=[events_pb2.FailedLine(
                line_id=r.line.line_id, sku=r.line.sku, quantity=r.line.quantity,
                reason=events_pb2.AllocationFailureReason.Value(
                    "ALLOCATION_FAILURE_REASON_" + r.reason.value),
                message=r.message) for r in result.rejected],
            fail_time=at,
        ))
    return out


def allocated(order: str, shipments: Iterable[tuple[str, Iterable[Line]]], at: Timestamp, *,
              complete: bool, expire_time: datetime | None) -> events_pb2.StockAllocated:
    event = events_pb2.StockAllocated(
        order=order,
        allocations=[events_pb2.NodeAllocation(
            node_id=node_id,
            lines=[events_pb2.AllocatedLine(line_id=ln.line_id, sku=ln.sku,
                                            quantity=ln.quantity) for ln in lines])
            for node_id, lines in shipments],
        allocate_time=at,
        complete=complete,
    )
    if expire_time is not None:
        event.expire_time.FromDatetime(expire_time)
    return event


def released(order: str, held: Sequence[Held], reason: int) -> events_pb2.StockReleased:
    return events_pb2.StockReleased(
        order=order,
        lines=[events_pb2.ReleasedLine(line_id=h.line_id, sku=h.sku, node_id=h.node_id,
                                       quantity=h.quantity) for h in held],
        reason=reason,  # type: ignore[arg-type]
        release_time=now(),
    )


def short_reason(event: fulfilment_events.PickShorted) -> str:
    """A count task's reason: "PICK_SHORT_BIN_EMPTY", "PICK_SHORT_DAMAGED", or "PICK_SHORT"
    when fulfilment did not say why."""
    name = fulfilment_events.PickShortReason.Name(event.reason) if (
        event.reason in fulfilment_events.PickShortReason.values()) else ""
    cause = name.removeprefix("PICK_SHORT_REASON_")
    return "PICK_SHORT" if cause in ("", "UNSPECIFIED") else f"PICK_SHORT_{cause}"


def short_reference(event: fulfilment_events.PickShorted) -> str:
    """What a short pick's ledger row and count task point back to."""
    return (f"{event.pick_list or event.fulfilment_order} bin {event.bin_code}: "
            f"{event.order} line {event.line_id}")
