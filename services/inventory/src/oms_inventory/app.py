"""The inventory service as the platform runs it, wired from its capabilities (catalogue,
stock, allocation): the servicer, the subscriptions, the background sweeps, the migrations."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import grpc
import structlog
from oms.fulfilment.v1 import events_pb2 as fulfilment_events
from oms.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from oms.orders.v1 import events_pb2 as order_events
from oms.returns.v1 import events_pb2 as returns_events
from oms_platform.consumer import Subscription
from oms_platform.service import Runtime, ServiceDefinition
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_inventory.allocation.api import AllocationApi
from oms_inventory.allocation.handlers import (
    expire_due,
    on_order_cancelled,
    on_order_created,
    on_order_paid,
    on_orders_created,
    on_package_shipped,
    on_pick_shorted,
    on_return_received,
    sweep_backorders,
)
from oms_inventory.catalogue.api import CatalogueApi
from oms_inventory.settings import InventorySettings
from oms_inventory.stock.api import StockApi
from oms_inventory.tables import SOURCE, metadata

__all__ = ["DEFINITION", "MIGRATIONS", "SOURCE", "InventoryServicer", "definition"]

log = structlog.get_logger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


class InventoryServicer(CatalogueApi, StockApi, AllocationApi,
                        inventory_pb2_grpc.InventoryServiceServicer):
    """The gRPC service: each capability's RPCs, sharing the sessions and the settings."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession],
                 settings: InventorySettings) -> None:
        self._sessions = sessions
        self._settings = settings


def definition(settings: InventorySettings) -> ServiceDefinition:
    """The service with these settings; everything it runs is handed them."""

    def register(server: grpc.aio.Server, runtime: Runtime) -> list[str]:
        inventory_pb2_grpc.add_InventoryServiceServicer_to_server(
            InventoryServicer(runtime.sessions, settings), server
        )
        return [inventory_pb2.DESCRIPTOR.services_by_name["InventoryService"].full_name]

    def subscriptions(runtime: Runtime) -> Sequence[Subscription]:
        return [
            Subscription(order_events.OrderCreated, partial(on_order_created, settings=settings),
                         batch_handler=partial(on_orders_created, settings=settings)),
            Subscription(order_events.OrderPaid, partial(on_order_paid, settings=settings)),
            Subscription(order_events.OrderCancelled,
                         partial(on_order_cancelled, settings=settings)),
            Subscription(fulfilment_events.PackageShipped,
                         partial(on_package_shipped, settings=settings)),
            Subscription(fulfilment_events.PickShorted,
                         partial(on_pick_shorted, settings=settings)),
            Subscription(returns_events.ReturnReceived,
                         partial(on_return_received, settings=settings)),
        ]

    async def expire_reservations(runtime: Runtime) -> None:
        """Releases the reservations of unpaid orders past their payment due time."""
        while True:
            try:
                while True:
                    async with runtime.sessions.begin() as session:
                        expired = await expire_due(session, settings)
                    if expired < settings.expiry_batch_size:
                        break
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("reservation expiry failed, retrying", error=repr(error))
            await asyncio.sleep(settings.expiry_interval_seconds)

    async def sweep_waiting_backorders(runtime: Runtime) -> None:
        """Serves backorders that stock movements could not or left for later (see
        ``sweep_backorders``): pass after pass, each bounded and its own transaction, while
        passes serve something."""
        while True:
            await asyncio.sleep(settings.backorder_sweep_interval_seconds)
            try:
                served = True
                while served:
                    async with runtime.sessions.begin() as session:
                        served = bool(await sweep_backorders(session, settings))
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("backorder sweep failed, retrying", error=repr(error))

    return ServiceDefinition(
        name="inventory",
        metadata=metadata,
        register=register,
        subscriptions=subscriptions,
        background=(expire_reservations, sweep_waiting_backorders),
    )


# Read once, when the service starts: a misspelt setting stops the start-up, not the first order.
DEFINITION = definition(InventorySettings())
