"""What the shipping tests share: the service over real gRPC and PostgreSQL (and NATS, which
its runtime connects to), and the field violations of a refused call."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from oms.shipping.v1 import shipping_pb2_grpc
from oms_devtools.inprocess import running_service
from oms_platform.service import Service
from oms_shipping.app import MIGRATIONS, definition
from oms_shipping.settings import ShippingSettings

Stub = shipping_pb2_grpc.ShippingServiceStub


@pytest.fixture(scope="module")
def database_url(database_factory) -> str:  # type: ignore[no-untyped-def]
    return str(database_factory("shipping"))


@pytest.fixture(scope="module")
async def service(database_url: str, nats_url: str) -> AsyncIterator[Service]:
    async with running_service(definition(ShippingSettings()), MIGRATIONS,
                               database_url=database_url, nats_url=nats_url) as service:
        yield service


@pytest.fixture(scope="module")
async def stub(service: Service) -> AsyncIterator[Stub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.bound_port}") as channel:
        yield Stub(channel)


async def refused(call: object) -> tuple[grpc.StatusCode, list[tuple[str, str]]]:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call  # type: ignore[misc]
    status = rpc_status.from_call(raised.value)
    violations: list[tuple[str, str]] = []
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            violations += [(v.field, v.description) for v in bad_request.field_violations]
    return raised.value.code(), violations
