"""Fulfilment orders as protos: the only place they are built."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.protobuf.json_format import ParseDict
from google.protobuf.timestamp_pb2 import Timestamp
from oms.common.v1 import common_pb2
from oms.fulfilment.v1 import fulfilment_pb2

from oms_fulfilment.fulfilment_orders import domain
from oms_fulfilment.fulfilment_orders.store import FulfilmentOrder

SHORT_REASONS = {"bin_empty": fulfilment_pb2.SHORT_REASON_BIN_EMPTY,
                 "damaged": fulfilment_pb2.SHORT_REASON_DAMAGED}


def stamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    result = Timestamp()
    result.FromDatetime(value)
    return result


def address_of(stored: dict[str, object]) -> common_pb2.Address:
    return ParseDict(stored or {}, common_pb2.Address(), ignore_unknown_fields=True)


def order_to_proto(order: FulfilmentOrder) -> fulfilment_pb2.FulfilmentOrder:
    row = order.row
    orders = {line.line_id: line.order_name for line in order.lines}
    return fulfilment_pb2.FulfilmentOrder(
        shipping_address=address_of(row.shipping_address),
        promise_time=stamp(row.promise_time), gift_note=row.gift_note,
        packages=[f"{domain.name_of(row.id)}/packages/{p}" for p in order.packages],
        name=domain.name_of(row.id), order=row.order_name, node_id=row.node_id,
        status=fulfilment_pb2.FulfilmentOrderStatus.Value(
            f"FULFILMENT_ORDER_STATUS_{row.status}"),
        priority=row.priority, service_level=row.service_level,  # type: ignore[arg-type]
        promised_ship_time=stamp(row.promised_ship_time), release_time=stamp(row.release_time),
        create_time=stamp(row.create_time), update_time=stamp(row.update_time),
        channel=row.channel, external_order_id=row.external_order_id,
        cancel_reason=row.cancel_reason,
        lines=[fulfilment_pb2.FulfilmentOrderLine(
            order=line.order_name, line_id=line.line_id, sku=line.sku, quantity=line.quantity,
            bin_code=line.bin_code or "",
            needs_slot=line.bin_code is None and not order.third_party,
            picked_quantity=line.picked, short_quantity=line.short,
            short_reason=SHORT_REASONS.get(line.short_reason or "", 0),  # type: ignore[arg-type]
            cancelled_quantity=line.cancelled, external_line_id=line.external_line_id)
            for line in order.lines],
        put_backs=[put_back_to_proto(p, orders.get(p.line_id, "")) for p in order.put_backs],
        mode=fulfilment_pb2.FulfilmentMode.Value(f"FULFILMENT_MODE_{row.mode}"),
        third_party_progress=fulfilment_pb2.ThirdPartyProgress.Value(
            f"THIRD_PARTY_PROGRESS_{row.third_party_progress}")
        if row.third_party_progress else 0,  # type: ignore[arg-type]
    )


def put_back_to_proto(row: Any, order: str) -> fulfilment_pb2.PutBack:
    return fulfilment_pb2.PutBack(
        name=f"{domain.name_of(row.fulfilment_order_id)}/putBacks/{row.id}",
        node_id=row.node_id, order=order, line_id=row.line_id, sku=row.sku,
        bin_code=row.bin_code, quantity=row.quantity, create_time=stamp(row.create_time),
        confirmed=row.confirm_time is not None, confirm_time=stamp(row.confirm_time))
