"""Field paths in the partner's JSON: the service's violations translated through the proto
descriptors, and every field of a body that does not parse named where the partner wrote it."""

from __future__ import annotations

from typing import Any

import pytest
from oms.orders.v1 import orders_pb2
from oms_gateway.app import CANCEL_BODY, CREATE_BODY, GET_BODY, LIST_QUERY, PAYMENT_BODY
from oms_gateway.fields import Shape, json_path, violations


@pytest.mark.parametrize(("shape", "grpc_path", "expected"), [
    (CREATE_BODY, "order.lines[0].unit_price.currency_code", "lines[0].unitPrice.currencyCode"),
    (CREATE_BODY, "order.shipping_address.address_lines[0]", "shippingAddress.addressLines[0]"),
    (CREATE_BODY, "order.external_order_id", "externalOrderId"),
    (CREATE_BODY, "order.customer.display_name", "customer.displayName"),
    (CREATE_BODY, "order.shipping_address.location.latitude", "shippingAddress.location.latitude"),
    (CREATE_BODY, "order", ""),
    (CREATE_BODY, "request_id", "Idempotency-Key"),
    (PAYMENT_BODY, "payment.amount.currency_code", "amount.currencyCode"),
    (PAYMENT_BODY, "payment.transaction_id", "transactionId"),
    (PAYMENT_BODY, "name", "order_id"),
    (CANCEL_BODY, "lines[3].line_id", "lines[3].lineId"),
    (CANCEL_BODY, "reason", "reason"),
    (CANCEL_BODY, "request_id", "Idempotency-Key"),
    (GET_BODY, "name", "order_id"),
    (LIST_QUERY, "page_token", "pageToken"),
    (LIST_QUERY, "page_size", "pageSize"),
    (LIST_QUERY, "filter", "filter"),
])
def test_a_service_violation_names_the_partners_json_field(
    shape: Shape, grpc_path: str, expected: str,
) -> None:
    assert shape.path(grpc_path) == expected


def test_a_segment_the_descriptors_do_not_know_is_kept_not_invented() -> None:
    assert json_path(orders_pb2.Order.DESCRIPTOR, "lines[0].no_such_field.x_y") == (
        "lines[0].no_such_field.x_y")
    assert CREATE_BODY.path("requests[1].order.channel") == "requests[1].order.channel"


def _fields(body: dict[str, Any], shape: Shape = CREATE_BODY) -> dict[str, str]:
    return {v["field"]: v["detail"] for v in violations(body, shape.message)}


def test_every_field_that_does_not_parse_is_named_at_once_in_json_paths() -> None:
    found = _fields({
        "channel": "web",
        "lines": [{"sku": "A", "quantity": 1},
                  {"quantity": "two", "unitPrice": {"currency": "USD", "amount": 5}}],
        "serviceLevel": "SERVICE_LEVEL_WARP",
        "orderTime": "yesterday",
        "customer": "ada",
        "tags": ["ok", 7],
        "highValue": "yes",
        "surprise": 1,
    })
    assert set(found) == {"lines[1].quantity", "lines[1].unitPrice.currency",
                          "lines[1].unitPrice.amount", "serviceLevel", "orderTime", "customer",
                          "tags[1]", "highValue", "surprise"}
    assert found["lines[1].unitPrice.currency"] == "unknown field"
    assert found["lines[1].quantity"] == "must be an integer"
    assert found["lines[1].unitPrice.amount"] == "must be a string"
    assert "SERVICE_LEVEL_STANDARD" in found["serviceLevel"]
    assert "RFC 3339" in found["orderTime"]
    assert found["customer"] == "must be an object"


def test_snake_case_is_accepted_and_named_as_the_partner_wrote_it() -> None:
    assert _fields({"shipping_address": {"address_lines": "1 Main St"},
                    "external_order_id": "1"}) == {
        "shipping_address.address_lines": "must be an array"}


def test_a_body_that_parses_has_no_violations_and_the_leaf_judge_is_the_parser() -> None:
    # int64 as a string, an enum by its number, null for a default: the JSON mapping allows it.
    assert _fields({"lines": [{"quantity": "3", "unitPrice": None}], "serviceLevel": 2,
                    "orderTime": "2026-01-31T12:00:00Z", "weight": {"grams": "1200"}}) == {}
    assert _fields({"lines": {"quantity": 1}}) == {"lines": "must be an array"}
    assert _fields({"lines": [{"lineId": 1.5}]}, CANCEL_BODY) == {
        "lines[0].lineId": "must be a string"}
