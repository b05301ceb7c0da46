"""The returns service as the platform runs it, wired from its capabilities: the servicer,
the migrations."""

from __future__ import annotations

from pathlib import Path

import grpc
from oms.returns.v1 import returns_pb2, returns_pb2_grpc
from oms_platform.service import Runtime, ServiceDefinition
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_returns.policies.api import PoliciesApi
from oms_returns.settings import ReturnsSettings
from oms_returns.tables import SOURCE, metadata

__all__ = ["DEFINITION", "MIGRATIONS", "SOURCE", "ReturnsServicer", "definition"]

MIGRATIONS = Path(__file__).parent / "migrations"


class ReturnsServicer(PoliciesApi, returns_pb2_grpc.ReturnsServiceServicer):
    """The gRPC service: each capability's RPCs, sharing the sessions and the settings."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession],
                 settings: ReturnsSettings) -> None:
        self._sessions = sessions
        self._settings = settings


def definition(settings: ReturnsSettings) -> ServiceDefinition:
    """The service with these settings; everything it runs is handed them."""

    def register(server: grpc.aio.Server, runtime: Runtime) -> list[str]:
        returns_pb2_grpc.add_ReturnsServiceServicer_to_server(
            ReturnsServicer(runtime.sessions, settings), server)
        return [returns_pb2.DESCRIPTOR.services_by_name["ReturnsService"].full_name]

    return ServiceDefinition(name="returns", metadata=metadata, register=register)


# Read once, when the service starts: a misspelt setting stops the start-up, not the first
# return.
DEFINITION = definition(ReturnsSettings())
