"""The gateway's answers to every gRPC status, and its idempotency and partner rules, without
servers. The app's own answers (over its database) are in tests/integration/test_gateway*.py."""

from __future__ import annotations

from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from oms_gateway.idempotency.domain import (
    Outcome,
    Stored,
    fingerprint,
    forwarded_request_id,
    is_stored,
    judge,
    key_violation,
)
from oms_gateway.partners.domain import (
    Kind,
    PartnerError,
    check_partner,
    issue_key,
    key_prefix,
    matches,
)
from oms_gateway.problems import PROBLEM_JSON, from_rpc_error, problem_response
from starlette.requests import Request


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


def test_a_fingerprint_compares_json_by_meaning_and_everything_else_by_bytes() -> None:
    a = fingerprint("POST", "/v1/orders", b"", b'{"a": 1, "b": [1, 2]}')
    assert a == fingerprint("POST", "/v1/orders", b"", b'{\n "b": [1,2], "a": 1}')
    assert a != fingerprint("POST", "/v1/orders", b"", b'{"a": 1, "b": [2, 1]}')
    assert a != fingerprint("POST", "/v1/orders/x:cancel", b"", b'{"a": 1, "b": [1, 2]}')
    assert fingerprint("POST", "/p", b"", b"\xff") != fingerprint("POST", "/p", b"", b"\xfe")


def test_keys_must_be_given_and_visible_ascii() -> None:
    assert key_violation(None) and key_violation("") and key_violation("a b")
    assert key_violation("x" * 256) and not key_violation("x" * 255)
    assert key_violation("8c5f1f0e-4f0b-4c41-9b0e-0e8f7b1d2c3a") is None


def test_a_forwarded_request_id_names_partner_key_and_request() -> None:
    one = forwarded_request_id("p1", "k", b"f")
    assert len(one) <= 100, "within the services' request_id bound"
    assert one == forwarded_request_id("p1", "k", b"f")
    assert len({one, forwarded_request_id("p2", "k", b"f"),
                forwarded_request_id("p1", "k", b"g")}) == 3


def test_retryable_answers_are_not_stored() -> None:
    assert [s for s in (200, 201, 400, 404, 409, 422, 429, 500, 503) if is_stored(s)] == [
        200, 201, 400, 404, 409, 422]


def test_what_a_request_meets_on_a_taken_key() -> None:
    done = Stored(fingerprint=b"f", status=201, headers={}, body=b"{}")
    running = Stored(fingerprint=b"f", status=None, headers={}, body=b"")
    assert judge(done, b"f") is Outcome.REPLAY
    assert judge(done, b"g") is Outcome.MISMATCH
    assert judge(running, b"g") is Outcome.MISMATCH
    assert judge(running, b"f") is Outcome.IN_FLIGHT
    assert judge(None, b"f") is Outcome.IN_FLIGHT


def test_keys_are_random_verifiable_and_their_prefix_is_public() -> None:
    key = issue_key()
    assert key_prefix(key.secret) == key.prefix and key.prefix in key.secret
    assert matches(key.secret, key.digest)
    assert not matches(key.secret[:-1] + ("A" if key.secret[-1] != "A" else "B"), key.digest)
    assert issue_key().secret != key.secret
    assert key_prefix("Bearer nonsense") is None


@pytest.mark.parametrize(("kind", "channels", "scopes", "reason"), [
    (Kind.SALES_CHANNEL, frozenset(), frozenset({"orders:read"}), "at least one channel"),
    (Kind.CARRIER, frozenset({"web"}), frozenset(), "not bound to channels"),
    (Kind.THREE_PL, frozenset(), frozenset({"orders:everything"}), "unknown"),
])
def test_a_partner_definition_is_checked_with_every_reason(
    kind: Kind, channels: frozenset[str], scopes: frozenset[str], reason: str,
) -> None:
    with pytest.raises(PartnerError) as error:
        check_partner("Bad Id", kind, "", channels, scopes)
    assert any(reason in r for r in error.value.reasons)
    assert len(error.value.reasons) >= 3, "the id and the name too"
