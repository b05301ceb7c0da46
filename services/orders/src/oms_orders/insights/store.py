"""The SQL of the KPI read model: what happened to each order, and the KPI queries.

Every write runs in the consumer's inbox transaction. Redelivery is caught by the inbox;
the same content re-sent under a new event id is caught by the natural keys of the rows
(a package per order, a return line per reason, a cancellation per line and time, a refund,
a packing check per parcel and line), whose inserts are ``ON CONFLICT DO NOTHING``. The
per-order figures are then recomputed from those rows in one statement (:func:`refresh`),
never incremented, so neither a re-sent event nor the order events arrive in changes them.

Every write first locks the orders it touches (in name order, like a whole fetch does in
:func:`lock_orders`): the refresh reads the rows of other events, and the consumers of
different streams write about one order at the same time. Without the lock, a refresh
that waited for another transaction's update of the order would still compute from a
snapshot without that transaction's rows, and write figures that miss them.

A write about an order this model does not know yet (events of different streams arrive
in any order) raises :class:`~oms_orders.insights.domain.UnknownOrder`: the consumer
retries it with backoff until the order's OrderCreated has been handled.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import Text as TextType

from oms_orders.insights.domain import (
    Breakdown,
    CancelledUnits,
    CurrencyFigures,
    Granularity,
    PackCheck,
    PeriodKpis,
    PlacedOrder,
    Reason,
    ShippedPackage,
    UnknownOrder,
    cancelled_amount,
    period_end,
    seconds_stat,
    top_reasons,
)
from oms_orders.tables import (
    kpi_cancellations,
    kpi_order_lines,
    kpi_orders,
    kpi_pack_checks,
    kpi_packages,
    kpi_refunds,
    kpi_returns,
)


async def add_order(session: AsyncSession, order: PlacedOrder,
                    promise_time: datetime | None = None) -> None:
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
            promise_time=promise_time,
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


async def lock_orders(session: AsyncSession, names: Iterable[str]) -> set[str]:
    """Locks the named orders of the read model, in name order; returns those it has."""
    wanted = sorted(set(names))
    if not wanted:
        return set()
    return set(
        (
            await session.scalars(
                select(kpi_orders.c.order_name)
                .where(kpi_orders.c.order_name.in_(wanted))
                .order_by(kpi_orders.c.order_name)
                .with_for_update()
            )
        ).all()
    )


async def require_orders(session: AsyncSession, names: Iterable[str], event_type: str) -> None:
    """Locks the named orders; raises UnknownOrder unless every one is in the read model."""
    wanted = set(names)
    known = await lock_orders(session, wanted)
    missing = sorted(wanted - known)
    if missing:
        raise UnknownOrder(f"{event_type} names orders not yet known: {', '.join(missing)}")


# The per-order figures, recomputed from the rows of the order's events. A row constructor
# per child table keeps it one statement with one indexed lookup each.
_REFRESH = text("""
UPDATE kpi_orders AS o SET
  (units_shipped, packages, ship_nodes, units_delivered, shipped_time, delivered_time) = (
    SELECT LEAST(o.units_ordered, COALESCE(SUM(p.units), 0)),
           COUNT(*), COUNT(DISTINCT p.node_id),
           COALESCE(SUM(p.units) FILTER (WHERE p.deliver_time IS NOT NULL), 0),
           CASE WHEN o.units_ordered > o.units_cancelled
                 AND COALESCE(SUM(p.units), 0) >= o.units_ordered - o.units_cancelled
                THEN MAX(p.ship_time) END,
           CASE WHEN o.units_ordered > o.units_cancelled
                 AND COALESCE(SUM(p.units) FILTER (WHERE p.deliver_time IS NOT NULL), 0)
                     >= o.units_ordered - o.units_cancelled
                THEN MAX(p.deliver_time) END
    FROM kpi_packages AS p WHERE p.order_name = o.order_name),
  (units_returned, units_returned_wrong_item) = (
    SELECT COALESCE(SUM(r.units), 0),
           COALESCE(SUM(r.units) FILTER (WHERE r.reason = 'WRONG_ITEM'), 0)
    FROM kpi_returns AS r WHERE r.order_name = o.order_name),
  amount_refunded = (
    SELECT COALESCE(SUM(f.amount), 0) FROM kpi_refunds AS f
    WHERE f.order_name = o.order_name),
  (units_pack_verified, units_pack_refused) = (
    SELECT COALESCE(SUM(c.units_verified), 0), COALESCE(SUM(c.units_refused), 0)
    FROM kpi_pack_checks AS c WHERE c.order_name = o.order_name)
