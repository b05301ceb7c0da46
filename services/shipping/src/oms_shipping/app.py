"""How the shipping service is wired into the shared runtime."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import grpc
import structlog
from oms.shipping.v1 import shipping_pb2, shipping_pb2_grpc
from oms_platform.consumer import Subscription
from oms_platform.service import Runtime, ServiceDefinition
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_shipping.carrier_api.client import KarrioCarriers
from oms_shipping.carriers.api import CarriersApi
from oms_shipping.labels.api import LabelsApi
from oms_shipping.manifests.api import ManifestsApi
from oms_shipping.rating.api import RatingApi
from oms_shipping.rating.store import RatingCache
from oms_shipping.settings import KarrioSettings, ShippingSettings
from oms_shipping.tables import SOURCE, metadata
from oms_shipping.tracking.api import TrackingApi
from oms_shipping.tracking.handlers import sweep_stale

__all__ = ["DEFINITION", "MIGRATIONS", "SOURCE", "ShippingServicer", "definition"]

log = structlog.get_logger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


class ShippingServicer(CarriersApi, RatingApi, LabelsApi, ManifestsApi, TrackingApi,
                       shipping_pb2_grpc.ShippingServiceServicer):
    """The gRPC service: each capability's RPCs, sharing the sessions and the settings."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession],
                 settings: ShippingSettings, karrio: KarrioSettings | None = None,
                 carriers: KarrioCarriers | None = None) -> None:
        self._sessions = sessions
        self._settings = settings
        # The rate shop's in-memory carriers, origins, cards and rules (see RatingCache).
        self._rating = RatingCache(settings.rating_refresh_seconds)
        # Real carriers: one adapter for the process, its thread pools and the carriers'
        # caches (UPS's OAuth token) shared by every call.
        self._karrio = karrio if karrio is not None else KarrioSettings()
        self._carriers = carriers if carriers is not None else KarrioCarriers(self._karrio)


def definition(settings: ShippingSettings,
               karrio: KarrioSettings | None = None) -> ServiceDefinition:
    """The service with these settings; everything it runs is handed them. The carrier
    accounts (``OMS_SHIPPING_KARRIO_*``) are read here, once, unless given."""
    karrio = karrio if karrio is not None else KarrioSettings()
    carriers = KarrioCarriers(karrio)

    def register(server: grpc.aio.Server, runtime: Runtime) -> list[str]:
        shipping_pb2_grpc.add_ShippingServiceServicer_to_server(
            ShippingServicer(runtime.sessions, settings, karrio, carriers), server
        )
        return [shipping_pb2.DESCRIPTOR.services_by_name["ShippingService"].full_name]

    def subscriptions(runtime: Runtime) -> Sequence[Subscription]:
        return []

    async def sweep_unscanned_parcels(runtime: Runtime) -> None:
        """Parcels on their way with no scan for too long become exceptions: pass after pass,
        each bounded and its own transaction, while passes find a full batch."""
        while True:
            try:
                while True:
                    async with runtime.sessions.begin() as session:
                        seen = await sweep_stale(session, settings, datetime.now(UTC))
                    if seen < settings.stale_batch_size:
                        break
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("no-scan sweep failed, retrying", error=repr(error))
            await asyncio.sleep(settings.stale_sweep_interval_seconds)

    async def open_carriers(runtime: Runtime) -> None:
        # Karrio's plugins load in seconds: ahead of the first call, beside serving (a
        # carrier call arriving first waits for the same load), and only when an account is
        # configured; its threads are let go when the service stops.
        try:
            await carriers.open()
            await asyncio.Event().wait()
        finally:
            carriers.close()

    background: list[Callable[[Runtime], Awaitable[None]]] = [sweep_unscanned_parcels]
    if karrio.any_configured:
        background.append(open_carriers)

    return ServiceDefinition(
        name="shipping",
        metadata=metadata,
        register=register,
        subscriptions=subscriptions,
        background=background,
    )


# Read once, when the service starts: a misspelt setting stops the start-up, not the first label.
DEFINITION = definition(ShippingSettings())
