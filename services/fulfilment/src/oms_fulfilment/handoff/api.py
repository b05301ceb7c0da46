"""The hand-off's gRPC method, ShipPackage, and the hand-off SealPackage tries after a
seal.

The label is bought outside any transaction (a carrier call must not hold a row lock), then
the package is marked shipped and `PackageShipped` written to the outbox in one transaction.
Shipping's purchase is idempotent by the package's id, so a process that dies between the
two, or a twin call racing this one, buys the same label again at no cost and the second
writer finds the package shipped. There is no background retry: a package whose purchase
failed stays sealed with its `hand_off_error`, listed on the floor, and is retried by
ShipPackage (the packer's "print label" button) or by sealing it again."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
import structlog
from oms.fulfilment.v1 import fulfilment_pb2
from oms_platform.errors import DomainError, FailedPrecondition, NotFound
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_fulfilment.fulfilment_orders import store as orders_store
from oms_fulfilment.handoff import convert
from oms_fulfilment.handoff.client import LabelRefused, Shipping, ShippingUnavailable
from oms_fulfilment.packing import convert as packing_convert
from oms_fulfilment.packing import domain, store
from oms_fulfilment.tables import add_events

log = structlog.get_logger(__name__)


class HandOffApi:
    _sessions: async_sessionmaker[AsyncSession]
    _shipping: Shipping

    async def _load(self, session: AsyncSession, name: str, *, for_update: bool = False
                    ) -> store.Package:
        order_id, package_id = packing_convert.parse_package_name(name)
        found = await store.load(session, order_id, package_id, for_update=for_update)
        if not found:
            raise NotFound(f"{name} not found")
        return found[0]

    async def hand_off(self, name: str) -> store.Package:
        """Buys the package's label and ships it; raises LabelRefused or
        ShippingUnavailable after recording why on the package."""
        async with self._sessions.begin() as session:
            package = await self._load(session, name)
            if package.status is domain.PackageStatus.SHIPPED:
                return package
            if package.status is domain.PackageStatus.CANCELLED:
                raise FailedPrecondition(f"{name} is cancelled; it never ships",
                                         reason="PACKAGE_CANCELLED")
            if package.status is not domain.PackageStatus.SEALED:
                raise FailedPrecondition(f"{name} is not sealed yet", reason="NOT_SEALED")
            (order,) = await orders_store.load(session, [package.row.fulfilment_order_id])
        request = convert.label_request(package, order.row)
        try:
            label = await self._shipping.create_label(request)
        except (LabelRefused, ShippingUnavailable) as error:
            async with self._sessions.begin() as session:
                await store.record_hand_off(session, package.row.id, datetime.now(UTC),
                                            hand_off_error=str(error)[:1000])
            log.warning("label purchase failed", package=name, error=str(error))
            raise
        now = datetime.now(UTC)
        async with self._sessions.begin() as session:
            package = await self._load(session, name, for_update=True)
            if package.status is domain.PackageStatus.SHIPPED:
                return package
            if package.status is domain.PackageStatus.CANCELLED:
                # Cancelled while its label was being bought: the label is kept on it for
                # the void sweep, and the parcel never ships.
                await store.record_hand_off(session, package.row.id, now, label=label.name,
                                            void_pending=True)
            else:
                await store.record_hand_off(
                    session, package.row.id, now, status=domain.PackageStatus.SHIPPED.value,
                    carrier=label.carrier, carrier_service=label.service_code,
                    tracking_number=label.tracking_number, tracking_url=label.tracking_url,
                    label=label.name, ship_time=now, hand_off_error="")
                event = convert.package_shipped(package, label, now)
                await add_events(session, [(event, event.package, package.row.node_id)])
                await store.follow_packages(session, package.row.fulfilment_order_id, now)
                package = await self._load(session, name)
        if package.status is domain.PackageStatus.CANCELLED:
            log.warning("label bought for a cancelled package, to void", package=name,
                        label=label.name)
            raise FailedPrecondition(f"{name} was cancelled; its label is voided",
                                     reason="PACKAGE_CANCELLED")
        log.info("package shipped", package=name, tracking_number=label.tracking_number)
        return package

    async def ShipPackage(
        self, request: fulfilment_pb2.ShipPackageRequest, context: grpc.aio.ServicerContext,
    ) -> fulfilment_pb2.Package:
        return packing_convert.package_to_proto(await self.hand_off(request.name))

    async def try_hand_off(self, package: store.Package) -> store.Package:
        """The hand-off after a seal: a failure leaves the package sealed (its error
        recorded), which the caller returns as it is."""
        name = packing_convert.package_name(package.row.fulfilment_order_id, package.row.id)
        try:
            return await self.hand_off(name)
        except DomainError:
            async with self._sessions.begin() as session:
                return await self._load(session, name)