WHERE o.order_name = ANY(:names)
""").bindparams(bindparam("names", type_=ARRAY(TextType())))


async def refresh(session: AsyncSession, names: Iterable[str]) -> None:
    """Recomputes the per-order figures of ``names`` from what the read model holds."""
    await session.execute(_REFRESH, {"names": sorted(set(names))})


async def change_promise(session: AsyncSession, order: str, promise_time: datetime | None,
                         change_time: datetime) -> None:
    """The promise as changed at ``change_time``, unless a later change is already in."""
    await require_orders(session, [order], "OrderPromiseChanged")
    await session.execute(
        update(kpi_orders)
        .where(kpi_orders.c.order_name == order,
               or_(kpi_orders.c.promise_change_time.is_(None),
                   kpi_orders.c.promise_change_time < change_time))
        .values(promise_time=promise_time, promise_change_time=change_time)
    )


async def cancel_units(
    session: AsyncSession, order: str, lines: Counter[str], *, whole_order: bool,
    cancel_time: datetime, reason: str = "",
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
                 "quantity": quantity, "reason": reason}
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
    await refresh(session, [order])


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
                "node_id": package.node_id,
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
    await refresh(session, package.units)


async def deliver_package(
    session: AsyncSession, package: str, orders: Iterable[str], deliver_time: datetime
) -> None:
    """A package delivered, once; an order whose every unit not cancelled has arrived is
    delivered at its last package's delivery."""
    orders = list(orders)
    shipped = set(
        (
            await session.scalars(
                select(kpi_packages.c.order_name).where(kpi_packages.c.package == package)
            )
        ).all()
    )
    await require_orders(session, {*orders, *shipped}, "ShipmentDelivered")
    missing = set(orders) - shipped
    if missing or not shipped:
        # The PackageShipped of this package has not been handled yet (or not for every
        # order in it): a delivery cannot count before its shipment.
        raise UnknownOrder(
            f"ShipmentDelivered of {package} before its PackageShipped"
            + (f" for {', '.join(sorted(missing))}" if missing else "")
        )
    delivered = (
        await session.scalars(
            update(kpi_packages)
            .where(kpi_packages.c.package == package, kpi_packages.c.deliver_time.is_(None))
            .values(deliver_time=deliver_time)
            .returning(kpi_packages.c.order_name)
        )
    ).all()
    if delivered:
        await refresh(session, delivered)


async def add_return(
    session: AsyncSession, return_name: str, order: str, units: Counter[tuple[str, Reason]],
    receive_time: datetime,
) -> None:
    """Units received back per line and reason, once per return, line and reason."""
    await require_orders(session, [order], "ReturnReceived")
    if not units:
        return
    await session.execute(
        pg_insert(kpi_returns)
        .values([
            {"return_name": return_name, "order_name": order,
             "line_id": line_id, "reason": reason.name, "units": count,
             "receive_time": receive_time}
            for (line_id, reason), count in units.items()
        ])
        .on_conflict_do_nothing()
    )
    await refresh(session, [order])


async def add_refund(session: AsyncSession, order: str, refund: str, currency_code: str,
                     amount: Decimal, refund_time: datetime) -> None:
    """Money given back on an order, once per refund."""
    await require_orders(session, [order], "OrderRefunded")
    await session.execute(
        pg_insert(kpi_refunds)
        .values(order_name=order, refund=refund, currency_code=currency_code, amount=amount,
                refund_time=refund_time)
        .on_conflict_do_nothing()
    )
    await refresh(session, [order])


async def add_pack_checks(session: AsyncSession, package: str, node_id: str,
                          checks: Sequence[PackCheck], verify_time: datetime) -> None:
    """The packing station's scans of a parcel, once per parcel and order line."""
    if not checks:
        return
    await require_orders(session, {check.order for check in checks}, "PackingVerified")
    await session.execute(
        pg_insert(kpi_pack_checks)
        .values([
            {"order_name": check.order, "package": package, "line_id": check.line_id,
             "node_id": node_id, "units_verified": check.units_verified,
             "units_refused": check.units_refused, "verify_time": verify_time}
            for check in checks
        ])
        .on_conflict_do_nothing()
    )
    await refresh(session, {check.order for check in checks})


