"""Between the contracts (protobuf) and the domain, in both directions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from google.protobuf.timestamp_pb2 import Timestamp
from google.type import latlng_pb2
from oms.common.v1 import common_pb2
from oms.inventory.v1 import events_pb2 as inventory_events
from oms.orders.v1 import events_pb2, orders_pb2

from oms_orders import domain

Number = TypeVar("Number", bound=int)


def draft_from_proto(order: orders_pb2.Order) -> domain.OrderDraft:
    return domain.OrderDraft(
        channel=order.channel,
        external_order_id=order.external_order_id,
        lines=[
            domain.LineDraft(
                sku=line.sku,
                quantity=line.quantity,
                unit_price=(
                    domain.MoneyDraft(line.unit_price.currency_code, line.unit_price.amount)
                    if line.HasField("unit_price")
                    else None
                ),
                external_line_id=line.external_line_id,
            )
            for line in order.lines
        ],
        shipping_address=(
            address_from_proto(order.shipping_address)
            if order.HasField("shipping_address")
            else None
        ),
        customer=domain.Customer(
            external_customer_id=order.customer.external_customer_id,
            display_name=order.customer.display_name,
            email=order.customer.email,
            phone=order.customer.phone,
        ),
        service_level=_enum_name(
            orders_pb2.ServiceLevel.Name, "SERVICE_LEVEL_", order.service_level
        ),
        payment_status=_enum_name(
            orders_pb2.PaymentStatus.Name, "PAYMENT_STATUS_", order.payment_status
        ),
    )


def _enum_name(name_of: Callable[[Number], str], prefix: str, number: Number) -> str:
    """``SERVICE_LEVEL_EXPRESS`` as ``EXPRESS``; a number the contract does not know as is,
    for validation to refuse."""
    try:
        name = name_of(number)
    except ValueError:
        return str(number)
    return name.removeprefix(prefix)


def address_from_proto(address: common_pb2.Address) -> domain.Address:
    return domain.Address(
        recipient=address.recipient,
        organization=address.organization,
        address_lines=tuple(address.address_lines),
        locality=address.locality,
        administrative_area=address.administrative_area,
        postal_code=address.postal_code,
        region_code=address.region_code,
        phone=address.phone,
        email=address.email,
        location=(
            domain.LatLng(address.location.latitude, address.location.longitude)
            if address.HasField("location")
            else None
        ),
    )


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


def timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def lines_to_proto(order: domain.Order) -> list[orders_pb2.OrderLine]:
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


def order_to_proto(order: domain.Order) -> orders_pb2.Order:
    return orders_pb2.Order(
        name=order.name,
        channel=order.channel,
        external_order_id=order.external_order_id,
        customer=orders_pb2.Customer(
            external_customer_id=order.customer.external_customer_id,
            display_name=order.customer.display_name,
            email=order.customer.email,
            phone=order.customer.phone,
        ),
        shipping_address=address_to_proto(order.shipping_address),
        lines=lines_to_proto(order),
        service_level=service_level_to_proto(order.service_level),
        payment_status=payment_status_to_proto(order.payment_status),
        status=status_to_proto(order.status),
        total=money_to_proto(order.total),
        allocations=[
            orders_pb2.Allocation(
                node_id=allocation.node_id,
                lines=[
                    orders_pb2.AllocatedLine(
                        line_id=line.line_id, sku=line.sku, quantity=line.quantity
                    )
                    for line in allocation.lines
                ],
            )
            for allocation in order.allocations
        ],
        create_time=timestamp(order.create_time),
        update_time=timestamp(order.update_time),
    )


def order_created(order: domain.Order) -> events_pb2.OrderCreated:
    return events_pb2.OrderCreated(
        order=order.name,
        channel=order.channel,
        external_order_id=order.external_order_id,
        shipping_address=address_to_proto(order.shipping_address),
        lines=lines_to_proto(order),
        service_level=service_level_to_proto(order.service_level),
        payment_status=payment_status_to_proto(order.payment_status),
        create_time=timestamp(order.create_time),
    )


def status_changed(
    order: domain.Order, change: domain.StatusChanged
) -> events_pb2.OrderStatusChanged:
    return events_pb2.OrderStatusChanged(
        order=order.name,
        previous_status=status_to_proto(change.previous),
        status=status_to_proto(change.status),
        change_time=timestamp(change.at),
    )


def allocations_from_proto(
    event: inventory_events.StockAllocated,
) -> list[domain.Allocation]:
    return [
        domain.Allocation(
            node_id=allocation.node_id,
            lines=tuple(
                domain.AllocatedLine(line.line_id, line.sku, line.quantity)
                for line in allocation.lines
            ),
        )
        for allocation in event.allocations
    ]


def backordered_from_proto(
    event: inventory_events.StockBackordered,
) -> list[domain.BackorderedLine]:
    return [domain.BackorderedLine(line.line_id, line.sku, line.quantity) for line in event.lines]
