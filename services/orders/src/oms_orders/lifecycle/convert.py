"""Between the contracts (protobuf) and the order aggregate, in both directions: the Order
message, the events the service publishes, and the events of other services it consumes."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from google.type import latlng_pb2
from oms.common.v1 import common_pb2
from oms.fulfilment.v1 import events_pb2 as fulfilment_events
from oms.inventory.v1 import events_pb2 as inventory_events
from oms.orders.v1 import events_pb2, orders_pb2
from oms.returns.v1 import events_pb2 as returns_events
from oms_platform.errors import FieldViolation, InvalidArgument
from oms_platform.values import timestamp
from sqlalchemy import Row

from oms_orders.lifecycle import domain

Number = TypeVar("Number", bound=int)


def optional_time(message: Message, field: str, path: str = "") -> datetime | None:
    """The timestamp if set; INVALID_ARGUMENT on ``path`` (default: ``field``) when it is
    outside what a timestamp may hold (years 1 to 9999, nanos below a second)."""
    if not message.HasField(field):
        return None
    stamp: Timestamp = getattr(message, field)
    try:
        return stamp.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidArgument([FieldViolation(
            path or field, "not a valid timestamp (years 1 to 9999)")]) from None


def enum_name(name_of: Callable[[Number], str], prefix: str, number: Number) -> str:
    """``SERVICE_LEVEL_EXPRESS`` as ``EXPRESS``; a number the contract does not know as is,
    for validation to refuse."""
    try:
        name = name_of(number)
    except ValueError:
        return str(number)
    return name.removeprefix(prefix)


def address_to_proto(address: domain.Address) -> common_pb2.Address:
    return common_pb2.Address(
        recipient=address.recipient,
        organization=address.organization,
        address_lines=address.address_lines,
        locality=address.locality,
        administrative_area=address.administrative_area,
        postal_code=address.postal_code,
        region_code=address.region_code,
        phone=address.phone,
        email=address.email,
        location=(
            latlng_pb2.LatLng(
                latitude=address.location.latitude, longitude=address.location.longitude
            )
            if address.location
            else None
        ),
    )


def money_to_proto(money: domain.Money) -> common_pb2.Money:
    return common_pb2.Money(currency_code=money.currency_code, amount=f"{money.amount:f}")


def status_to_proto(status: domain.OrderStatus) -> orders_pb2.OrderStatus.ValueType:
    return orders_pb2.OrderStatus.Value(f"ORDER_STATUS_{status.value}")


def service_level_to_proto(level: domain.ServiceLevel) -> orders_pb2.ServiceLevel.ValueType:
    return orders_pb2.ServiceLevel.Value(f"SERVICE_LEVEL_{level.value}")


def payment_status_to_proto(
    status: domain.PaymentStatus,
) -> orders_pb2.PaymentStatus.ValueType:
    return orders_pb2.PaymentStatus.Value(f"PAYMENT_STATUS_{status.value}")


def lines_to_proto(order: domain.Order) -> list[orders_pb2.OrderLine]:
    return [
        orders_pb2.OrderLine(
            line_id=line.line_id,
            external_line_id=line.external_line_id,
            sku=line.sku,
            quantity=line.quantity,
            unit_price=money_to_proto(line.unit_price),
            allocated_quantity=line.allocated_quantity,
            backordered_quantity=line.backordered,
            failed_quantity=line.failed,
            cancelled_quantity=line.cancelled,
            shipped_quantity=line.shipped,
            returned_quantity=line.returned,
        )
        for line in order.lines
    ]


def _ordered_lines(order: domain.Order) -> list[orders_pb2.OrderLine]:
    """Lines as the customer ordered them, without the lifecycle counts."""
    return [
        orders_pb2.OrderLine(
            line_id=line.line_id,
            external_line_id=line.external_line_id,
            sku=line.sku,
            quantity=line.quantity,
            unit_price=money_to_proto(line.unit_price),
        )
        for line in order.lines
    ]


def customer_to_proto(customer: domain.Customer) -> orders_pb2.Customer:
    return orders_pb2.Customer(
        external_customer_id=customer.external_customer_id,
        display_name=customer.display_name,
        email=customer.email,
        phone=customer.phone,
    )


def _maybe_time(moment: datetime | None) -> Timestamp | None:
    return timestamp(moment) if moment else None


def order_to_proto(
    order: domain.Order, timeline: Sequence[Row[Any]] | None = None
) -> orders_pb2.Order:
    allocations: dict[str, list[orders_pb2.AllocatedLine]] = {}
    for line in order.lines:
        for node, units in sorted(line.allocated.items()):
            allocations.setdefault(node, []).append(
                orders_pb2.AllocatedLine(line_id=line.line_id, sku=line.sku, quantity=units))
    return orders_pb2.Order(
        name=order.name,
        channel=order.channel,
        external_order_id=order.external_order_id,
        customer=customer_to_proto(order.customer),
        shipping_address=address_to_proto(order.shipping_address),
        lines=lines_to_proto(order),
        service_level=service_level_to_proto(order.service_level),
        payment_status=payment_status_to_proto(order.payment_status),
        status=status_to_proto(order.status),
        total=money_to_proto(order.total),
        allocations=[
            orders_pb2.Allocation(node_id=node, lines=lines)
            for node, lines in sorted(allocations.items())
        ],
        create_time=timestamp(order.create_time),
        update_time=timestamp(order.update_time),
        priority=order.priority,
        tags=order.tags,
        gift_note=order.gift_note,
        high_value=order.high_value,
        order_time=_maybe_time(order.order_time),
        promise_time=_maybe_time(order.promise_time),
        payment_due_time=_maybe_time(order.payment_due_time),
        holds=[
            orders_pb2.Hold(
                hold_id=hold.hold_id,
                kind=orders_pb2.HoldKind.Value(f"HOLD_KIND_{hold.kind.value}"),
                reason=hold.reason,
                placed_by=hold.placed_by,
                place_time=timestamp(hold.place_time),
                released_by=hold.released_by,
                release_time=_maybe_time(hold.release_time),
            )
            for hold in order.holds
        ],
        payments=[
            orders_pb2.PaymentTransaction(
                transaction_id=payment.transaction_id,
                kind=orders_pb2.PaymentKind.Value(f"PAYMENT_KIND_{payment.kind.value}"),
                amount=money_to_proto(payment.amount),
                provider=payment.provider,
                message=payment.message,
                transaction_time=_maybe_time(payment.at),
            )
            for payment in order.payments
        ],
        shipments=[
            orders_pb2.Shipment(
                package=shipment.package,
                node_id=shipment.node_id,
                carrier=shipment.carrier,
                carrier_service=shipment.carrier_service,
                tracking_number=shipment.tracking_number,
                tracking_url=shipment.tracking_url,
                ship_time=timestamp(shipment.ship_time),
                deliver_time=_maybe_time(order.deliveries.get(shipment.package)),
                lines=[orders_pb2.AllocatedLine(line_id=x.line_id, sku=x.sku,
                                                quantity=x.quantity) for x in shipment.lines],
            )
            for shipment in order.shipments
        ],
        merged_orders=order.merged_with,
        release_time=_maybe_time(order.release_time),
        ship_time=_maybe_time(order.ship_time),
        deliver_time=_maybe_time(order.deliver_time),
        weight=common_pb2.Weight(grams=order.weight_grams),
        item_count=order.item_count,
        timeline=[
            orders_pb2.TimelineEntry(kind=row.kind, time=timestamp(row.at), actor=row.actor,
                                     detail_json=json.dumps(row.detail, sort_keys=True))
            for row in timeline or ()
        ],
    )


def order_created(order: domain.Order) -> events_pb2.OrderCreated:
    return events_pb2.OrderCreated(
        order=order.name,
        channel=order.channel,
        external_order_id=order.external_order_id,
        shipping_address=address_to_proto(order.shipping_address),
        lines=_ordered_lines(order),
        service_level=service_level_to_proto(order.service_level),
        payment_status=payment_status_to_proto(order.payment_status),
        create_time=timestamp(order.create_time),
        customer=customer_to_proto(order.customer),
        priority=order.priority,
        payment_due_time=_maybe_time(order.payment_due_time),
        total=money_to_proto(order.total),
        order_time=_maybe_time(order.order_time),
        promise_time=_maybe_time(order.promise_time),
    )


def promise_changed(
    order: domain.Order, change: domain.PromiseChanged
) -> events_pb2.OrderPromiseChanged:
    return events_pb2.OrderPromiseChanged(
        order=order.name, promise_time=_maybe_time(change.promise_time),
        change_time=timestamp(change.at))


def order_refunded(
    order: domain.Order, refund: domain.PaymentRefunded
) -> events_pb2.OrderRefunded:
    return events_pb2.OrderRefunded(
        order=order.name, refund=refund.transaction_id, amount=money_to_proto(refund.amount),
        refund_time=timestamp(refund.at))


def status_changed(
    order: domain.Order, change: domain.StatusChanged
) -> events_pb2.OrderStatusChanged:
    return events_pb2.OrderStatusChanged(
        order=order.name,
        previous_status=status_to_proto(change.previous),
        status=status_to_proto(change.status),
        change_time=timestamp(change.at),
        reason=change.reason,
    )


def order_paid(order: domain.Order, paid: domain.PaymentSettled) -> events_pb2.OrderPaid:
    return events_pb2.OrderPaid(
        order=order.name,
        payment_status=payment_status_to_proto(paid.status),
        pay_time=timestamp(paid.at),
    )


def order_cancelled(
    order: domain.Order, cancelled: domain.LinesCancelled
) -> events_pb2.OrderCancelled:
    return events_pb2.OrderCancelled(
        order=order.name,
        lines=[events_pb2.CancelledLine(line_id=x.line_id, sku=x.sku, quantity=x.quantity)
               for x in cancelled.lines],
        whole_order=cancelled.whole_order,
        reason=cancelled.reason,
        cancel_time=timestamp(cancelled.at),
    )


def order_released(release: domain.Release) -> events_pb2.OrderReleased:
    primary = release.order
    return events_pb2.OrderReleased(
        order=primary.name,
        orders=release.orders,
        node_id=release.node_id,
        lines=[
            events_pb2.ReleasedLine(order=x.order, line_id=x.line_id, sku=x.sku,
                                    quantity=x.quantity, external_line_id=x.external_line_id)
            for x in release.lines
        ],
        shipping_address=address_to_proto(primary.shipping_address),
        customer=customer_to_proto(primary.customer),
        service_level=service_level_to_proto(release.service_level),
        priority=release.priority,
        promise_time=_maybe_time(release.promise_time),
        tags=release.tags,
        gift_note=release.gift_note,
        high_value=release.high_value,
        channel=primary.channel,
        external_order_id=primary.external_order_id,
        release_time=timestamp(release.at),
    )


# --- events in -------------------------------------------------------------------------------


def event_time(stamp: Timestamp, fallback: datetime) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC) if stamp.seconds or stamp.nanos else fallback


def allocations_from_proto(
    event: inventory_events.StockAllocated,
) -> list[domain.Allocation]:
    return [
        domain.Allocation(
            node_id=allocation.node_id,
            lines=tuple(
                domain.LineQuantity(line.line_id, line.sku, line.quantity)
                for line in allocation.lines
            ),
        )
        for allocation in event.allocations
    ]


def backordered_from_proto(
    event: inventory_events.StockBackordered,
) -> list[domain.LineQuantity]:
    return [domain.LineQuantity(line.line_id, line.sku, line.quantity) for line in event.lines]


def failed_from_proto(event: inventory_events.AllocationFailed) -> list[domain.FailedLine]:
    return [
        domain.FailedLine(
            line.line_id, line.sku, line.quantity,
            line.message or enum_name(inventory_events.AllocationFailureReason.Name,
                                       "ALLOCATION_FAILURE_REASON_", line.reason).lower(),
        )
        for line in event.lines
    ]


def released_from_proto(event: inventory_events.StockReleased) -> list[domain.NodeLine]:
    return [domain.NodeLine(line.line_id, line.sku, line.node_id, line.quantity)
            for line in event.lines]


def package_from_proto(
    event: fulfilment_events.PackageShipped, order: str, fallback: datetime
) -> domain.PackageInfo:
    return domain.PackageInfo(
        package=event.package,
        node_id=event.node_id,
        carrier=event.carrier,
        carrier_service=event.carrier_service,
        tracking_number=event.tracking_number,
        tracking_url=event.tracking_url,
        ship_time=event_time(event.ship_time, fallback),
        lines=tuple(domain.LineQuantity(x.line_id, x.sku, x.quantity)
                    for x in event.lines if x.order == order),
    )


def returned_from_proto(event: returns_events.ReturnReceived) -> list[domain.ReturnedLine]:
    return [
        domain.ReturnedLine(
            line.line_id, line.sku, line.quantity,
            enum_name(returns_events.ReturnReason.Name, "RETURN_REASON_", line.reason),
        )
        for line in event.lines
    ]


def payment_draft_from_proto(payment: orders_pb2.PaymentTransaction) -> domain.PaymentDraft:
    amount = payment.amount
    return domain.PaymentDraft(
        transaction_id=payment.transaction_id,
        kind=enum_name(orders_pb2.PaymentKind.Name, "PAYMENT_KIND_", payment.kind),
        amount=(domain.MoneyDraft(amount.currency_code, amount.amount)
                if payment.HasField("amount") else None),
        provider=payment.provider,
        message=payment.message,
        at=optional_time(payment, "transaction_time", "payment.transaction_time"),
    )