# --- Queries ---------------------------------------------------------------------------------

# The orders asked for, one row each: the population of every figure. `place_time` is the
# index the range uses; an empty `channels` means every channel.
_FACTS = """
WITH facts AS (
  SELECT date_trunc(:field, place_time, 'UTC') AS period, channel, order_name,
         customer_key, currency_code, place_time, promise_time, shipped_time, delivered_time,
         units_ordered, units_cancelled, units_ordered - units_cancelled AS sold,
         units_shipped, packages, ship_nodes, units_returned, units_returned_wrong_item,
         units_pack_verified, units_pack_refused,
         amount_ordered - amount_cancelled AS sales, amount_refunded
  FROM kpi_orders
  WHERE place_time >= :start AND place_time < :end
    AND (cardinality(CAST(:channels AS text[])) = 0
         OR channel = ANY(CAST(:channels AS text[])))
)
"""

# The entries of each breakdown, as grouping sets: the total of a period is grouped by the
# period alone, so its distinct customers and percentiles are those of all its orders.
# (grouping sets, the entry's channel, the order of the entries)
_SETS = {
    Breakdown.BOTH: ("GROUPING SETS ((period{extra}), (period, channel{extra}))",
                     "COALESCE(channel, '')", "period, GROUPING(channel) DESC, channel"),
    Breakdown.TOTAL: ("GROUPING SETS ((period{extra}))", "''", "period"),
    Breakdown.CHANNEL: ("GROUPING SETS ((period, channel{extra}))", "channel",
                        "period, channel"),
}


def _epoch(later: str, earlier: str) -> str:
    return f"EXTRACT(epoch FROM {later} - {earlier})"


def _mean_p90(later: str, earlier: str, name: str) -> str:
    seconds = _epoch(later, earlier)
    return (f"AVG({seconds}) AS {name}_mean, "
            f"percentile_cont(0.9) WITHIN GROUP (ORDER BY {seconds}) AS {name}_p90")


def _main(breakdown: Breakdown) -> Any:
    sets, channel, order = _SETS[breakdown]
    return text(_FACTS + f"""
SELECT period, {channel} AS channel,
  COUNT(*) AS orders_placed,
  COUNT(*) FILTER (WHERE sold > 0) AS orders,
  SUM(units_ordered) AS units_ordered,
  SUM(units_cancelled) AS units_cancelled,
  SUM(sold) AS units_sold,
  COUNT(*) FILTER (WHERE sold = 0) AS orders_cancelled,
  SUM(units_shipped) AS units_shipped,
  COUNT(*) FILTER (WHERE units_cancelled = 0 AND units_shipped >= units_ordered)
    AS orders_shipped_complete,
  COUNT(*) FILTER (WHERE sold > 0 AND packages > 0) AS orders_shipped,
  COUNT(*) FILTER (WHERE sold > 0 AND (packages > 1 OR ship_nodes > 1)) AS orders_split,
  COUNT(*) FILTER (WHERE sold > 0 AND promise_time IS NOT NULL
                     AND (promise_time <= :now
                          OR (units_cancelled = 0 AND delivered_time IS NOT NULL)))
    AS orders_due,
  COUNT(*) FILTER (WHERE sold > 0 AND units_cancelled = 0
                     AND delivered_time <= promise_time) AS orders_on_time_in_full,
  COUNT(shipped_time) AS orders_fully_shipped,
  COUNT(delivered_time) AS orders_delivered,
  COUNT(*) FILTER (WHERE units_returned > 0) AS orders_returned,
  COUNT(*) FILTER (WHERE units_returned_wrong_item > 0) AS orders_wrong_item,
  COUNT(DISTINCT customer_key) FILTER (WHERE sold > 0) AS customers,
  SUM(units_pack_verified) AS units_pack_verified,
  SUM(units_pack_refused) AS units_pack_refused,
  {_mean_p90("delivered_time", "place_time", "lead")},
  {_mean_p90("shipped_time", "place_time", "to_ship")},
  {_mean_p90("delivered_time", "shipped_time", "to_deliver")}
FROM facts
GROUP BY {sets.format(extra="")}
ORDER BY {order}
LIMIT :limit
""")


