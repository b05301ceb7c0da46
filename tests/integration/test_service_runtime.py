"""The runtime every service shares: health that follows readiness, reflection, SIGTERM."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from nats.js.api import DiscardPolicy
from oms.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from oms_devtools.inprocess import running_service
from oms_devtools.servers import EmbeddedNats, free_port
from oms_devtools.testkit import eventually
from oms_inventory.app import DEFINITION, MIGRATIONS
from oms_platform.migrations import upgrade

NAMED = "oms.inventory.v1.InventoryService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
NAMES = health_pb2.HealthCheckResponse.ServingStatus


async def test_health_follows_nats_while_the_service_keeps_serving_requests(
    database_factory: Callable[[str], str], private_nats: EmbeddedNats,
) -> None:
    async with running_service(DEFINITION, MIGRATIONS, database_url=database_factory("runtime"),
                               nats_url=private_nats.url) as service, \
            grpc.aio.insecure_channel(f"127.0.0.1:{service.bound_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)

        async def status(name: str) -> int:
            reply = await health.Check(health_pb2.HealthCheckRequest(service=name))
            return int(reply.status)

        async def becomes(name: str, expected: int) -> None:
            await eventually(lambda: status(name), until=lambda got: got == expected,
                             what=f"health of {name!r} {NAMES.Name(expected)}")

        await becomes("", SERVING)
        await becomes(NAMED, SERVING)

        private_nats.stop()
        await becomes("", NOT_SERVING)
        assert await status(NAMED) == SERVING, "the outbox keeps requests safe without NATS"

        private_nats.start()
        await becomes("", SERVING)


async def test_reflection_lists_the_service_and_health(
    database_factory: Callable[[str], str], nats_url: str,
) -> None:
    async with running_service(DEFINITION, MIGRATIONS, database_url=database_factory("runtime"),
                               nats_url=nats_url) as service, \
            grpc.aio.insecure_channel(f"127.0.0.1:{service.bound_port}") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = {s.name async for reply in replies
                 for s in reply.list_services_response.service}
    assert {NAMED, "grpc.health.v1.Health"} <= names


async def test_the_streams_get_the_configured_limits(
    database_factory: Callable[[str], str], private_nats: EmbeddedNats,
) -> None:
    """Its own stream and the streams it consumes from (inventory reads orders' events)."""
    async with running_service(DEFINITION, MIGRATIONS, database_url=database_factory("runtime"),
                               nats_url=private_nats.url, stream_max_age_seconds=3600.0,
                               stream_max_bytes=32 << 20) as service:
        assert service.runtime is not None
        js = service.runtime.js
        for stream in ("OMS_INVENTORY", "OMS_ORDERS"):
            config = (await js.stream_info(stream)).config
            assert (config.max_age, config.max_bytes, config.discard) == (
                3600.0, 32 << 20, DiscardPolicy.OLD), stream


async def _second_page(port: int, token: str) -> list[str]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = await inventory_pb2_grpc.InventoryServiceStub(channel).ListProducts(
            inventory_pb2.ListProductsRequest(page_size=1, page_token=token))
    return [p.sku for p in reply.products]


async def _first_page_token(port: int, skus: list[str]) -> str:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = inventory_pb2_grpc.InventoryServiceStub(channel)
        for sku in skus:
            await stub.CreateProduct(inventory_pb2.CreateProductRequest(
                product=inventory_pb2.Product(sku=sku, title=sku)))
        reply = await stub.ListProducts(inventory_pb2.ListProductsRequest(page_size=1))
    assert reply.next_page_token
    return reply.next_page_token


async def test_replicas_on_one_database_accept_each_others_page_tokens(
    database_factory: Callable[[str], str], private_nats: EmbeddedNats,
) -> None:
    """With nothing configured, the key is the database's: shared by the replicas of a
    service, and refused by a service on another database."""
    shared, other = database_factory("tokens"), database_factory("tokens_other")
    serve = functools.partial(running_service, DEFINITION, MIGRATIONS,
                              nats_url=private_nats.url)
    async with serve(database_url=shared) as one, serve(database_url=shared) as two, \
            serve(database_url=other) as elsewhere:
        token = await _first_page_token(one.bound_port, ["SKU-A", "SKU-B"])
        assert await _second_page(two.bound_port, token) == ["SKU-B"]
        assert await _second_page(one.bound_port, token) == ["SKU-B"]
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _second_page(elsewhere.bound_port, token)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in (refused.value.details() or "")


async def test_services_configured_with_one_key_accept_each_others_page_tokens(
    database_factory: Callable[[str], str], private_nats: EmbeddedNats,
) -> None:
    key = "k" * 40
    serve = functools.partial(running_service, DEFINITION, MIGRATIONS,
                              nats_url=private_nats.url, page_token_key=key)
    async with serve(database_url=database_factory("tokens")) as one, \
            serve(database_url=database_factory("tokens_other")) as two:
        token = await _first_page_token(one.bound_port, ["SKU-A", "SKU-B"])
        await _first_page_token(two.bound_port, ["SKU-A", "SKU-B"])
        assert await _second_page(two.bound_port, token) == ["SKU-B"]


def test_sigterm_stops_the_service_gracefully(
    database_factory: Callable[[str], str], nats_url: str, tmp_path: Path,
) -> None:
    database_url = database_factory("runtime")
    upgrade(MIGRATIONS, database_url)
    port = free_port()
    env = {**os.environ, "OMS_DATABASE_URL": database_url, "OMS_NATS_URL": nats_url,
           "OMS_GRPC_PORT": str(port), "OMS_LOG_FORMAT": "json"}
    log = tmp_path / "inventory.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "oms_inventory"], env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while b"service started" not in log.read_bytes():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
    text = log.read_text()
    assert text.index("shutting down") < text.index('"stopped"')
    assert "Traceback" not in text
