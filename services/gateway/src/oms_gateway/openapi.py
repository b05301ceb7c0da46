"""The OpenAPI 3.1 document: FastAPI's, with every body and answer typed from the proto
descriptors (:mod:`oms_gateway.schemas`) and every problem an operation can answer.

Which problems an operation can answer is derived from the code that answers them, not listed
by hand: every gRPC status the gateway maps (:data:`oms_gateway.problems.SERVICE_STATUSES`),
authentication and scopes (401, 403), the idempotency layer and the size limit on a POST
(400, 409, 413, 422), and 404 for an order id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from google.protobuf.descriptor import Descriptor

from oms_gateway.fields import Shape
from oms_gateway.idempotency.domain import REPLAY_HEADER
from oms_gateway.oauth.api import FORM_SCHEMA, OAUTH_ERROR_SCHEMA, TOKEN_SCHEMA
from oms_gateway.problems import PROBLEM_JSON, SERVICE_STATUSES
from oms_gateway.rate_limits import POLICY_HEADER, STATE_HEADER
from oms_gateway.schemas import PROBLEM, Components


@dataclass(frozen=True)
class Operation:
    """What the document says of one route beyond FastAPI's own: its body (None: no body),
    its answer's message and status, and an example that works against the demo data.

    A route whose body or answer is no proto message (a CSV file, a result of the gateway's
    own) gives its JSON Schema instead (``body_schema``, ``answer`` as a mapping) and media
    type; ``refers_to`` are the messages such a schema refers to."""

    answer: Descriptor | Mapping[str, Any]
    status: int = 200
    body: Shape | None = None
    body_name: str | None = None
    example: Mapping[str, Any] | str | None = None
    example_summary: str = ""
    description: str = "The order as it is now"
    answer_media: str = "application/json"
    body_schema: Mapping[str, Any] | None = None
    body_media: str = "application/json"
    refers_to: tuple[Descriptor, ...] = ()
    # The problems it can answer, when not those :func:`statuses` derives for order routes.
    problems: frozenset[int] | None = None


_OAUTH = {"TokenRequest": FORM_SCHEMA, "AccessToken": TOKEN_SCHEMA,
          "OAuthError": OAUTH_ERROR_SCHEMA}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying",
                                "schema": {"type": "integer", "minimum": 1}}}
PROBLEMS: dict[int, tuple[str, dict[str, Any]]] = {
    400: ("A bad body, header or parameter (for a webhook in, a stale timestamp); `errors` "
          "names every bad field, by its JSON path", {}),
    401: ("No credentials, or unknown, expired or revoked ones; for a webhook in, a "
          "signature that matches no signing secret of the partner",
          {"WWW-Authenticate": {"schema": {"type": "string"}}}),
    403: ("The credentials lack the operation's scope (`scope`), or the channel is not the "
          "partner's", {}),
    404: ("No such order, SKU, endpoint, delivery or shipment — or another partner's, "
          "answered the same", {}),
    409: ("The resource's state forbids it (`reason`), or a request with this "
          "Idempotency-Key (a webhook with this id) is still in flight (with Retry-After)",
          _RETRY_AFTER),
    413: ("The body is larger than the limit", {}),
    422: ("This Idempotency-Key was used for a different request", {}),
    429: ("Too many requests: the partner's rate limit is spent (RateLimit-Policy, RateLimit), "
          "or the service is saturated; retry after Retry-After", _RETRY_AFTER),
    503: ("Retry later, with the same Idempotency-Key: the service behind the route (orders, "
          "inventory) is unavailable or the request met contention", _RETRY_AFTER),
}
# On every answer to an identified partner (all but a 401).
_RATE_LIMIT = {
    POLICY_HEADER: {"description": "The partner's quotas (draft-ietf-httpapi-ratelimit-"
                    "headers): `\"<name>\";q=<units>;w=<seconds>` per quota, per replica",
                    "schema": {"type": "string", "examples": [
                        '"50 per 1 second";q=50;w=1, "1800 per 1 minute";q=1800;w=60']}},
    STATE_HEADER: {"description": "What is left of each quota: `\"<name>\";r=<remaining>;"
                   "t=<seconds until a unit is back>`", "schema": {"type": "string", "examples": [
                       '"50 per 1 second";r=49;t=1, "1800 per 1 minute";r=1799;t=60']}},
}
_IDEMPOTENCY_KEY = {
    "description": "A random UUID per logical request: a retry with the same key gets the "
                   "first answer back, byte for byte",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$",
               "examples": ["4f9c2b1e-8a3d-4c6e-9b7a-2d5e1f0a3c8b"]},
}
_ORDER_ID = {"type": "string", "format": "uuid"}
_UUID_PARAMETERS = frozenset({"order_id", "endpoint_id", "delivery_id"})


def statuses(method: str, path: str) -> set[int]:
    """Every status an authenticated route that calls the orders service can answer, besides
    its success."""
    found = set(SERVICE_STATUSES) | {401, 403, 503}
    if method.upper() == "POST":
        found |= {400, 409, 413, 422}
    if "{order_id}" in path:
        found.add(404)
    return found


def document(app: FastAPI, operations: Mapping[tuple[str, str], Operation]) -> dict[str, Any]:
    doc = get_openapi(title=app.title, version=app.version, summary=app.summary,
                      description=app.description, routes=app.routes)
    components = Components()
    for path, item in doc["paths"].items():
        for method, spec in item.items():
            operation = operations.get((method.upper(), path))
            if operation is None:  # the token endpoint, which documents itself
                continue
            _type(spec, method, path, operation, components)
    doc["components"]["schemas"] = {**components.schemas, "Problem": PROBLEM, **_OAUTH}
    return doc


def _type(spec: dict[str, Any], method: str, path: str, operation: Operation,
          components: Components) -> None:
    for parameter in spec.get("parameters", []):
        if parameter["in"] == "header" and parameter["name"] == "Idempotency-Key":
            parameter.update(_IDEMPOTENCY_KEY)
        elif parameter["in"] == "path" and parameter["name"] in _UUID_PARAMETERS:
            parameter["schema"] = dict(_ORDER_ID)
    for message in operation.refers_to:
        components.ref(message)
    media: dict[str, Any] | None = None
    if operation.body_schema is not None:
        media = {"schema": dict(operation.body_schema)}
    elif operation.body is not None:
        media = {"schema": components.ref(operation.body.message, name=operation.body_name,
                                          without=operation.body.not_in_body)}
    if media is not None:
        if operation.example is not None:
            value = (operation.example if isinstance(operation.example, str)
                     else dict(operation.example))
            media["examples"] = {"demo": {"summary": operation.example_summary,
                                          "value": value}}
        spec["requestBody"] = {"required": True, "content": {operation.body_media: media}}
    answer = (components.ref(operation.answer) if isinstance(operation.answer, Descriptor)
              else dict(operation.answer))
    problems = (operation.problems if operation.problems is not None
                else statuses(method, path))
    success: dict[str, Any] = {
        "description": operation.description,
        "content": {operation.answer_media: {"schema": answer}},
    }
    headers: dict[str, Any] = {}
    if operation.status == 201:
        headers["Location"] = {"description": "The new resource's path",
                               "schema": {"type": "string"}}
    if 422 in problems:  # the POSTs under an Idempotency-Key
        headers[REPLAY_HEADER] = {"description": "`true` on the stored answer to a retry",
                                  "schema": {"type": "string", "enum": ["true"]}}
    success["headers"] = {**headers, **_RATE_LIMIT}
    responses: dict[str, Any] = {str(operation.status): success}
    for status in sorted(problems):
        description, problem_headers = PROBLEMS[status]
        response: dict[str, Any] = {"description": description, "content": {
            PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
        every = {} if status == 401 else _RATE_LIMIT
        if problem_headers or every:
            response["headers"] = {**problem_headers, **every}
        responses[str(status)] = response
    spec["responses"] = responses
