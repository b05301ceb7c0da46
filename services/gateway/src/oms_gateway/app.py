"""The partner-facing HTTP/JSON API, served over the internal gRPC services.

Bodies are the proto3 JSON mapping of the contracts (``camelCase`` or ``snake_case`` field
names both accepted), so the public shape cannot drift from ``proto/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import grpc
import structlog
from fastapi import Body, Depends, FastAPI, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from google.protobuf import json_format, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from oms.inventory.v1 import inventory_pb2_grpc
from oms.orders.v1 import orders_pb2, orders_pb2_grpc
from oms_platform import pagination
from oms_platform.db import create_engine, stored_key
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from starlette.exceptions import HTTPException

from oms_gateway.access import AccessLog
from oms_gateway.audit import Audit
from oms_gateway.auth import Authenticate, require
from oms_gateway.channels import chosen_channel, scoped_filter
from oms_gateway.csv_orders import api as csv_api
from oms_gateway.fields import Shape, violations
from oms_gateway.idempotency import store as idempotency_store
from oms_gateway.idempotency.middleware import HEADER, Idempotency, reached
from oms_gateway.oauth import api as oauth_api
from oms_gateway.oauth.keys import signing_secret
from oms_gateway.openapi import Operation, document
from oms_gateway.partners.domain import Partner
from oms_gateway.problems import (
    Problem,
    from_http_status,
    from_rpc_error,
    is_expected,
    problem_response,
)
from oms_gateway.rate_limits import RateLimit, RateLimits, policies
from oms_gateway.settings import GatewaySettings
from oms_gateway.stock import api as stock_api
from oms_gateway.tables import metadata
from oms_gateway.webhooks import endpoints as webhook_endpoints
from oms_gateway.webhooks import inbound as inbound_webhooks
from oms_gateway.webhooks import wiring as webhooks

log = structlog.get_logger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"

ORDER_ID = re.compile(r"^[0-9a-fA-F-]{36}$")
ORDER_EXAMPLE = {
    "channel": "shopify-demo",
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
    "lines": [{"sku": "TSHIRT-BLK-M", "quantity": 2,
               "unitPrice": {"currencyCode": "USD", "amount": "19.99"}}],
    "serviceLevel": "SERVICE_LEVEL_STANDARD",
    "paymentStatus": "PAYMENT_STATUS_PAID",
}


PAYMENT_EXAMPLE = {
    "transactionId": "pi_3NkX2",
    "kind": "PAYMENT_KIND_CAPTURE",
    "amount": {"currencyCode": "USD", "amount": "39.98"},
    "provider": "stripe",
}
CANCEL_EXAMPLE = {"reason": "customer request", "lines": [{"lineId": "1", "quantity": 1}]}


def _to_json(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=False)


# Where each route's body and path sit in the gRPC request it becomes, so that the service's
# field violations name what the partner sent.
_ELSEWHERE = {"name": "order_id", "request_id": HEADER}
CREATE_BODY = Shape(orders_pb2.CreateOrderRequest.DESCRIPTOR, "order", _ELSEWHERE)
GET_BODY = Shape(orders_pb2.GetOrderRequest.DESCRIPTOR, None, _ELSEWHERE)
PAYMENT_BODY = Shape(orders_pb2.RecordPaymentRequest.DESCRIPTOR, "payment", _ELSEWHERE)
CANCEL_BODY = Shape(orders_pb2.CancelOrderRequest.DESCRIPTOR, None, _ELSEWHERE)
# The list's parameters are query parameters of the same JSON names (pageSize, pageToken).
LIST_QUERY = Shape(orders_pb2.ListOrdersRequest.DESCRIPTOR)
# The orders service's bound (ListOrdersRequest): refused here already, as a query parameter.
MAX_PAGE_SIZE = 500


def _parse(request: Request, body: dict[str, Any], shape: Shape) -> Any:
    """The body as the route's message, or a 400 naming every field that does not parse.
    The route's ``shape`` is kept on the request for the service's own violations."""
    request.state.body = shape
    message = message_factory.GetMessageClass(shape.message)()
    try:
        json_format.ParseDict(body, message)
    except json_format.ParseError as error:
        errors = violations(body, shape.message) or [{"field": "", "detail": str(error)}]
        raise Problem(400, "Invalid argument",
                      "; ".join(f"{e['field']}: {e['detail']}" for e in errors),
                      kind="invalid-argument", extra={"errors": errors}) from error
    return message


OPERATIONS = {
    ("POST", "/v1/orders"): Operation(
        orders_pb2.Order.DESCRIPTOR, 201, CREATE_BODY, example=ORDER_EXAMPLE,
        example_summary="A paid order of two demo T-shirts on the demo channel"),
    ("GET", "/v1/orders"): Operation(orders_pb2.ListOrdersResponse.DESCRIPTOR,
                                     description="A page of the channel's orders, newest first"),
    ("GET", "/v1/orders/{order_id}"): Operation(orders_pb2.Order.DESCRIPTOR),
    ("POST", "/v1/orders/{order_id}/payments"): Operation(
        orders_pb2.Order.DESCRIPTOR, 200, PAYMENT_BODY, example=PAYMENT_EXAMPLE,
        example_summary="The capture of the example order's total"),
    ("POST", "/v1/orders/{order_id}:cancel"): Operation(
        orders_pb2.Order.DESCRIPTOR, 200, CANCEL_BODY, body_name="Cancellation",
        example=CANCEL_EXAMPLE, example_summary="One unit of the example order's first line"),
}


def _order_name(order_id: str) -> str:
    if not ORDER_ID.match(order_id):
        raise _not_found(order_id)
    return f"orders/{order_id}"


def _not_found(order_id: str) -> Problem:
    return Problem(404, "Not found", f"no order {order_id}", kind="not-found")


async def _visible_order(request: Request, partner: Partner, order_id: str,
                         timeout: float) -> Any:
    """The order, if it is the partner's to see; another channel's order is answered exactly
    like one that does not exist, so ids reveal nothing."""
    order = await request.app.state.orders.GetOrder(
        orders_pb2.GetOrderRequest(name=_order_name(order_id)), timeout=timeout)
    if not partner.may_see_channel(order.channel):
        raise _not_found(order_id)
    return order


def _actor(partner: Partner) -> tuple[tuple[str, str], ...]:
    """Who the orders service writes on the order's timeline."""
    return (("oms-actor", f"partner:{partner.partner_id}"),)


