"""The label request of a return."""

from __future__ import annotations

from oms.common.v1 import common_pb2
from oms.shipping.v1 import shipping_pb2

from oms_returns.return_requests.convert import address_of, name_of
from oms_returns.return_requests.store import Return


def label_request(found: Return, node_id: str) -> shipping_pb2.CreateLabelRequest:
    """The purchase, keyed by the return's name: a retry, from any replica and however often
    approved, buys nothing more."""
    row = found.row
    name = name_of(row.id)
    return shipping_pb2.CreateLabelRequest(
        request_id=name, package=name, orders=[row.order_name], node_id=node_id,
        destination=address_of(row.return_from), residential=True,
        parcel=shipping_pb2.Parcel(weight=common_pb2.Weight(grams=row.weight_grams)),
        service_level=shipping_pb2.SERVICE_LEVEL_STANDARD, return_label=True)
