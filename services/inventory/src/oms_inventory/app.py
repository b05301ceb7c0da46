"""The inventory service as the platform runs it: servicer, subscriptions, migrations."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import grpc
from oms.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from oms.orders.v1 import events_pb2 as order_events
from oms_platform.consumer import Subscription
from oms_platform.service import Runtime, ServiceDefinition

from oms_inventory.api import InventoryServicer
from oms_inventory.handlers import SOURCE, on_order_created
from oms_inventory.tables import metadata

__all__ = ["DEFINITION", "MIGRATIONS", "SOURCE"]

MIGRATIONS = Path(__file__).parent / "migrations"


def register(server: grpc.aio.Server, runtime: Runtime) -> list[str]:
    inventory_pb2_grpc.add_InventoryServiceServicer_to_server(
        InventoryServicer(runtime.sessions), server
    )
    return [inventory_pb2.DESCRIPTOR.services_by_name["InventoryService"].full_name]


def subscriptions(runtime: Runtime) -> Sequence[Subscription]:
    return [Subscription(order_events.OrderCreated, on_order_created)]


DEFINITION = ServiceDefinition(
    name="inventory",
    metadata=metadata,
    register=register,
    subscriptions=subscriptions,
)
