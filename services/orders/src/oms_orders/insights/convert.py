"""Between the contracts and the KPI read model: the facts of events, and the KPIs as
protobuf."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from oms.common.v1 import common_pb2
from oms.fulfilment.v1 import events_pb2 as fulfilment_events
from oms.orders.v1 import events_pb2 as orders_events
from oms.orders.v1 import insights_pb2
from oms_platform.errors import Violations
from oms_platform.values import timestamp

from oms_orders.insights import domain

GRANULARITY = {
    insights_pb2.GRANULARITY_DAY: domain.Granularity.DAY,
    insights_pb2.GRANULARITY_WEEK: domain.Granularity.WEEK,
    insights_pb2.GRANULARITY_MONTH: domain.Granularity.MONTH,
}


def request_time(
    request: insights_pb2.GetOrderKpisRequest, field: str, violations: Violations
) -> datetime | None:
    """A request's timestamp, None when unset; a violation on ``field`` when it is outside
    what a timestamp may hold."""
    if not request.HasField(field):
        return None
    try:
        return instant(getattr(request, field))
    except ValueError:
        violations.add(field, "not a valid timestamp (years 1 to 9999)")
        return None


def instant(timestamp: Timestamp) -> datetime | None:
    """A set protobuf timestamp as an aware datetime; None when unset."""
    if timestamp.seconds == 0 and timestamp.nanos == 0:
        return None
    return timestamp.ToDatetime(tzinfo=UTC)


def order_contact(event: orders_events.OrderCreated) -> domain.Contact:
    return domain.contact(
        order_name=event.order,
        channel=event.channel,
        customer_name=event.customer.display_name,
        customer_email=event.customer.email,
        external_customer_id=event.customer.external_customer_id,
        recipient=event.shipping_address.recipient,
        address_email=event.shipping_address.email,
    )


def place_time(event: orders_events.OrderCreated) -> datetime:
    """When the customer placed the order: the channel's order time, else capture."""
    return instant(event.order_time) or instant(event.create_time) or datetime.now(UTC)


def order_total(event: orders_events.OrderCreated) -> tuple[str, Decimal]:
    """The order's currency and total; the sum of its lines when the event carries none."""
    if event.total.currency_code and event.total.amount:
        return event.total.currency_code, Decimal(event.total.amount)
    currency = next((line.unit_price.currency_code for line in event.lines), "")
    amount = sum((Decimal(line.unit_price.amount or "0") * line.quantity for line in event.lines),
                 Decimal(0))
    return currency, amount

def placed_order(event: orders_events.OrderCreated) -> domain.PlacedOrder:
    currency, amount = order_total(event)
    return domain.PlacedOrder(
        name=event.order,
        channel=event.channel,
        external_order_id=event.external_order_id,
        contact=order_contact(event),
        currency_code=currency,
        amount=amount,
        place_time=place_time(event),
        lines=tuple(
            domain.PlacedLine(line.line_id or str(number), line.sku, line.quantity,
                              Decimal(line.unit_price.amount or "0"))
            for number, line in enumerate(event.lines, start=1)
        ),
    )


def shipped_package(event: fulfilment_events.PackageShipped) -> domain.ShippedPackage:
    units: Counter[str] = Counter()
    for line in event.lines:
        units[line.order] += line.quantity
    return domain.ShippedPackage(
        package=event.package, carrier=event.carrier, carrier_service=event.carrier_service,
        tracking_number=event.tracking_number, tracking_url=event.tracking_url,
        units=units, ship_time=instant(event.ship_time) or datetime.now(UTC))


def _duration(seconds: float) -> Duration:
    duration = Duration()
    duration.FromMicroseconds(round(seconds * 1_000_000))
    return duration


def kpis_to_proto(figures: domain.PeriodKpis) -> insights_pb2.OrderKpis:
    message = insights_pb2.OrderKpis(
        period_start_time=timestamp(figures.period_start),
        period_end_time=timestamp(figures.period_end),
        channel=figures.channel,
        orders=figures.orders,
        units_sold=figures.units_sold,
        units_returned=figures.units_returned,
        units_returned_by_reason=[
            insights_pb2.ReturnedUnits(
                reason=reason.value,  # type: ignore[arg-type]
                units=units,
                return_rate=domain.percent(units, figures.units_sold) or 0.0,
            )
            for reason, units in figures.units_returned_by_reason.items()
        ],
        orders_returned_wrong_item=figures.orders_wrong_item,
        orders_delivered=figures.orders_delivered,
        customers=figures.customers,
        sales_amount=[
            common_pb2.Money(currency_code=currency, amount=f"{amount:f}")
            for currency, amount in sorted(figures.sales_amount.items())
        ],
    )
    for name, value in (
        ("return_rate", domain.percent(figures.units_returned, figures.units_sold)),
        ("picking_accuracy", domain.percent(figures.orders - figures.orders_wrong_item,
                                                figures.orders)),
        ("purchase_frequency", domain.ratio(figures.orders, figures.customers)),
    ):
        if value is not None:
            setattr(message, name, value)
    if figures.lead_time_mean is not None and figures.lead_time_p90 is not None:
        message.lead_time_mean.CopyFrom(_duration(figures.lead_time_mean.total_seconds()))
        message.lead_time_p90.CopyFrom(_duration(figures.lead_time_p90.total_seconds()))
    return message
