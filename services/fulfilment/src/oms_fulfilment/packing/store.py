"""The SQL of packing: opening a fulfilment order's packages, reading a package with its
lines, writing back a scan, a seal and a hand-off, and the order's status after them. Every
function runs in the caller's transaction and returns rows or domain values, never protos."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from oms_fulfilment.cartonisation import domain as cartonisation
from oms_fulfilment.packing import domain
from oms_fulfilment.tables import (
    fulfilment_order_lines,
    fulfilment_orders,
    fulfilment_products,
    package_lines,
    packages,
)


@dataclass
class Package:
    row: Any
    lines: list[Any] = field(default_factory=list)

    @property
    def status(self) -> domain.PackageStatus:
        return domain.PackageStatus(self.row.status)

    def scans(self) -> domain.ParcelScans:
        """The package's scans as the domain keeps them."""
        keys = {(line.order_name, line.line_id): line for line in self.lines}
        return domain.ParcelScans(
            tuple(domain.ExpectedLine(line.order_name, line.line_id, line.sku, line.quantity,
                                      line.gtin) for line in self.lines),
            verified={k: line.verified for k, line in keys.items() if line.verified},
            refused={k: line.refused for k, line in keys.items() if line.refused},
            refusals={domain.RefusalReason(r): n for r, n in self.row.refusals.items()},
            sealed=self.status is not domain.PackageStatus.PACKING)


async def lock_order(session: AsyncSession, order_id: uuid.UUID) -> Any | None:
    """The fulfilment order's row, locked: packing it and its status change one at a time."""
    return (await session.execute(select(fulfilment_orders).where(
        fulfilment_orders.c.id == order_id).with_for_update())).one_or_none()


def live(found: list[Package]) -> list[Package]:
    """The packages that are not cancelled."""
    return [p for p in found if p.status is not domain.PackageStatus.CANCELLED]


async def pack_lines(session: AsyncSession, order_id: uuid.UUID,
                     shipped: dict[str, int] | None = None,
                     ) -> tuple[list[cartonisation.PackLine], dict[str, str], list[str]]:
    """The picked units of the order still to pack (none of them in a package that shipped,
    ``shipped`` per line id) as cartonisation takes them, each SKU's GTIN, and the SKUs
    missing from the product replica."""
    shipped = shipped or {}
    rows = (await session.execute(
        select(fulfilment_order_lines, fulfilment_products.c.gtin,
               fulfilment_products.c.length_mm, fulfilment_products.c.width_mm,
               fulfilment_products.c.height_mm, fulfilment_products.c.weight_grams,
               fulfilment_products.c.fragile,
               fulfilment_products.c.sku.label("known"))
        .outerjoin(fulfilment_products,
                   fulfilment_products.c.sku == fulfilment_order_lines.c.sku)
        .where(fulfilment_order_lines.c.fulfilment_order_id == order_id)
        .order_by(fulfilment_order_lines.c.position))).all()
    to_pack = {row.line_id: row.picked - shipped.get(row.line_id, 0) for row in rows}
    unknown = sorted({row.sku for row in rows if row.known is None and to_pack[row.line_id] > 0})
    lines = [cartonisation.PackLine(row.order_name, row.line_id, row.sku, to_pack[row.line_id],
                             row.length_mm, row.width_mm, row.height_mm, row.weight_grams,
                             row.fragile)
             for row in rows if to_pack[row.line_id] > 0 and row.known is not None]
    return lines, {row.sku: row.gtin or "" for row in rows if row.known is not None}, unknown


def _valid_gtin(code: str) -> str:
    """A replica GTIN with a bad check digit would refuse every scan of its SKU's GTIN; the
    SKU barcode still verifies it, so such a GTIN is left out."""
    return code if domain.gtin14(code) else ""


