"""The fulfilment service's own settings, from ``OMS_FULFILMENT_*`` environment variables.
Read once at start (``app.py``) and handed to the servicer, the handlers and the background
tasks; a test that needs other values builds the service with its own
``FulfilmentSettings``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class FulfilmentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OMS_FULFILMENT_", extra="ignore")

    # The inventory service (host:port): nodes, their bins, cut-off and time zone.
    inventory_target: str = "127.0.0.1:50052"
    # A node read from inventory is used this long before it is read again: bins and cut-offs
    # change rarely, and a release must not wait on a call per order.
    node_cache_seconds: float = Field(default=30.0, ge=0)
    # Deadline of one call to inventory.
    inventory_timeout_seconds: float = Field(default=5.0, gt=0)

    # The strategy CreatePickList uses when the request names none.
    default_pick_strategy: Literal["single_order", "batch", "zone", "wave"] = "batch"
    # What one picker carries on a batch, zone or wave run (the request may lower or raise
    # them within the contract's bounds).
    batch_max_orders: int = Field(default=20, ge=1, le=100)
    batch_max_units: int = Field(default=200, ge=1, le=2000)
    batch_max_weight_grams: int = Field(default=25_000, ge=1, le=100_000)
