"""The gateway's own answers when things go wrong, and its access log: the app in process over
its real database, its orders service out of reach (nothing listens there), so no call to it
can succeed. Callers are an authenticated partner."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from gateway_contract import Contract
from oms_devtools.servers import free_port
from oms_gateway.app import MIGRATIONS, create_app
from oms_gateway.partners import store as partners
from oms_gateway.partners.domain import SCOPES, Kind, Partner
from oms_gateway.problems import PROBLEM_JSON
from oms_gateway.settings import GatewaySettings
from oms_platform.migrations import upgrade
from oms_platform.telemetry import configure_tracing
from structlog.testing import capture_logs

CHANNEL = "web"
ORDER = {
    "channel": CHANNEL, "externalOrderId": "1",
    "shippingAddress": {"recipient": "A", "addressLines": ["1 St"], "locality": "X",
                        "regionCode": "US"},
    "lines": [{"sku": "S", "quantity": 1, "unitPrice": {"currencyCode": "USD", "amount": "1"}}],
}


@pytest.fixture(scope="module")
def database_url(database_factory: Callable[[str], str]) -> str:
    url = database_factory("gateway_errors")
    upgrade(MIGRATIONS, url)
    return url


@pytest.fixture
async def app(database_url: str) -> AsyncIterator[FastAPI]:
    configure_tracing("gateway")
    app = create_app(GatewaySettings(database_url=database_url,
                                     orders_target=f"127.0.0.1:{free_port()}",
                                     request_timeout_seconds=5))
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    partner_id = f"errors-{uuid.uuid4().hex[:8]}"
    key = await partners.create(app.state.engine, Partner(
        partner_id=partner_id, kind=Kind.SALES_CHANNEL, name=partner_id,
        channels=frozenset({CHANNEL}), scopes=SCOPES))
    # raise_app_exceptions=False: the client sees what a partner would, even a 500 page.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway", headers={
            "Authorization": f"Bearer {key.secret}", "Idempotency-Key": uuid.uuid4().hex,
    }, event_hooks={"response": [Contract(app.openapi()).hook]}) as client:
        client.partner_id = partner_id  # type: ignore[attr-defined]
        yield client


def assert_problem(reply: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == PROBLEM_JSON
    problem = reply.json()
    assert problem["status"] == status
    assert problem["type"].endswith(f"/{kind}")
    assert problem["title"] and "detail" in problem and problem["instance"]
    return problem  # type: ignore[no-any-return]


async def test_an_unknown_path_is_a_404_problem(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/v2/nothing-here"), 404, "not-found")


async def test_a_method_a_path_does_not_take_is_a_405_problem_naming_the_allowed_ones(
    client: httpx.AsyncClient,
) -> None:
    reply = await client.delete("/v1/orders")
    assert_problem(reply, 405, "method-not-allowed")
    assert reply.headers["allow"] == "POST"


@pytest.mark.parametrize("body", [b"\xff\xfe{\"channel\": \"web\"}", b"{\"channel\": ",
                                  b"not json at all", b"[1, 2]"],
                         ids=["not-utf8", "truncated", "not-json", "not-an-object"])
async def test_a_body_that_is_not_a_json_object_is_a_400_problem(
    client: httpx.AsyncClient, body: bytes,
) -> None:
    reply = await client.post("/v1/orders", content=body,
                              headers={"content-type": "application/json"})
    assert_problem(reply, 400, "invalid-argument")


async def test_orders_out_of_reach_is_a_503_with_retry_after(client: httpx.AsyncClient) -> None:
    for reply in (await client.post("/v1/orders", json=ORDER),
                  await client.get(f"/v1/orders/{uuid.uuid4()}")):
        problem = assert_problem(reply, 503, "unavailable")
        assert reply.headers["retry-after"] == "1"
        assert "127.0.0.1" not in problem["detail"], "no internal address reaches partners"


async def test_an_exception_in_the_gateway_is_a_503_problem_and_one_error_line(
    app: FastAPI, client: httpx.AsyncClient,
) -> None:
    @app.get("/v1/broken")
    async def broken() -> None:
        raise RuntimeError("a bug in the gateway")

    with capture_logs() as logs:
        reply = await client.get("/v1/broken")

    problem = assert_problem(reply, 503, "unavailable")
    assert reply.headers["retry-after"] == "1"
    assert "bug" not in problem["detail"]
    errors = [line for line in logs if line["log_level"] == "error"]
    assert [line["event"] for line in errors] == ["request failed in the gateway"]


async def test_every_answer_has_one_access_line_with_route_status_latency_trace_and_partner(
    client: httpx.AsyncClient,
) -> None:
    trace_id = uuid.uuid4().hex
    order_id = str(uuid.uuid4())
    with capture_logs() as logs:
        await client.get(f"/v1/orders/{order_id}",
                         headers={"traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"})
        await client.get("/v2/nothing-here")

    lines = [line for line in logs if line["event"] == "answered"]
    assert len(lines) == 2, logs
    first, second = lines
    assert first["method"] == "GET"
    assert first["path"] == "/v1/orders/{order_id}", "the route's template, not the id"
    assert first["status"] == 503
    assert isinstance(first["latency_ms"], float) and first["latency_ms"] >= 0
    assert first["trace_id"] == trace_id, "the request's span continues the caller's trace"
    assert first["partner_id"] == client.partner_id  # type: ignore[attr-defined]
    assert (second["path"], second["status"], second["partner_id"]) == (
        "/v2/nothing-here", 404, client.partner_id)  # type: ignore[attr-defined]
    assert second["trace_id"] and second["trace_id"] != trace_id