async def create_packages(session: AsyncSession, order: Any,
                          parcels: Sequence[cartonisation.Parcel], gtins: dict[str, str],
                          station: str, now: datetime) -> None:
    """Opens a package per parcel, numbered after any the order had (cancelled or shipped
    ones, when it is packed again after a cancellation)."""
    first = await session.scalar(select(func.coalesce(func.max(packages.c.position) + 1, 0))
                                 .where(packages.c.fulfilment_order_id == order.id))
    for position, parcel in enumerate(parcels, start=first or 0):
        package_id = uuid.uuid4()
        await session.execute(packages.insert().values(
            id=package_id, fulfilment_order_id=order.id, position=position,
            node_id=order.node_id, status=domain.PackageStatus.PACKING.value,
            box_code=parcel.box.code, length_mm=parcel.box.length_mm,
            width_mm=parcel.box.width_mm, height_mm=parcel.box.height_mm,
            weight_grams=parcel.weight_g, station=station, create_time=now, update_time=now))
        await session.execute(package_lines.insert(), [
            {"package_id": package_id, "position": i, "order_name": line.order,
             "line_id": line.line_id, "sku": line.sku,
             "gtin": _valid_gtin(gtins.get(line.sku, "")),
             "quantity": line.quantity}
            for i, line in enumerate(parcel.lines)])


async def load(session: AsyncSession, order_id: uuid.UUID, package_id: uuid.UUID | None = None,
               *, for_update: bool = False) -> list[Package]:
    """The order's packages (or the one) with their lines, in package order."""
    query = select(packages).where(packages.c.fulfilment_order_id == order_id)
    if package_id is not None:
        query = query.where(packages.c.id == package_id)
    if for_update:
        query = query.with_for_update()
    found = {row.id: Package(row) for row in
             await session.execute(query.order_by(packages.c.position))}
    if found:
        for row in await session.execute(select(package_lines).where(
                package_lines.c.package_id.in_(found)).order_by(package_lines.c.position)):
            found[row.package_id].lines.append(row)
    return list(found.values())


async def save_scans(session: AsyncSession, package: Package, scans: domain.ParcelScans,
                     now: datetime, *, status: domain.PackageStatus | None = None,
                     seal_time: datetime | None = None) -> None:
    for line in package.lines:
        key = (line.order_name, line.line_id)
        await session.execute(update(package_lines).where(
            package_lines.c.package_id == line.package_id,
            package_lines.c.position == line.position).values(
            verified=scans.verified.get(key, 0), refused=scans.refused.get(key, 0)))
    values: dict[str, Any] = {"refusals": {r.value: n for r, n in scans.refusals.items()},
                              "update_time": now}
    if status is not None:
        values["status"] = status.value
    if seal_time is not None:
        values["seal_time"] = seal_time
    await session.execute(update(packages).where(packages.c.id == package.row.id)
                          .values(**values))


async def record_hand_off(session: AsyncSession, package_id: uuid.UUID, now: datetime,
                          **values: Any) -> None:
    await session.execute(update(packages).where(packages.c.id == package_id)
                          .values(update_time=now, **values))


async def follow_packages(session: AsyncSession, order_id: uuid.UUID, now: datetime) -> str:
    """Sets the fulfilment order's status from its packages'; returns it."""
    statuses = (await session.scalars(select(packages.c.status).where(
        packages.c.fulfilment_order_id == order_id,
        packages.c.status != domain.PackageStatus.CANCELLED.value))).all()
    status = domain.order_status(domain.PackageStatus(s) for s in statuses)
    await session.execute(update(fulfilment_orders).where(
        fulfilment_orders.c.id == order_id, fulfilment_orders.c.status != status)
        .values(status=status, update_time=now))
    return status


async def refusals_since(session: AsyncSession, node_id: str, since: datetime) -> int:
    """Refused scans of the node's packages opened since then."""
    rows = (await session.scalars(select(packages.c.refusals).where(
        packages.c.node_id == node_id, packages.c.create_time >= since))).all()
    return sum(sum(int(n) for n in refusals.values()) for refusals in rows)

