"""Page tokens: signed, bound to their list's parameters, its method and its service's key."""

from __future__ import annotations

import base64
import contextvars
import json
from collections.abc import Callable
from typing import Any

import pytest
from oms_platform import pagination
from oms_platform.pagination import (
    PageTokenError,
    decode_page_token,
    encode_page_token,
    serving,
    use_key,
)

QUERY = {"parent": "fulfilmentNodes/berlin", "filter": 'sku = "A"'}
LIST = "/oms.inventory.v1.InventoryService/ListStockLevels"


def in_context(function: Callable[[], Any], *, key: bytes = b"k" * 32,
               method: str = LIST) -> Any:
    """Runs ``function`` as a service with ``key`` serving ``method`` would."""

    def run() -> Any:
        use_key(key)
        with serving(method):
            return function()

    return contextvars.copy_context().run(run)


def token_for(after: list[Any], **where: Any) -> str:
    return str(in_context(lambda: encode_page_token(after, QUERY), **where))


def read(token: str, query: dict[str, Any] = QUERY, **where: Any) -> Any:
    return in_context(lambda: decode_page_token(token, query), **where)


def test_a_token_round_trips() -> None:
    after = ["berlin", "SKU-1", 7, None]
    assert read(token_for(after)) == after


def test_no_token_is_the_first_page() -> None:
    assert read("") is None


def test_a_forged_token_is_refused() -> None:
    """What a caller could write before tokens were signed: a key of the wrong shape."""
    payload = json.dumps({"after": [1], "query": pagination._fingerprint(QUERY)})
    forged = base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")
    with pytest.raises(PageTokenError, match="not a page token"):
        read(forged)


@pytest.mark.parametrize("position", [0, 5, -5], ids=["payload start", "payload", "signature"])
def test_a_tampered_token_is_refused(position: int) -> None:
    token = list(token_for(["berlin", "SKU-1"]))
    token[position] = "A" if token[position] != "A" else "B"
    with pytest.raises(PageTokenError):
        read("".join(token))


def test_a_token_with_another_key_put_in_is_refused() -> None:
    token = token_for(["berlin", "SKU-1"])
    body, _, signature = token.partition(".")
    content = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    content["after"] = ["berlin"]
    other = base64.urlsafe_b64encode(json.dumps(content).encode()).decode().rstrip("=")
    with pytest.raises(PageTokenError):
        read(f"{other}.{signature}")


def test_a_token_is_refused_by_another_service_key() -> None:
    token = token_for(["berlin", "SKU-1"], key=b"a" * 32)
    with pytest.raises(PageTokenError, match="not a page token"):
        read(token, key=b"b" * 32)


def test_a_token_is_refused_by_another_list_of_the_service() -> None:
    """Two lists may share their parameters (a parent) and not the shape of their keys."""
    token = token_for([42], method="/oms.inventory.v1.InventoryService/ListStockMovements")
    with pytest.raises(PageTokenError):
        read(token, method="/oms.inventory.v1.InventoryService/ListReplenishmentSuggestions")


def test_a_token_is_refused_with_other_list_parameters() -> None:
    token = token_for(["berlin", "SKU-1"])
    with pytest.raises(PageTokenError, match="other list parameters"):
        read(token, {**QUERY, "filter": 'sku = "B"'})


@pytest.mark.parametrize("garbage", ["x", ".", "a.b.c", "é.é", "====.====", "%%%"])
def test_garbage_is_a_page_token_error(garbage: str) -> None:
    with pytest.raises(PageTokenError):
        read(garbage)
