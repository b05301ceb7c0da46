"""The gateway's OpenAPI document: typed bodies generated from the proto descriptors, every
answer an operation can give documented, examples that work on the demo data. (The answers
of the integration tests are held to it: tests/gateway_contract.py.)"""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest
from fastapi import FastAPI
from gateway_contract import validator
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from oms.orders.v1 import orders_pb2
from oms_devtools import demo
from oms_gateway.app import OPERATIONS, create_app
from oms_gateway.auth import TOKEN_PATH
from oms_gateway.problems import from_rpc_error
from oms_gateway.settings import GatewaySettings
from oms_gateway.webhooks.wiring import OPERATIONS as WEBHOOK_OPERATIONS
from test_gateway_rules import rpc_error


@pytest.fixture(scope="module")
def app() -> FastAPI:
    # Never started: the document needs no database.
    return create_app(GatewaySettings(database_url="postgresql+psycopg://unused/unused"))


@pytest.fixture(scope="module")
def document(app: FastAPI) -> dict[str, Any]:
    return app.openapi()


def operations(document: dict[str, Any], *,
               token: bool = False) -> list[tuple[str, str, dict[str, Any]]]:
    """The document's operations; the token endpoint's only with ``token``."""
    return [(method.upper(), path, spec) for path, item in document["paths"].items()
            for method, spec in item.items() if token or path != TOKEN_PATH]


