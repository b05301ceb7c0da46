"""Between the contracts and the KPI read model: the facts of events, and the KPIs as
protobuf and as CSV."""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from oms.common.v1 import common_pb2
from oms.fulfilment.v1 import events_pb2 as fulfilment_events
from oms.orders.v1 import events_pb2 as orders_events
from oms.orders.v1 import insights_pb2
from oms.shipping.v1 import events_pb2 as shipping_events
from oms_platform.errors import Violations
from oms_platform.values import timestamp

from oms_orders.insights import domain

GRANULARITY = {
    insights_pb2.GRANULARITY_DAY: domain.Granularity.DAY,
    insights_pb2.GRANULARITY_WEEK: domain.Granularity.WEEK,
    insights_pb2.GRANULARITY_MONTH: domain.Granularity.MONTH,
}
BREAKDOWN = {
    insights_pb2.KPI_BREAKDOWN_UNSPECIFIED: domain.Breakdown.BOTH,
    insights_pb2.KPI_BREAKDOWN_TOTAL: domain.Breakdown.TOTAL,
    insights_pb2.KPI_BREAKDOWN_CHANNEL: domain.Breakdown.CHANNEL,
}

KpiRequest = insights_pb2.GetOrderKpisRequest | insights_pb2.ExportOrderKpisRequest


def request_time(request: KpiRequest, field: str, violations: Violations) -> datetime | None:
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


def orders_named(message: Any) -> list[str]:
    """The orders an event of the read model is about (none for an OrderCreated, which
    inserts its order)."""
    if isinstance(message, orders_events.OrderCreated):
        return []
    if isinstance(message, fulfilment_events.PackageShipped | fulfilment_events.PackingVerified):
        return [line.order for line in message.lines]
    if isinstance(message, shipping_events.ShipmentDelivered):
        return list(message.orders)
    return [message.order]


def money_of(amount: common_pb2.Money) -> tuple[str, Decimal]:
    return amount.currency_code, Decimal(amount.amount or "0")


def pack_checks(event: fulfilment_events.PackingVerified) -> list[domain.PackCheck]:
    """The scans per order line (a line named twice is summed)."""
    verified: Counter[tuple[str, str]] = Counter()
    refused: Counter[tuple[str, str]] = Counter()
    for line in event.lines:
        verified[line.order, line.line_id] += line.units_verified
        refused[line.order, line.line_id] += line.units_refused
    return [domain.PackCheck(order, line_id, verified[order, line_id],
                             refused[order, line_id])
            for order, line_id in sorted(verified | refused)]


def shipped_package(event: fulfilment_events.PackageShipped) -> domain.ShippedPackage:
    units: Counter[str] = Counter()
    for line in event.lines:
        units[line.order] += line.quantity
    return domain.ShippedPackage(
        package=event.package, node_id=event.node_id, carrier=event.carrier,
        carrier_service=event.carrier_service,
        tracking_number=event.tracking_number, tracking_url=event.tracking_url,
        units=units, ship_time=instant(event.ship_time) or datetime.now(UTC))


def _duration(seconds: float) -> Duration:
    duration = Duration()
    duration.FromMicroseconds(round(seconds * 1_000_000))
    return duration


def _money(currency: str, amount: Decimal) -> common_pb2.Money:
    return common_pb2.Money(currency_code=currency, amount=f"{amount:f}")


def money_figures(figures: domain.PeriodKpis) -> dict[str, list[tuple[str, Decimal]]]:
    """The money figures by name, each a list of (currency, amount) by currency code."""
    currencies = sorted(figures.currencies.items())
    average = [(c, domain.average_order_value(c, f)) for c, f in currencies]
    return {
        "sales_amount": [(c, f.sales) for c, f in currencies if f.orders],
        "refunded_amount": [(c, f.refunded) for c, f in currencies if f.refunded],
        "net_sales": [(c, domain.net_sales(f)) for c, f in currencies
                      if f.orders or f.refunded],
        "average_order_value": [(c, a.amount) for c, a in average if a is not None],
    }


def kpis_to_proto(figures: domain.PeriodKpis) -> insights_pb2.OrderKpis:
    message = insights_pb2.OrderKpis(
        period_start_time=timestamp(figures.period_start),
        period_end_time=timestamp(figures.period_end),
        channel=figures.channel,
        units_returned_by_reason=[
            insights_pb2.ReturnedUnits(
                reason=reason.value,  # type: ignore[arg-type]
                units=units,
                return_rate=domain.percent(units, figures.units_sold) or 0.0,
            )
            for reason, units in figures.units_returned_by_reason.items()
        ],
        cancellations_by_reason=[
            insights_pb2.CancelledUnits(reason=x.reason, orders=x.orders, units=x.units)
            for x in figures.cancellations_by_reason
        ],
        **{name: [_money(c, amount) for c, amount in amounts]
           for name, amounts in money_figures(figures).items()},
        **figures.counts,
    )
    for name, value in figures.rates.items():
        if value is not None:
            setattr(message, name, value)
    for name, duration in figures.durations.items():
        if duration is not None:
            getattr(message, name).CopyFrom(_duration(duration.total_seconds()))
    return message


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _seconds(duration: timedelta | None) -> str:
    return "" if duration is None else f"{duration.total_seconds():.6f}".rstrip("0").rstrip(".")


def _rate(value: float | None) -> str:
    return "" if value is None else repr(value)


def kpis_csv(entries: Sequence[domain.PeriodKpis]) -> bytes:
    """The entries as RFC 4180 CSV (see ExportOrderKpisResponse): one row per entry, the
    money figures one column per currency found in any entry."""
    sample = domain.PeriodKpis(datetime.min, datetime.min, "")
    count_names, rate_names = list(sample.counts), list(sample.rates)
    duration_names = list(sample.durations)
    moneys = [money_figures(entry) for entry in entries]
    currencies = sorted({c for m in moneys for amounts in m.values() for c, _ in amounts})
    money_names = list(money_figures(sample))
    reasons = [reason for reason in domain.Reason]
    header = [
        "period_start_time", "period_end_time", "channel", *count_names, *rate_names,
        *duration_names, *(f"returned_units_{r.name}" for r in reasons),
        "cancellation_reasons",
        *(f"{name}_{currency}" for name in money_names for currency in currencies),
    ]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    for entry, money in zip(entries, moneys, strict=True):
        rates = entry.rates
        row: list[Any] = [_rfc3339(entry.period_start), _rfc3339(entry.period_end),
                          entry.channel, *entry.counts.values(),
                          *(_rate(rates[name]) for name in rate_names),
                          *(_seconds(d) for d in entry.durations.values()),
                          *(entry.units_returned_by_reason.get(r, 0) for r in reasons),
                          "; ".join(f"{x.reason}={x.units}"
                                    for x in entry.cancellations_by_reason)]
        for name in money_names:
            amounts = dict(money[name])
            row += [f"{amounts[c]:f}" if c in amounts else "" for c in currencies]
        writer.writerow(row)
    return buffer.getvalue().encode()
