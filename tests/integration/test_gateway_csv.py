"""Orders in and out as CSV, through the gateway in process over its real database in front
of a real orders service: an import creates each good order once and names every bad cell by
its CSV line and column while storing nothing of that order; an export streams what the
channel has, in columns an import takes again."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI
from gateway_kit import assert_problem, client_of, key, new_partner, orders_of, serving
from oms_devtools.inprocess import running_service
from oms_gateway.app import MIGRATIONS
from oms_gateway.settings import GatewaySettings
from oms_gateway.tables import idempotency_keys
from oms_orders.app import DEFINITION as ORDERS
from oms_orders.app import MIGRATIONS as ORDERS_MIGRATIONS
from oms_platform.migrations import upgrade
from oms_platform.service import Service
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

MAX_ROWS, MAX_ORDERS, EXPORT_MAX = 20, 8, 6
HEADER = ("externalOrderId,channel,customerName,recipient,addressLine1,locality,"
          "administrativeArea,postalCode,regionCode,paymentStatus,tags,sku,quantity,unitPrice,"
          "currency")
ADDRESS = "Ada Lovelace,Ada Lovelace,1 Market St,San Francisco,CA,94105"


@pytest.fixture(scope="module")
async def orders_service(database_factory: Callable[[str], str],
                         nats_url: str) -> AsyncIterator[Service]:
    async with running_service(ORDERS, ORDERS_MIGRATIONS, database_url=database_factory(
            "gateway_csv_orders"), nats_url=nats_url) as service:
        yield service


@pytest.fixture(scope="module")
async def app(database_factory: Callable[[str], str],
              orders_service: Service) -> AsyncIterator[FastAPI]:
    url = database_factory("gateway_csv")
    upgrade(MIGRATIONS, url)
    async for serving_app in serving(GatewaySettings(
            database_url=url, orders_target=f"127.0.0.1:{orders_service.bound_port}",
            csv_import_max_rows=MAX_ROWS, csv_import_max_orders=MAX_ORDERS,
            # Two calls of the orders service for three orders, so that a file spans calls.
            csv_import_batch_orders=2, csv_export_max_orders=EXPORT_MAX)):
        yield serving_app


@pytest.fixture(scope="module")
def engine(app: FastAPI) -> AsyncEngine:
    return app.state.engine  # type: ignore[no-any-return]


def csv_file(*rows: str) -> bytes:
    return ("\r\n".join((HEADER, *rows)) + "\r\n").encode()


async def post_csv(client: httpx.AsyncClient, body: bytes,
                   headers: dict[str, str] | None = None) -> httpx.Response:
    return await client.post("/v1/orders:import", content=body, headers={
        **(headers or key()), "content-type": "text/csv"})


def errors_of(result: dict[str, object]) -> set[tuple[int, str | None]]:
    return {(e["line"], e.get("column")) for e in result["errors"]}  # type: ignore[attr-defined]


async def stored_keys(engine: AsyncEngine, partner_id: str) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(idempotency_keys).where(
            idempotency_keys.c.partner_id == partner_id)))


async def test_an_import_creates_the_good_orders_once_and_names_each_bad_cell(
    app: FastAPI, engine: AsyncEngine, orders_service: Service,
) -> None:
    partner, secret = await new_partner(engine)
    (channel,) = partner.channels
    body = csv_file(
        f"A,{channel},{ADDRESS},US,PAYMENT_STATUS_PAID,vip|gift,TSHIRT-BLK-M,2,19.99,USD",
        "A,,,,,,,,,,,MUG-WHT-11OZ,1,9.50,USD",
        # Refused by the gateway: the cells do not parse.
        f"B,{channel},{ADDRESS},US,PAYMENT_STATUS_MAYBE,,TSHIRT-BLK-M,two,19.99,USD",
        # Refused by the orders service: no such country, a negative price.
        f"C,{channel},{ADDRESS},XX,,,TSHIRT-BLK-M,1,19.99,USD",
        "C,,,,,,,,,,,MUG-WHT-11OZ,1,-1.00,USD",
        # Two rows of one order that disagree.
        f"D,{channel},{ADDRESS},US,,,TSHIRT-BLK-M,1,19.99,USD",
        f"D,{channel},Ada Lovelace,Bob,1 Market St,San Francisco,CA,94105,US,,,"
        "MUG-WHT-11OZ,1,9.50,USD",
        f"E,not-mine,{ADDRESS},US,,,TSHIRT-BLK-M,1,19.99,USD",
        f"F,,{ADDRESS},US,,,TSHIRT-BLK-M,3,19.99,USD",
    )
    headers = key()
    async with client_of(app, secret) as client:
        first = await post_csv(client, body, headers)
        replay = await post_csv(client, body, headers)

    assert first.status_code == 200, first.text
    result = first.json()
    by_id = {order["externalOrderId"]: order for order in result["orders"]}
    assert list(by_id) == ["A", "B", "C", "D", "E", "F"], "in the file's order"
    assert (result["created"], result["refused"]) == (2, 4)
    assert [by_id[o]["status"] for o in "ABCDEF"] == [
        "created", "refused", "refused", "refused", "refused", "created"]
    assert by_id["A"]["lines"] == [2, 3] and by_id["C"]["lines"] == [5, 6]
    assert errors_of(by_id["B"]) == {(4, "paymentStatus"), (4, "quantity")}
    assert errors_of(by_id["C"]) == {(5, "regionCode"), (6, "unitPrice")}
    assert errors_of(by_id["D"]) == {(8, "recipient")}
    assert "differs from line 7" in by_id["D"]["errors"][0]["detail"]
    assert errors_of(by_id["E"]) == {(9, "channel")}, "the channel column is checked per order"
    assert await orders_of(orders_service, channel) == ["A", "F"]

    assert replay.status_code == 200 and replay.content == first.content
    assert replay.headers["idempotent-replayed"] == "true"
    async with client_of(app, secret) as client:
        again = await post_csv(client, body)  # a new key: the orders exist already
        order = await client.get(f"/v1/{by_id['A']['order']}")
    assert [o.get("order") for o in again.json()["orders"]] == [
        o.get("order") for o in result["orders"]]
    assert await orders_of(orders_service, channel) == ["A", "F"], "created once"
    lines = order.json()["lines"]
    assert [(line["sku"], line["quantity"]) for line in lines] == [
        ("TSHIRT-BLK-M", 2), ("MUG-WHT-11OZ", 1)]
    assert order.json()["tags"] == ["vip", "gift"]


@pytest.mark.parametrize(("body", "field"), [
    (b"", ""),
    (b"sku,quantity\r\nX,1\r\n", "externalOrderId"),
    (f"{HEADER},colour\r\n".encode(), "colour"),
    (b"externalOrderId,sku\r\n1,\xff\r\n", ""),
    (b'externalOrderId,sku\r\n"1,X\r\n', ""),
    (b"externalOrderId,sku\r\n" + b"".join(b"%d,X\r\n" % n for n in range(MAX_ORDERS + 1)),
     "externalOrderId"),
    (b"externalOrderId,sku\r\n" + b"1,X\r\n" * (MAX_ROWS + 1), ""),
    (b"externalOrderId,sku\r\n\r\n", ""),
], ids=["empty", "no-key-column", "unknown-column", "not-utf8", "unclosed-quote",
        "too-many-orders", "too-many-rows", "no-rows"])
async def test_a_file_that_is_not_orders_is_a_400_and_stores_nothing(
    app: FastAPI, engine: AsyncEngine, body: bytes, field: str,
) -> None:
    partner, secret = await new_partner(engine)
    async with client_of(app, secret) as client:
        reply = await post_csv(client, body)
    problem = assert_problem(reply, 400, "invalid-argument")
    assert [e["field"] for e in problem["errors"]] == [field], problem
    assert await stored_keys(engine, partner.partner_id) == 0, "the key stays free"


async def test_an_export_imports_again_as_the_same_orders(
    app: FastAPI, engine: AsyncEngine, orders_service: Service,
) -> None:
    partner, secret = await new_partner(engine)
    _, other_secret = await new_partner(engine)
    (channel,) = partner.channels
    rows = [f"X1,{channel},{ADDRESS},US,PAYMENT_STATUS_PAID,vip,TSHIRT-BLK-M,2,19.99,USD",
            "X1,,,,,,,,,,,HOODIE-GRY-L,1,49.00,USD",
            "X2,,\"Lovelace, Ada\",Ada,\"1 Market St\",SF,CA,94105,US,,,POSTER-A2,3,5.00,USD"]
    async with client_of(app, secret) as client:
        imported = (await post_csv(client, csv_file(*rows))).json()
        exported = await client.get("/v1/orders:export")
        filtered = await client.get("/v1/orders:export", params={
            "filter": "payment_status = PAYMENT_STATUS_PAID"})
        reimported = await post_csv(client, exported.content)
    assert imported["created"] == 2, imported
    assert exported.status_code == 200, exported.text
    assert exported.headers["content-type"].startswith("text/csv")
    assert exported.headers["ratelimit"]
    table = list(csv.DictReader(io.StringIO(exported.text)))
    # Newest first, one row per line; the import's cells come back as they were written.
    assert [(r["externalOrderId"], r["sku"], r["quantity"], r["unitPrice"]) for r in table] == [
        ("X2", "POSTER-A2", "3", "5.00"), ("X1", "TSHIRT-BLK-M", "2", "19.99"),
        ("X1", "HOODIE-GRY-L", "1", "49.00")]
    assert table[0]["customerName"] == "Lovelace, Ada" and table[0]["channel"] == channel
    assert table[1]["tags"] == "vip" and table[2]["recipient"] == "Ada Lovelace"
    assert {r["order"] for r in table} == {o["order"] for o in imported["orders"]}
    assert [r["externalOrderId"] for r in csv.DictReader(io.StringIO(filtered.text))] == [
        "X1", "X1"]
    again = reimported.json()
    assert [(o["externalOrderId"], o["status"], o["order"]) for o in again["orders"]] == [
        (o["externalOrderId"], "created", o["order"]) for o in reversed(imported["orders"])]
    assert await orders_of(orders_service, channel) == ["X1", "X2"]

    async with client_of(app, other_secret) as other:
        elsewhere = await other.get("/v1/orders:export", params={"channel": channel})
        own = await other.get("/v1/orders:export")
    assert_problem(elsewhere, 403, "permission-denied")
    assert list(csv.DictReader(io.StringIO(own.text))) == [], "only the header"


async def test_an_export_larger_than_its_bound_is_refused_up_front(
    app: FastAPI, engine: AsyncEngine,
) -> None:
    partner, secret = await new_partner(engine)
    (channel,) = partner.channels
    rows = [f"{uuid.uuid4().hex},{channel},{ADDRESS},US,,{'only' if n == 0 else ''},"
            "TSHIRT-BLK-M,1,19.99,USD" for n in range(EXPORT_MAX + 1)]
    async with client_of(app, secret) as client:
        assert (await post_csv(client, csv_file(*rows))).json()["created"] == EXPORT_MAX + 1
        refused = await client.get("/v1/orders:export")
        narrowed = await client.get("/v1/orders:export", params={
            "filter": 'tags = "only"'})
        bad_filter = await client.get("/v1/orders:export", params={"filter": "nonsense ="})
    problem = assert_problem(refused, 400, "invalid-argument")
    assert [e["field"] for e in problem["errors"]] == ["filter"]
    assert str(EXPORT_MAX + 1) in problem["detail"]
    assert narrowed.status_code == 200 and len(narrowed.text.splitlines()) == 2
    assert [e["field"] for e in assert_problem(bad_filter, 400, "invalid-argument")[
        "errors"]] == ["filter"]


async def test_the_documented_example_imports_on_the_demo_channel(
    app: FastAPI, engine: AsyncEngine,
) -> None:
    media = app.openapi()["paths"]["/v1/orders:import"]["post"]["requestBody"]["content"]
    example = media["text/csv"]["examples"]["demo"]["value"]
    _, secret = await new_partner(engine, channels=("shopify-demo",))
    async with client_of(app, secret) as client:
        reply = await post_csv(client, example.encode())
        (result,) = reply.json()["orders"]
        order = await client.get(f"/v1/{result['order']}")
    assert result["status"] == "created", result
    assert [line["sku"] for line in order.json()["lines"]] == ["TSHIRT-BLK-M", "MUG-WHT-11OZ"]
