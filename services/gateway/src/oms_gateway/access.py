"""The gateway's outermost layer of its own: one structured access line per answer, and the
last resort that turns an exception escaping the routes into a 503 problem, never a 500 page.

It runs inside the OpenTelemetry middleware, so the current span is the request's, and around
routing, so the matched route's template is known once the answer is sent.
"""

from __future__ import annotations

import time

import structlog
from opentelemetry import trace
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from oms_gateway.auth import partner_of
from oms_gateway.problems import problem_response, unavailable

log = structlog.get_logger("oms_gateway.access")

# An unmatched path is logged as sent, cut to this length: it is the caller's text.
RAW_PATH_LIMIT = 200


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            log.exception("request failed in the gateway", method=scope["method"],
                          path=_path(scope))
            if not status:  # else the answer has begun and can only be cut short
                await problem_response(Request(scope), unavailable())(scope, receive, sending)
        log.info(
            "answered",
            method=scope["method"],
            path=_path(scope),
            status=status,
            latency_ms=round((time.perf_counter() - started) * 1000, 1),
            trace_id=_trace_id(),
            partner_id=partner_of(scope),
        )


def _path(scope: Scope) -> str:
    """The route's template (``/v1/orders/{order_id}``), so ids do not make every line
    distinct; the raw path only when no route matched."""
    template = getattr(scope.get("route"), "path", None)
    return str(template) if template else str(scope["path"])[:RAW_PATH_LIMIT]


def _trace_id() -> str | None:
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None
