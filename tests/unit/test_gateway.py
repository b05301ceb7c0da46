"""The gateway's answers when things go wrong, and its access log: the app in process, its
orders service out of reach (nothing listens there), so no call can succeed."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
from fastapi import FastAPI
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from oms_devtools.servers import free_port
from oms_gateway.app import create_app
from oms_gateway.problems import PROBLEM_JSON, from_rpc_error, problem_response
from oms_gateway.settings import GatewaySettings
from oms_platform.telemetry import configure_tracing
from starlette.requests import Request
from structlog.testing import capture_logs

ORDER = {
    "channel": "web", "externalOrderId": "1",
    "shippingAddress": {"recipient": "A", "addressLines": ["1 St"], "locality": "X",
                        "regionCode": "US"},
    "lines": [{"sku": "S", "quantity": 1, "unitPrice": {"currencyCode": "USD", "amount": "1"}}],
}


@pytest.fixture
async def app() -> AsyncIterator[FastAPI]:
    configure_tracing("gateway")
    app = create_app(GatewaySettings(orders_target=f"127.0.0.1:{free_port()}",
                                     request_timeout_seconds=5))
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    # raise_app_exceptions=False: the client sees what a partner would, even a 500 page.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        yield client


def assert_problem(reply: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == PROBLEM_JSON
    problem = reply.json()
    assert problem["status"] == status
    assert problem["type"].endswith(f"/{kind}")
    assert problem["title"] and "detail" in problem and problem["instance"]
    return problem


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
    assert first["partner_id"] == "anonymous"
    assert (second["path"], second["status"], second["partner_id"]) == (
        "/v2/nothing-here", 404, None)
    assert second["trace_id"] and second["trace_id"] != trace_id


def rpc_error(code: grpc.StatusCode, message: str = "refused",
              *details: Any) -> grpc.aio.AioRpcError:
    """An error as the orders service sends it: rich details in the trailing metadata."""
    packed = []
    for detail in details:
        holder = any_pb2.Any()
        holder.Pack(detail)
        packed.append(holder)
    status = status_pb2.Status(code=code.value[0], message=message, details=packed)
    trailing = grpc.aio.Metadata(("grpc-status-details-bin", status.SerializeToString()))
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailing, details=message)


def answer(error: grpc.aio.AioRpcError) -> httpx.Response:
    request = Request({"type": "http", "method": "POST", "path": "/v1/orders",
                       "query_string": b"", "headers": [], "scheme": "http",
                       "server": ("gateway", 80)})
    response = problem_response(request, from_rpc_error(error))
    return httpx.Response(response.status_code, headers=response.headers.raw,
                          content=response.body)


EXPECTED = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.ABORTED: 503,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 503,
}


@pytest.mark.parametrize("code", [c for c in grpc.StatusCode if c is not grpc.StatusCode.OK],
                         ids=lambda c: c.name)
def test_every_grpc_status_has_an_answer_and_none_is_a_500(code: grpc.StatusCode) -> None:
    reply = answer(rpc_error(code, "Exception calling application: boom at 10.0.0.7"))

    assert reply.status_code == EXPECTED.get(code, 503)
    assert reply.headers["content-type"] == PROBLEM_JSON
    if reply.status_code in (429, 503):
        assert reply.headers["retry-after"] == "1"
    if reply.status_code == 503:
        assert "boom" not in reply.json()["detail"], "internal messages stay inside"


def test_field_violations_and_the_reason_reach_the_caller() -> None:
    reply = answer(rpc_error(
        grpc.StatusCode.INVALID_ARGUMENT, "order.lines[0].quantity: must be positive",
        error_details_pb2.ErrorInfo(reason="INVALID_ARGUMENT", domain="oms.example.com"),
        error_details_pb2.BadRequest(field_violations=[error_details_pb2.BadRequest.FieldViolation(
            field="order.lines[0].quantity", description="must be positive")]),
    ))
    assert reply.status_code == 400
    problem = reply.json()
    assert problem["reason"] == "INVALID_ARGUMENT"
    assert problem["errors"] == [{"field": "order.lines[0].quantity",
                                  "detail": "must be positive"}]


def test_retry_info_sets_retry_after_rounded_up() -> None:
    delay = duration_pb2.Duration(seconds=2, nanos=300_000_000)
    reply = answer(rpc_error(grpc.StatusCode.ABORTED, "deadlock detected",
                             error_details_pb2.RetryInfo(retry_delay=delay)))
    assert reply.status_code == 503
    assert reply.headers["retry-after"] == "3"
    assert reply.json()["type"].endswith("/aborted")
