"""The KPI read model: what happened to each order, fed by events, and the KPI queries.

Every handler runs in the consumer's inbox transaction. Redelivery is caught by the inbox;
the same content re-sent under a new event id is caught by the natural keys of the rows
(a package per order, a return line per reason, a cancellation per line and time), whose
inserts are ``ON CONFLICT DO NOTHING`` and drive every counter, so nothing counts twice.

An event about an order this model does not know yet (events of different streams arrive
in any order) raises :class:`UnknownOrder`: the consumer retries it with backoff until the
order's OrderCreated has been handled.
"""

from __future__ import annotations

import enum
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import structlog
from google.protobuf.timestamp_pb2 import Timestamp
from oms.fulfilment.v1 import events_pb2 as fulfilment_events
from oms.orders.v1 import events_pb2 as orders_events
from oms.returns.v1 import events_pb2 as returns_events
from oms.shipping.v1 import events_pb2 as shipping_events
from oms_platform.consumer import Subscription
from sqlalchemy import and_, bindparam, extract, func, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms_orders import kpis_rules
from oms_orders.kpis_rules import Granularity
from oms_orders.tables import (
    kpi_cancellations,
    kpi_order_lines,
    kpi_orders,
    kpi_packages,
    kpi_returns,
)

log = structlog.get_logger(__name__)


class UnknownOrder(Exception):
    """An event names an order whose OrderCreated has not been handled yet: retry later."""


def subscriptions() -> list[Subscription]:
    """The read model's handlers; they must run before the notifications' handlers, which
    read what these wrote in the same transaction."""
    return [
        Subscription(orders_events.OrderCreated, on_order_created),
        Subscription(orders_events.OrderCancelled, on_order_cancelled),
        Subscription(fulfilment_events.PackageShipped, on_package_shipped),
        Subscription(shipping_events.ShipmentDelivered, on_shipment_delivered),
        Subscription(returns_events.ReturnReceived, on_return_received),
    ]


def instant(timestamp: Timestamp) -> datetime | None:
    """A set protobuf timestamp as an aware datetime; None when unset."""
    if timestamp.seconds == 0 and timestamp.nanos == 0:
        return None
    return timestamp.ToDatetime(tzinfo=UTC)


