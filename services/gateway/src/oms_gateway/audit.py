"""The audit log: one row per answer to an identified partner — who (partner), what
(method, path, the resource's id), the outcome (status) and when — in the gateway's
database, where it outlives the logs. A failure to write it is logged and does not change
the answer, which has been sent by then."""

from __future__ import annotations

import structlog
from opentelemetry import trace
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from oms_gateway.auth import partner_in
from oms_gateway.tables import audit_log

log = structlog.get_logger(__name__)

PATH_LIMIT = 500


class Audit:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or partner_in(scope) is None:
            await self.app(scope, receive, send)
            return
        status = 0
        location: str | None = None

        async def sending(message: Message) -> None:
            nonlocal status, location
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", []):
                    if name.lower() == b"location":
                        location = value.decode()
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            partner = partner_in(scope)
            assert partner is not None
            try:
                engine = scope["app"].state.engine
                async with engine.begin() as conn:
                    await conn.execute(audit_log.insert().values(
                        partner_id=partner.partner_id, method=scope["method"],
                        path=str(scope["path"])[:PATH_LIMIT],
                        resource_id=_resource(scope, location), status=status or 503,
                        trace_id=_trace_id()))
            except Exception:
                log.exception("could not write the audit log", partner_id=partner.partner_id)


def _resource(scope: Scope, location: str | None) -> str | None:
    """The id the path names, or the one the answer's Location names (a create)."""
    params = scope.get("path_params") or _path_params(scope)
    if params:
        return str(next(iter(params.values())))[:PATH_LIMIT]
    if location:
        return location.rstrip("/").rsplit("/", 1)[-1][:PATH_LIMIT]
    return None


def _path_params(scope: Scope) -> dict[str, object]:
    """For answers given before routing (a replayed idempotent answer)."""
    for route in scope["app"].router.routes:
        match, child = route.matches(scope)
        if match is Match.FULL:
            return dict(child.get("path_params", {}))
    return {}


def _trace_id() -> str | None:
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None
