"""The idempotency layer: between authentication (it needs the partner) and the routes.

It reads the whole body (bounded by the size limit), claims the key, runs the route, and
stores its answer before sending it — so a retry that arrives the moment the answer does
finds it stored, not in flight. A route marks with :func:`reached` the point from which its
answer is final (it called the service that carries the request out); an answer refused
before that point (a bad body, a missing scope, another partner's order) is not stored,
like Stripe's validation failures, and the key stays free.
"""

from __future__ import annotations

from datetime import timedelta

import structlog
from fastapi import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from oms_gateway.auth import partner_in
from oms_gateway.idempotency import store
from oms_gateway.idempotency.domain import (
    REPLAY_HEADER,
    REPLAYED_HEADERS,
    Outcome,
    fingerprint,
    forwarded_request_id,
    is_stored,
    judge,
    key_violation,
)
from oms_gateway.problems import Problem, problem_response

log = structlog.get_logger(__name__)

HEADER = "Idempotency-Key"
# Webhooks in carry their own id (``webhook-id``), deduplicated by ``webhooks.inbound``.
EXEMPT_PREFIX = "/v1/webhooks/"
_REACHED = "idempotency_reached"
_REQUEST_ID = "idempotency_request_id"


def reached(request: Request) -> str:
    """Marks the request's answer as final from here on; returns the ``request_id`` to send
    to the service."""
    request.state.idempotency_reached = True
    return str(request.state.idempotency_request_id)


class BodyTooLarge(Exception):
    pass


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None when the client went away; BodyTooLarge past ``limit``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def too_large(limit: int) -> Problem:
    return Problem(413, "Content too large", f"the body is larger than {limit} bytes",
                   kind="content-too-large")


class Idempotency:
    def __init__(self, app: ASGIApp, *, ttl_seconds: float, lease_seconds: float,
                 max_body_bytes: int) -> None:
        self.app = app
        self.ttl = timedelta(seconds=ttl_seconds)
        self.lease = timedelta(seconds=lease_seconds)
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        partner = partner_in(scope)
        if (scope["type"] != "http" or scope["method"] != "POST" or partner is None
                or scope["path"].startswith(EXEMPT_PREFIX)):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        key = request.headers.get(HEADER)
        violation = key_violation(key)
        if violation is not None:
            await self._refuse(scope, receive, send, Problem(
                400, "Invalid argument", violation, kind="invalid-argument",
                extra={"errors": [{"field": HEADER, "detail": violation}]}))
            return
        assert key is not None
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send, too_large(self.limit))
            return
        try:
            body = await read_body(receive, self.limit)
        except BodyTooLarge:
            await self._refuse(scope, receive, send, too_large(self.limit))
            return
        if body is None:
            return
        engine = scope["app"].state.engine
        print_ = fingerprint(scope["method"], scope["path"], scope.get("query_string", b""),
                             body)
        lease = await store.claim(engine, partner.partner_id, key, print_, lease=self.lease,
                                  ttl=self.ttl)
        if lease is None:
            await self._answer_taken(scope, receive, send, partner.partner_id, key, print_)
            return

        scope.setdefault("state", {})[_REQUEST_ID] = forwarded_request_id(
            partner.partner_id, key, print_)
        delivered = False

        async def once() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        start: Message | None = None
        chunks: list[bytes] = []

        async def buffer(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        try:
            await self.app(scope, once, buffer)
        except BaseException:
            await store.release(engine, partner.partner_id, key, lease)
            raise
        assert start is not None
        content = b"".join(chunks)
        status = int(start["status"])
        if scope["state"].get(_REACHED) and is_stored(status):
            headers = {name.decode().lower(): value.decode()
                       for name, value in start.get("headers", [])}
            kept = {name: headers[name] for name in REPLAYED_HEADERS if name in headers}
            try:
                await store.complete(engine, partner.partner_id, key, lease, status=status,
                                     headers=kept, body=content)
            except Exception:
                # The answer stands; the key stays in flight until its lease lapses, and a
                # retry then is deduplicated by the service through the forwarded request id.
                log.exception("could not store an idempotent answer",
                              partner_id=partner.partner_id)
        else:
            await store.release(engine, partner.partner_id, key, lease)
        await send(start)
        await send({"type": "http.response.body", "body": content, "more_body": False})

    async def _answer_taken(self, scope: Scope, receive: Receive, send: Send,
                            partner_id: str, key: str, print_: bytes) -> None:
        stored = await store.find(scope["app"].state.engine, partner_id, key)
        outcome = judge(stored, print_)
        if outcome is Outcome.REPLAY:
            assert stored is not None and stored.status is not None
            response = Response(stored.body, status_code=stored.status,
                                headers={**stored.headers, REPLAY_HEADER: "true"})
            await response(scope, receive, send)
        elif outcome is Outcome.MISMATCH:
            await self._refuse(scope, receive, send, Problem(
                422, "Idempotency key reused",
                f"this {HEADER} was used for a different request; use a new key for a new "
                "request", kind="idempotency-key-reused"))
        else:
            await self._refuse(scope, receive, send, Problem(
                409, "Idempotency key in flight",
                f"a request with this {HEADER} is still being processed; retry it later",
                kind="idempotency-key-in-flight", headers={"Retry-After": "1"}))

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, problem: Problem) -> None:
        await problem_response(Request(scope), problem)(scope, receive, send)
