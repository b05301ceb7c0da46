"""The inventory service's settings: read once, checked at start."""

from __future__ import annotations

import pytest
from oms_inventory.allocation.domain import STRATEGIES
from oms_inventory.settings import InventorySettings
from pydantic import ValidationError


def test_settings_come_from_the_environment_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMS_INVENTORY_ALLOCATION_STRATEGY", "lowest_cost")
    monkeypatch.setenv("OMS_INVENTORY_BACKORDER_SERVE_BATCH_SIZE", "7")
    settings = InventorySettings()
    monkeypatch.setenv("OMS_INVENTORY_BACKORDER_SERVE_BATCH_SIZE", "9")
    assert (settings.strategy, settings.backorder_serve_batch_size) == (
        STRATEGIES["lowest_cost"], 7)


@pytest.mark.parametrize(("name", "value"), [
    ("OMS_INVENTORY_ALLOCATION_STRATEGY", "closest"),
    ("OMS_INVENTORY_BACKORDER_SERVE_BATCH_SIZE", "0"),
    ("OMS_INVENTORY_EXPIRY_INTERVAL_SECONDS", "-1"),
    ("OMS_INVENTORY_VELOCITY_WINDOW_DAYS", "a month"),
])
def test_a_wrong_setting_stops_the_start(monkeypatch: pytest.MonkeyPatch, name: str,
                                         value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        InventorySettings()
