"""Between the contracts (protobuf) and a new order's draft."""

from __future__ import annotations

from oms.common.v1 import common_pb2
from oms.orders.v1 import orders_pb2
from oms_platform.values import LatLng

from oms_orders.capture import domain
from oms_orders.lifecycle.convert import enum_name, optional_time
from oms_orders.lifecycle.domain import Address, Customer, MoneyDraft


def draft_from_proto(order: orders_pb2.Order, *, prefix: str = "order") -> domain.OrderDraft:
    return domain.OrderDraft(
        channel=order.channel,
        external_order_id=order.external_order_id,
        lines=[
            domain.LineDraft(
                sku=line.sku,
                quantity=line.quantity,
                unit_price=(
                    MoneyDraft(line.unit_price.currency_code, line.unit_price.amount)
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
        customer=Customer(
            external_customer_id=order.customer.external_customer_id,
            display_name=order.customer.display_name,
            email=order.customer.email,
            phone=order.customer.phone,
        ),
        service_level=enum_name(
            orders_pb2.ServiceLevel.Name, "SERVICE_LEVEL_", order.service_level
        ),
        payment_status=enum_name(
            orders_pb2.PaymentStatus.Name, "PAYMENT_STATUS_", order.payment_status
        ),
        priority=order.priority,
        tags=tuple(order.tags),
        gift_note=order.gift_note,
        order_time=optional_time(order, "order_time", f"{prefix}.order_time"),
        promise_time=optional_time(order, "promise_time", f"{prefix}.promise_time"),
    )


def address_from_proto(address: common_pb2.Address) -> Address:
    return Address(
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
            LatLng(address.location.latitude, address.location.longitude)
            if address.HasField("location")
            else None
        ),
    )
