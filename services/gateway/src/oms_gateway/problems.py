"""RFC 9457 problem details for every error the gateway returns.

Every gRPC status of the orders service has an answer here, and none of them is a 500: what
the caller can fix is a 4xx, and everything else is a 503 with ``Retry-After`` — contention
(``ABORTED``), a lost dependency (``UNAVAILABLE``), a timeout, and whatever was not expected
(``UNKNOWN``, ``INTERNAL``, …), which the caller retries like an outage while the gateway logs it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import grpc
from fastapi import Request
from fastapi.responses import JSONResponse
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from oms_gateway.fields import Shape

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://oms.example.com/problems/"
# Seconds a caller waits before retrying a 429 or 503 when the service named no delay.
DEFAULT_RETRY_AFTER = 1


@dataclass(frozen=True)
class _Answer:
    status: int
    title: str
    # For 5xx: said instead of the status message, which is internal (addresses, exceptions).
    detail: str | None = None


_RETRY = "retry after the time in Retry-After, with the same Idempotency-Key"
_ANSWERS = {
    grpc.StatusCode.INVALID_ARGUMENT: _Answer(400, "Invalid argument"),
    grpc.StatusCode.OUT_OF_RANGE: _Answer(400, "Out of range"),
    grpc.StatusCode.UNAUTHENTICATED: _Answer(401, "Unauthenticated"),
    grpc.StatusCode.PERMISSION_DENIED: _Answer(403, "Permission denied"),
    grpc.StatusCode.NOT_FOUND: _Answer(404, "Not found"),
    grpc.StatusCode.ALREADY_EXISTS: _Answer(409, "Already exists"),
    # The resource's state forbids the change (an order already shipped, …): a conflict
    # with the resource, which retrying does not resolve.
    grpc.StatusCode.FAILED_PRECONDITION: _Answer(409, "Failed precondition"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: _Answer(429, "Too many requests"),
    # In this system ABORTED is contention (a deadlock, a serialization failure): the same
    # request succeeds when retried, so it is an outage to the caller, not a conflict.
    grpc.StatusCode.ABORTED: _Answer(
        503, "Aborted", f"the request met concurrent changes and was not applied; {_RETRY}"),
    grpc.StatusCode.UNAVAILABLE: _Answer(
        503, "Service unavailable", f"the service behind the gateway is unavailable; {_RETRY}"),
    grpc.StatusCode.DEADLINE_EXCEEDED: _Answer(
        503, "Deadline exceeded", f"the request did not complete in time; {_RETRY}"),
}
_UNEXPECTED = _Answer(503, "Service unavailable", f"the request could not be completed; {_RETRY}")
# Every status an answer of the orders service can become.
SERVICE_STATUSES = frozenset({a.status for a in _ANSWERS.values()} | {_UNEXPECTED.status})


class Problem(Exception):
    def __init__(self, status: int, title: str, detail: str, *, kind: str,
                 extra: dict[str, Any] | None = None, retry_after: int | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.kind = status, title, detail, kind
        self.extra = extra or {}
        self.retry_after = retry_after
        self.headers = headers or {}


def unavailable() -> Problem:
    """The answer to anything that went wrong unexpectedly: the caller retries later."""
    return Problem(_UNEXPECTED.status, _UNEXPECTED.title, _UNEXPECTED.detail or "",
                   kind="unavailable")


def problem_response(request: Request, problem: Problem) -> JSONResponse:
    body = {
        "type": PROBLEM_BASE + problem.kind,
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
        "instance": request.url.path,
        **problem.extra,
    }
    headers = dict(problem.headers)
    if problem.status in (429, 503):
        headers["Retry-After"] = str(problem.retry_after or DEFAULT_RETRY_AFTER)
    return JSONResponse(body, status_code=problem.status, media_type=PROBLEM_JSON,
                        headers=headers)


def from_http_status(status: int, detail: str, headers: dict[str, str] | None = None) -> Problem:
    """The routing and body-parsing errors of the framework (404, 405, a body that is not
    UTF-8, …), which would otherwise be plain JSON."""
    if status >= 500:
        return unavailable()
    if status == 400:  # a body that is not JSON: an invalid argument like the others
        return Problem(400, "Invalid argument", detail, kind="invalid-argument",
                       headers=headers)
    phrase = HTTPStatus(status).phrase
    return Problem(status, phrase, detail, kind=phrase.lower().replace(" ", "-"),
                   headers=headers)


def is_expected(code: grpc.StatusCode) -> bool:
    """False for the statuses no service of the suite is meant to answer (UNKNOWN, INTERNAL,
    …): the gateway still answers them, and logs them as errors."""
    return code in _ANSWERS


def from_rpc_error(error: grpc.aio.AioRpcError, body: Shape | None = None) -> Problem:
    """The problem answering ``error``; with the route's ``body``, field violations are named
    by their path in the partner's JSON body rather than in the gRPC request."""
    code = error.code()
    answer = _ANSWERS.get(code)
    if answer is None:
        return unavailable()
    extra: dict[str, Any] = {}
    retry_after: int | None = None
    rich = rpc_status.from_call(error)
    for detail in rich.details if rich else []:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            extra["errors"] = [
                {"field": body.path(v.field) if body is not None else v.field,
                 "detail": v.description}
                for v in bad_request.field_violations
            ]
        elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            extra["reason"] = info.reason
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            seconds = retry.retry_delay.ToTimedelta().total_seconds()
            retry_after = max(1, math.ceil(seconds))
    return Problem(answer.status, answer.title, answer.detail or error.details() or "",
                   kind=code.name.lower().replace("_", "-"), extra=extra,
                   retry_after=retry_after)
