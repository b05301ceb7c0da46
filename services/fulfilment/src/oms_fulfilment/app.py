"""The fulfilment service as the platform runs it, wired from its capabilities: the servicer,
the subscriptions, the migrations."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import grpc
import structlog
from oms.fulfilment.v1 import fulfilment_pb2, fulfilment_pb2_grpc
from oms.inventory.v1 import events_pb2 as inventory_events
from oms.orders.v1 import events_pb2 as order_events
from oms_platform.consumer import Subscription
from oms_platform.service import Runtime, ServiceDefinition
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_fulfilment.catalogue.handlers import on_product_changed
from oms_fulfilment.fulfilment_orders.api import FulfilmentOrdersApi
from oms_fulfilment.fulfilment_orders.handlers import on_order_cancelled, on_order_released
from oms_fulfilment.handoff.api import HandOffApi
from oms_fulfilment.handoff.client import Shipping
from oms_fulfilment.handoff.voids import BATCH as VOID_BATCH
from oms_fulfilment.handoff.voids import void_pending
from oms_fulfilment.nodes.client import Nodes
from oms_fulfilment.packing.api import PackingApi
from oms_fulfilment.picking.api import PickingApi
from oms_fulfilment.settings import FulfilmentSettings
from oms_fulfilment.slotting.api import SlottingApi
from oms_fulfilment.tables import SOURCE, metadata
from oms_fulfilment.third_party.api import ThirdPartyApi

__all__ = ["DEFINITION", "MIGRATIONS", "SOURCE", "FulfilmentServicer", "definition"]

MIGRATIONS = Path(__file__).parent / "migrations"

log = structlog.get_logger(__name__)


class FulfilmentServicer(FulfilmentOrdersApi, SlottingApi, PickingApi, HandOffApi, PackingApi,
                         ThirdPartyApi, fulfilment_pb2_grpc.FulfilmentServiceServicer):
    """The gRPC service: each capability's RPCs, sharing the sessions and the settings."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession],
                 settings: FulfilmentSettings, nodes: Nodes, shipping: Shipping) -> None:
        self._sessions = sessions
        self._settings = settings
        self._nodes = nodes
        self._shipping = shipping


def definition(settings: FulfilmentSettings) -> ServiceDefinition:
    """The service with these settings; everything it runs is handed them."""
    nodes = Nodes(settings.inventory_target, ttl=settings.node_cache_seconds,
                  timeout=settings.inventory_timeout_seconds)
    shipping = Shipping(settings.shipping_target, timeout=settings.shipping_timeout_seconds)

    def register(server: grpc.aio.Server, runtime: Runtime) -> list[str]:
        fulfilment_pb2_grpc.add_FulfilmentServiceServicer_to_server(
            FulfilmentServicer(runtime.sessions, settings, nodes, shipping), server
        )
        return [fulfilment_pb2.DESCRIPTOR.services_by_name["FulfilmentService"].full_name]

    def subscriptions(runtime: Runtime) -> Sequence[Subscription]:
        return [
            Subscription(order_events.OrderReleased, partial(on_order_released, nodes=nodes)),
            Subscription(order_events.OrderCancelled, on_order_cancelled),
            Subscription(inventory_events.ProductChanged, on_product_changed),
        ]

    async def void_labels(runtime: Runtime) -> None:
        """Voids the labels of packages cancelled after their purchase, pass after pass
        while passes settle a full batch."""
        while True:
            await asyncio.sleep(settings.void_interval_seconds)
            try:
                while await void_pending(runtime.sessions, shipping) >= VOID_BATCH:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("label void sweep failed, retrying", error=repr(error))

    return ServiceDefinition(
        name="fulfilment",
        metadata=metadata,
        register=register,
        subscriptions=subscriptions,
        background=(void_labels,),
    )


# Read once, when the service starts: a misspelt setting stops the start-up, not the first pick.
DEFINITION = definition(FulfilmentSettings())
