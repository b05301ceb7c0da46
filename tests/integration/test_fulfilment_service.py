"""The fulfilment service as the platform runs it: migrated, serving, healthy."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from oms_devtools.inprocess import running_service
from oms_devtools.testkit import eventually
from oms_fulfilment.app import MIGRATIONS, definition
from oms_fulfilment.settings import FulfilmentSettings


async def test_the_service_migrates_starts_and_reports_serving(
    database_factory, nats_url: str  # type: ignore[no-untyped-def]
) -> None:
    async with running_service(definition(FulfilmentSettings()), MIGRATIONS,
                               database_url=database_factory("fulfilment"),
                               nats_url=nats_url) as service:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.bound_port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for name in ("", "oms.fulfilment.v1.FulfilmentService"):
                await eventually(
                    lambda name=name: health.Check(health_pb2.HealthCheckRequest(service=name)),
                    until=lambda reply: reply.status == health_pb2.HealthCheckResponse.SERVING,
                    what=f"{name or 'overall'} health to be SERVING")
