"""The shipping service's own settings, from ``OMS_SHIPPING_*`` environment variables. Read
once at start (``app.py``) and handed to the servicer, the handlers and the background tasks;
a test that needs other values builds the service with its own ``ShippingSettings``."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ShippingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OMS_SHIPPING_", extra="ignore")

    # Rating: with the BEST_VALUE goal a faster quote wins over the cheapest on-time one when
    # each day it saves costs at most this percentage of the cheapest price.
    best_value_day_percent: Decimal = Field(default=Decimal(10), ge=0, le=1000)

    # --- Labels ---
    # Our shipper number in the UPS 1Z tracking numbers of table-rate labels (6 letters or
    # digits); a karrio carrier's numbers come from the carrier.
    ups_shipper_number: str = Field(default="OMS001", pattern=r"^[0-9A-Z]{6}$")

    # --- tracking ---
    # A parcel on its way with no carrier scan for this many days becomes an exception.
    stale_after_days: int = Field(default=5, ge=1, le=365)
    # How often the no-scan sweep looks, and how many parcels one pass (one transaction)
    # turns into exceptions; passes follow each other while they find a full batch.
    stale_sweep_interval_seconds: float = Field(default=900.0, gt=0)
    stale_batch_size: int = Field(default=200, ge=1, le=500)
