"""The inventory service's own settings, from ``OMS_INVENTORY_*`` environment variables. Read
once at start (``app.py``) and handed to the servicer, the handlers and the background tasks;
a test that needs other values builds the service with its own ``InventorySettings``."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from oms_inventory.allocation.domain import STRATEGIES, Strategy


class InventorySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OMS_INVENTORY_", extra="ignore")

    allocation_strategy: str = Field(
        default="nearest",
        description="How allocation ranks nodes: nearest, priority or lowest_cost")
    expiry_interval_seconds: float = Field(
        default=1.0, gt=0, description="How often unpaid orders past their due time are looked for")
    expiry_batch_size: int = Field(
        default=200, gt=0, description="Orders expired per transaction")
    backorder_sweep_interval_seconds: float = Field(
        default=5.0, gt=0, description="How often the backorder sweep runs")
    backorder_sweep_batch_size: int = Field(
        default=200, gt=0, description="Stock levels one pass of the backorder sweep serves from")
    backorder_serve_batch_size: int = Field(
        default=200, gt=0,
        description="Waiting lines one stock movement (or one sweep pass) reads, locks and "
        "serves at most; the rest are served by the sweep's next passes")
    velocity_window_days: int = Field(
        default=28, gt=0, description="Days of reservations the sales velocity is measured over")
    review_period_days: int = Field(
        default=14, ge=0, description="Days of sales a suggested reorder covers beyond the point")
    velocity_refresh_seconds: float = Field(
        default=3600.0, ge=0,
        description="How old a level's cached velocity may be before a movement re-reads it")
    max_drifts_per_check: int = Field(
        default=1000, gt=0, description="Drifted levels CheckStockDrift reports (and repairs) "
        "at most per call")

    @field_validator("allocation_strategy")
    @classmethod
    def _known_strategy(cls, name: str) -> str:
        if name not in STRATEGIES:
            raise ValueError(f"must be one of {', '.join(sorted(STRATEGIES))}")
        return name

    @property
    def strategy(self) -> Strategy:
        return STRATEGIES[self.allocation_strategy]
