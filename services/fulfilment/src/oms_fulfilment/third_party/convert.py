"""The hand-off as protos: the request a 3PL or a supplier is sent, a progress report read
into the domain's terms, and the events a report becomes (`PackageShipped` per package,
`PickShorted` per short line)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from oms.fulfilment.v1 import events_pb2, fulfilment_pb2
from oms_platform import lists
from oms_platform.errors import InvalidArgument, Violations

from oms_fulfilment.fulfilment_orders import domain as orders_domain
from oms_fulfilment.fulfilment_orders.convert import address_of, stamp
from oms_fulfilment.fulfilment_orders.store import FulfilmentOrder
from oms_fulfilment.packing.convert import package_name
from oms_fulfilment.third_party import domain

PROGRESS = {
    fulfilment_pb2.THIRD_PARTY_PROGRESS_ACCEPTED: domain.Progress.ACCEPTED,
    fulfilment_pb2.THIRD_PARTY_PROGRESS_PICKED: domain.Progress.PICKED,
    fulfilment_pb2.THIRD_PARTY_PROGRESS_PACKED: domain.Progress.PACKED,
    fulfilment_pb2.THIRD_PARTY_PROGRESS_SHIPPED: domain.Progress.SHIPPED,
    fulfilment_pb2.THIRD_PARTY_PROGRESS_SHORT_SHIPPED: domain.Progress.SHORT_SHIPPED,
}
SHORT_REASONS = {fulfilment_pb2.SHORT_REASON_BIN_EMPTY: "bin_empty",
                 fulfilment_pb2.SHORT_REASON_DAMAGED: "damaged"}
EVENT_REASONS = {"bin_empty": events_pb2.PICK_SHORT_REASON_BIN_EMPTY,
                 "damaged": events_pb2.PICK_SHORT_REASON_DAMAGED}
MAX_REQUEST_ID = 200
MAX_CODE = 100
MAX_URL = 1000


def requested_event(order: FulfilmentOrder, products: Mapping[str, tuple[str, str]],
                    now: datetime) -> events_pb2.FulfilmentRequested | \
        events_pb2.PurchaseOrderRequested:
    """What the node is sent: a 3PL a fulfilment request, a supplier a purchase order named
    after the fulfilment order."""
    row = order.row
    name = orders_domain.name_of(row.id)
    fields: dict[str, Any] = dict(
        order=row.order_name, node_id=row.node_id,
        lines=[events_pb2.RequestedLine(
            order=line.order_name, line_id=line.line_id, sku=line.sku,
            quantity=line.quantity - line.cancelled, external_line_id=line.external_line_id,
            title=products.get(line.sku, ("", ""))[0], gtin=products.get(line.sku, ("", ""))[1])
            for line in order.lines if line.quantity > line.cancelled],
        shipping_address=address_of(row.shipping_address),
        service_level=row.service_level, priority=row.priority,
        promised_ship_time=stamp(row.promised_ship_time),
        promise_time=stamp(row.promise_time), channel=row.channel,
        external_order_id=row.external_order_id, gift_note=row.gift_note,
        request_time=stamp(now))
    if row.mode == domain.Mode.DROPSHIP:
        return events_pb2.PurchaseOrderRequested(purchase_order=name, **fields)
    return events_pb2.FulfilmentRequested(fulfilment_order=name, **fields)


def cancelled_event(order: FulfilmentOrder, units: Mapping[str, int], reason: str,
                    now: datetime) -> events_pb2.FulfilmentCancelled:
    """``order`` as it is after the cancellation; ``units`` cancelled per line id."""
    return events_pb2.FulfilmentCancelled(
        fulfilment_order=orders_domain.name_of(order.row.id), order=order.row.order_name,
        node_id=order.row.node_id,
        lines=[events_pb2.CancelledUnits(order=line.order_name, line_id=line.line_id,
                                         sku=line.sku, quantity=units[line.line_id])
               for line in order.lines if units.get(line.line_id)],
        whole=all(line.quantity - line.picked - line.short - line.cancelled <= 0
                  for line in order.lines),
        reason=reason[:500], cancel_time=stamp(now))


def _text(v: Violations, value: str, path: str, limit: int, *, required: bool) -> None:
    v.require((bool(value) or not required) and len(value) <= limit
              and lists.is_storable_text(value), path,
              f"{'required, ' if required else ''}at most {limit} characters")


def report_of(request: fulfilment_pb2.ReportThirdPartyProgressRequest,
              ) -> tuple[uuid.UUID, domain.Report, datetime]:
    """The fulfilment order's id, the report and when it happened; every fault of the
    request at once (InvalidArgument), storing nothing."""
    v = Violations()
    order_id = None
    try:
        order_id = orders_domain.parse_name(request.fulfilment_order, "fulfilment_order")
    except InvalidArgument as error:
        v.items.extend(error.violations)
    _text(v, request.request_id, "request_id", MAX_REQUEST_ID, required=True)
    _text(v, request.node_id, "node_id", MAX_CODE, required=True)
    progress = PROGRESS.get(request.progress)
    v.require(progress is not None, "progress",
              "must be ACCEPTED, PICKED, PACKED, SHIPPED or SHORT_SHIPPED")
    ships = progress in (domain.Progress.SHIPPED, domain.Progress.SHORT_SHIPPED)
    v.require(ships or not request.packages, "packages", "only a shipment carries packages")
    v.require(len(request.packages) <= domain.MAX_PACKAGES, "packages",
              f"at most {domain.MAX_PACKAGES} packages")
    v.require(progress is not domain.Progress.SHIPPED or bool(request.packages), "packages",
              "a shipment names at least one package")
    v.require(len(request.packages) <= 1 or all(p.lines for p in request.packages),
              "packages", "with several packages, each lists its lines")
    v.require(progress is domain.Progress.SHORT_SHIPPED or not request.short_reason,
              "short_reason", "only a short shipment has a short reason")
    shipments = [_shipment(v, package, f"packages[{i}]")
                 for i, package in enumerate(request.packages[:domain.MAX_PACKAGES])]
    v.raise_if_any()
    assert order_id is not None and progress is not None
    when = (request.report_time.ToDatetime(tzinfo=UTC)
            if request.HasField("report_time") else datetime.now(UTC))
    return order_id, domain.Report(progress, tuple(shipments)), when


def _shipment(v: Violations, package: fulfilment_pb2.ThirdPartyPackage, path: str
              ) -> domain.Shipment:
    _text(v, package.carrier, f"{path}.carrier", MAX_CODE, required=True)
    _text(v, package.carrier_service, f"{path}.carrier_service", MAX_CODE, required=False)
    _text(v, package.tracking_number, f"{path}.tracking_number", MAX_CODE, required=True)
    _text(v, package.tracking_url, f"{path}.tracking_url", MAX_URL, required=False)
    v.require(len(package.lines) <= domain.MAX_PACKAGE_LINES, f"{path}.lines",
              f"at most {domain.MAX_PACKAGE_LINES} lines")
    for j, line in enumerate(package.lines[:domain.MAX_PACKAGE_LINES]):
        _text(v, line.line_id, f"{path}.lines[{j}].line_id", MAX_CODE, required=True)
        v.require(line.quantity > 0, f"{path}.lines[{j}].quantity", "must be at least 1")
    return domain.Shipment(package.carrier, package.carrier_service, package.tracking_number,
                           package.tracking_url,
                           tuple((line.line_id, line.quantity) for line in package.lines))


def package_shipped(row: Any, package_id: uuid.UUID, shipment: domain.Shipment,
                    lines: Mapping[str, Any], ship_time: datetime
                    ) -> events_pb2.PackageShipped:
    """The same event an in-house package becomes when it leaves."""
    return events_pb2.PackageShipped(
        package=package_name(row.id, package_id), node_id=row.node_id,
        lines=[events_pb2.ShippedLine(order=lines[line_id].order_name, line_id=line_id,
                                      sku=lines[line_id].sku, quantity=units)
               for line_id, units in shipment.units],
        carrier=shipment.carrier, carrier_service=shipment.carrier_service,
        tracking_number=shipment.tracking_number, tracking_url=shipment.tracking_url,
        ship_time=stamp(ship_time))


def pick_shorted(row: Any, line: Any, units: int, reason: str | None, when: datetime
                 ) -> events_pb2.PickShorted:
    """A 3PL's shortfall as inventory takes a short pick: no pick list and no bin of ours
    (the count task inventory opens is the node's own to settle)."""
    return events_pb2.PickShorted(
        node_id=row.node_id, order=line.order_name, line_id=line.line_id, sku=line.sku,
        quantity=units, reason=EVENT_REASONS.get(reason or "", 0),  # type: ignore[arg-type]
        fulfilment_order=orders_domain.name_of(row.id), short_time=stamp(when))


def shipments_events(row: Any, created: Sequence[tuple[uuid.UUID, domain.Shipment]],
                     shorts: Mapping[str, int], lines: Mapping[str, Any],
                     reason: str | None, when: datetime) -> list[tuple[Any, str, str]]:
    """The outbox rows of an applied report, each with its aggregate and the node."""
    events: list[tuple[Any, str, str]] = []
    for package_id, shipment in created:
        shipped = package_shipped(row, package_id, shipment, lines, when)
        events.append((shipped, shipped.package, row.node_id))
    for line_id, units in shorts.items():
        shorted = pick_shorted(row, lines[line_id], units, reason, when)
        events.append((shorted, shorted.fulfilment_order, row.node_id))
    return events
