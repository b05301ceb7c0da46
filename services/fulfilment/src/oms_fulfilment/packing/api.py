"""Packing's gRPC methods: StartPacking, GetPackage, ScanUnit, SealPackage,
GetPackingSlip and GetPickListPackingSlips."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import grpc
from oms.fulfilment.v1 import fulfilment_pb2
from oms_platform import lists
from oms_platform.errors import FailedPrecondition, InvalidArgument, NotFound, Violations
from oms_platform.money import Money
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_fulfilment.cartonisation import domain as cartonisation
from oms_fulfilment.documents import domain as documents
from oms_fulfilment.fulfilment_orders import domain as orders_domain
from oms_fulfilment.fulfilment_orders import store as orders_store
from oms_fulfilment.fulfilment_orders.convert import address_of
from oms_fulfilment.packing import convert, domain, store
from oms_fulfilment.picking.api import parse_list_name
from oms_fulfilment.settings import FulfilmentSettings
from oms_fulfilment.tables import add_events, fulfilment_products, pick_lists

MAX_STATION = 100

# Releases carry no prices, so a slip printed here lists what is in the parcel without them
# (a gift slip's layout); the amount below is never printed.
UNPRICED = Money.of("EUR", 0)


class PackingApi:
    _sessions: async_sessionmaker[AsyncSession]
    _settings: FulfilmentSettings

    async def try_hand_off(self, package: store.Package) -> store.Package: ...

    def _boxes(self, node_id: str) -> list[cartonisation.Box]:
        return [cartonisation.Box(b.code, b.length_mm, b.width_mm, b.height_mm, b.weight_g,
                           b.max_weight_g) for b in self._settings.boxes_at(node_id)]

    async def StartPacking(
        self, request: fulfilment_pb2.StartPackingRequest, context: grpc.aio.ServicerContext,
    ) -> fulfilment_pb2.StartPackingResponse:
        v = Violations()
        order_id = None
        try:
            order_id = orders_domain.parse_name(request.fulfilment_order, "fulfilment_order")
        except InvalidArgument as error:
            v.items.extend(error.violations)
        v.require(len(request.station) <= MAX_STATION
                  and lists.is_storable_text(request.station), "station",
                  f"at most {MAX_STATION} characters")
        v.raise_if_any()
        assert order_id is not None
        now = datetime.now(UTC)
        async with self._sessions.begin() as session:
            order = await store.lock_order(session, order_id)
            if order is None:
                raise NotFound(f"{request.fulfilment_order} not found")
            found = store.live(await store.load(session, order_id))
            if not found:
                if order.status != orders_domain.Status.PICKED.value:
                    raise FailedPrecondition(
                        f"{request.fulfilment_order} is {order.status}, not picked",
                        reason="NOT_PICKED")
                shipped = await orders_store.shipped_units(session, [order_id])
                lines, gtins, unknown = await store.pack_lines(
                    session, order_id, {line: n for (_, line), n in shipped.items()})
                if unknown:
                    raise FailedPrecondition(
                        "the product master has no size or weight for " + ", ".join(unknown),
                        reason="PRODUCT_UNKNOWN")
                units = sum(line.quantity for line in lines)
                if units > cartonisation.MAX_CARTON_UNITS:
                    raise FailedPrecondition(
                        f"{units} units: packing takes at most {cartonisation.MAX_CARTON_UNITS} "
                        "per fulfilment order", reason="TOO_MANY_UNITS")
                parcels = cartonisation.cartonise(lines, self._boxes(order.node_id))
                await store.create_packages(session, order, parcels, gtins, request.station,
                                            now)
                await store.follow_packages(session, order_id, now)
                found = store.live(await store.load(session, order_id))
        return fulfilment_pb2.StartPackingResponse(
            packages=[convert.package_to_proto(p) for p in found])

    async def _package(self, session: AsyncSession, name: str, field: str = "name", *,
                       for_update: bool = False) -> store.Package:
        order_id, package_id = convert.parse_package_name(name, field)
        found = await store.load(session, order_id, package_id, for_update=for_update)
        if not found:
            raise NotFound(f"{name} not found")
        return found[0]

    async def GetPackage(
        self, request: fulfilment_pb2.GetPackageRequest, context: grpc.aio.ServicerContext,
    ) -> fulfilment_pb2.Package:
        async with self._sessions.begin() as session:
            package = await self._package(session, request.name)
        return convert.package_to_proto(package)

    async def ScanUnit(
        self, request: fulfilment_pb2.ScanUnitRequest, context: grpc.aio.ServicerContext,
    ) -> fulfilment_pb2.ScanUnitResponse:
        v = Violations()
        try:
            convert.parse_package_name(request.package, "package")
        except InvalidArgument as error:
            v.items.extend(error.violations)
        code = request.code.strip()
        v.require(0 < len(code) <= domain.MAX_CODE_LENGTH
                  and lists.is_storable_text(code), "code",
                  f"must be 1 to {domain.MAX_CODE_LENGTH} characters")
        v.require(bool(request.line_id) == bool(request.order), "order",
                  "the selected line needs both order and line_id")
        v.raise_if_any()
        for_line = (request.order, request.line_id) if request.line_id else None
        now = datetime.now(UTC)
        async with self._sessions.begin() as session:
            package = await self._package(session, request.package, "package",
                                          for_update=True)
            scans, result = package.scans().scan(request.code, for_line=for_line)
            await store.save_scans(session, package, scans, now)
            (package,) = await store.load(session, package.row.fulfilment_order_id,
                                          package.row.id)
        return fulfilment_pb2.ScanUnitResponse(
            accepted=result.accepted,
            refusal=convert.REFUSALS.get(result.reason, 0)  # type: ignore[arg-type]
            if result.reason else 0,
            line_id=result.line[1] if result.line else "", units_missing=result.units_missing,
            package=convert.package_to_proto(package))

    async def _seal(self, name: str) -> store.Package:
        now = datetime.now(UTC)
        async with self._sessions.begin() as session:
            package = await self._package(session, name, for_update=True)
            if package.status is domain.PackageStatus.PACKING:
                scans, tally = package.scans().seal()
                await store.save_scans(session, package, scans, now,
                                       status=domain.PackageStatus.SEALED, seal_time=now)
                event = convert.packing_verified(package, tally, now)
                await add_events(session, [(event, event.package, package.row.node_id)])
                await store.follow_packages(session, package.row.fulfilment_order_id, now)
                (package,) = await store.load(session, package.row.fulfilment_order_id,
                                              package.row.id)
        return package

    async def SealPackage(
        self, request: fulfilment_pb2.SealPackageRequest, context: grpc.aio.ServicerContext,
    ) -> fulfilment_pb2.Package:
        package = await self._seal(request.name)
        if package.status is domain.PackageStatus.SEALED:
            package = await self.try_hand_off(package)
        return convert.package_to_proto(package)

    async def GetPackingSlip(
        self, request: fulfilment_pb2.GetPackingSlipRequest,
        context: grpc.aio.ServicerContext,
    ) -> fulfilment_pb2.PackingSlip:
        async with self._sessions.begin() as session:
            package = await self._package(session, request.package, "package")
            (order,) = await orders_store.load(session, [package.row.fulfilment_order_id])
            titles = await _titles(session, [package])
        return fulfilment_pb2.PackingSlip(
            package=request.package, content_type="application/pdf",
            content=documents.packing_slip_pdf(_slip(package, order.row, titles)),
            packages=[request.package])

    async def GetPickListPackingSlips(
        self, request: fulfilment_pb2.GetPickListPackingSlipsRequest,
        context: grpc.aio.ServicerContext,
    ) -> fulfilment_pb2.PackingSlip:
        list_id = parse_list_name(request.pick_list, "pick_list")
        async with self._sessions.begin() as session:
            listed = await session.scalar(select(pick_lists.c.fulfilment_orders).where(
                pick_lists.c.id == list_id))
            if listed is None:
                raise NotFound(f"{request.pick_list} not found")
            orders = {o.row.id: o.row for o in await orders_store.load(session, listed)}
            found = [p for order_id in listed
                     for p in store.live(await store.load(session, order_id))]
            titles = await _titles(session, found)
        if not found:
            raise FailedPrecondition(f"no order of {request.pick_list} is packed yet",
                                     reason="NOT_PACKED")
        if len(found) > documents.MAX_SLIPS:
            raise FailedPrecondition(
                f"{len(found)} packages: at most {documents.MAX_SLIPS} slips print at once",
                reason="TOO_MANY_SLIPS")
        slips = [_slip(p, orders[p.row.fulfilment_order_id], titles) for p in found]
        return fulfilment_pb2.PackingSlip(
            content_type="application/pdf", content=documents.packing_slips_pdf(slips),
            packages=[convert.package_name(p.row.fulfilment_order_id, p.row.id)
                      for p in found])


async def _titles(session: AsyncSession, found: list[store.Package]) -> dict[str, str]:
    skus = {line.sku for package in found for line in package.lines}
    return dict((await session.execute(
        select(fulfilment_products.c.sku, fulfilment_products.c.title).where(
            fulfilment_products.c.sku.in_(skus)))).all())  # type: ignore[arg-type]


def _slip(package: store.Package, order: Any, titles: dict[str, str]) -> documents.PackingSlip:
    """A package's slip: what is in it, for whom, without prices (releases carry none)."""
    address = address_of(order.shipping_address)
    return documents.PackingSlip(
        channel=order.channel,
        order_number=order.external_order_id or order.order_name,
        package=convert.package_name(package.row.fulfilment_order_id, package.row.id),
        ship_to=documents.Address(
            address.recipient or address.organization, tuple(address.address_lines),
            address.locality, address.postal_code, address.region_code,
            address.administrative_area),
        lines=tuple(documents.SlipLine(line.sku, titles.get(line.sku, line.sku),
                                       line.quantity, UNPRICED)
                    for line in package.lines),
        gift_note=order.gift_note, show_prices=False,
        order_date=order.release_time.date().isoformat())
