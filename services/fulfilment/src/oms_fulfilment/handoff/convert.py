"""The label request for a package and the `PackageShipped` it becomes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from oms.common.v1 import common_pb2
from oms.fulfilment.v1 import events_pb2
from oms.shipping.v1 import shipping_pb2

from oms_fulfilment.fulfilment_orders.convert import address_of, stamp
from oms_fulfilment.packing.convert import package_name
from oms_fulfilment.packing.store import Package

# orders.v1.ServiceLevel -> shipping.v1.ServiceLevel (the numbers differ: shipping has an
# economy level below standard).
SERVICE_LEVELS = {
    0: shipping_pb2.SERVICE_LEVEL_STANDARD,
    1: shipping_pb2.SERVICE_LEVEL_STANDARD,
    2: shipping_pb2.SERVICE_LEVEL_EXPEDITED,
    3: shipping_pb2.SERVICE_LEVEL_EXPRESS,
    4: shipping_pb2.SERVICE_LEVEL_NEXT_DAY,
}


def label_request(package: Package, order: Any) -> shipping_pb2.CreateLabelRequest:
    """The purchase, keyed by the package's id: a retry, from any replica, buys nothing
    more."""
    row = package.row
    request = shipping_pb2.CreateLabelRequest(
        request_id=str(row.id), package=package_name(row.fulfilment_order_id, row.id),
        orders=list(dict.fromkeys(line.order_name for line in package.lines)),
        node_id=row.node_id, destination=address_of(order.shipping_address),
        parcel=shipping_pb2.Parcel(
            weight=common_pb2.Weight(grams=row.weight_grams),
            dimensions=common_pb2.Dimensions(length_mm=row.length_mm, width_mm=row.width_mm,
                                             height_mm=row.height_mm)),
        service_level=SERVICE_LEVELS.get(order.service_level,
                                         shipping_pb2.SERVICE_LEVEL_STANDARD))
    if order.promise_time is not None:
        request.promise_time.CopyFrom(stamp(order.promise_time))
    return request


def package_shipped(package: Package, label: shipping_pb2.Label, ship_time: datetime
                    ) -> events_pb2.PackageShipped:
    row = package.row
    return events_pb2.PackageShipped(
        package=package_name(row.fulfilment_order_id, row.id), node_id=row.node_id,
        lines=[events_pb2.ShippedLine(order=line.order_name, line_id=line.line_id,
                                      sku=line.sku, quantity=line.quantity)
               for line in package.lines],
        carrier=label.carrier, carrier_service=label.service_code,
        tracking_number=label.tracking_number, tracking_url=label.tracking_url,
        ship_time=stamp(ship_time))
