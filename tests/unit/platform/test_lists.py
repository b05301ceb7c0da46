"""The parts of a list request: page tokens whose key has the list's shape, page sizes, and
the parameters of a request gathered with every violation at once."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from oms_platform import filtering, lists
from oms_platform.errors import InvalidArgument
from oms_platform.pagination import PageTokenError, encode_page_token


def test_page_tokens_round_trip_and_belong_to_their_query() -> None:
    query = {"filter": "fragile = true", "show_deleted": False}
    token = encode_page_token(["SKU-9", 3], query)
    assert lists.decode_key(token, query, (str, int)) == ["SKU-9", 3]
    assert lists.decode_key("", query, (str, int)) is None
    with pytest.raises(PageTokenError):
        lists.decode_key(token, {**query, "filter": "fragile = false"}, (str, int))
    with pytest.raises(PageTokenError):
        lists.decode_key("not-a-token", query, (str, int))


@pytest.mark.parametrize("key", [
    [], ["SKU-9"], ["SKU-9", 3, 4], [3, "SKU-9"], ["SKU-9", "3"], ["SKU-9", True],
    ["SKU-9", 2**63], ["SKU-9", -2**63 - 1], ["SKU-9", 1.0], [None, 3], [["SKU-9"], 3],
    ["SKU\u0000", 3], ["\ud800", 3],
])
def test_a_key_of_another_shape_is_refused(key: list[object]) -> None:
    query = {"parent": "fulfilmentNodes/-"}
    with pytest.raises(PageTokenError):
        lists.decode_key(encode_page_token(key, query), query, (str, int))
    assert lists.decode_key(encode_page_token(["x", 2**63 - 1], query), query,
                            (str, int)) == ["x", 2**63 - 1]
    assert lists.decode_key(encode_page_token([False], query), query, (bool,)) == [False]


def test_times_and_ids_travel_as_text_and_come_back_typed() -> None:
    moment, order_id = datetime(2025, 11, 1, 9, 30, tzinfo=UTC), uuid.uuid4()
    rows = [(moment, order_id), (moment, uuid.uuid4())]
    token = lists.next_page_token(rows, 1, list, {"filter": ""})
    assert lists.decode_key(token, {"filter": ""}, (datetime, uuid.UUID)) == [moment, order_id]
    for forged in (["2025-11-01T09:30:00", str(order_id)], [moment.isoformat(), "not-a-uuid"]):
        with pytest.raises(PageTokenError):
            lists.decode_key(encode_page_token(forged, {"filter": ""}), {"filter": ""},
                             (datetime, uuid.UUID))


def test_a_last_page_has_no_token() -> None:
    assert lists.next_page_token([("a",)], 1, list, {}) == ""


def test_page_size_defaults_and_caps() -> None:
    assert [lists.page_size(n) for n in (0, 10, 5000)] == [50, 10, 1000]
    assert lists.page_size(5000, maximum=200) == 200


@dataclass
class Request:
    filter: str = ""
    page_size: int = 0
    page_token: str = ""


def test_every_bad_part_of_a_request_is_reported_at_once() -> None:
    fields = {"sku": filtering.text()}
    with pytest.raises(InvalidArgument) as refused:
        lists.parameters(Request("colour = red", -1, "forged"), {}, (str,), fields=fields)
    assert [v.field for v in refused.value.violations] == ["filter", "page_size", "page_token"]
    parsed, after, size = lists.parameters(Request("sku = A", 5), {}, (str,), fields=fields)
    assert (parsed.conditions, after, size) == ((filtering.Condition("sku", "=", "A"),), None, 5)
