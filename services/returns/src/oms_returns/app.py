"""The returns service as the platform runs it, wired from its capabilities: the servicer,
the migrations."""

from __future__ import annotations

from pathlib import Path

import grpc
from oms.returns.v1 import returns_pb2, returns_pb2_grpc
from oms_platform.service import Runtime, ServiceDefinition
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_returns.labels.api import LabelsApi
from oms_returns.labels.client import Shipping
from oms_returns.policies.api import PoliciesApi
from oms_returns.return_requests.api import ReturnRequestsApi
from oms_returns.return_requests.client import Orders
from oms_returns.settings import ReturnsSettings
from oms_returns.tables import SOURCE, metadata

__all__ = ["DEFINITION", "MIGRATIONS", "SOURCE", "ReturnsServicer", "definition"]

MIGRATIONS = Path(__file__).parent / "migrations"


class ReturnsServicer(PoliciesApi, ReturnRequestsApi, LabelsApi,
                      returns_pb2_grpc.ReturnsServiceServicer):
    """The gRPC service: each capability's RPCs, sharing the sessions, the settings and the
    clients of orders and shipping."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: ReturnsSettings,
                 orders: Orders, shipping: Shipping) -> None:
        self._sessions = sessions
        self._settings = settings
        self._orders = orders
        self._shipping = shipping


def definition(settings: ReturnsSettings) -> ServiceDefinition:
    """The service with these settings; everything it runs is handed them."""
    orders = Orders(settings.orders_target, timeout=settings.orders_timeout_seconds)
    shipping = Shipping(settings.shipping_target, timeout=settings.shipping_timeout_seconds)

    def register(server: grpc.aio.Server, runtime: Runtime) -> list[str]:
        returns_pb2_grpc.add_ReturnsServiceServicer_to_server(
            ReturnsServicer(runtime.sessions, settings, orders, shipping), server)
        return [returns_pb2.DESCRIPTOR.services_by_name["ReturnsService"].full_name]

    return ServiceDefinition(name="returns", metadata=metadata, register=register)


# Read once, when the service starts: a misspelt setting stops the start-up, not the first
# return.
DEFINITION = definition(ReturnsSettings())