def test_it_is_openapi_3_1_and_every_body_and_answer_is_typed(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    assert "additionalProperties\": true" not in json.dumps(document["paths"])
    for method, path, spec in operations(document, token=True):
        for media in spec.get("requestBody", {}).get("content", {}).values():
            assert _typed(media["schema"]), (method, path)
        for status, response in spec["responses"].items():
            for media in response["content"].values():
                assert _typed(media["schema"]), (method, path, status)
    assert not {"HTTPValidationError", "ValidationError"} & set(document["components"][
        "schemas"])


def _typed(schema: dict[str, Any]) -> bool:
    """A message's schema by reference, or one of the gateway's own: a CSV file's string, or
    a closed object."""
    return (set(schema) == {"$ref"} or schema.get("type") == "string"
            or (schema.get("type") == "object" and schema["additionalProperties"] is False))


def test_every_status_a_route_can_answer_is_documented_as_a_problem(
    document: dict[str, Any],
) -> None:
    # What the service's answers become, asked of the code that turns them into problems.
    from_service = {from_rpc_error(rpc_error(code)).status
                    for code in grpc.StatusCode if code is not grpc.StatusCode.OK}
    for method, path, spec in operations(document):
        can_answer = from_service | {401, 403, 503}  # credentials, scopes, the last resort
        if method == "POST":
            can_answer |= {400, 409, 413, 422}  # Idempotency-Key, in flight, size, reuse
        if "{order_id}" in path:
            can_answer.add(404)
        webhook = WEBHOOK_OPERATIONS.get((method, path))
        if webhook is not None:  # they list their own (no service call, or no key to reuse)
            assert webhook.problems is not None and {401, 403, 503} <= webhook.problems
            if method == "POST":
                assert {400, 413} <= webhook.problems
            can_answer = set(webhook.problems)
        problems = {int(s) for s, r in spec["responses"].items() if int(s) >= 400}
        assert problems == can_answer, (method, path)
        for status in problems:
            media = spec["responses"][str(status)]["content"]
            assert media == {"application/problem+json": {
                "schema": {"$ref": "#/components/schemas/Problem"}}}
        for status in problems & {429, 503}:
            assert "Retry-After" in spec["responses"][str(status)]["headers"]
        scope = next(s for (m, p), s in SCOPES_OF.items() if (m, p) == (method, path))
        assert spec["security"] == [{"apiKey": []}, {"oauth2": [scope]}], (method, path)


SCOPES_OF = {
    ("POST", "/v1/orders"): "orders:write",
    ("GET", "/v1/orders"): "orders:read",
    ("GET", "/v1/orders/{order_id}"): "orders:read",
    ("POST", "/v1/orders/{order_id}/payments"): "payments:write",
    ("POST", "/v1/orders/{order_id}:cancel"): "orders:write",
    ("POST", "/v1/orders:import"): "orders:write",
    ("GET", "/v1/orders:export"): "orders:read",
    ("GET", "/v1/stock/{sku}"): "stock:read",
    ("GET", "/v1/stock"): "stock:read",
    ("POST", "/v1/webhooks/tracking"): "shipments:write",
    ("POST", "/v1/webhooks/payments"): "payments:write",
    ("POST", "/v1/webhook-endpoints"): "webhooks:write",
    ("GET", "/v1/webhook-endpoints"): "webhooks:read",
    ("DELETE", "/v1/webhook-endpoints/{endpoint_id}"): "webhooks:write",
    ("GET", "/v1/webhook-endpoints/{endpoint_id}/deliveries"): "webhooks:read",
    ("POST", "/v1/webhook-deliveries/{delivery_id}:replay"): "webhooks:write",
}


def test_the_token_endpoint_is_documented_as_oauth2_client_credentials(
    document: dict[str, Any],
) -> None:
    spec = document["paths"][TOKEN_PATH]["post"]
    assert spec["security"] == []
    assert set(spec["requestBody"]["content"]) == {"application/x-www-form-urlencoded"}
    assert set(spec["responses"]) == {"200", "400", "401", "503"}
    flows = document["components"]["securitySchemes"]["oauth2"]["flows"]
    assert flows["clientCredentials"]["tokenUrl"] == TOKEN_PATH
    assert set(SCOPES_OF.values()) <= set(flows["clientCredentials"]["scopes"])


def _demo_order(document: dict[str, Any]) -> dict[str, Any]:
    media = document["paths"]["/v1/orders"]["post"]["requestBody"]["content"]["application/json"]
    return media["examples"]["demo"]["value"]  # type: ignore[no-any-return]


def test_the_examples_fit_their_schemas_parse_and_use_the_demo_data(
    document: dict[str, Any],
) -> None:
    for (method, path), operation in OPERATIONS.items():
        spec = document["paths"][path][method.lower()]
        if operation.body is None:
            assert "requestBody" not in spec
            continue
        media = spec["requestBody"]["content"]["application/json"]
        example = media["examples"]["demo"]["value"]
        assert list(validator(document, media["schema"]).iter_errors(example)) == [], path
        json_format.ParseDict(example, message_factory.GetMessageClass(
            operation.body.message)())
    order = _demo_order(document)
    demo_channels = {c for _, _, channels in demo.PARTNERS for c in channels}
    assert order["channel"] in demo_channels
    assert {line["sku"] for line in order["lines"]} <= {p[0] for p in demo.PRODUCTS}


def _filled(descriptor: Descriptor, depth: int = 0) -> Any:
    """A message with every field set (one element per list), to the depth of 3."""
    message = message_factory.GetMessageClass(descriptor)()
    for field in descriptor.fields:
        if field.message_type is not None:
            if depth >= 3 or field.message_type.GetOptions().map_entry:
                continue
            if field.message_type.full_name == "google.protobuf.Timestamp":
                value = getattr(message, field.name)
                (value.add() if field.is_repeated else value).FromSeconds(1_790_000_000)
                continue
            nested = _filled(field.message_type, depth + 1)
            if field.is_repeated:
                getattr(message, field.name).append(nested)
            else:
                getattr(message, field.name).CopyFrom(nested)
            continue
        value = _scalar(field)
        if field.is_repeated:
            getattr(message, field.name).append(value)
        else:
            setattr(message, field.name, value)
    return message


def _scalar(field: FieldDescriptor) -> Any:
    if field.enum_type is not None:
        return field.enum_type.values[-1].number
    if field.type == FieldDescriptor.TYPE_STRING:
        return {"currency_code": "USD", "amount": "19.99"}.get(field.name, "text")
    if field.type == FieldDescriptor.TYPE_BOOL:
        return True
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return 1.5
    if field.type == FieldDescriptor.TYPE_BYTES:
        return b"\x00\x01"
    return 2**40 if field.cpp_type in (FieldDescriptor.CPPTYPE_INT64,
                                       FieldDescriptor.CPPTYPE_UINT64) else 7


def test_an_answer_with_every_field_set_validates_and_the_json_mapping_is_respected(
    document: dict[str, Any],
) -> None:
    body = json_format.MessageToDict(_filled(orders_pb2.Order.DESCRIPTOR))
    schema = {"$ref": "#/components/schemas/Order"}
    assert list(validator(document, schema).iter_errors(body)) == []
    assert isinstance(body["weight"]["grams"], str), "int64 is a string"
    for bad in ({**body, "weight": {"grams": 1200}}, {**body, "createTime": 1_790_000_000},
                {**body, "status": 3}, {**body, "total": {"currencyCode": "USD", "amount": 1}},
                {**body, "external_order_id": "snake"}):
        assert list(validator(document, schema).iter_errors(bad)), bad


def test_output_only_fields_are_read_only_and_required_fields_required(
    document: dict[str, Any],
) -> None:
    order = document["components"]["schemas"]["Order"]
    assert order["properties"]["status"]["readOnly"] is True
    assert order["properties"]["name"]["readOnly"] is True
    assert {"channel", "externalOrderId", "shippingAddress", "lines"} <= set(order["required"])
    assert document["components"]["schemas"]["Money"]["properties"]["amount"]["type"] == "string"
    cancellation = document["components"]["schemas"]["Cancellation"]
    assert set(cancellation["properties"]) == {"reason", "lines"}, "not the path's, the header's"
