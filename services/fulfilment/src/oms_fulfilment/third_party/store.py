"""The SQL of the hand-off: the products a request describes, the reports by request id,
and an applied report written back (lines shipped and short, packages that left, the step
reached). Every function runs in the caller's transaction; none builds protos."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from oms_fulfilment.packing.domain import PackageStatus
from oms_fulfilment.tables import (
    fulfilment_order_lines,
    fulfilment_orders,
    fulfilment_products,
    package_lines,
    packages,
    third_party_reports,
)
from oms_fulfilment.third_party import domain


async def products(session: AsyncSession, skus: Iterable[str]) -> dict[str, tuple[str, str]]:
    """(title, GTIN) of the SKUs the product replica knows."""
    rows = await session.execute(
        select(fulfilment_products.c.sku, fulfilment_products.c.title,
               fulfilment_products.c.gtin).where(fulfilment_products.c.sku.in_(set(skus))))
    return {sku: (title, gtin) for sku, title, gtin in rows}


async def lock(session: AsyncSession, order_id: uuid.UUID) -> Any | None:
    """The fulfilment order's row, locked, its lines first: reports are applied one at a
    time, so a retried report waits for its twin and then finds it, and a cancellation
    (which locks the lines, then writes the order) never interleaves with one."""
    await session.execute(select(fulfilment_order_lines.c.line_id).where(
        fulfilment_order_lines.c.fulfilment_order_id == order_id).with_for_update())
    return (await session.execute(select(fulfilment_orders).where(
        fulfilment_orders.c.id == order_id).with_for_update())).one_or_none()


async def report(session: AsyncSession, node_id: str, request_id: str) -> Any | None:
    return (await session.execute(select(third_party_reports).where(
        third_party_reports.c.node_id == node_id,
        third_party_reports.c.request_id == request_id))).one_or_none()


def lines_of(rows: Sequence[Any]) -> list[domain.Line]:
    """A 3PL's lines: its shipped units are kept as picked (picked and gone at once)."""
    return [domain.Line(row.line_id, row.quantity, shipped=row.picked, short=row.short,
                        cancelled=row.cancelled) for row in rows]


async def record(session: AsyncSession, row: Any, lines: Mapping[str, Any], *,
                 request_id: str, outcome: domain.Outcome, short_reason: str | None,
                 when: datetime, now: datetime) -> list[tuple[uuid.UUID, domain.Shipment]]:
    """Writes an applied report; the packages it shipped, with their ids."""
    progress = domain.furthest(domain.Progress(row.third_party_progress or "REQUESTED"),
                               outcome)
    await session.execute(third_party_reports.insert().values(
        node_id=row.node_id, request_id=request_id, fulfilment_order_id=row.id,
        progress=outcome.progress.value, report_time=when, create_time=now))
    shipped: dict[str, int] = {}
    for shipment in outcome.shipments:
        for line_id, units in shipment.units:
            shipped[line_id] = shipped.get(line_id, 0) + units
    lines_t = fulfilment_order_lines
    for line_id in sorted(set(shipped) | set(outcome.shorts)):
        values: dict[str, Any] = {"picked": lines_t.c.picked + shipped.get(line_id, 0),
                                  "short": lines_t.c.short + outcome.shorts.get(line_id, 0)}
        if outcome.shorts.get(line_id):
            values["short_reason"] = short_reason
        await session.execute(update(lines_t).where(
            lines_t.c.fulfilment_order_id == row.id, lines_t.c.line_id == line_id)
            .values(**values))
    created = await _shipped_packages(session, row, lines, outcome.shipments, when, now)
    await session.execute(update(fulfilment_orders).where(fulfilment_orders.c.id == row.id)
                          .values(third_party_progress=progress.value, update_time=now))
    return created


async def _shipped_packages(session: AsyncSession, row: Any, lines: Mapping[str, Any],
                            shipments: Sequence[domain.Shipment], when: datetime,
                            now: datetime) -> list[tuple[uuid.UUID, domain.Shipment]]:
    """A package per shipment, shipped already: the node's box and weight are not ours to
    know, so they are left at zero."""
    first = len((await session.scalars(select(packages.c.id).where(
        packages.c.fulfilment_order_id == row.id))).all())
    created = []
    for position, shipment in enumerate(shipments, start=first):
        package_id = uuid.uuid4()
        await session.execute(packages.insert().values(
            id=package_id, fulfilment_order_id=row.id, position=position,
            node_id=row.node_id, status=PackageStatus.SHIPPED.value, box_code="",
            length_mm=0, width_mm=0, height_mm=0, weight_grams=0,
            carrier=shipment.carrier, carrier_service=shipment.carrier_service,
            tracking_number=shipment.tracking_number, tracking_url=shipment.tracking_url,
            ship_time=when, create_time=now, update_time=now))
        await session.execute(package_lines.insert(), [
            {"package_id": package_id, "position": i,
             "order_name": lines[line_id].order_name, "line_id": line_id,
             "sku": lines[line_id].sku, "gtin": "", "quantity": units}
            for i, (line_id, units) in enumerate(shipment.units)])
        created.append((package_id, shipment))
    return created
