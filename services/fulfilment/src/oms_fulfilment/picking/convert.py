"""Pick lists and PickShorted as protos."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from oms.fulfilment.v1 import events_pb2, fulfilment_pb2

from oms_fulfilment.documents import domain as documents
from oms_fulfilment.fulfilment_orders.convert import SHORT_REASONS, stamp
from oms_fulfilment.fulfilment_orders.domain import name_of
from oms_fulfilment.picking import domain
from oms_fulfilment.picking.store import PickListRows

STRATEGIES = {
    fulfilment_pb2.PICK_STRATEGY_SINGLE_ORDER: domain.Strategy.SINGLE_ORDER,
    fulfilment_pb2.PICK_STRATEGY_BATCH: domain.Strategy.BATCH,
    fulfilment_pb2.PICK_STRATEGY_ZONE: domain.Strategy.ZONE,
    fulfilment_pb2.PICK_STRATEGY_WAVE: domain.Strategy.WAVE,
}
STRATEGY_NUMBERS = {strategy: number for number, strategy in STRATEGIES.items()}
REASONS = {fulfilment_pb2.SHORT_REASON_BIN_EMPTY: domain.ShortReason.BIN_EMPTY,
           fulfilment_pb2.SHORT_REASON_DAMAGED: domain.ShortReason.DAMAGED}
EVENT_REASONS = {domain.ShortReason.BIN_EMPTY: events_pb2.PICK_SHORT_REASON_BIN_EMPTY,
                 domain.ShortReason.DAMAGED: events_pb2.PICK_SHORT_REASON_DAMAGED}


def list_name(list_id: object) -> str:
    return f"pickLists/{list_id}"


def pick_list_to_proto(found: PickListRows) -> fulfilment_pb2.PickList:
    row = found.row
    return fulfilment_pb2.PickList(
        name=list_name(row.id), node_id=row.node_id,
        strategy=STRATEGY_NUMBERS[domain.Strategy(row.strategy)], zone=row.zone,
        fulfilment_orders=[name_of(i) for i in row.fulfilment_orders], units=row.units,
        weight_grams=row.weight_grams, completed=row.complete_time is not None,
        create_time=stamp(row.create_time), complete_time=stamp(row.complete_time),
        stops=[fulfilment_pb2.PickStop(
            sequence=s.sequence, bin_code=s.bin_code, zone=s.zone, sku=s.sku,
            quantity=s.quantity, confirmed=s.confirmed, picked_quantity=s.picked,
            short_reason=SHORT_REASONS.get(s.short_reason or "", 0),  # type: ignore[arg-type]
            confirm_time=stamp(s.confirm_time),
            allocations=[fulfilment_pb2.ToteAllocation(
                order=a.order_name, line_id=a.line_id,
                fulfilment_order=name_of(a.fulfilment_order_id), tote=a.tote,
                quantity=a.quantity, picked_quantity=a.picked, short_quantity=a.short)
                for a in found.allocations.get(s.sequence, [])])
            for s in found.stops])


def pick_list_document(found: PickListRows, titles: Mapping[str, str]
                       ) -> documents.PickListDocument:
    """The list as it is printed: the stops that still have units, each with its totes."""
    row = found.row
    return documents.PickListDocument(
        list_id=list_name(row.id), strategy=domain.Strategy(row.strategy).value,
        node_id=row.node_id, zone=row.zone,
        created=row.create_time.strftime("%Y-%m-%d %H:%M UTC"),
        stops=tuple(documents.PickStop(
            bin=s.bin_code, sku=s.sku, title=titles.get(s.sku, ""), quantity=s.quantity,
            tote=", ".join(str(a.tote) for a in found.allocations.get(s.sequence, [])
                           if a.quantity > 0))
            for s in found.stops if s.quantity > 0))


def pick_shorted(node_id: str, list_id: object, bin_code: str, sku: str,
                 outcome: domain.StopOutcome, reason: domain.ShortReason,
                 when: datetime) -> events_pb2.PickShorted:
    a = outcome.allocation
    return events_pb2.PickShorted(
        node_id=node_id, order=a.order, line_id=a.line_id, sku=sku, bin_code=bin_code,
        quantity=outcome.short, reason=EVENT_REASONS[reason],
        fulfilment_order=f"fulfilmentOrders/{a.fulfilment_order}",
        pick_list=list_name(list_id), short_time=stamp(when))
