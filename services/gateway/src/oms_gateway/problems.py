"""RFC 9457 problem details for every error the gateway returns."""

from __future__ import annotations

from typing import Any

import grpc
from fastapi import Request
from fastapi.responses import JSONResponse
from google.rpc import error_details_pb2
from grpc_status import rpc_status

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://oms.example.com/problems/"

_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


class Problem(Exception):
    def __init__(self, status: int, title: str, detail: str, *, kind: str,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.kind = status, title, detail, kind
        self.extra = extra or {}


def problem_response(request: Request, problem: Problem) -> JSONResponse:
    body = {
        "type": PROBLEM_BASE + problem.kind,
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
        "instance": request.url.path,
        **problem.extra,
    }
    headers = {"Retry-After": "1"} if problem.status in (429, 503) else None
    return JSONResponse(body, status_code=problem.status, media_type=PROBLEM_JSON,
                        headers=headers)


def from_rpc_error(error: grpc.aio.AioRpcError) -> Problem:
    code = error.code()
    status = _HTTP_STATUS.get(code, 500)
    extra: dict[str, Any] = {}
    kind = code.name.lower().replace("_", "-")
    rich = rpc_status.from_call(error)
    for detail in rich.details if rich else []:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            extra["errors"] = [
                {"field": v.field, "detail": v.description} for v in bad_request.field_violations
            ]
        elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            extra["reason"] = info.reason
    if status == 500:
        return Problem(500, "Internal error", "the request could not be completed",
                       kind="internal")
    return Problem(status, code.name.replace("_", " ").capitalize(), error.details() or "",
                   kind=kind, extra=extra)