async def _sweep_idempotency_keys(engine: Any, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            swept = await idempotency_store.sweep(engine)
            if swept:
                log.info("expired idempotency keys deleted", count=swept)
        except Exception:
            log.exception("idempotency key sweep failed; retried next interval")


def _grpc_channel(target: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(
        target,
        interceptors=aio_client_interceptors(),
        # After a service restarts, reconnect within a second or two rather than after
        # gRPC's default backoff (up to two minutes), so partners' retries soon succeed.
        options=[
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 2000),
        ],
    )


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()  # type: ignore[call-arg]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        channel = _grpc_channel(settings.orders_target)
        inventory = _grpc_channel(settings.inventory_target)
        app.state.inventory = inventory_pb2_grpc.InventoryServiceStub(inventory)
        app.state.orders = orders_pb2_grpc.OrdersServiceStub(channel)
        app.state.orders_health = health_pb2_grpc.HealthStub(channel)
        app.state.engine = create_engine(settings.database_url, pool_size=settings.db_pool_size,
                                         max_overflow=settings.db_max_overflow)
        app.state.token_secret = await signing_secret(settings, app.state.engine)
        app.state.page_key = await stored_key(app.state.engine, metadata, pagination.KEY_NAME)
        sweep = asyncio.create_task(_sweep_idempotency_keys(
            app.state.engine, settings.idempotency_sweep_interval_seconds))
        hooks = await webhooks.start(app.state, settings)
        try:
            yield
        finally:
            await hooks.stop()
            sweep.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweep
            await channel.close()
            await inventory.close()
            await app.state.engine.dispose()

    app = FastAPI(
        title="OMS partner API",
        version="1.0.0",
        summary="Orders in from every sales channel.",
        lifespan=lifespan,
    )

    app.state.token_ttl_seconds = settings.access_token_ttl_seconds
    app.state.settings = settings
    app.include_router(oauth_api.router)
    app.include_router(csv_api.router(
        timeout=settings.request_timeout_seconds, max_rows=settings.csv_import_max_rows,
        max_orders=settings.csv_import_max_orders,
        batch_orders=settings.csv_import_batch_orders,
        export_max_orders=settings.csv_export_max_orders))
    app.include_router(stock_api.router(timeout=settings.request_timeout_seconds))
    app.include_router(inbound_webhooks.router)
    app.include_router(webhook_endpoints.router)

    @app.exception_handler(Problem)
    async def on_problem(request: Request, problem: Problem) -> JSONResponse:
        return problem_response(request, problem)

    @app.exception_handler(grpc.aio.AioRpcError)
    async def on_rpc_error(request: Request, error: grpc.aio.AioRpcError) -> JSONResponse:
        if not is_expected(error.code()):
            log.error("unexpected status from orders", path=request.url.path,
                      code=error.code().name, detail=error.details())
        return problem_response(request, from_rpc_error(
            error, getattr(request.state, "body", None)))

    @app.exception_handler(HTTPException)
    async def on_http_error(request: Request, error: HTTPException) -> JSONResponse:
        return problem_response(
            request, from_http_status(error.status_code, str(error.detail), error.headers))

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

    # Outermost last: the access log around authentication, which identifies the partner
    # for the audit log, the rate limits and the idempotency layer inside it.
    app.add_middleware(Idempotency, ttl_seconds=settings.idempotency_ttl_seconds,
                       lease_seconds=settings.idempotency_lease_seconds,
                       max_body_bytes=settings.max_body_bytes)
    by_kind, by_partner = policies(settings.rate_limits, settings.partner_rate_limits)
    app.add_middleware(RateLimit, limits=RateLimits(
        by_kind, by_partner, max_partners=settings.rate_limit_max_partners))
    app.add_middleware(Audit)
    app.add_middleware(Authenticate)
    app.add_middleware(AccessLog)
    # Here rather than in __main__, so that tests serve what runs: the access log reads the
    # trace id from the request's span.
    FastAPIInstrumentor.instrument_app(app)
    timeout = settings.request_timeout_seconds

    @app.post("/v1/orders", status_code=201, tags=["orders"],
              summary="Capture an order from a sales channel")
    async def create_order(
        request: Request,
        response: Response,
        order: Annotated[dict[str, Any], Body(examples=[ORDER_EXAMPLE])],
        partner: Annotated[Partner, Depends(require("orders:write"))],
        idempotency_key: Annotated[str, Header(alias=HEADER)],
    ) -> dict[str, Any]:
        message = _parse(request, order, CREATE_BODY)
        if not partner.may_see_channel(message.channel):
            raise Problem(403, "Permission denied",
                          f"the partner may not create orders for channel {message.channel!r}",
                          kind="permission-denied",
                          extra={"errors": [{"field": "channel",
                                             "detail": "not a channel of this partner"}]})
        created = await request.app.state.orders.CreateOrder(
            orders_pb2.CreateOrderRequest(order=message, request_id=reached(request)),
            timeout=timeout, metadata=_actor(partner),
        )
        response.headers["Location"] = f"/v1/{created.name}"
        return _to_json(created)

    @app.get("/v1/orders", tags=["orders"], summary="List a channel's orders, page by page")
    async def list_orders(
        request: Request,
        partner: Annotated[Partner, Depends(require("orders:read"))],
        channel: Annotated[str | None, Query(
            description="One of the partner's channels; may be left out by a partner bound "
            "to one")] = None,
        filter_: Annotated[str, Query(
            alias="filter", max_length=2000,
            description='AIP-160 terms joined by AND, e.g. `status = RELEASED AND '
            'create_time >= "2026-11-01T00:00:00Z"` (the fields of the orders service\'s '
            'ListOrders)')] = "",
        page_size: Annotated[int, Query(
            alias="pageSize", ge=0, le=MAX_PAGE_SIZE,
            description="At most this many orders (0: the default, 50)")] = 0,
        page_token: Annotated[str, Query(
            alias="pageToken", max_length=2000,
            description="A previous page's nextPageToken, with the same channel and filter")]
            = "",
    ) -> dict[str, Any]:
        """Keyset pagination (AIP-158): `nextPageToken` is empty on the last page. The
        channel's term is added to the filter, which takes no OR: no filter reaches beyond
        the partner's channels."""
        request.state.body = LIST_QUERY
        channel = chosen_channel(partner, channel, action="list the orders of")
        scoped = scoped_filter(channel, filter_)
        page = await request.app.state.orders.ListOrders(
            orders_pb2.ListOrdersRequest(filter=scoped, page_size=page_size,
                                         page_token=page_token), timeout=timeout)
        return _to_json(page)

    @app.get("/v1/orders/{order_id}", tags=["orders"], summary="Get an order")
    async def get_order(
        request: Request,
        order_id: str,
        partner: Annotated[Partner, Depends(require("orders:read"))],
    ) -> dict[str, Any]:
        request.state.body = GET_BODY
        return _to_json(await _visible_order(request, partner, order_id, timeout))

    @app.post("/v1/orders/{order_id}/payments", tags=["payments"],
              summary="Report a payment event (payment provider webhook)")
    async def record_payment(
        request: Request,
        order_id: str,
        payment: Annotated[dict[str, Any], Body(examples=[PAYMENT_EXAMPLE])],
        partner: Annotated[Partner, Depends(require("payments:write"))],
        idempotency_key: Annotated[str, Header(alias=HEADER)],
    ) -> dict[str, Any]:
        """An authorisation, capture, failure or refund. The provider's `transactionId` makes
        a redelivered webhook change nothing. Returns the order as it is now."""
        transaction = _parse(request, payment, PAYMENT_BODY)
        await _visible_order(request, partner, order_id, timeout)
        reached(request)
        order = await request.app.state.orders.RecordPayment(
            orders_pb2.RecordPaymentRequest(
                name=_order_name(order_id),
                payment=transaction,
            ),
            timeout=timeout, metadata=_actor(partner),
        )
        return _to_json(order)

    @app.post("/v1/orders/{order_id}:cancel", tags=["orders"],
              summary="Cancel an order, or units of its lines, before shipment")
    async def cancel_order(
        request: Request,
        order_id: str,
        cancellation: Annotated[dict[str, Any], Body(examples=[CANCEL_EXAMPLE])],
        partner: Annotated[Partner, Depends(require("orders:write"))],
        idempotency_key: Annotated[str, Header(alias=HEADER)],
    ) -> dict[str, Any]:
        """No `lines` cancels the whole order. Refused with 409 once the units shipped."""
        message = _parse(request, cancellation, CANCEL_BODY)
        await _visible_order(request, partner, order_id, timeout)
        message.name = _order_name(order_id)
        message.request_id = reached(request)
        order = await request.app.state.orders.CancelOrder(
            message, timeout=timeout, metadata=_actor(partner)
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

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app, {**OPERATIONS, **csv_api.OPERATIONS,
                                                   **stock_api.OPERATIONS,
                                                   **webhooks.OPERATIONS})
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
