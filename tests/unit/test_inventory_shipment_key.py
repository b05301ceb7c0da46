"""The ledger key a shipped line is consumed once by, for package names of every length."""

from __future__ import annotations

import uuid

from oms_inventory.allocation.domain import ship_key
from oms_inventory.catalogue.domain import MAX_REQUEST_ID_LENGTH


def test_a_short_key_is_kept_as_it_was_always_written() -> None:
    assert ship_key("packages/7", "orders/42", "1") == "ship:packages/7:orders/42:1"


def test_fulfilments_names_are_hashed_to_fit_the_ledger_and_stay_apart() -> None:
    package = f"fulfilmentOrders/{uuid.uuid4()}/packages/{uuid.uuid4()}"  # 99 characters
    order = f"orders/{uuid.uuid4()}"
    key = ship_key(package, order, "1")
    assert len(f"ship:{package}:{order}:1") > MAX_REQUEST_ID_LENGTH
    assert key.startswith("ship:") and len(key) <= MAX_REQUEST_ID_LENGTH
    assert key == ship_key(package, order, "1"), "the same line, the same key"
    assert key != ship_key(package, order, "2")
    assert key != ship_key(package, f"orders/{uuid.uuid4()}", "1")
