"""Stock and available-to-sell per channel through the gateway, in process over its real
database in front of a real inventory service: a sales channel reads what its own channels
may sell, and nothing of other channels or of the nodes behind the figure."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
from fastapi import FastAPI
from gateway_kit import assert_problem, client_of, new_partner, serving
from oms.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from oms_devtools.inprocess import running_service
from oms_devtools.servers import free_port
from oms_devtools.testkit import add_node, add_sku
from oms_gateway.app import MIGRATIONS
from oms_gateway.partners.domain import SCOPES, Kind
from oms_gateway.settings import GatewaySettings
from oms_gateway.stock.domain import MAX_BATCH_SKUS
from oms_inventory.app import MIGRATIONS as INVENTORY_MIGRATIONS
from oms_inventory.app import definition
from oms_inventory.settings import InventorySettings
from oms_platform.migrations import upgrade
from oms_platform.service import Service
from sqlalchemy.ext.asyncio import AsyncEngine

Stub = inventory_pb2_grpc.InventoryServiceStub


@pytest.fixture(scope="module")
async def inventory_service(database_factory: Callable[[str], str],
                            nats_url: str) -> AsyncIterator[Service]:
    async with running_service(definition(InventorySettings()), INVENTORY_MIGRATIONS,
                               database_url=database_factory("gateway_stock_inventory"),
                               nats_url=nats_url) as service:
        yield service


@pytest.fixture(scope="module")
async def stub(inventory_service: Service) -> AsyncIterator[Stub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{inventory_service.bound_port}") as channel:
        yield Stub(channel)


@pytest.fixture(scope="module")
async def app(database_factory: Callable[[str], str],
              inventory_service: Service) -> AsyncIterator[FastAPI]:
    url = database_factory("gateway_stock")
    upgrade(MIGRATIONS, url)
    async for serving_app in serving(GatewaySettings(
            database_url=url, orders_target=f"127.0.0.1:{free_port()}",
            inventory_target=f"127.0.0.1:{inventory_service.bound_port}")):
        yield serving_app


@pytest.fixture(scope="module")
def engine(app: FastAPI) -> AsyncEngine:
    return app.state.engine  # type: ignore[no-any-return]


def channel_id() -> str:
    return f"ch-{uuid.uuid4().hex[:8]}"


async def buffer(stub: Stub, channel: str, sku: str, units: int) -> None:
    await stub.SetChannelBuffer(inventory_pb2.SetChannelBufferRequest(
        channel_buffer=inventory_pb2.ChannelBuffer(channel=channel, sku=sku, buffer=units)))


async def test_a_channel_reads_what_each_of_its_channels_may_sell_and_no_other(
    app: FastAPI, engine: AsyncEngine, stub: Stub,
) -> None:
    reno, edison = await add_node(stub), await add_node(stub)
    sku = await add_sku(stub, {reno: 20, edison: 10})
    mine, unbuffered, theirs = channel_id(), channel_id(), channel_id()
    await buffer(stub, mine, sku, 5)
    await buffer(stub, theirs, sku, 40)
    _, secret = await new_partner(engine, channels=(mine, unbuffered))
    _, other_secret = await new_partner(engine, channels=(theirs,))
    async with client_of(app, secret) as client:
        both = await client.get(f"/v1/stock/{sku}")
        one = await client.get(f"/v1/stock/{sku}", params={"channel": mine})
        elsewhere = await client.get(f"/v1/stock/{sku}", params={"channel": theirs})
        missing = await client.get("/v1/stock/NO-SUCH-SKU")
    async with client_of(app, other_secret) as other:
        their_view = await other.get(f"/v1/stock/{sku}")

    assert both.status_code == 200, both.text
    # 30 units across both nodes; 5 held back from one channel, none from the other.
    assert both.json() == {"sku": sku, "channels": sorted([
        {"channel": mine, "availableToSell": "25", "buffer": "5"},
        {"channel": unbuffered, "availableToSell": "30", "buffer": "0"},
    ], key=lambda c: c["channel"])}
    assert theirs not in both.text and reno not in both.text, "no other channel, no node"
    assert one.json()["channels"] == [{"channel": mine, "availableToSell": "25",
                                       "buffer": "5"}]
    assert_problem(elsewhere, 403, "permission-denied")
    assert_problem(missing, 404, "not-found")
    assert their_view.json()["channels"] == [
        {"channel": theirs, "availableToSell": "0", "buffer": "40"}], "never below zero"


async def test_a_batch_answers_each_sku_in_order_and_names_those_not_found(
    app: FastAPI, engine: AsyncEngine, stub: Stub,
) -> None:
    node = await add_node(stub)
    first, second = await add_sku(stub, {node: 7}), await add_sku(stub, {node: 3})
    partner, secret = await new_partner(engine)
    (channel,) = partner.channels
    async with client_of(app, secret) as client:
        batch = await client.get("/v1/stock", params={"sku": [second, "NOPE", first, second]})
        empty = await client.get("/v1/stock")
        too_many = await client.get("/v1/stock", params={
            "sku": [f"S{n}" for n in range(MAX_BATCH_SKUS + 1)]})
        malformed = await client.get("/v1/stock", params={"sku": [first, "A\x00"]})
        malformed_one = await client.get("/v1/stock/A%00")
    assert batch.status_code == 200, batch.text
    assert batch.json() == {"stock": [
        {"sku": second, "channels": [{"channel": channel, "availableToSell": "3",
                                      "buffer": "0"}]},
        {"sku": first, "channels": [{"channel": channel, "availableToSell": "7",
                                     "buffer": "0"}]},
    ], "notFound": ["NOPE"]}
    for refused in (empty, too_many):
        problem = assert_problem(refused, 400, "invalid-argument")
        assert [e["field"] for e in problem["errors"]] == ["sku"], problem
    problem = assert_problem(malformed, 400, "invalid-argument")
    assert [e["field"] for e in problem["errors"]] == ["sku.1"], problem
    assert [e["field"] for e in assert_problem(malformed_one, 400, "invalid-argument")[
        "errors"]] == ["sku"]


async def test_inventory_refuses_a_sku_no_product_can_have(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.GetAvailableToSell(inventory_pb2.GetAvailableToSellRequest(
            product="products/A\x00B"))
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT, "not UNKNOWN"


@pytest.mark.parametrize("kind", [Kind.THREE_PL, Kind.CARRIER, Kind.PAYMENT_PROVIDER])
async def test_stock_is_a_sales_channels_only(
    app: FastAPI, engine: AsyncEngine, stub: Stub, kind: Kind,
) -> None:
    node = await add_node(stub)
    sku = await add_sku(stub, {node: 1})
    channels = ("web",) if kind is Kind.PAYMENT_PROVIDER else ()
    _, secret = await new_partner(engine, kind, channels=channels, scopes=SCOPES)
    async with client_of(app, secret) as client:
        for reply in (await client.get(f"/v1/stock/{sku}"),
                      await client.get("/v1/stock", params={"sku": sku})):
            assert_problem(reply, 403, "permission-denied")
