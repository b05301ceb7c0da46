"""The shipping service's own settings, from ``OMS_SHIPPING_*`` environment variables. Read
once at start (``app.py``) and handed to the servicer, the handlers and the background tasks;
a test that needs other values builds the service with its own ``ShippingSettings``."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ShippingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OMS_SHIPPING_", extra="ignore")

    # --- tracking ---
    # A parcel on its way with no carrier scan for this many days becomes an exception.
    stale_after_days: int = Field(default=5, ge=1, le=365)
    # How often the no-scan sweep looks, and how many parcels one pass (one transaction)
    # turns into exceptions; passes follow each other while they find a full batch.
    stale_sweep_interval_seconds: float = Field(default=900.0, gt=0)
    stale_batch_size: int = Field(default=200, ge=1, le=500)
