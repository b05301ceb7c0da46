"""The shipping service's own settings, from ``OMS_SHIPPING_*`` environment variables. Read
once at start (``app.py``) and handed to the servicer, the handlers and the background tasks;
a test that needs other values builds the service with its own ``ShippingSettings``."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class ShippingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OMS_SHIPPING_", extra="ignore")