def _by(breakdown: Breakdown, join: str, key: str, columns: str) -> Any:
    sets, channel, _ = _SETS[breakdown]
    return text(_FACTS + f"""
SELECT period, {channel} AS channel, {key}, {columns}
FROM facts {join}
GROUP BY {sets.format(extra=", " + key)}
""")


_STATEMENTS = {
    breakdown: (
        _main(breakdown),
        _by(breakdown, "JOIN kpi_returns AS r USING (order_name)", "r.reason",
            "SUM(r.units) AS units"),
        _by(breakdown, "", "currency_code",
            "COUNT(*) FILTER (WHERE sold > 0) AS orders, SUM(sales) AS sales, "
            "SUM(amount_refunded) AS refunded"),
        _by(breakdown, "JOIN kpi_cancellations AS x USING (order_name)", "x.reason",
            "COUNT(DISTINCT order_name) AS orders, SUM(x.quantity) AS units"),
    )
    for breakdown in Breakdown
}


async def order_kpis(
    session: AsyncSession,
    *,
    start: datetime,
    end: datetime,
    granularity: Granularity,
    channels: Sequence[str] = (),
    breakdown: Breakdown = Breakdown.BOTH,
    limit: int,
    now: datetime | None = None,
) -> list[PeriodKpis]:
    """The KPIs of the orders placed in ``[start, end)``, by UTC period: the total of the
    ``channels`` (all when empty) and/or one entry per channel, as ``breakdown`` says.

    Four aggregate statements over the read model, each over the same orders and the same
    grouping sets: per-order figures, returned units by reason, money by currency, and
    cancelled units by reason. When there are more than ``limit`` entries, only the first
    statement runs and ``limit + 1`` of them are returned, bare: too many to answer.
    """
    params = {"field": granularity.value, "start": start, "end": end,
              "channels": list(channels), "now": now or datetime.now(UTC), "limit": limit + 1}
    main, returns, money, cancellations = _STATEMENTS[breakdown]
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

    rows = (await session.execute(main, params)).all()
    if len(rows) > limit:
        return [entry(row) for row in rows]
    for row in rows:
        kpis = entry(row)
        for name in ("orders_placed", "orders", "units_ordered", "units_cancelled",
                     "units_sold", "orders_cancelled", "units_shipped",
                     "orders_shipped_complete", "orders_shipped", "orders_split", "orders_due",
                     "orders_on_time_in_full", "orders_fully_shipped", "orders_delivered",
                     "orders_returned", "orders_wrong_item", "customers",
                     "units_pack_verified", "units_pack_refused"):
            setattr(kpis, name, int(getattr(row, name) or 0))
        kpis.lead_time_mean = seconds_stat(row.lead_mean)
        kpis.lead_time_p90 = seconds_stat(row.lead_p90)
        kpis.order_to_ship_mean = seconds_stat(row.to_ship_mean)
        kpis.order_to_ship_p90 = seconds_stat(row.to_ship_p90)
        kpis.ship_to_delivery_mean = seconds_stat(row.to_deliver_mean)
        kpis.ship_to_delivery_p90 = seconds_stat(row.to_deliver_p90)
    for row in await session.execute(returns, params):
        if (row.period, row.channel) in figures:
            entry(row).units_returned_by_reason[Reason[row.reason]] = int(row.units)
    for kpis in figures.values():
        kpis.units_returned_by_reason = dict(
            sorted(kpis.units_returned_by_reason.items(), key=lambda item: item[0].value))
    for row in await session.execute(money, params):
        if (row.period, row.channel) in figures:
            entry(row).currencies[row.currency_code] = CurrencyFigures(
                orders=int(row.orders), sales=Decimal(row.sales),
                refunded=Decimal(row.refunded))
    reasons: dict[tuple[datetime, str], list[CancelledUnits]] = {}
    for row in await session.execute(cancellations, params):
        reasons.setdefault((row.period, row.channel), []).append(
            CancelledUnits(row.reason, int(row.orders), int(row.units)))
    for key, found in reasons.items():
        if key in figures:
            figures[key].cancellations_by_reason = top_reasons(found)
    return list(figures.values())