def order_contact(event: orders_events.OrderCreated) -> kpis_rules.Contact:
    return kpis_rules.contact(
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


async def on_order_created(session: AsyncSession, event: orders_events.OrderCreated) -> None:
    person = order_contact(event)
    currency, amount = order_total(event)
    inserted = await session.scalar(
        pg_insert(kpi_orders)
        .values(
            order_name=event.order,
            channel=event.channel,
            external_order_id=event.external_order_id,
            customer_key=person.customer_key,
            customer_name=person.name,
            email=person.email,
            currency_code=currency,
            place_time=place_time(event),
            units_ordered=sum(line.quantity for line in event.lines),
            amount_ordered=amount,
        )
        .on_conflict_do_nothing()
        .returning(kpi_orders.c.order_name)
    )
    if inserted is not None and event.lines:
        await session.execute(
            pg_insert(kpi_order_lines).on_conflict_do_nothing(),
            [
                {
                    "order_name": event.order,
                    "line_id": line.line_id or str(number),
                    "sku": line.sku,
                    "quantity": line.quantity,
                    "unit_price": Decimal(line.unit_price.amount or "0"),
                }
                for number, line in enumerate(event.lines, start=1)
            ],
        )


async def require_orders(session: AsyncSession, names: Sequence[str], event_type: str) -> None:
    """Raises UnknownOrder unless every named order is in the read model."""
    wanted = set(names)
    known = set(
        (
            await session.scalars(
                select(kpi_orders.c.order_name).where(kpi_orders.c.order_name.in_(wanted))
            )
        ).all()
    )
    missing = sorted(wanted - known)
    if missing:
        raise UnknownOrder(f"{event_type} names orders not yet known: {', '.join(missing)}")


# Once every unit not cancelled is delivered, the order's lead time ends at its last delivery.
_COMPLETE_DELIVERY = (
    update(kpi_orders)
    .where(
        kpi_orders.c.order_name == bindparam("o_name"),
        kpi_orders.c.delivered_time.is_(None),
        kpi_orders.c.units_ordered > kpi_orders.c.units_cancelled,
        kpi_orders.c.units_delivered >= kpi_orders.c.units_ordered - kpi_orders.c.units_cancelled,
    )
    .values(
        delivered_time=select(func.max(kpi_packages.c.deliver_time))
        .where(kpi_packages.c.order_name == kpi_orders.c.order_name)
        .scalar_subquery()
    )
)


async def on_order_cancelled(session: AsyncSession, event: orders_events.OrderCancelled) -> None:
    await require_orders(session, [event.order], "OrderCancelled")
    prices = {
        row.line_id: (row.unit_price, row.quantity)
        for row in await session.execute(
            select(kpi_order_lines.c.line_id, kpi_order_lines.c.unit_price,
                   kpi_order_lines.c.quantity)
            .where(kpi_order_lines.c.order_name == event.order)
        )
    }
    wanted: Counter[str] = Counter()
    for line in event.lines:
        wanted[line.line_id] += line.quantity
    if not wanted and event.whole_order:
        # Nothing itemised: everything not cancelled before goes now.
        already: Counter[str] = Counter()
        for row in await session.execute(
            select(kpi_cancellations.c.line_id, func.sum(kpi_cancellations.c.quantity))
            .where(kpi_cancellations.c.order_name == event.order)
            .group_by(kpi_cancellations.c.line_id)
        ):
            already[row[0]] = int(row[1])
        wanted = Counter({line_id: quantity - already[line_id]
                          for line_id, (_, quantity) in prices.items()
                          if quantity > already[line_id]})
    if not wanted:
        return
    cancel_time = instant(event.cancel_time) or datetime.fromtimestamp(0, UTC)
    inserted = (
        await session.execute(
            pg_insert(kpi_cancellations)
            .values([
                {"order_name": event.order, "line_id": line_id, "cancel_time": cancel_time,
                 "quantity": quantity}
                for line_id, quantity in wanted.items()
            ])
            .on_conflict_do_nothing()
            .returning(kpi_cancellations.c.line_id, kpi_cancellations.c.quantity)
        )
    ).all()
    if not inserted:
        return
    units = {row.line_id: row.quantity for row in inserted}
    amount = kpis_rules.cancelled_amount(
        {line_id: price for line_id, (price, _) in prices.items()}, units
    )
    await session.execute(
        update(kpi_orders)
        .where(kpi_orders.c.order_name == event.order)
        .values(
            units_cancelled=func.least(
                kpi_orders.c.units_ordered, kpi_orders.c.units_cancelled + sum(units.values())
            ),
            amount_cancelled=kpi_orders.c.amount_cancelled + amount,
        )
    )
    await session.execute(_COMPLETE_DELIVERY, {"o_name": event.order})


async def on_package_shipped(
    session: AsyncSession, event: fulfilment_events.PackageShipped
) -> None:
    units: Counter[str] = Counter()
    for line in event.lines:
        units[line.order] += line.quantity
    if not units:
        return
    await require_orders(session, list(units), "PackageShipped")
    ship_time = instant(event.ship_time) or datetime.now(UTC)
    await session.execute(
        pg_insert(kpi_packages)
        .values([
            {
                "package": event.package,
                "order_name": order_name,
                "carrier": event.carrier,
                "carrier_service": event.carrier_service,
                "tracking_number": event.tracking_number,
                "tracking_url": event.tracking_url,
                "units": count,
                "ship_time": ship_time,
            }
            for order_name, count in units.items()
        ])
        .on_conflict_do_nothing()
    )


async def on_shipment_delivered(
    session: AsyncSession, event: shipping_events.ShipmentDelivered
) -> None:
    shipped = set(
        (
            await session.scalars(
                select(kpi_packages.c.order_name).where(kpi_packages.c.package == event.package)
            )
        ).all()
    )
    missing = set(event.orders) - shipped
    if missing or not shipped:
        # The PackageShipped of this package has not been handled yet (or not for every
        # order in it): a delivery cannot count before its shipment.
        raise UnknownOrder(
            f"ShipmentDelivered of {event.package} before its PackageShipped"
            + (f" for {', '.join(sorted(missing))}" if missing else "")
        )
    deliver_time = instant(event.deliver_time) or datetime.now(UTC)
    delivered = (
        await session.execute(
            update(kpi_packages)
            .where(kpi_packages.c.package == event.package, kpi_packages.c.deliver_time.is_(None))
            .values(deliver_time=deliver_time)
            .returning(kpi_packages.c.order_name, kpi_packages.c.units)
        )
    ).all()
    if not delivered:
        return
    params = [{"o_name": row.order_name, "units": row.units} for row in delivered]
    await session.execute(
        update(kpi_orders)
        .where(kpi_orders.c.order_name == bindparam("o_name"))
        .values(units_delivered=kpi_orders.c.units_delivered + bindparam("units")),
        params,
    )
    await session.execute(_COMPLETE_DELIVERY, [{"o_name": p["o_name"]} for p in params])


class Reason(enum.Enum):
    """Return reasons as stored: the proto enum names without their prefix."""

    UNSPECIFIED = 0
    WRONG_ITEM = 1
    DAMAGED = 2
    DEFECTIVE = 3
    NOT_AS_DESCRIBED = 4
    SIZE_OR_FIT = 5
    ARRIVED_LATE = 6
    NO_LONGER_NEEDED = 7
    OTHER = 8

    @classmethod
    def of(cls, number: int) -> Reason:
        try:
            return cls(number)
        except ValueError:
            return cls.OTHER


async def on_return_received(
    session: AsyncSession, event: returns_events.ReturnReceived
) -> None:
    await require_orders(session, [event.order], "ReturnReceived")
    units: Counter[tuple[str, str]] = Counter()
    for line in event.lines:
        units[line.line_id, Reason.of(line.reason).name] += line.quantity
    if not units:
        return
    receive_time = instant(event.receive_time) or datetime.now(UTC)
    inserted = (
        await session.execute(
            pg_insert(kpi_returns)
            .values([
                {"return_name": getattr(event, "return"), "order_name": event.order,
                 "line_id": line_id, "reason": reason, "units": count,
                 "receive_time": receive_time}
                for (line_id, reason), count in units.items()
            ])
            .on_conflict_do_nothing()
            .returning(kpi_returns.c.reason, kpi_returns.c.units)
        )
    ).all()
    wrong_item = sum(row.units for row in inserted if row.reason == Reason.WRONG_ITEM.name)
    if wrong_item:
        await session.execute(
            update(kpi_orders)
            .where(kpi_orders.c.order_name == event.order)
            .values(
                units_returned_wrong_item=kpi_orders.c.units_returned_wrong_item + wrong_item
            )
        )


# --- Queries ---------------------------------------------------------------------------------


@dataclass
class PeriodKpis:
    """The figures of one period and channel, before they become protobuf."""

    period_start: datetime
    period_end: datetime
    channel: str
    orders: int = 0
    units_sold: int = 0
    orders_wrong_item: int = 0
    orders_delivered: int = 0
    lead_time_mean: timedelta | None = None
    lead_time_p90: timedelta | None = None
    customers: int = 0
    units_returned_by_reason: dict[Reason, int] = field(default_factory=dict)
    sales_amount: dict[str, Decimal] = field(default_factory=dict)

    @property
    def units_returned(self) -> int:
        return sum(self.units_returned_by_reason.values())


async def order_kpis(
    session: AsyncSession,
    *,
    start: datetime,
    end: datetime,
    granularity: Granularity,
    channel: str | None,
    limit: int,
) -> list[PeriodKpis]:
    """The KPIs of the orders placed in ``[start, end)``, by UTC period and channel.

    Three aggregate statements over the read model: per-order figures, returned units by
    reason, and sales amounts by currency. Orders cancelled in full are left out. When
    there are more than ``limit`` periods x channels, only the first statement runs and
    ``limit + 1`` of them are returned, without their returns and sales: too many to answer.
    """
    period = func.date_trunc(literal(granularity.value), kpi_orders.c.place_time, literal("UTC"))
    sold = kpi_orders.c.units_ordered - kpi_orders.c.units_cancelled
    conditions = [
        kpi_orders.c.place_time >= start,
        kpi_orders.c.place_time < end,
        kpi_orders.c.units_ordered > kpi_orders.c.units_cancelled,
    ]
    if channel:
        conditions.append(kpi_orders.c.channel == channel)
    where = and_(*conditions)
    lead_seconds = extract("epoch", kpi_orders.c.delivered_time - kpi_orders.c.place_time)
    main = (
        select(
            period.label("period"),
            kpi_orders.c.channel,
            func.count().label("orders"),
            func.sum(sold).label("units_sold"),
            func.count().filter(kpi_orders.c.units_returned_wrong_item > 0).label("wrong_item"),
            func.count(kpi_orders.c.delivered_time).label("delivered"),
            func.avg(lead_seconds).label("lead_mean"),
            func.percentile_cont(0.9).within_group(lead_seconds).label("lead_p90"),
            func.count(kpi_orders.c.customer_key.distinct()).label("customers"),
        )
        .where(where)
        .group_by(period, kpi_orders.c.channel)
        .limit(limit + 1)
    )
    returns = (
        select(
            period.label("period"),
            kpi_orders.c.channel,
            kpi_returns.c.reason,
            func.sum(kpi_returns.c.units).label("units"),
        )
        .select_from(kpi_orders.join(kpi_returns,
                                     kpi_returns.c.order_name == kpi_orders.c.order_name))
        .where(where)
        .group_by(period, kpi_orders.c.channel, kpi_returns.c.reason)
    )
    sales = (
        select(
            period.label("period"),
            kpi_orders.c.channel,
            kpi_orders.c.currency_code,
            func.sum(kpi_orders.c.amount_ordered - kpi_orders.c.amount_cancelled).label("amount"),
        )
        .where(where)
        .group_by(period, kpi_orders.c.channel, kpi_orders.c.currency_code)
    )
    figures: dict[tuple[datetime, str], PeriodKpis] = {}

    def entry(row: Any) -> PeriodKpis:
        key = (row.period, row.channel)
        if key not in figures:
            bucket = row.period.astimezone(UTC)
            figures[key] = PeriodKpis(
                period_start=max(bucket, start),
                period_end=min(kpis_rules.period_end(bucket, granularity), end),
                channel=row.channel,
            )
        return figures[key]

    rows = (await session.execute(main)).all()
    if len(rows) > limit:
        return [entry(row) for row in rows]
    for row in rows:
        kpis = entry(row)
        kpis.orders = row.orders
        kpis.units_sold = int(row.units_sold or 0)
        kpis.orders_wrong_item = row.wrong_item
        kpis.orders_delivered = row.delivered
        kpis.customers = row.customers
        if row.lead_mean is not None:
            kpis.lead_time_mean = timedelta(seconds=float(row.lead_mean))
            kpis.lead_time_p90 = timedelta(seconds=float(row.lead_p90))
    by_reason: defaultdict[tuple[datetime, str], dict[Reason, int]] = defaultdict(dict)
    for row in await session.execute(returns):
        by_reason[row.period, row.channel][Reason[row.reason]] = int(row.units)
    for key, reasons in by_reason.items():
        if key in figures:
            figures[key].units_returned_by_reason = dict(
                sorted(reasons.items(), key=lambda item: item[0].value)
            )
    for row in await session.execute(sales):
        entry(row).sales_amount[row.currency_code] = row.amount
    return [figures[key] for key in sorted(figures)]
