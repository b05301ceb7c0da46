"""The fulfilment service as the platform runs it, wired from its capabilities: the servicer,
the subscriptions, the migrations."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import grpc
from oms.fulfilment.v1 import fulfilment_pb2, fulfilment_pb2_grpc
from oms_platform.consumer import Subscription
from oms_platform.service import Runtime, ServiceDefinition
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_fulfilment.settings import FulfilmentSettings
from oms_fulfilment.tables import SOURCE, metadata

__all__ = ["DEFINITION", "MIGRATIONS", "SOURCE", "FulfilmentServicer", "definition"]

MIGRATIONS = Path(__file__).parent / "migrations"


class FulfilmentServicer(fulfilment_pb2_grpc.FulfilmentServiceServicer):
    """The gRPC service: each capability's RPCs, sharing the sessions and the settings."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession],
                 settings: FulfilmentSettings) -> None:
        self._sessions = sessions
        self._settings = settings


def definition(settings: FulfilmentSettings) -> ServiceDefinition:
    """The service with these settings; everything it runs is handed them."""

    def register(server: grpc.aio.Server, runtime: Runtime) -> list[str]:
        fulfilment_pb2_grpc.add_FulfilmentServiceServicer_to_server(
            FulfilmentServicer(runtime.sessions, settings), server
        )
        return [fulfilment_pb2.DESCRIPTOR.services_by_name["FulfilmentService"].full_name]

    def subscriptions(runtime: Runtime) -> Sequence[Subscription]:
        return []

    return ServiceDefinition(
        name="fulfilment",
        metadata=metadata,
        register=register,
        subscriptions=subscriptions,
    )


# Read once, when the service starts: a misspelt setting stops the start-up, not the first pick.
DEFINITION = definition(FulfilmentSettings())
