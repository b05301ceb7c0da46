"""Packages as protos: the only place they are built, and their names parsed."""

from __future__ import annotations

import uuid
from datetime import datetime

from oms.common.v1 import common_pb2
from oms.fulfilment.v1 import events_pb2, fulfilment_pb2
from oms_platform.errors import FieldViolation, InvalidArgument

from oms_fulfilment.fulfilment_orders.convert import stamp
from oms_fulfilment.fulfilment_orders.domain import name_of
from oms_fulfilment.packing import domain
from oms_fulfilment.packing.store import Package

REFUSALS = {
    domain.RefusalReason.WRONG_SKU: fulfilment_pb2.SCAN_REFUSAL_WRONG_SKU,
    domain.RefusalReason.EXTRA_UNIT: fulfilment_pb2.SCAN_REFUSAL_EXTRA_UNIT,
    domain.RefusalReason.UNREADABLE: fulfilment_pb2.SCAN_REFUSAL_UNREADABLE,
}


def package_name(order_id: uuid.UUID, package_id: uuid.UUID) -> str:
    return f"{name_of(order_id)}/packages/{package_id}"


def parse_package_name(name: str, field: str = "name") -> tuple[uuid.UUID, uuid.UUID]:
    parts = name.split("/")
    try:
        if len(parts) != 4 or parts[0] != "fulfilmentOrders" or parts[2] != "packages":
            raise ValueError
        return uuid.UUID(parts[1]), uuid.UUID(parts[3])
    except ValueError:
        raise InvalidArgument([FieldViolation(
            field, 'must be "fulfilmentOrders/{id}/packages/{id}"')]) from None


def package_to_proto(package: Package) -> fulfilment_pb2.Package:
    row = package.row
    return fulfilment_pb2.Package(
        name=package_name(row.fulfilment_order_id, row.id), node_id=row.node_id,
        status=fulfilment_pb2.PackageStatus.Value(f"PACKAGE_STATUS_{row.status}"),
        box_code=row.box_code,
        dimensions=common_pb2.Dimensions(length_mm=row.length_mm, width_mm=row.width_mm,
                                         height_mm=row.height_mm),
        weight=common_pb2.Weight(grams=row.weight_grams),
        lines=[fulfilment_pb2.PackageLine(
            order=line.order_name, line_id=line.line_id, sku=line.sku,
            quantity=line.quantity, units_verified=line.verified, units_refused=line.refused)
            for line in package.lines],
        station=row.station, refused_scans=sum(int(n) for n in row.refusals.values()),
        seal_time=stamp(row.seal_time), carrier=row.carrier,
        carrier_service=row.carrier_service, tracking_number=row.tracking_number,
        tracking_url=row.tracking_url, label=row.label, ship_time=stamp(row.ship_time),
        hand_off_error=row.hand_off_error, void_pending=row.void_pending,
        void_time=stamp(row.void_time))


def packing_verified(package: Package, tally: domain.PackingTally, seal_time: datetime
                     ) -> events_pb2.PackingVerified:
    row = package.row
    return events_pb2.PackingVerified(
        package=package_name(row.fulfilment_order_id, row.id), node_id=row.node_id,
        lines=[events_pb2.VerifiedLine(order=line.order, line_id=line.line_id, sku=line.sku,
                                       units_verified=line.units_verified,
                                       units_refused=line.units_refused)
               for line in tally.lines],
        verify_time=stamp(seal_time), station=row.station)
