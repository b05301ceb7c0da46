"""The suite as separate processes (as `make run` starts it) against real servers."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator

import grpc
import httpx
import pytest
from e2e_kit import E2E_CHANNEL, add_idempotency_key, create_partner
from oms.inventory.v1 import inventory_pb2_grpc
from oms_devtools.servers import EmbeddedNats
from oms_devtools.stack import UNTHROTTLED, Stack


@pytest.fixture(scope="module")
def stack_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    """A NATS of the module's own, which its tests may stop and start."""
    with EmbeddedNats(tmp_path_factory.mktemp("e2e-nats")) as server:
        yield server


@pytest.fixture(scope="module")
def stack(postgres_server_url: str, stack_nats: EmbeddedNats,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    suite = Stack(
        state_dir=tmp_path_factory.mktemp("stack"),
        database_server_url=postgres_server_url,
        nats_url=stack_nats.url,
        database_prefix=f"e2e_{secrets.token_hex(4)}",
        extra_env=dict(UNTHROTTLED),
    )
    try:
        suite.start()
        yield suite
    finally:
        suite.stop()


@pytest.fixture(scope="module")
def partner_key(stack: Stack) -> str:
    """The API key of the sales channel the tests post as (its orders and their payments)."""
    return create_partner(stack, f"e2e-{secrets.token_hex(4)}", "sales-channel",
                          channels=(E2E_CHANNEL,),
                          scopes=("orders:read", "orders:write", "payments:write"))


@pytest.fixture
async def gateway(stack: Stack, partner_key: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.services["gateway"].endpoint, timeout=15,
                                 headers={"Authorization": f"Bearer {partner_key}"},
                                 event_hooks={"request": [add_idempotency_key]}) as client:
        yield client


@pytest.fixture
async def inventory(stack: Stack) -> AsyncIterator[inventory_pb2_grpc.InventoryServiceStub]:
    async with grpc.aio.insecure_channel(stack.services["inventory"].endpoint) as channel:
        yield inventory_pb2_grpc.InventoryServiceStub(channel)
