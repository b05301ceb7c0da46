"""The SQL of the KPI read model: what happened to each order, and the KPI queries.

Every write runs in the consumer's inbox transaction. Redelivery is caught by the inbox;
the same content re-sent under a new event id is caught by the natural keys of the rows
(a package per order, a return line per reason, a cancellation per line and time), whose
inserts are ``ON CONFLICT DO NOTHING`` and drive every counter, so nothing counts twice.

A write about an order this model does not know yet (events of different streams arrive
in any order) raises :class:`~oms_orders.insights.domain.UnknownOrder`: the consumer
retries it with backoff until the order's OrderCreated has been handled.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, extract, func, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms_orders.insights.domain import (
    Granularity,
    PeriodKpis,
    PlacedOrder,
    Reason,
    ShippedPackage,
    UnknownOrder,
    cancelled_amount,
    period_end,
)
from oms_orders.tables import (
    kpi_cancellations,
    kpi_order_lines,
    kpi_orders,
    kpi_packages,
    kpi_returns,
)


async def add_order(session: AsyncSession, order: PlacedOrder) -> None:
    """The order as placed, once: a second OrderCreated of it changes nothing."""
    person = order.contact
    inserted = await session.scalar(
        pg_insert(kpi_orders)
        .values(
            order_name=order.name,
            channel=order.channel,
            external_order_id=order.external_order_id,
            customer_key=person.customer_key,
            customer_name=person.name,
            email=person.email,
            currency_code=order.currency_code,
            place_time=order.place_time,
            units_ordered=order.units,
            amount_ordered=order.amount,
        )
        .on_conflict_do_nothing()
        .returning(kpi_orders.c.order_name)
    )
    if inserted is not None and order.lines:
        await session.execute(
            pg_insert(kpi_order_lines).on_conflict_do_nothing(),
            [
                {
                    "order_name": order.name,
                    "line_id": line.line_id,
                    "sku": line.sku,
                    "quantity": line.quantity,
                    "unit_price": line.unit_price,
                }
                for line in order.lines
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


async def cancel_units(
    session: AsyncSession, order: str, lines: Counter[str], *, whole_order: bool,
    cancel_time: datetime,
) -> None:
    """Cancelled units per line id (none itemised and ``whole_order``: everything not
    cancelled before); a cancellation already counted (line and time) counts nothing."""
    await require_orders(session, [order], "OrderCancelled")
    prices = {
        row.line_id: (row.unit_price, row.quantity)
        for row in await session.execute(
            select(kpi_order_lines.c.line_id, kpi_order_lines.c.unit_price,
                   kpi_order_lines.c.quantity)
            .where(kpi_order_lines.c.order_name == order)
        )
    }
    wanted = lines
    if not wanted and whole_order:
        # Nothing itemised: everything not cancelled before goes now.
        already: Counter[str] = Counter()
        for row in await session.execute(
            select(kpi_cancellations.c.line_id, func.sum(kpi_cancellations.c.quantity))
            .where(kpi_cancellations.c.order_name == order)
            .group_by(kpi_cancellations.c.line_id)
        ):
            already[row[0]] = int(row[1])
        wanted = Counter({line_id: quantity - already[line_id]
                          for line_id, (_, quantity) in prices.items()
                          if quantity > already[line_id]})
    if not wanted:
        return
    inserted = (
        await session.execute(
            pg_insert(kpi_cancellations)
            .values([
                {"order_name": order, "line_id": line_id, "cancel_time": cancel_time,
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
    amount = cancelled_amount(
        {line_id: price for line_id, (price, _) in prices.items()}, units
    )
    await session.execute(
        update(kpi_orders)
        .where(kpi_orders.c.order_name == order)
        .values(
            units_cancelled=func.least(
                kpi_orders.c.units_ordered, kpi_orders.c.units_cancelled + sum(units.values())
            ),
            amount_cancelled=kpi_orders.c.amount_cancelled + amount,
        )
    )
    await session.execute(_COMPLETE_DELIVERY, {"o_name": order})


async def add_package(session: AsyncSession, package: ShippedPackage) -> None:
    """A package shipped, once per order in it."""
    if not package.units:
        return
    await require_orders(session, list(package.units), "PackageShipped")
    await session.execute(
        pg_insert(kpi_packages)
        .values([
            {
                "package": package.package,
                "order_name": order_name,
                "carrier": package.carrier,
                "carrier_service": package.carrier_service,
                "tracking_number": package.tracking_number,
                "tracking_url": package.tracking_url,
                "units": count,
                "ship_time": package.ship_time,
            }
            for order_name, count in package.units.items()
        ])
        .on_conflict_do_nothing()
    )


async def deliver_package(
    session: AsyncSession, package: str, orders: Iterable[str], deliver_time: datetime
) -> None:
    """A package delivered, once; an order whose every unit not cancelled has arrived is
    delivered at its last package's delivery."""
    shipped = set(
        (
            await session.scalars(
                select(kpi_packages.c.order_name).where(kpi_packages.c.package == package)
            )
        ).all()
    )
    missing = set(orders) - shipped
    if missing or not shipped:
        # The PackageShipped of this package has not been handled yet (or not for every
        # order in it): a delivery cannot count before its shipment.
        raise UnknownOrder(
            f"ShipmentDelivered of {package} before its PackageShipped"
            + (f" for {', '.join(sorted(missing))}" if missing else "")
        )
    delivered = (
        await session.execute(
            update(kpi_packages)
            .where(kpi_packages.c.package == package, kpi_packages.c.deliver_time.is_(None))
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


async def add_return(
    session: AsyncSession, return_name: str, order: str, units: Counter[tuple[str, Reason]],
    receive_time: datetime,
) -> None:
    """Units received back per line and reason, once per return, line and reason."""
    await require_orders(session, [order], "ReturnReceived")
    if not units:
        return
    inserted = (
        await session.execute(
            pg_insert(kpi_returns)
            .values([
                {"return_name": return_name, "order_name": order,
                 "line_id": line_id, "reason": reason.name, "units": count,
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
            .where(kpi_orders.c.order_name == order)
            .values(
                units_returned_wrong_item=kpi_orders.c.units_returned_wrong_item + wrong_item
            )
        )


# --- Queries ---------------------------------------------------------------------------------


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
                period_end=min(period_end(bucket, granularity), end),
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
