"""The event envelope, subject naming, trace headers and the gRPC error mapping."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import grpc
import pytest
from google.protobuf import json_format
from google.rpc import code_pb2, error_details_pb2
from grpc_status import rpc_status
from oms.inventory.v1 import events_pb2 as inventory_events
from oms.orders.v1 import events_pb2
from oms_platform import events
from oms_platform.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Violations,
)
from oms_platform.grpc_errors import ERROR_DOMAIN, DomainErrorInterceptor, to_status
from oms_platform.telemetry import configure_tracing, extract_context, inject_headers, tracer
from opentelemetry import trace

CE_HEADERS = ("ce-specversion", "ce-id", "ce-type", "ce-source", "ce-subject", "ce-time")


def _order_created() -> events_pb2.OrderCreated:
    order = events_pb2.OrderCreated(
        order=f"orders/{uuid.uuid4()}",
        channel="channels/shop-1",
        external_order_id="EXT-1001",
    )
    order.create_time.FromDatetime(datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC))
    return order


# --------------------------------------------------------------------------- addressing


def test_subject_is_derived_from_the_proto_message() -> None:
    assert events.subject_for(events_pb2.OrderCreated) == "oms.orders.order_created"
    assert events.subject_for(events_pb2.OrderCreated()) == "oms.orders.order_created"
    assert (
        events.subject_for(events_pb2.OrderCreated, partition="node-1")
        == "oms.orders.order_created.node-1"
    )
    assert events.subject_for(events_pb2.OrderStatusChanged) == "oms.orders.order_status_changed"
    assert events.subject_for(inventory_events.StockAllocated) == "oms.inventory.stock_allocated"
    assert events.subject_filter(events_pb2.OrderCreated) == "oms.orders.order_created.>"


def test_stream_and_type_names() -> None:
    assert events.producing_service(events_pb2.OrderCreated) == "orders"
    assert events.event_type(events_pb2.OrderCreated) == "oms.orders.v1.OrderCreated"
    assert events.stream_name("orders") == "OMS_ORDERS"
    assert events.stream_subjects("orders") == ["oms.orders.>"]


# --------------------------------------------------------------------------- envelope


def test_envelope_round_trip() -> None:
    message = _order_created()
    envelope = events.encode(message, aggregate_id=message.order, source="oms/orders")

    decoded = events.decode(envelope.headers, envelope.payload, [events_pb2.OrderCreated])

    assert decoded == message
    assert isinstance(decoded, events_pb2.OrderCreated)
    assert envelope.subject == "oms.orders.order_created"


def test_envelope_body_is_proto3_json() -> None:
    message = _order_created()
    envelope = events.encode(message, aggregate_id=message.order, source="oms/orders")

    body = json.loads(envelope.payload)

    assert body == json_format.MessageToDict(message)
    assert body["externalOrderId"] == "EXT-1001"
    assert body["createTime"] == "2025-01-02T03:04:05Z"


def test_envelope_headers() -> None:
    message = _order_created()
    event_id = uuid.uuid4()
    at = datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)

    envelope = events.encode(
        message,
        aggregate_id=message.order,
        source="oms/orders",
        partition="node-1",
        event_id=event_id,
        time=at,
    )

    headers = envelope.headers
    for name in CE_HEADERS:
        assert headers.get(name), name
    assert envelope.event_id == event_id
    assert envelope.subject == "oms.orders.order_created.node-1"
    assert headers["ce-specversion"] == "1.0"
    assert headers["ce-id"] == str(event_id)
    assert headers["Nats-Msg-Id"] == headers["ce-id"]
    assert headers["ce-type"] == "oms.orders.v1.OrderCreated"
    assert headers["ce-source"] == "oms/orders"
    assert headers["ce-subject"] == message.order
    assert headers["ce-time"] == "2025-01-02T03:04:05.123456Z"
    assert headers["ce-datacontenttype"] == "application/json"
    assert headers["ce-dataschema"] == "proto:oms.orders.v1.OrderCreated"
    assert all(isinstance(v, str) for v in headers.values())


def test_each_envelope_gets_its_own_id_and_a_utc_time() -> None:
    message = _order_created()
    first = events.encode(message, aggregate_id=message.order, source="s")
    second = events.encode(message, aggregate_id=message.order, source="s")

    assert first.event_id != second.event_id
    assert first.headers["Nats-Msg-Id"] == str(first.event_id)
    parsed = datetime.fromisoformat(first.headers["ce-time"].replace("Z", "+00:00"))
    assert parsed.utcoffset() is not None
    assert first.headers["ce-time"].endswith("Z")


def test_decode_refuses_an_unknown_type() -> None:
    message = _order_created()
    envelope = events.encode(message, aggregate_id=message.order, source="s")

    with pytest.raises(events.UnknownEventType):
        events.decode(envelope.headers, envelope.payload, [events_pb2.OrderStatusChanged])
    with pytest.raises(events.UnknownEventType):
        events.decode({}, envelope.payload, [events_pb2.OrderCreated])


def test_decode_ignores_fields_it_does_not_know() -> None:
    """A newer producer may add fields; an older consumer still reads the event."""
    message = _order_created()
    envelope = events.encode(message, aggregate_id=message.order, source="s")
    body = json.loads(envelope.payload) | {"addedInALaterVersion": 42}

    decoded = events.decode(envelope.headers, json.dumps(body).encode(), [events_pb2.OrderCreated])

    assert decoded == message


# --------------------------------------------------------------------------- tracing


def test_no_traceparent_without_an_active_span() -> None:
    configure_tracing("platform-tests")
    assert not trace.get_current_span().get_span_context().is_valid
    assert "traceparent" not in inject_headers()


def test_active_span_is_injected_as_traceparent() -> None:
    configure_tracing("platform-tests")
    message = _order_created()

    with tracer().start_as_current_span("produce") as span:
        context = span.get_span_context()
        envelope = events.encode(
            message, aggregate_id=message.order, source="s", trace_headers=inject_headers()
        )

    assert context.is_valid
    traceparent = envelope.headers["traceparent"]
    version, trace_id, span_id, _flags = traceparent.split("-")
    assert version == "00"
    assert trace_id == format(context.trace_id, "032x")
    assert span_id == format(context.span_id, "016x")
    # The envelope's own headers are not overridden by the trace headers.
    assert envelope.headers["Nats-Msg-Id"] == str(envelope.event_id)

    extracted = trace.get_current_span(extract_context(envelope.headers)).get_span_context()
    assert extracted.trace_id == context.trace_id
    assert extracted.span_id == context.span_id
    assert extracted.is_remote


# --------------------------------------------------------------------------- errors


def _unpack(status, kind):  # type: ignore[no-untyped-def]
    found = []
    for detail in status.details:
        if detail.Is(kind.DESCRIPTOR):
            value = kind()
            detail.Unpack(value)
            found.append(value)
    return found


def test_invalid_argument_carries_error_info_and_every_field_violation() -> None:
    violations = Violations()
    violations.require(False, "order.lines", "at least one line is required")
    violations.require(True, "order.channel", "never reported")
    violations.add("order.lines[0].quantity", "must be positive")
    violations.add("order.shipping_address.country_code", "must be an ISO 3166-1 code")
    with pytest.raises(InvalidArgument) as raised:
        violations.raise_if_any()

    status = to_status(raised.value)

    assert status.code == code_pb2.INVALID_ARGUMENT
    assert "order.lines: at least one line is required" in status.message
    [info] = _unpack(status, error_details_pb2.ErrorInfo)
    assert info.reason == "INVALID_ARGUMENT"
    assert info.domain == ERROR_DOMAIN
    [bad_request] = _unpack(status, error_details_pb2.BadRequest)
    assert [(v.field, v.description) for v in bad_request.field_violations] == [
        ("order.lines", "at least one line is required"),
        ("order.lines[0].quantity", "must be positive"),
        ("order.shipping_address.country_code", "must be an ISO 3166-1 code"),
    ]


def test_no_violations_raise_nothing() -> None:
    Violations().raise_if_any()


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (NotFound("order orders/1 not found"), code_pb2.NOT_FOUND),
        (AlreadyExists("exists"), code_pb2.ALREADY_EXISTS),
        (FailedPrecondition("order is shipped"), code_pb2.FAILED_PRECONDITION),
        (DomainError("generic"), code_pb2.FAILED_PRECONDITION),
    ],
)
def test_domain_errors_map_to_codes(error: DomainError, code: int) -> None:
    status = to_status(error)

    assert status.code == code
    assert status.message == error.message
    [info] = _unpack(status, error_details_pb2.ErrorInfo)
    assert info.reason == error.reason
    assert info.domain == ERROR_DOMAIN
    assert _unpack(status, error_details_pb2.BadRequest) == []


def test_error_info_keeps_reason_and_metadata() -> None:
    error = FailedPrecondition(
        "order is already shipped",
        reason="ORDER_ALREADY_SHIPPED",
        metadata={"order": "orders/1", "status": "SHIPPED"},
    )

    [info] = _unpack(to_status(error), error_details_pb2.ErrorInfo)

    assert info.reason == "ORDER_ALREADY_SHIPPED"
    assert dict(info.metadata) == {"order": "orders/1", "status": "SHIPPED"}


def test_invalid_argument_with_explicit_message() -> None:
    error = InvalidArgument([FieldViolation("page_size", "must not be negative")], "bad page")

    status = to_status(error)

    assert status.message == "bad page"
    [bad_request] = _unpack(status, error_details_pb2.BadRequest)
    assert bad_request.field_violations[0].field == "page_size"


async def test_interceptor_turns_domain_errors_into_rich_grpc_status() -> None:
    """Over a real (in-process) gRPC server, the caller gets the code and the details."""

    async def refuse(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        raise InvalidArgument([FieldViolation("a", "bad a"), FieldViolation("b", "bad b")])

    async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return request

    handler = grpc.method_handlers_generic_handler(
        "oms.test.v1.Probe",
        {
            "Refuse": grpc.unary_unary_rpc_method_handler(refuse),
            "Echo": grpc.unary_unary_rpc_method_handler(echo),
        },
    )
    server = grpc.aio.server(interceptors=[DomainErrorInterceptor()])
    server.add_generic_rpc_handlers([handler])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            assert await channel.unary_unary("/oms.test.v1.Probe/Echo")(b"hi") == b"hi"
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await channel.unary_unary("/oms.test.v1.Probe/Refuse")(b"")
    finally:
        await server.stop(None)

    error = raised.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(error)
    assert status is not None
    assert status.code == code_pb2.INVALID_ARGUMENT
    [info] = _unpack(status, error_details_pb2.ErrorInfo)
    assert info.reason == "INVALID_ARGUMENT"
    [bad_request] = _unpack(status, error_details_pb2.BadRequest)
    assert [v.field for v in bad_request.field_violations] == ["a", "b"]
