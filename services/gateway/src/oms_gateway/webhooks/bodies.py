"""Reading a webhook's or an endpoint's JSON body: bounded, then parsed into its message with
every bad field named by its JSON path (as the order routes do)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from google.protobuf import json_format, message_factory

from oms_gateway.fields import Shape, violations
from oms_gateway.problems import Problem


async def raw_body(request: Request, limit: int) -> bytes:
    """The body's bytes, or a 413 past ``limit`` (webhooks skip the idempotency layer, which
    bounds the other POSTs)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> Problem:
    return Problem(413, "Content too large", f"the body is larger than {limit} bytes",
                   kind="content-too-large")


def invalid(detail: str, errors: list[dict[str, str]]) -> Problem:
    return Problem(400, "Invalid argument", detail, kind="invalid-argument",
                   extra={"errors": errors})


def parse(request: Request, raw: bytes | dict[str, Any], shape: Shape) -> Any:
    """The body as ``shape``'s message, or a 400 naming every field that does not parse. The
    shape is kept on the request, so the service's own violations are named the same way."""
    request.state.body = shape
    if isinstance(raw, bytes):
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as error:
            raise invalid("the body is not JSON", [{"field": "", "detail": str(error)}]) \
                from error
    else:
        body = raw
    if not isinstance(body, dict):
        raise invalid("the body must be a JSON object", [{"field": "",
                                                          "detail": "must be an object"}])
    message = message_factory.GetMessageClass(shape.message)()
    try:
        json_format.ParseDict(body, message)
    except json_format.ParseError as error:
        errors = violations(body, shape.message) or [{"field": "", "detail": str(error)}]
        raise invalid("; ".join(f"{e['field']}: {e['detail']}" for e in errors),
                      errors) from error
    return message
