"""The partner-facing HTTP/JSON API, served over the internal gRPC services.

Bodies are the proto3 JSON mapping of the contracts (``camelCase`` or ``snake_case`` field
names both accepted), so the public shape cannot drift from ``proto/``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import grpc
from fastapi import Body, Depends, FastAPI, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from oms.orders.v1 import orders_pb2, orders_pb2_grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors

from oms_gateway.auth import Partner, current_partner
from oms_gateway.problems import Problem, from_rpc_error, problem_response
from oms_gateway.settings import GatewaySettings

ORDER_ID = re.compile(r"^[0-9a-fA-F-]{36}$")
ORDER_EXAMPLE = {
    "channel": "shopify-main",
    "externalOrderId": "1001",
    "customer": {"displayName": "Ada Lovelace", "email": "ada@example.com"},
    "shippingAddress": {
        "recipient": "Ada Lovelace",
        "addressLines": ["1 Market St"],
        "locality": "San Francisco",
        "administrativeArea": "CA",
        "postalCode": "94105",
        "regionCode": "US",
    },
    "lines": [{"sku": "TSHIRT-M", "quantity": 2,
               "unitPrice": {"currencyCode": "USD", "amount": "19.99"}}],
    "serviceLevel": "SERVICE_LEVEL_STANDARD",
    "paymentStatus": "PAYMENT_STATUS_PAID",
}


def _to_json(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=False)


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        channel = grpc.aio.insecure_channel(
            settings.orders_target,
            interceptors=aio_client_interceptors(),
            # After an orders restart, reconnect within a second or two rather than after
            # gRPC's default backoff (up to two minutes), so partners' retries soon succeed.
            options=[
                ("grpc.initial_reconnect_backoff_ms", 200),
                ("grpc.max_reconnect_backoff_ms", 2000),
            ],
        )
        app.state.orders = orders_pb2_grpc.OrdersServiceStub(channel)
        app.state.orders_health = health_pb2_grpc.HealthStub(channel)
        try:
            yield
        finally:
            await channel.close()

    app = FastAPI(
        title="OMS partner API",
        version="1.0.0",
        summary="Orders in from every sales channel.",
        lifespan=lifespan,
    )

    @app.exception_handler(Problem)
    async def on_problem(request: Request, problem: Problem) -> JSONResponse:
        return problem_response(request, problem)

    @app.exception_handler(grpc.aio.AioRpcError)
    async def on_rpc_error(request: Request, error: grpc.aio.AioRpcError) -> JSONResponse:
        return problem_response(request, from_rpc_error(error))

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, error: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"][1:]), "detail": e["msg"]}
            for e in error.errors()
        ]
        return problem_response(
            request,
            Problem(400, "Invalid argument", "the request is malformed",
                    kind="invalid-argument", extra={"errors": errors}),
        )

    timeout = settings.request_timeout_seconds

    @app.post("/v1/orders", status_code=201, tags=["orders"],
              summary="Capture an order from a sales channel")
    async def create_order(
        request: Request,
        response: Response,
        order: Annotated[dict[str, Any], Body(examples=[ORDER_EXAMPLE])],
        partner: Annotated[Partner, Depends(current_partner)],
        idempotency_key: Annotated[str | None, Header(max_length=100)] = None,
    ) -> dict[str, Any]:
        message = orders_pb2.Order()
        try:
            json_format.ParseDict(order, message)
        except json_format.ParseError as error:
            raise Problem(400, "Invalid argument", str(error), kind="invalid-argument") from error
        created = await request.app.state.orders.CreateOrder(
            orders_pb2.CreateOrderRequest(order=message, request_id=idempotency_key or ""),
            timeout=timeout,
        )
        response.headers["Location"] = f"/v1/{created.name}"
        return _to_json(created)

    @app.get("/v1/orders/{order_id}", tags=["orders"], summary="Get an order")
    async def get_order(
        request: Request,
        order_id: str,
        partner: Annotated[Partner, Depends(current_partner)],
    ) -> dict[str, Any]:
        if not ORDER_ID.match(order_id):
            raise Problem(404, "Not found", f"no order {order_id}", kind="not-found")
        order = await request.app.state.orders.GetOrder(
            orders_pb2.GetOrderRequest(name=f"orders/{order_id}"), timeout=timeout
        )
        return _to_json(order)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> JSONResponse:
        try:
            reply = await request.app.state.orders_health.Check(
                health_pb2.HealthCheckRequest(service=orders_pb2.DESCRIPTOR.services_by_name[
                    "OrdersService"].full_name),
                timeout=2.0,
            )
            ready = reply.status == health_pb2.HealthCheckResponse.SERVING
        except grpc.aio.AioRpcError:
            ready = False
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    return app
