"""Between the contracts and a search: the counts of CountOrders."""

from __future__ import annotations

from collections.abc import Mapping

from oms.orders.v1 import orders_pb2

from oms_orders.lifecycle.convert import status_to_proto
from oms_orders.lifecycle.domain import OrderStatus
from oms_orders.search.domain import summarize


def counts_to_proto(counts: Mapping[OrderStatus, int]) -> orders_pb2.CountOrdersResponse:
    summary = summarize(counts)
    return orders_pb2.CountOrdersResponse(
        counts=[orders_pb2.StatusCount(status=status_to_proto(status), count=n)
                for status, n in sorted(counts.items(), key=lambda x: x[0].value)],
        payment_required=summary.payment_required,
        waiting_for_stock=summary.waiting_for_stock,
        ready_to_release=summary.ready_to_release,
        ready_to_ship=summary.ready_to_ship,
        on_hold=summary.on_hold,
        in_transit=summary.in_transit,
        total=summary.total,
    )
